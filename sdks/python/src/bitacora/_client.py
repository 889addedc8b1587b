"""`Bitacora` and `AsyncBitacora`: the queue, the background sender, and the strict path.

Failure model (the same for both clients):

- `log()` builds the event (id, time, audit context) and appends it to a bounded in-memory
  queue. It never touches the network, never raises and never blocks; when the queue is full it
  drops *this* event (the newest), counts it, hands it to `on_error` and warns (at most every
  10 s). It returns the event's id either way.
- One daemon thread per client and process sends the queue in batches
  (`POST /v1/events/batch`) every `flush_interval`, or as soon as `batch_size` events wait.
  Network errors, 408, 429 and 5xx are retried with exponential backoff and full jitter,
  honouring `Retry-After`, for as long as the client is open: the bounded queue, not a retry
  count, is what limits memory while bitacora is down. Each event keeps its id on every retry,
  so a batch whose response was lost is acknowledged as duplicates, never stored twice.
- Any other 4xx gives the batch up (`on_error`), and so does a per-event error inside a 200
  batch response (`{"index", "error"}`) for that event alone.
- `log_bulk()` builds all the events of a bulk operation (one per record, plus a summary) before
  queueing any, and queues them as one group: the sender never splits a group across batches
  (a group larger than `batch_size` goes alone), and a group that does not fit in the queue is
  dropped whole. Bad input fails the whole group, reported to `on_error`, never half of it.
- A thread is used for the async client too: it keeps delivery independent of which event
  loop is running (or whether one is), exactly as the sync client does.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as _dt
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from . import _transport as tr
from ._context import ActorSource, AuditContext, _clean_actor, _current
from ._errors import BitacoraError, VerificationError
from ._ids import now_rfc3339 as _now
from ._ids import uuid7
from ._types import BulkItem, BulkSummary, Event, Stats

logger = logging.getLogger("bitacora")

OnError = Callable[[BitacoraError, list[dict[str, Any]]], None]
"""`on_error(error, events)`: called with the events given up on and why."""

DEFAULT_URL = "http://127.0.0.1:8480"
# The server takes batches of up to 16 MiB; stay under it with room for the brackets.
MAX_BATCH_BYTES = 15 * 1024 * 1024
DROP_WARNING_INTERVAL = 10.0

Timestamp = str | _dt.datetime


@dataclass(frozen=True)
class Ack:
    """The server's acknowledgement of one durable event."""

    id: str
    seq: int
    leaf_hash: str
    duplicate: bool

    @classmethod
    def from_json(cls, body: Any) -> Ack:
        if not isinstance(body, Mapping):
            raise BitacoraError("unexpected response body", code="bad_response")
        try:
            return cls(
                id=str(body["id"]),
                seq=int(body["seq"]),
                leaf_hash=str(body["leaf_hash"]),
                duplicate=bool(body.get("duplicate", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BitacoraError(f"unexpected response body: {e!r}", code="bad_response") from e


class BulkResult(NamedTuple):
    """What `log_bulk()` returns: the summary event's id (every per-record event carries it as
    `metadata["bulk_id"]`) and the per-record events' ids, in the order of `items`."""

    summary_id: str
    event_ids: list[str]


class _GroupHead(dict[str, Any]):
    """The first event of a `log_bulk()` group in the queue: an ordinary event dict (it is sent
    and reported as one) that tells the sender how many queued events travel with it."""

    __slots__ = ("size",)

    def __init__(self, event: dict[str, Any], size: int) -> None:
        super().__init__(event)
        self.size = size


def _group_size(event: dict[str, Any]) -> int:
    return event.size if isinstance(event, _GroupHead) else 1


_BULK_ITEM_KEYS = frozenset(BulkItem.__required_keys__ | BulkItem.__optional_keys__)
_BULK_SUMMARY_KEYS = frozenset(BulkSummary.__optional_keys__)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, not {type(value).__name__}")
    return value


def _known_keys(value: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = set(value) - allowed
    if unknown:
        raise ValueError(f"{what} has unknown keys {sorted(map(str, unknown))}")


def _timestamp(value: Timestamp) -> str:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            # A naive datetime is taken as UTC rather than local time: servers and containers
            # usually run in UTC, and guessing the local zone would silently shift events.
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    return value


# Clients alive in this process, so that fork and exit handlers can reach them without keeping
# them alive.
_clients: weakref.WeakSet[_BaseClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._reset_after_fork()


def _at_exit() -> None:
    for client in list(_clients):
        try:
            client._close_blocking(client._exit_timeout)
        except Exception:
            logger.debug("bitacora: exit flush failed", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)


class _BaseClient:
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        tenant: str | None = None,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        on_error: OnError | None = None,
        timeout: float = 10.0,
        max_backoff: float = 5.0,
        send_retries: int = 3,
        exit_timeout: float = 2.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """
        url, api_key: default to `BITACORA_URL` and `BITACORA_API_KEY`.
        tenant: sent with every event that does not name one.
        max_queue, batch_size, flush_interval: the sender's queue bound, batch size and delay.
        on_error: called with `(error, events)` for events given up on; the default logs them.
        timeout: per HTTP request. max_backoff: the cap of the jittered retry delay.
        send_retries: how many times the strict `send()` retries before raising.
        exit_timeout: how long the interpreter-exit flush may take.
        transport, async_transport: httpx transports (tests use `httpx.MockTransport`).
        """
        self._url = (url or os.environ.get("BITACORA_URL") or DEFAULT_URL).rstrip("/")
        self._api_key = api_key or os.environ.get("BITACORA_API_KEY")
        if not self._api_key:
            logger.warning(
                "bitacora: no api_key given and BITACORA_API_KEY is not set; "
                "the server will refuse events"
            )
        self._tenant = tenant
        self._max_queue = max(1, int(max_queue))
        self._batch_size = max(1, min(int(batch_size), 10_000))
        self._flush_interval = max(0.001, float(flush_interval))
        self._on_error = on_error
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._max_backoff = max_backoff
        self._send_retries = send_retries
        self._exit_timeout = exit_timeout
        self._transport = transport
        self._async_transport = async_transport
        self._headers = tr.headers(self._api_key)
        self._init_state()
        _clients.add(self)

    # ---- state that a forked child must not share with its parent ----

    def _init_state(self) -> None:
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        # Notified whenever a batch finishes, so `flush()` waiters can re-check.
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        # Set when `close()` runs out of time: cuts backoff sleeps short.
        self._abandon = threading.Event()
        self._closing = False
        self._closed = False
        self._inflight = 0
        self._sent = 0
        self._dropped = 0
        self._failed = 0
        self._drops_unreported = 0
        self._last_drop_warning = 0.0
        self._thread: threading.Thread | None = None
        self._worker_http: httpx.Client | None = None
        self._sync_http: httpx.Client | None = None

    def _reset_after_fork(self) -> None:
        # The parent's sender thread does not exist in the child, its locks may have been held
        # at the fork, and its sockets are shared with the parent. The parent still delivers
        # what it had queued; the child starts empty and starts its own sender on first use.
        # The inherited httpx clients are dropped without closing: closing would shut the
        # parent's connections.
        was_closed = self._closed
        self._init_state()
        self._closed = was_closed

    # ---- building events ----

    def _build(
        self,
        action: str,
        id: str | None,
        occurred_at: Timestamp | None,
        tenant: str | None,
        category: str | None,
        severity: str | None,
        outcome: str | None,
        actor: ActorSource | None,
        target: Mapping[str, Any] | None,
        changes: Sequence[Mapping[str, Any]] | None,
        description: str | None,
        context: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        # Top-level containers are copied, so that a caller reusing its dicts after `log()`
        # does not change an event waiting in the queue.
        ev: dict[str, Any] = {
            "id": id or uuid7(),
            "action": action,
            "occurred_at": _timestamp(occurred_at) if occurred_at is not None else _now(),
        }
        tenant = tenant or self._tenant
        if tenant:
            ev["tenant"] = tenant
        if category:
            ev["category"] = category
        if severity:
            ev["severity"] = severity
        if outcome:
            ev["outcome"] = outcome
        if target:
            ev["target"] = dict(target)
        if changes:
            ev["changes"] = [dict(c) for c in changes]
        if description:
            ev["description"] = description
        if metadata:
            ev["metadata"] = dict(metadata)
        ctx = _current.get()
        if actor is not None:
            if callable(actor):
                resolved = AuditContext(actor=actor).resolve_actor()
            else:
                resolved = _clean_actor(actor)
            if resolved:
                ev["actor"] = resolved
        elif ctx is not None:
            resolved = ctx.resolve_actor()
            if resolved:
                ev["actor"] = resolved
        c: dict[str, Any] = dict(context) if context else {}
        if ctx is not None:
            if ctx.ip and "ip" not in c:
                c["ip"] = ctx.ip
            if ctx.user_agent and "user_agent" not in c:
                c["user_agent"] = ctx.user_agent
            if ctx.request_id and "request_id" not in c:
                c["request_id"] = ctx.request_id
            if ctx.source and "source" not in c:
                c["source"] = ctx.source
        if c:
            ev["context"] = c
        return ev

    # ---- the queue ----

    def log(
        self,
        action: str,
        *,
        id: str | None = None,
        occurred_at: Timestamp | None = None,
        tenant: str | None = None,
        category: str | None = None,
        severity: str | None = None,
        outcome: str | None = None,
        actor: ActorSource | None = None,
        target: Mapping[str, Any] | None = None,
        changes: Sequence[Mapping[str, Any]] | None = None,
        description: str | None = None,
        context: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Queues one event and returns its id at once. Never raises, never waits for the
        network; the event is delivered in the background (see the module doc)."""
        event_id = ""
        try:
            # A caller's id is kept (as text: an int primary key is a fine idempotency key).
            event_id = (id if isinstance(id, str) else str(id)) if id else uuid7()
            if not isinstance(action, str):
                # Not queued: a batch the server cannot parse would fail every event in it.
                self._give_up(
                    BitacoraError("action must be a string", code="invalid_field", field="action"),
                    [{"id": event_id, "action": action}],
                )
                return event_id
            ev = self._build(
                action,
                event_id,
                occurred_at,
                tenant,
                category,
                severity,
                outcome,
                actor,
                target,
                changes,
                description,
                context,
                metadata,
            )
            if self._closed:
                self._drop([ev], "client is closed")
                return event_id
            # A deque append is atomic under the GIL: no lock on the hot path. Concurrent
            # callers may overshoot the bound by a few events, never without limit.
            if len(self._queue) >= self._max_queue:
                self._drop([ev], "queue is full")
                return event_id
            self._queue.append(ev)
            if self._thread is None:
                self._start()
            if len(self._queue) >= self._batch_size and not self._wake.is_set():
                self._wake.set()
        except Exception as e:
            # Bad input (a list where a mapping belongs, a broken mapping...) must not fail
            # the caller's operation: count it and report it.
            self._give_up(
                BitacoraError(f"could not build the event: {e!r}", code="invalid_event"),
                [{"id": event_id, "action": action}],
            )
        return event_id

    def log_bulk(
        self,
        action: str,
        items: Iterable[BulkItem | Mapping[str, Any]],
        *,
        summary: BulkSummary | Mapping[str, Any] | None = None,
        occurred_at: Timestamp | None = None,
        tenant: str | None = None,
        category: str | None = None,
        severity: str | None = None,
        outcome: str | None = None,
        actor: ActorSource | None = None,
        description: str | None = None,
        context: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> BulkResult:
        """Logs a bulk operation (seed 004's "operación masiva"): one event per record in
        `items` (`{"target", "changes"?, "description"?, "metadata"?}`) plus a summary event
        naming them all, queued together so that they travel in one batch. Returns
        `BulkResult(summary_id, event_ids)` at once.

        The other arguments are the fields common to every event, as in `log()`; all events
        share one `occurred_at`. Each record's event gets `metadata["bulk_id"]` = the summary's
        id. The summary takes `summary={"action"?, "severity"?, "target"?, "description"?,
        "metadata"?}` over the common fields; its target defaults to
        `{"type": "bulk_operation", "id": <summary id>}` and its `metadata["bulk"]` is
        `{"count", "target_ids", "event_ids"}`.

        Never raises: input it cannot use fails the whole group (all its events counted as
        failed and passed to `on_error`, none queued), and a group the queue has no room for
        is dropped whole."""
        summary_id = uuid7()
        event_ids: list[str] = []
        records: list[Any] = []
        built: list[dict[str, Any]] = []
        summary_action: Any = action
        try:
            records = list(items)
            event_ids = [uuid7() for _ in records]
            if not isinstance(action, str):
                raise TypeError("action must be a string")
            extra = _mapping(summary, "summary")
            _known_keys(extra, _BULK_SUMMARY_KEYS, "summary")
            summary_action = extra.get("action", action)
            if not isinstance(summary_action, str):
                raise TypeError("summary action must be a string")
            common_metadata = _mapping(metadata, "metadata")
            # Fixed once: every event of the operation happened at the same moment, by the
            # same actor (resolved once, so an actor function is called once, not per record).
            at = _timestamp(occurred_at) if occurred_at is not None else _now()
            ctx = _current.get()
            if actor is not None:
                resolved = (
                    AuditContext(actor=actor).resolve_actor()
                    if callable(actor)
                    else _clean_actor(actor)
                )
            else:
                resolved = ctx.resolve_actor() if ctx is not None else None
            # An empty mapping, not None: `_build` must not fall back to the context's actor.
            who: ActorSource = resolved or {}
            targets: list[Any] = []
            for position, (item, event_id) in enumerate(zip(records, event_ids, strict=True)):
                what = f"items[{position}]"
                record = _mapping(item, what)
                _known_keys(record, _BULK_ITEM_KEYS, what)
                target = record.get("target")
                if not isinstance(target, Mapping):
                    raise TypeError(f"{what} needs a target mapping")
                targets.append(target.get("id"))
                ev = self._build(
                    action,
                    event_id,
                    at,
                    tenant,
                    category,
                    severity,
                    outcome,
                    who,
                    target,
                    record.get("changes"),
                    record.get("description") or description,
                    context,
                    None,
                )
                ev["metadata"] = {
                    **common_metadata,
                    **_mapping(record.get("metadata"), f"{what} metadata"),
                    "bulk_id": summary_id,
                }
                built.append(ev)
            summary_target = extra.get("target") or {"type": "bulk_operation", "id": summary_id}
            ev = self._build(
                summary_action,
                summary_id,
                at,
                tenant,
                category,
                extra.get("severity") or severity,
                outcome,
                who,
                _mapping(summary_target, "summary target"),
                None,
                extra.get("description") or description,
                context,
                None,
            )
            ev["metadata"] = {
                **common_metadata,
                **_mapping(extra.get("metadata"), "summary metadata"),
                "bulk": {"count": len(records), "target_ids": targets, "event_ids": event_ids},
            }
            built.append(ev)
            # Serialized once here, so that a value JSON cannot carry fails the whole group
            # now rather than one of its events in the sender.
            for ev in built:
                tr.dumps(ev)
        except Exception as e:
            # What was built, and the ids and action of what was not: `on_error` sees every
            # event of the group, as many as are counted failed.
            events = built + [
                {"id": event_id, "action": action} for event_id in event_ids[len(built) :]
            ]
            if len(built) <= len(records):
                events.append({"id": summary_id, "action": summary_action})
            self._give_up(
                BitacoraError(f"could not build the bulk operation: {e!r}", code="invalid_event"),
                events,
            )
            return BulkResult(summary_id, event_ids)
        group: list[dict[str, Any]] = [_GroupHead(built[0], len(built)), *built[1:]]
        if self._closed:
            self._drop(group, "client is closed")
        elif len(self._queue) + len(group) > self._max_queue:
            self._drop(group, "queue is full")
        else:
            # One `extend`: the group enters the deque at once (a single C call), so events
            # that other threads log concurrently cannot land in its middle.
            self._queue.extend(group)
            if self._thread is None:
                self._start()
            if len(self._queue) >= self._batch_size and not self._wake.is_set():
                self._wake.set()
        return BulkResult(summary_id, event_ids)

    def _drop(self, events: list[dict[str, Any]], why: str) -> None:
        with self._lock:
            self._dropped += len(events)
            self._drops_unreported += len(events)
            now = time.monotonic()
            warn = now - self._last_drop_warning >= DROP_WARNING_INTERVAL
            if warn:
                count, self._drops_unreported = self._drops_unreported, 0
                self._last_drop_warning = now
        if warn:
            logger.warning(
                "bitacora: %s; dropped %d event(s) (%d in total)", why, count, self._dropped
            )
        self._report(
            BitacoraError(why, code="queue_full" if "full" in why else "closed"), events, log=False
        )

    def _report(self, error: BitacoraError, events: list[dict[str, Any]], log: bool = True) -> None:
        if self._on_error is not None:
            try:
                self._on_error(error, events)
            except Exception:
                logger.warning("bitacora: on_error raised", exc_info=True)
        elif log:
            logger.warning("bitacora: gave up on %d event(s): %s", len(events), error)

    def stats(self) -> Stats:
        """`queued` (waiting or in flight), `sent` (acknowledged, duplicates included),
        `dropped` (full queue or closed client) and `failed` (given up on, see `on_error`)."""
        with self._lock:
            return {
                "queued": len(self._queue) + self._inflight,
                "sent": self._sent,
                "dropped": self._dropped,
                "failed": self._failed,
            }

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            t = threading.Thread(target=self._run, name="bitacora-sender", daemon=True)
            self._thread = t
        t.start()

    # ---- the sender thread ----

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self._flush_interval)
                self._wake.clear()
                self._drain()
                if self._closing and not self._queue:
                    return
        except Exception:  # pragma: no cover - a bug; keep the process alive
            logger.exception("bitacora: the sender thread stopped")
        finally:
            if self._worker_http is not None:
                self._worker_http.close()
                self._worker_http = None

    def _drain(self) -> None:
        while self._queue:
            with self._lock:
                batch: list[dict[str, Any]] = []
                q = self._queue
                while q and len(batch) < self._batch_size:
                    size = _group_size(q[0])
                    # A bulk group travels whole: it waits for the next batch rather than be
                    # split (one larger than a batch goes alone).
                    if batch and len(batch) + size > self._batch_size:
                        break
                    for _ in range(min(size, len(q))):
                        batch.append(q.popleft())
                self._inflight += len(batch)
            try:
                self._deliver(batch)
            finally:
                with self._idle:
                    self._inflight -= len(batch)
                    self._idle.notify_all()

    def _http(self) -> httpx.Client:
        if self._worker_http is None:
            self._worker_http = httpx.Client(timeout=self._timeout, transport=self._transport)
        return self._worker_http

    def _serialize(self, batch: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bytes]]:
        out: list[tuple[dict[str, Any], bytes]] = []
        for ev in batch:
            try:
                out.append((ev, tr.dumps(ev)))
            except (TypeError, ValueError, RecursionError) as e:
                self._give_up(
                    BitacoraError(f"event is not valid JSON: {e}", code="invalid_json"), [ev]
                )
        return out

    def _give_up(self, error: BitacoraError, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._failed += len(events)
        self._report(error, events)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        items = self._serialize(batch)
        # Split so that no request exceeds the server's batch size limit in bytes, keeping a
        # bulk group in one request (one too large for any goes alone, halved on a 413).
        chunk: list[tuple[dict[str, Any], bytes]] = []
        size = 2
        i = 0
        while i < len(items):
            unit = items[i : i + _group_size(items[i][0])]
            i += len(unit)
            unit_size = sum(len(raw) + 1 for _, raw in unit)
            if chunk and size + unit_size > MAX_BATCH_BYTES:
                self._deliver_chunk(chunk)
                chunk, size = [], 2
            chunk.extend(unit)
            size += unit_size
        if chunk:
            self._deliver_chunk(chunk)

    def _deliver_chunk(self, chunk: list[tuple[dict[str, Any], bytes]]) -> None:
        events = [ev for ev, _ in chunk]
        body = b"[" + b",".join(raw for _, raw in chunk) + b"]"
        headers = {**self._headers, "Content-Type": "application/json"}
        attempt = 0
        while True:
            if self._abandon.is_set():
                self._give_up(
                    BitacoraError("client closed before delivery", code="shutdown"), events
                )
                return
            try:
                response = self._http().post(
                    f"{self._url}/v1/events/batch", content=body, headers=headers
                )
            except httpx.HTTPError as e:
                error = tr.error_from_exception(e)
            else:
                if response.status_code == 200:
                    self._handle_results(events, response)
                    return
                error = tr.error_from_response(response)
                if response.status_code == 413 and len(chunk) > 1:
                    # Too large for this server's limits: halve until it fits (one event
                    # alone that is too large is given up like any other 4xx).
                    half = len(chunk) // 2
                    self._deliver_chunk(chunk[:half])
                    self._deliver_chunk(chunk[half:])
                    return
                if not error.retryable:
                    self._give_up(error, events)
                    return
            delay = tr.retry_delay(error, attempt, self._max_backoff)
            attempt += 1
            logger.debug(
                "bitacora: batch of %d not delivered (%s); retry %d in %.2fs",
                len(events),
                error,
                attempt,
                delay,
            )
            self._abandon.wait(delay)

    def _handle_results(self, events: list[dict[str, Any]], response: httpx.Response) -> None:
        if b'"error"' not in response.content:
            # Every result is an acknowledgement (stored or duplicate): skip parsing 500
            # results on this thread, which holds the GIL the application's threads want.
            with self._lock:
                self._sent += len(events)
            return
        try:
            results = response.json()["results"]
            if not isinstance(results, list):
                raise TypeError("results is not a list")
        except (ValueError, KeyError, TypeError):
            # The server said 200: the events are durable even if we cannot read the details.
            with self._lock:
                self._sent += len(events)
            return
        sent = 0
        for position, item in enumerate(results):
            if isinstance(item, Mapping) and "error" in item:
                index = item.get("index", position)
                if not isinstance(index, int) or not 0 <= index < len(events):
                    index = min(position, len(events) - 1)
                self._give_up(
                    BitacoraError.from_detail(item["error"], response.status_code), [events[index]]
                )
            else:
                sent += 1
        with self._lock:
            self._sent += sent

    # ---- flushing and closing ----

    def _flush_blocking(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._queue and self._thread is None:
            self._start()
        self._wake.set()
        with self._idle:
            while self._queue or self._inflight:
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Wake at least every 50 ms: `log()` appends without the lock, so a waiter
                # re-checks the queue rather than relying on a notification for it.
                self._idle.wait(0.05 if remaining is None else min(remaining, 0.05))
                if self._queue:
                    self._wake.set()
        return True

    def _close_blocking(self, timeout: float | None) -> bool:
        if self._closed:
            return True
        self._closing = True
        ok = self._flush_blocking(timeout)
        self._closed = True
        thread = self._thread
        if not ok:
            # Out of time: stop retrying; what is left is given up (and reported).
            self._abandon.set()
        self._wake.set()
        if thread is not None and thread.is_alive():
            thread.join(0.1 if not ok else timeout)
        if not ok:
            with self._lock:
                left = list(self._queue)
                self._queue.clear()
            if left:
                self._give_up(BitacoraError("client closed before delivery", code="shutdown"), left)
        if self._sync_http is not None:
            self._sync_http.close()
            self._sync_http = None
        return ok

    # ---- the strict path, shared parts ----

    def _strict_event(self, action: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        return self._build(
            action,
            kwargs.get("id"),
            kwargs.get("occurred_at"),
            kwargs.get("tenant"),
            kwargs.get("category"),
            kwargs.get("severity"),
            kwargs.get("outcome"),
            kwargs.get("actor"),
            kwargs.get("target"),
            kwargs.get("changes"),
            kwargs.get("description"),
            kwargs.get("context"),
            kwargs.get("metadata"),
        )

    def _event_params(self, tenant: str | None) -> dict[str, str]:
        tenant = tenant or self._tenant
        return {"tenant": tenant} if tenant else {}


def _check_stored(sent: dict[str, Any], stored: Event, ack: Ack) -> None:
    """`send(verify=True)`: the stored event recomputes to the acknowledged leaf hash, and holds
    what was sent."""
    from .verify import canonical, leaf_hash

    computed = leaf_hash(stored)
    if computed != ack.leaf_hash or stored.get("leaf_hash", computed) != computed:
        raise VerificationError(
            f"event {ack.id}: leaf hash {computed} recomputed from the stored event differs "
            f"from the acknowledged {ack.leaf_hash}"
        )
    stored_map: Mapping[str, Any] = stored
    # Compared in canonical form: the server may order members or write numbers differently.
    sent_json = json.loads(tr.dumps(sent))
    for key in ("id", "action", "target", "description", "metadata"):
        if key in sent_json and canonical(stored_map.get(key)) != canonical(sent_json[key]):
            raise VerificationError(f"event {ack.id}: stored {key} differs from what was sent")


class Bitacora(_BaseClient):
    """The synchronous client. One per process is enough; it is thread-safe.

    client = Bitacora(url="http://127.0.0.1:8480", api_key="bk_...")
    event_id = client.log(action="user.role_change", target={"type": "user", "id": "456"})
    """

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Waits until everything queued so far is acknowledged (or given up on). False when
        `timeout` seconds passed first."""
        return self._flush_blocking(timeout)

    def close(self, timeout: float | None = 2.0) -> bool:
        """Flushes for at most `timeout` seconds, then stops the sender; later `log()` calls
        drop their events. Also run at interpreter exit. True when everything was delivered."""
        return self._close_blocking(timeout)

    def __enter__(self) -> Bitacora:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _client(self) -> httpx.Client:
        if self._sync_http is None:
            self._sync_http = httpx.Client(timeout=self._timeout, transport=self._transport)
        return self._sync_http

    def _request(self, method: str, path: str, *, retries: int = 0, **kw: Any) -> httpx.Response:
        attempt = 0
        headers = {**self._headers, **kw.pop("headers", {})}
        while True:
            try:
                response = self._client().request(
                    method, f"{self._url}{path}", headers=headers, **kw
                )
            except httpx.HTTPError as e:
                error = tr.error_from_exception(e)
            else:
                if response.status_code < 400:
                    return response
                error = tr.error_from_response(response)
            if not error.retryable or attempt >= retries:
                raise error
            delay = tr.retry_delay(error, attempt, self._max_backoff)
            attempt += 1
            time.sleep(delay)

    def send(self, action: str, *, verify: bool = False, **fields: Any) -> Ack:
        """Sends one event and waits until it is durable. Raises `BitacoraError` (the server's
        code, field and message) when it is refused or cannot be delivered after
        `send_retries` retries. Takes the same fields as `log()`.

        `verify=True` reads the stored event back (the key needs read scope), recomputes its
        leaf hash (RFC 8785 + SHA-256) and raises `VerificationError` when it differs from the
        acknowledged one or when the stored event is not what was sent."""
        ev = self._strict_event(action, fields)
        response = self._request(
            "POST",
            "/v1/events",
            retries=self._send_retries,
            content=tr.dumps(ev),
            headers={"Content-Type": "application/json"},
        )
        ack = Ack.from_json(response.json())
        if verify:
            _check_stored(ev, self.get_event(ack.id, tenant=ev.get("tenant")), ack)
        return ack

    # ---- reads used by `bitacora.verify` ----

    def get_event(self, event_id: str, *, tenant: str | None = None) -> Event:
        """`GET /v1/events/{id}` (read scope)."""
        r = self._request(
            "GET",
            f"/v1/events/{quote(event_id, safe='')}",
            params=self._event_params(tenant),
            retries=self._send_retries,
        )
        body: Event = r.json()
        return body

    def event_proof(self, event_id: str, *, tenant: str | None = None) -> str:
        """`GET /v1/events/{id}/proof`: the event's C2SP tlog-proof (read scope); check it
        offline with `bitacora.verify.verify_tlog_proof`."""
        return self._request(
            "GET",
            f"/v1/events/{quote(event_id, safe='')}/proof",
            params=self._event_params(tenant),
            retries=self._send_retries,
        ).text

    def checkpoint(self, *, tenant: str | None = None) -> str:
        """The tenant's latest signed checkpoint note (read scope)."""
        return self._request(
            "GET",
            "/v1/log/checkpoint",
            params=self._event_params(tenant),
            retries=self._send_retries,
        ).text

    def inclusion_proof(
        self, seq: int, tree_size: int, *, tenant: str | None = None
    ) -> dict[str, Any]:
        """`{"leaf_index","tree_size","hashes"}` for leaf `seq` in the tree of `tree_size`."""
        params = {**self._event_params(tenant), "seq": str(seq), "tree_size": str(tree_size)}
        body: dict[str, Any] = self._request(
            "GET", "/v1/log/proof/inclusion", params=params, retries=self._send_retries
        ).json()
        return body

    def public_key(self) -> str:
        """The server's checkpoint verifier key(s), one per line, current first. Fetch it once
        and pin it: verifying with a key fetched at verification time proves little."""
        return self._request("GET", "/v1/log/public-key", retries=self._send_retries).text


class AsyncBitacora(_BaseClient):
    """The asyncio client: `log()` is the same non-blocking call; `send()`, `flush()` and
    `close()` are coroutines.

        client = AsyncBitacora()
        client.log(action="user.login", actor={"id": "7"})
        ack = await client.send(action="user.delete", target={"type": "user", "id": "7"})
    """

    def _init_state(self) -> None:
        super()._init_state()
        # httpx's async connections belong to the event loop that opened them: one client
        # per loop (tests and some servers run several loops over a process's life).
        self._async_http: dict[
            int, tuple[weakref.ref[asyncio.AbstractEventLoop], httpx.AsyncClient]
        ] = {}

    async def flush(self, timeout: float | None = 5.0) -> bool:
        """As `Bitacora.flush`, without blocking the event loop."""
        return await asyncio.to_thread(self._flush_blocking, timeout)

    async def close(self, timeout: float | None = 2.0) -> bool:
        """As `Bitacora.close`, without blocking the event loop."""
        ok = await asyncio.to_thread(self._close_blocking, timeout)
        clients = list(self._async_http.values())
        self._async_http.clear()
        loop = asyncio.get_running_loop()
        for ref, client in clients:
            if ref() is loop:
                await client.aclose()
        return ok

    async def __aenter__(self) -> AsyncBitacora:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _aclient(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        entry = self._async_http.get(id(loop))
        if entry is None or entry[0]() is not loop:
            client = httpx.AsyncClient(timeout=self._timeout, transport=self._async_transport)
            self._async_http[id(loop)] = (weakref.ref(loop), client)
            return client
        return entry[1]

    async def _request(
        self, method: str, path: str, *, retries: int = 0, **kw: Any
    ) -> httpx.Response:
        attempt = 0
        headers = {**self._headers, **kw.pop("headers", {})}
        while True:
            try:
                response = await self._aclient().request(
                    method, f"{self._url}{path}", headers=headers, **kw
                )
            except httpx.HTTPError as e:
                error = tr.error_from_exception(e)
            else:
                if response.status_code < 400:
                    return response
                error = tr.error_from_response(response)
            if not error.retryable or attempt >= retries:
                raise error
            delay = tr.retry_delay(error, attempt, self._max_backoff)
            attempt += 1
            await asyncio.sleep(delay)

    async def send(self, action: str, *, verify: bool = False, **fields: Any) -> Ack:
        """As `Bitacora.send`."""
        ev = self._strict_event(action, fields)
        response = await self._request(
            "POST",
            "/v1/events",
            retries=self._send_retries,
            content=tr.dumps(ev),
            headers={"Content-Type": "application/json"},
        )
        ack = Ack.from_json(response.json())
        if verify:
            _check_stored(ev, await self.get_event(ack.id, tenant=ev.get("tenant")), ack)
        return ack

    async def get_event(self, event_id: str, *, tenant: str | None = None) -> Event:
        r = await self._request(
            "GET",
            f"/v1/events/{quote(event_id, safe='')}",
            params=self._event_params(tenant),
            retries=self._send_retries,
        )
        body: Event = r.json()
        return body

    async def event_proof(self, event_id: str, *, tenant: str | None = None) -> str:
        r = await self._request(
            "GET",
            f"/v1/events/{quote(event_id, safe='')}/proof",
            params=self._event_params(tenant),
            retries=self._send_retries,
        )
        return r.text

    async def checkpoint(self, *, tenant: str | None = None) -> str:
        r = await self._request(
            "GET",
            "/v1/log/checkpoint",
            params=self._event_params(tenant),
            retries=self._send_retries,
        )
        return r.text

    async def inclusion_proof(
        self, seq: int, tree_size: int, *, tenant: str | None = None
    ) -> dict[str, Any]:
        params = {**self._event_params(tenant), "seq": str(seq), "tree_size": str(tree_size)}
        r = await self._request(
            "GET", "/v1/log/proof/inclusion", params=params, retries=self._send_retries
        )
        body: dict[str, Any] = r.json()
        return body

    async def public_key(self) -> str:
        r = await self._request("GET", "/v1/log/public-key", retries=self._send_retries)
        return r.text
