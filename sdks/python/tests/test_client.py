"""The client against a real `bitacora serve`: delivery, retries, failures, exit and fork."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import httpx
import pytest

from bitacora import AsyncBitacora, Bitacora, BitacoraError, BulkResult, audit_context
from bitacora.verify import averify_event
from conftest import Blackhole, FakeUpstream, LossyProxy, Server, unique


class Reported:
    """An `on_error` that records what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[BitacoraError, list[dict[str, Any]]]] = []

    def __call__(self, error: BitacoraError, events: list[dict[str, Any]]) -> None:
        self.calls.append((error, events))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for _, evs in self.calls for e in evs]


def test_log_flush_delivers_with_audit_context(server: Server) -> None:
    action = unique("device")
    client = Bitacora(url=server.url, api_key=server.admin_key, flush_interval=0.2)
    with audit_context(
        actor={"id": 42, "name": "ana"}, ip="192.168.1.100", user_agent="pytest", request_id="r-1"
    ):
        ids = [
            client.log(
                action,
                target={"type": "device", "id": f"SW-{i}"},
                metadata={"reason": "maintenance"},
            )
            for i in range(25)
        ]
    assert client.flush(10)
    assert client.stats() == {"queued": 0, "sent": 25, "dropped": 0, "failed": 0}
    stored = server.events(action=action)
    assert sorted(e["id"] for e in stored) == sorted(ids)
    e = stored[0]
    assert e["actor"]["id"] == "42" and e["actor"]["name"] == "ana"
    assert e["context"]["ip"] == "192.168.1.100"
    assert e["context"]["user_agent"] == "pytest" and e["context"]["request_id"] == "r-1"
    assert e["metadata"] == {"reason": "maintenance"}
    assert client.close(5)


def test_send_is_strict_and_verifies(server: Server) -> None:
    client = Bitacora(url=server.url, api_key=server.admin_key)
    action = unique("user")
    ack = client.send(
        action,
        severity="critical",
        target={"type": "user", "id": "456"},
        changes=[{"field": "role", "old": "user", "new": "admin"}],
        verify=True,
    )
    assert ack.seq >= 0 and len(ack.leaf_hash) == 64 and not ack.duplicate
    assert server.event(ack.id)["leaf_hash"] == ack.leaf_hash
    # The same id and content again: a duplicate, not a second event.
    again = client.send(
        action,
        id=ack.id,
        occurred_at=server.event(ack.id)["occurred_at"],
        severity="critical",
        target={"type": "user", "id": "456"},
        changes=[{"field": "role", "old": "user", "new": "admin"}],
    )
    assert again.duplicate and again.seq == ack.seq
    with pytest.raises(BitacoraError) as err:
        client.send("not a valid action!")
    assert err.value.status in (400, 422)
    assert err.value.field == "action" and err.value.code and err.value.message
    with pytest.raises(BitacoraError) as conflict:
        client.send(action, id=ack.id, description="different content")
    assert conflict.value.status == 409
    client.close()


def test_lost_response_is_retried_and_acknowledged_as_duplicates(
    server: Server, middlemen: Any
) -> None:
    proxy = middlemen(LossyProxy(server.url, drop=1))
    action = unique("lost")
    client = Bitacora(url=proxy.url, api_key=server.admin_key, flush_interval=0.05, max_backoff=0.2)
    ids = [client.log(action, metadata={"n": i}) for i in range(10)]
    assert client.flush(15)
    assert proxy.dropped == 1 and proxy.connections >= 2  # the first answer was lost
    stats = client.stats()
    assert stats["sent"] == 10 and stats["failed"] == 0
    stored = server.events(action=action)
    assert sorted(e["id"] for e in stored) == sorted(ids)  # each stored exactly once
    client.close()


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(server: Server, middlemen: Any, status: int) -> None:
    fake = middlemen(FakeUpstream(server.url, [(status, {"Retry-After": "1"})]))
    action = unique("retry")
    client = Bitacora(url=fake.url, api_key=server.admin_key, flush_interval=0.05, max_backoff=0.05)
    event_id = client.log(action)
    assert client.flush(15)
    assert len(fake.arrivals) == 2
    # Retry-After said one second; the jittered backoff alone would have been <= 50 ms.
    assert fake.arrivals[1] - fake.arrivals[0] >= 0.95
    assert [e["id"] for e in server.events(action=action)] == [event_id]
    assert client.stats()["sent"] == 1
    client.close()


def test_4xx_is_not_retried_and_is_reported(server: Server, middlemen: Any) -> None:
    read_key = server.create_key("read", "sdk-py-read-only")
    fake = middlemen(FakeUpstream(server.url, []))
    reported = Reported()
    client = Bitacora(url=fake.url, api_key=read_key, on_error=reported, flush_interval=10)
    # One batch (flush() wakes the sender): one request is all a non-retryable 4xx may cost.
    ids = [client.log(unique("denied")) for _ in range(3)]
    assert client.flush(10)
    time.sleep(0.3)
    assert len(fake.arrivals) == 1  # one attempt, no retry
    assert [e["id"] for e in reported.events] == ids
    assert reported.calls[0][0].status == 403
    assert client.stats() == {"queued": 0, "sent": 0, "dropped": 0, "failed": 3}
    client.close()


def test_per_event_errors_in_a_batch_go_to_on_error(server: Server) -> None:
    reported = Reported()
    action = unique("mixed")
    client = Bitacora(
        url=server.url, api_key=server.admin_key, on_error=reported, flush_interval=0.05
    )
    good = client.log(action)
    bad = client.log(action, context={"ip": "not-an-ip"})
    reserved = client.log("bitacora.key.create")  # the reserved prefix is refused
    good2 = client.log(action)
    assert client.flush(10)
    assert sorted(e["id"] for e in reported.events) == sorted([bad, reserved])
    assert all(err.code for err, _ in reported.calls)
    assert sorted(e["id"] for e in server.events(action=action)) == sorted([good, good2])
    assert client.stats() == {"queued": 0, "sent": 2, "dropped": 0, "failed": 2}
    client.close()


def test_full_queue_drops_newest_and_counts(
    middlemen: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hole = middlemen(Blackhole())
    reported = Reported()
    client = Bitacora(
        url=hole.url,
        api_key="bk_x",
        max_queue=10,
        batch_size=5,
        on_error=reported,
        timeout=0.5,
        flush_interval=0.01,
    )
    ids = [client.log("overflow.test", metadata={"n": i}) for i in range(40)]
    assert len(set(ids)) == 40  # an id is returned even for dropped events
    stats = client.stats()
    assert stats["queued"] <= 10 + 5  # the bound, plus the one batch in flight
    assert stats["dropped"] == 40 - stats["queued"] >= 25
    assert all(err.code == "queue_full" for err, _ in reported.calls)
    assert len(reported.events) == stats["dropped"]
    assert any("dropped" in r.getMessage() for r in caplog.records)
    # Rate-limited: one warning for the burst, not thirty.
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 1
    client.close(0.2)


def test_log_never_raises_on_bad_input(server: Server) -> None:
    reported = Reported()
    client = Bitacora(
        url=server.url, api_key=server.admin_key, on_error=reported, flush_interval=0.05
    )
    weird: list[Any] = [
        client.log(None),  # type: ignore[arg-type]
        client.log("x.y", metadata={"nan": float("nan")}),
        client.log("x.y", metadata={"obj": object(), "when": time}),
        client.log("x.y", target=[1, 2]),  # type: ignore[arg-type]
        client.log("x.y", actor=lambda: 1 / 0),
        client.log("x.y", changes=5),  # type: ignore[arg-type]
    ]
    assert all(isinstance(i, str) and i for i in weird)
    assert client.flush(10)
    s = client.stats()
    assert s["queued"] == 0 and s["sent"] + s["failed"] == len(weird)
    client.close()


def test_server_down_then_up_delivers_everything(fresh_server: Server) -> None:
    client = Bitacora(
        url=fresh_server.url, api_key=fresh_server.admin_key, flush_interval=0.05, max_backoff=0.3
    )
    first = client.log("outage.before")
    assert client.flush(10)
    fresh_server.stop()
    ids = [client.log("outage.during", metadata={"n": i}) for i in range(50)]
    assert not client.flush(1.0)  # nothing can be delivered
    assert client.stats()["queued"] == 50
    fresh_server.start()
    assert client.flush(20)
    stored = fresh_server.events(action="outage.during")
    assert sorted(e["id"] for e in stored) == sorted(ids)
    assert [e["id"] for e in fresh_server.events(action="outage.before")] == [first]
    assert client.stats() == {"queued": 0, "sent": 51, "dropped": 0, "failed": 0}
    client.close()


def test_restart_while_logging_loses_nothing(fresh_server: Server) -> None:
    client = Bitacora(
        url=fresh_server.url, api_key=fresh_server.admin_key, flush_interval=0.05, max_backoff=0.3
    )
    ids: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            ids.append(client.log("restart.test"))
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.5)
    fresh_server.stop()  # SIGTERM: the server drains in-flight writes and exits
    time.sleep(0.5)
    fresh_server.start()
    time.sleep(0.5)
    stop.set()
    producer.join()
    assert client.flush(20)
    assert client.stats()["dropped"] == 0 and client.stats()["failed"] == 0
    stored = fresh_server.events(action="restart.test")
    assert len(ids) > 200
    assert sorted(e["id"] for e in stored) == sorted(ids)
    client.close()


def test_acknowledged_events_survive_kill_9(fresh_server: Server) -> None:
    client = Bitacora(url=fresh_server.url, api_key=fresh_server.admin_key, flush_interval=0.05)
    ids = [client.log("crash.test") for _ in range(200)]
    assert client.flush(10)
    fresh_server.stop(signal.SIGKILL)
    fresh_server.start()
    assert sorted(e["id"] for e in fresh_server.events(action="crash.test")) == sorted(ids)
    client.close()


def test_interpreter_exit_flushes(server: Server) -> None:
    action = unique("atexit")
    script = textwrap.dedent(f"""
        from bitacora import Bitacora
        client = Bitacora(url={server.url!r}, api_key={server.admin_key!r},
                          flush_interval=60)
        for i in range(30):
            client.log({action!r}, metadata={{"n": i}})
        # no flush, no close: the atexit hook must deliver
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert len(server.events(action=action)) == 30


def test_exit_is_bounded_when_the_network_hangs(middlemen: Any) -> None:
    hole = middlemen(Blackhole())
    script = textwrap.dedent(f"""
        from bitacora import Bitacora
        client = Bitacora(url={hole.url!r}, api_key="bk_x", exit_timeout=1.0)
        for i in range(10):
            client.log("hang.test")
    """)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30, capture_output=True)
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_forked_child_gets_a_live_sender(server: Server) -> None:
    action = unique("fork")
    client = Bitacora(url=server.url, api_key=server.admin_key, flush_interval=0.05)
    client.log(action, metadata={"who": "parent-before"})
    assert client.flush(10)  # the sender thread is running before the fork
    # Leave an event queued in the parent at fork time: the child must not send it again.
    client.log(action, metadata={"who": "parent-at-fork"})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = False
        try:
            client.log(action, metadata={"who": "child"})
            ok = client.flush(10) and client.stats()["sent"] == 1
        finally:
            os._exit(0 if ok else 1)
    client.log(action, metadata={"who": "parent-after"})
    assert client.flush(10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    who = sorted(e["metadata"]["who"] for e in server.events(action=action))
    assert who == ["child", "parent-after", "parent-at-fork", "parent-before"]
    client.close()


def test_async_client(server: Server, middlemen: Any) -> None:
    proxy = middlemen(LossyProxy(server.url, drop=1))
    action = unique("async")

    async def main() -> None:
        client = AsyncBitacora(
            url=proxy.url, api_key=server.admin_key, flush_interval=0.05, max_backoff=0.2
        )
        with audit_context(actor={"id": "7", "name": "async"}, ip="10.1.2.3"):
            logged = [client.log(action, metadata={"n": i}) for i in range(5)]
            ack = await client.send(action, target={"type": "user", "id": "7"}, verify=True)
        assert await client.flush(15)
        assert client.stats()["sent"] == 5
        stored = {e["id"]: e for e in server.events(action=action)}
        assert set(stored) == {*logged, ack.id}
        assert stored[ack.id]["actor"]["name"] == "async"
        assert stored[logged[0]]["context"]["ip"] == "10.1.2.3"
        verified = await averify_event(client, ack.id, await client.public_key())
        assert verified.event["id"] == ack.id
        with pytest.raises(BitacoraError) as err:
            await client.send("bad action!")
        assert err.value.field == "action"
        assert await client.close(5)

    asyncio.run(main())

    # A second event loop in the same process: the client must not reuse the first one's
    # connections.
    async def again() -> None:
        client = AsyncBitacora(url=server.url, api_key=server.admin_key)
        assert (await client.send(action)).seq >= 0
        await client.close()

    asyncio.run(again())


class RecordingTransport(httpx.HTTPTransport):
    """The real HTTP transport, recording the event ids of each batch request it carries."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/events/batch":
            self.batches.append([e["id"] for e in json.loads(request.content)])
        return super().handle_request(request)


def test_log_bulk_role_change_of_five_users(server: Server) -> None:
    # Seed 004's "operación masiva": five users changed to admin, one event each plus a summary
    # naming them, in one request even with a batch size below the group's.
    action = unique("user.role_change")
    transport = RecordingTransport()
    reported = Reported()
    client = Bitacora(
        url=server.url,
        api_key=server.admin_key,
        batch_size=4,
        flush_interval=10,
        on_error=reported,
        transport=transport,
    )
    users = [(str(100 + i), f"Usuario {i}", "user" if i % 2 else "viewer") for i in range(5)]
    before = client.log(action, description="before")
    with audit_context(actor={"id": 42, "name": "admin"}, ip="192.168.1.100", request_id="r-7"):
        result = client.log_bulk(
            action,
            [
                {
                    "target": {"type": "user", "id": uid, "name": name},
                    "changes": [{"field": "role", "label": "Rol", "old": old, "new": "admin"}],
                }
                for uid, name, old in users
            ],
            severity="critical",
            metadata={"source": "admin_panel", "newRole": "admin"},
            summary={
                "description": "Bulk role update: 5 users changed to admin",
                "metadata": {"operationType": "bulk_update"},
            },
        )
    summary_id, ids = result
    assert isinstance(result, BulkResult) and result.summary_id == summary_id
    assert len(ids) == 5 and len({*ids, summary_id}) == 6
    assert client.flush(10)
    assert client.stats() == {"queued": 0, "sent": 7, "dropped": 0, "failed": 0}
    assert reported.calls == []
    # The earlier event first; then the group, whole, in one request of its own.
    assert transport.batches == [[before], [*ids, summary_id]]

    stored = {e["id"]: e for e in server.events(action=action)}
    assert set(stored) == {before, *ids, summary_id}
    summary = stored[summary_id]
    assert summary["severity"] == "critical"
    assert summary["target"] == {"type": "bulk_operation", "id": summary_id}
    assert summary["description"] == "Bulk role update: 5 users changed to admin"
    assert summary["metadata"] == {
        "source": "admin_panel",
        "newRole": "admin",
        "operationType": "bulk_update",
        "bulk": {"count": 5, "target_ids": [u[0] for u in users], "event_ids": ids},
    }
    assert "changes" not in summary
    for event_id, (uid, name, old) in zip(ids, users, strict=True):
        e = stored[event_id]
        assert e["target"] == {"type": "user", "id": uid, "name": name}
        assert e["severity"] == "critical"
        assert e["changes"] == [{"field": "role", "label": "Rol", "old": old, "new": "admin"}]
        assert e["metadata"] == {"source": "admin_panel", "newRole": "admin", "bulk_id": summary_id}
    bulk = [stored[i] for i in [*ids, summary_id]]
    # One moment, one actor, one request for the whole operation.
    assert len({e["occurred_at"] for e in bulk}) == 1
    assert all(e["actor"]["id"] == "42" and e["actor"]["name"] == "admin" for e in bulk)
    assert all(e["context"]["ip"] == "192.168.1.100" for e in bulk)
    assert all(e["context"]["request_id"] == "r-7" for e in bulk)
    assert client.close(5)


def test_log_bulk_summary_fields_and_async_client(server: Server) -> None:
    action = unique("device.disable")
    summary_action = unique("device.bulk_disable")

    async def main() -> None:
        client = AsyncBitacora(url=server.url, api_key=server.admin_key, flush_interval=0.05)
        summary_id, ids = client.log_bulk(
            action,
            [
                {"target": {"type": "device", "id": "SW-01"}, "metadata": {"reason": "EOL"}},
                {"target": {"type": "device", "id": "SW-02"}, "description": "second switch"},
            ],
            occurred_at="2026-01-20T10:30:00Z",
            severity="medium",
            description="switch retired",
            summary={
                "action": summary_action,
                "severity": "high",
                "target": {"type": "rack", "id": "R-9"},
            },
        )
        assert await client.flush(10)
        assert client.stats() == {"queued": 0, "sent": 3, "dropped": 0, "failed": 0}
        records = {e["id"]: e for e in server.events(action=action)}
        assert set(records) == set(ids)
        (summary,) = server.events(action=summary_action)
        assert summary["id"] == summary_id
        assert summary["severity"] == "high" and summary["target"] == {"type": "rack", "id": "R-9"}
        assert summary["description"] == "switch retired"
        assert summary["metadata"]["bulk"]["target_ids"] == ["SW-01", "SW-02"]
        first, second = records[ids[0]], records[ids[1]]
        assert first["metadata"] == {"reason": "EOL", "bulk_id": summary_id}
        assert first["description"] == "switch retired" and first["severity"] == "medium"
        assert second["description"] == "second switch"
        assert second["metadata"] == {"bulk_id": summary_id}
        assert {e["occurred_at"] for e in [first, second, summary]} == {summary["occurred_at"]}
        assert summary["occurred_at"].startswith("2026-01-20T10:30:00")
        assert await client.close(5)

    asyncio.run(main())


def test_log_bulk_never_raises_on_bad_input(server: Server) -> None:
    action = unique("bulk.bad")
    reported = Reported()
    client = Bitacora(
        url=server.url, api_key=server.admin_key, on_error=reported, flush_interval=0.05
    )
    user = {"target": {"type": "user", "id": "1"}}
    # (action, items, keyword arguments)
    bad_calls: list[tuple[Any, Any, dict[str, Any]]] = [
        (action, None, {}),  # not iterable
        (None, [user], {}),  # no action
        (action, [user, {"target": None}], {}),  # a record without a target
        (action, [user, {"target": [1, 2]}], {}),  # a target that is not a mapping
        (action, [user, "user 2"], {}),  # a record that is not a mapping
        (action, [user, {**user, "chnages": []}], {}),  # a misspelt key
        (action, [user, {**user, "metadata": {"nan": float("nan")}}], {}),  # not JSON
        (action, [user], {"summary": "done"}),  # a summary that is not a mapping
        (action, [user], {"summary": {"action": 5}}),
        (action, [user], {"summary": {"target": "bulk"}}),
        (action, [user], {"metadata": ["not", "a", "mapping"]}),
        (action, [user], {"actor": 17}),
    ]
    results = [client.log_bulk(a, items, **kw) for a, items, kw in bad_calls]
    assert all(isinstance(r, BulkResult) and r.summary_id for r in results)
    assert [len(r.event_ids) for r in results] == [0, 1, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    # Each bad call is one report naming all its events, each counted as failed; none queued.
    assert len(reported.calls) == len(bad_calls)
    assert all(err.code == "invalid_event" for err, _ in reported.calls)
    for r, (_, events) in zip(results, reported.calls, strict=True):
        assert [e["id"] for e in events] == [*r.event_ids, r.summary_id]
    failed = sum(len(r.event_ids) + 1 for r in results)
    assert client.stats() == {"queued": 0, "sent": 0, "dropped": 0, "failed": failed}

    # The client still works, and nothing of the bad calls reached the server.
    good = client.log_bulk(action, [user])
    assert client.flush(10)
    assert client.stats()["sent"] == 2 and len(reported.calls) == len(bad_calls)
    stored = server.events(action=action)
    assert sorted(e["id"] for e in stored) == sorted([*good.event_ids, good.summary_id])
    client.close()


def test_log_bulk_group_is_dropped_whole_when_the_queue_is_full(middlemen: Any) -> None:
    hole = middlemen(Blackhole())
    reported = Reported()
    client = Bitacora(
        url=hole.url, api_key="bk_x", max_queue=5, on_error=reported, flush_interval=60
    )
    client.log("fill.one")
    client.log("fill.two")
    summary_id, ids = client.log_bulk(
        "user.role_change", [{"target": {"type": "user", "id": str(i)}} for i in range(3)]
    )
    assert len(ids) == 3
    assert client.stats() == {"queued": 2, "sent": 0, "dropped": 4, "failed": 0}
    ((error, events),) = reported.calls
    assert error.code == "queue_full"
    assert [e["id"] for e in events] == [*ids, summary_id]
    # A group that fits is queued whole.
    client.log_bulk("user.role_change", [{"target": {"type": "user", "id": "9"}}])
    assert client.stats()["queued"] == 4
    client.close(0.2)
    assert client.log_bulk("after.close", [{"target": {"type": "user", "id": "1"}}]).summary_id
    assert client.stats()["dropped"] == 6
