"""Fast edge cases with `httpx.MockTransport`: no server needed."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from bitacora import AsyncBitacora, Bitacora, BitacoraError, audit_context, set_actor
from bitacora._ids import now_rfc3339, uuid7
from bitacora._transport import parse_retry_after
from bitacora.integrations._common import TrustedProxies, parse_ip


def ack_all(request: httpx.Request) -> httpx.Response:
    events = json.loads(request.content)
    return httpx.Response(
        200,
        json={
            "results": [
                {"id": e["id"], "seq": i, "leaf_hash": "0" * 64, "duplicate": False}
                for i, e in enumerate(events)
            ]
        },
    )


def make(handler: Any, **kw: Any) -> Bitacora:
    return Bitacora(
        url="http://bitacora.test",
        api_key="bk_test",
        transport=httpx.MockTransport(handler),
        **{"flush_interval": 0.01, **kw},
    )


def test_uuid7_and_timestamps() -> None:
    ids = {uuid7() for _ in range(10_000)}
    assert len(ids) == 10_000
    u = uuid.UUID(next(iter(ids)))
    assert u.version == 7 and u.variant == uuid.RFC_4122
    ms = int(u.hex[:12], 16)
    assert abs(ms / 1000 - time.time()) < 5
    parsed = dt.datetime.fromisoformat(now_rfc3339().replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - time.time()) < 5


def test_batches_respect_batch_size_and_carry_the_api_key() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer bk_test"
        assert request.url.path == "/v1/events/batch"
        sizes.append(len(json.loads(request.content)))
        return ack_all(request)

    client = make(handler, batch_size=7)
    for i in range(30):
        client.log("a.b", metadata={"i": i})
    assert client.flush(5)
    assert sum(sizes) == 30 and max(sizes) <= 7
    assert client.stats() == {"queued": 0, "sent": 30, "dropped": 0, "failed": 0}
    client.close()


def test_retries_keep_the_same_ids() -> None:
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append([e["id"] for e in json.loads(request.content)])
        if len(seen) == 1:
            raise httpx.ConnectError("refused")
        if len(seen) == 2:
            return httpx.Response(502)
        if len(seen) == 3:
            return httpx.Response(408)
        return ack_all(request)

    # A long interval: the three events go out together when flush() wakes the sender.
    client = make(handler, max_backoff=0.01, flush_interval=10)
    ids = [client.log("a.b") for _ in range(3)]
    assert client.flush(5)
    assert seen == [ids, ids, ids, ids]
    client.close()


def test_duplicates_count_as_sent_and_rejections_are_reported() -> None:
    reported: list[tuple[BitacoraError, list[dict[str, Any]]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)
        return httpx.Response(
            200,
            json={
                "results": [
                    {"id": events[0]["id"], "seq": 1, "leaf_hash": "a" * 64, "duplicate": True},
                    {
                        "index": 1,
                        "error": {"code": "conflict", "message": "id reused", "field": "id"},
                    },
                    {"id": events[2]["id"], "seq": 2, "leaf_hash": "b" * 64, "duplicate": False},
                ]
            },
        )

    client = make(handler, on_error=lambda e, evs: reported.append((e, evs)), flush_interval=10)
    ids = [client.log("a.b") for _ in range(3)]
    assert client.flush(5)
    assert client.stats() == {"queued": 0, "sent": 2, "dropped": 0, "failed": 1}
    ((error, events),) = reported
    assert (error.code, error.field, error.status) == ("conflict", "id", 200)
    assert [e["id"] for e in events] == [ids[1]]
    client.close()


def test_too_large_batches_are_halved() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)
        sizes.append(len(events))
        if len(events) > 2:
            return httpx.Response(413, json={"error": {"code": "too_large", "message": "big"}})
        return ack_all(request)

    client = make(handler, batch_size=8, flush_interval=10)
    for _ in range(8):
        client.log("a.b")
    assert client.flush(5)
    assert sizes == [8, 4, 2, 2, 4, 2, 2]
    assert client.stats()["sent"] == 8
    client.close()


@pytest.mark.parametrize("status", [400, 401, 403, 413, 415, 422])
def test_other_4xx_are_not_retried(status: int) -> None:
    calls = 0
    reported: list[BitacoraError] = []

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json={"error": {"code": "nope", "message": "no"}})

    client = make(handler, on_error=lambda e, evs: reported.append(e))
    client.log("a.b")
    assert client.flush(5)
    assert calls == 1 and reported[0].status == status and reported[0].code == "nope"
    assert client.stats()["failed"] == 1
    client.close()


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("100000") == 60.0  # capped
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    http_date = future.strftime("%a, %d %b %Y %H:%M:%S GMT")
    parsed = parse_retry_after(http_date)
    assert parsed is not None and 25 <= parsed <= 31


def test_send_raises_server_error_with_code_field_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            422,
            json={
                "error": {"code": "invalid_field", "message": "bad severity", "field": "severity"}
            },
        )

    client = make(handler)
    with pytest.raises(BitacoraError) as err:
        client.send("a.b", severity="extreme")
    assert (err.value.code, err.value.field, err.value.status) == ("invalid_field", "severity", 422)
    assert "bad severity" in str(err.value)
    client.close()


def test_send_retries_then_gives_up_on_network_errors() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("down")

    client = make(handler, send_retries=2, max_backoff=0.01)
    with pytest.raises(BitacoraError) as err:
        client.send("a.b")
    assert err.value.code == "network_error" and err.value.status is None and calls == 3
    client.close()


def test_non_json_error_bodies_are_reported_with_the_status() -> None:
    client = make(lambda r: httpx.Response(404, text="<html>not found</html>"))
    with pytest.raises(BitacoraError) as err:
        client.send("a.b")
    assert err.value.status == 404 and err.value.code == "http_404"
    client.close()


def test_context_precedence_and_lazy_actor() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.extend(json.loads(request.content))
        return ack_all(request)

    client = make(handler, tenant="acme")
    user: dict[str, Any] = {}
    with audit_context(actor=lambda: user or None, ip="10.0.0.1", request_id="r-1"):
        client.log("anon.before")  # no user yet
        user.update(id=7, name="ana", extra="ignored")
        client.log("user.after", context={"ip": "10.9.9.9", "source": "api"})
        with audit_context(request_id="r-2"):
            client.log("nested", actor={"id": "svc", "type": "service"}, tenant="other")
        set_actor({"id": "8"})
        client.log("after.set_actor")
    client.log("outside")
    assert client.flush(5)
    by_action = {e["action"]: e for e in sent}
    assert "actor" not in by_action["anon.before"]
    assert by_action["user.after"]["actor"] == {"id": "7", "name": "ana"}
    assert by_action["user.after"]["context"] == {
        "ip": "10.9.9.9",
        "source": "api",
        "request_id": "r-1",
    }
    assert by_action["nested"]["actor"] == {"id": "svc", "type": "service"}
    assert by_action["nested"]["context"] == {"ip": "10.0.0.1", "request_id": "r-2"}
    assert by_action["nested"]["tenant"] == "other"
    assert by_action["after.set_actor"]["actor"] == {"id": "8"}
    assert "context" not in by_action["outside"] and by_action["outside"]["tenant"] == "acme"
    assert not set_actor({"id": "x"})  # outside a context: nothing to set
    client.close()


def test_values_json_cannot_hold_are_converted_or_reported() -> None:
    sent: list[dict[str, Any]] = []
    reported: list[BitacoraError] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.extend(json.loads(request.content))
        return ack_all(request)

    client = make(handler, on_error=lambda e, evs: reported.append(e))
    when = dt.datetime(2026, 1, 20, 10, 30, tzinfo=dt.timezone.utc)
    client.log(
        "a.b",
        occurred_at=dt.datetime(2026, 1, 20, 10, 30),
        metadata={"when": when, "id": uuid.UUID(int=1), "tags": {"x"}},
    )
    client.log("a.b", metadata={"bad": float("inf")})
    assert client.flush(5)
    assert sent[0]["occurred_at"] == "2026-01-20T10:30:00Z"
    assert sent[0]["metadata"] == {
        "when": "2026-01-20T10:30:00+00:00",
        "id": "00000000-0000-0000-0000-000000000001",
        "tags": ["x"],
    }
    assert [e.code for e in reported] == ["invalid_json"]
    client.close()


def test_log_from_many_threads_loses_nothing() -> None:
    count = 0
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        with lock:
            count += len(json.loads(request.content))
        return ack_all(request)

    client = make(handler, batch_size=100)

    def work() -> None:
        for _ in range(500):
            client.log("t.t")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.flush(10)
    assert count == 4000 and client.stats()["sent"] == 4000
    client.close()


def test_log_after_close_is_dropped_not_raised() -> None:
    client = make(ack_all)
    client.close()
    assert client.log("late.event")
    assert client.stats()["dropped"] == 1


def test_async_send_uses_the_async_transport() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(
            201, json={"id": body["id"], "seq": 3, "leaf_hash": "c" * 64, "duplicate": False}
        )

    async def main() -> None:
        client = AsyncBitacora(
            url="http://bitacora.test",
            api_key="k",
            async_transport=httpx.MockTransport(handler),
            transport=httpx.MockTransport(ack_all),
        )
        ack = await client.send("a.b", id="fixed-id")
        assert (ack.id, ack.seq) == ("fixed-id", 3)
        client.log("queued")
        assert await client.flush(5)
        assert client.stats()["sent"] == 1
        assert await client.close()

    asyncio.run(main())


def test_trusted_proxies_walk_forwarded_for_from_the_right() -> None:
    none = TrustedProxies()
    assert none.client_ip("10.0.0.2", "1.1.1.1") == "10.0.0.2"  # untrusted: header ignored
    lb = TrustedProxies(["10.0.0.0/8", "192.168.1.1"])
    assert lb.client_ip("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.1.1.1") == "203.0.113.9"
    assert lb.client_ip("203.0.113.50", "1.2.3.4") == "203.0.113.50"  # peer not a proxy
    assert lb.client_ip("10.0.0.2", None, "198.51.100.1") == "198.51.100.1"
    assert lb.client_ip("10.0.0.2", "10.1.1.1, 10.2.2.2") == "10.1.1.1"  # all trusted
    assert lb.client_ip("10.0.0.2", "garbage, 198.51.100.7") == "198.51.100.7"
    assert lb.client_ip("10.0.0.2", "198.51.100.7, garbage") == "10.0.0.2"
    assert lb.client_ip("::ffff:10.0.0.2", "2001:db8::1") == "2001:db8::1"
    assert lb.client_ip("testclient", "1.1.1.1") is None
    assert str(parse_ip("[2001:db8::1]:443")) == "2001:db8::1"
    assert str(parse_ip(" 192.0.2.1:8080 ")) == "192.0.2.1"


def test_url_and_api_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITACORA_URL", "http://from-env.test:9999/")
    monkeypatch.setenv("BITACORA_API_KEY", "bk_env")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ack_all(request)

    client = Bitacora(transport=httpx.MockTransport(handler), flush_interval=0.01)
    client.log("a.b")
    assert client.flush(5)
    assert str(seen[0].url) == "http://from-env.test:9999/v1/events/batch"
    assert seen[0].headers["authorization"] == "Bearer bk_env"
    client.close()


def test_bulk_group_is_never_split_across_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    import bitacora._client as client_module

    # Small requests, so that the byte limit (not only batch_size) has to cut the batch.
    monkeypatch.setattr(client_module, "MAX_BATCH_BYTES", 2000)
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append([e["id"] for e in json.loads(request.content)])
        return ack_all(request)

    client = make(handler, batch_size=6, flush_interval=10)
    pad = {"pad": "x" * 150}
    singles = [client.log("a.b", metadata=pad) for _ in range(4)]
    summary_id, ids = client.log_bulk(
        "a.b", [{"target": {"type": "t", "id": str(i)}, "metadata": pad} for i in range(4)]
    )
    tail = client.log("a.b", metadata=pad)
    assert client.flush(5)
    group = [*ids, summary_id]
    assert [i for batch in seen for i in batch] == [*singles, *group, tail]
    assert len(seen) >= 3
    for batch in seen:
        assert [i for i in batch if i in group] in ([], group)
        assert len(batch) <= 6
    assert client.stats() == {"queued": 0, "sent": 10, "dropped": 0, "failed": 0}
    client.close()


def test_bulk_groups_stay_whole_among_concurrent_logs() -> None:
    requests: list[list[dict[str, Any]]] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            requests.append(json.loads(request.content))
        return ack_all(request)

    client = make(handler, batch_size=50)
    groups: list[list[str]] = []

    def singles() -> None:
        for _ in range(500):
            client.log("t.single")

    def bulks() -> None:
        for _ in range(40):
            summary_id, ids = client.log_bulk("t.bulk", [{"target": {"type": "t"}}] * 7)
            groups.append([*ids, summary_id])

    threads = [threading.Thread(target=f) for f in (singles, singles, singles, bulks, bulks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.flush(10)
    assert client.stats() == {"queued": 0, "sent": 1500 + 80 * 8, "dropped": 0, "failed": 0}
    for group in groups:
        holding = [r for r in requests if group[0] in {e["id"] for e in r}]
        assert len(holding) == 1
        ids = [e["id"] for e in holding[0]]
        start = ids.index(group[0])
        assert ids[start : start + len(group)] == group  # whole and contiguous
    client.close()
