"""FastAPI (through the pure ASGI middleware) and Flask apps, driven by their test clients,
logging into the real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# Module level: FastAPI resolves the endpoints' (string) annotations from these globals.
from fastapi import FastAPI, Request

from bitacora import Bitacora
from conftest import Server, unique

PROXY_HEADERS = {
    "X-Forwarded-For": "6.6.6.6, 203.0.113.9",
    "User-Agent": "Mozilla/5.0 test",
    "X-Request-Id": "req-123",
}


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[Bitacora]:
    c = Bitacora(url=server.url, api_key=server.admin_key, flush_interval=0.05)
    yield c
    c.close()


def _stored(server: Server, client: Bitacora, event_id: str) -> dict[str, Any]:
    assert client.flush(10)
    return server.event(event_id)


# ---- FastAPI ----


def fastapi_app(client: Bitacora, action: str, trusted: list[str]) -> Any:
    from bitacora.integrations.asgi import BitacoraMiddleware, audit

    app = FastAPI()
    # The actor is read from request.state when an event is logged; the view authenticates.
    app.add_middleware(
        BitacoraMiddleware,
        trusted_proxies=trusted,
        actor=lambda scope: scope.get("state", {}).get("user"),
    )

    @app.post("/users/{user_id}/role")
    def change_role(user_id: str, request: Request) -> dict[str, str]:
        request.state.user = {"id": "42", "name": "admin", "email": "admin@example.com"}
        event_id = client.log(
            action,
            severity="critical",
            target={"type": "user", "id": user_id},
            changes=[{"field": "role", "old": "user", "new": "admin"}],
        )
        return {"id": event_id}

    @app.post("/login")
    async def login() -> dict[str, str]:
        # A failed login has no authenticated actor.
        event_id = client.log(action + "_failed", outcome="failure", metadata={"username": "juan"})
        return {"id": event_id}

    @app.post("/devices/{device_id}/disable")
    @audit(
        client,
        action + ".device_disable",
        target=lambda device_id, **_: {"type": "device", "id": device_id},
        metadata={"reason": "maintenance"},
    )
    async def disable(device_id: str, request: Request) -> dict[str, bool]:
        request.state.user = {"id": "7", "name": "ops"}
        return {"ok": True}

    return app


def test_fastapi_fills_actor_ip_user_agent_request_id(server: Server, client: Bitacora) -> None:
    from fastapi.testclient import TestClient

    action = unique("user") + ".role_change"
    app = fastapi_app(client, action, trusted=["10.0.0.0/8"])
    with TestClient(app, client=("10.0.0.2", 5000)) as http:
        r = http.post("/users/456/role", headers=PROXY_HEADERS)
        assert r.status_code == 200
        e = _stored(server, client, r.json()["id"])
        assert e["actor"] == {
            "id": "42",
            "name": "admin",
            "email": "admin@example.com",
            "type": "user",
        }
        assert e["context"]["ip"] == "203.0.113.9"  # right-most untrusted hop
        assert e["context"]["user_agent"] == "Mozilla/5.0 test"
        assert e["context"]["request_id"] == "req-123"
        assert e["changes"][0]["new"] == "admin" and e["severity"] == "critical"

        r = http.post("/login", headers={"User-Agent": "curl"})
        e = _stored(server, client, r.json()["id"])
        assert "actor" not in e and e["outcome"] == "failure"
        assert e["context"]["ip"] == "10.0.0.2"  # a trusted proxy with no forwarded header

        r = http.post("/devices/SW-01/disable", headers=PROXY_HEADERS)
        assert r.json() == {"ok": True}
        assert client.flush(10)
        (e,) = server.events(action=action + ".device_disable")
        assert e["target"] == {"type": "device", "id": "SW-01"}
        assert e["metadata"] == {"reason": "maintenance"} and e["outcome"] == "success"
        assert e["actor"]["id"] == "7" and e["context"]["ip"] == "203.0.113.9"


def test_fastapi_untrusted_peer_cannot_forge_its_ip(server: Server, client: Bitacora) -> None:
    from fastapi.testclient import TestClient

    action = unique("user") + ".role_change"
    with TestClient(fastapi_app(client, action, trusted=[]), client=("198.51.100.23", 1)) as http:
        r = http.post("/users/1/role", headers=PROXY_HEADERS)
        assert _stored(server, client, r.json()["id"])["context"]["ip"] == "198.51.100.23"
    with TestClient(
        fastapi_app(client, action, trusted=["10.0.0.0/8"]), client=("198.51.100.24", 1)
    ) as http:
        r = http.post("/users/1/role", headers=PROXY_HEADERS)
        assert _stored(server, client, r.json()["id"])["context"]["ip"] == "198.51.100.24"


# ---- Flask ----


def flask_app(client: Bitacora, action: str, trusted: list[str]) -> Any:
    from flask import Flask, g, jsonify

    from bitacora.integrations.flask import audit, init_app

    app = Flask(__name__)
    init_app(app, trusted_proxies=trusted, actor=lambda request: g.get("user"))

    @app.before_request
    def load_user() -> None:
        g.user = {"id": "3", "name": "luisa"}

    @app.post("/devices/<device_id>/disable")
    def disable(device_id: str) -> Any:
        event_id = client.log(
            action,
            target={"type": "device", "id": device_id},
            metadata={"reason": "hardware failure"},
        )
        return jsonify(id=event_id)

    @app.post("/reports/<report_id>/export")
    @audit(client, action + ".export", target=lambda report_id: {"type": "report", "id": report_id})
    def export(report_id: str) -> Any:
        raise ValueError("export failed")

    return app


def test_flask_fills_actor_ip_user_agent_request_id(server: Server, client: Bitacora) -> None:
    action = unique("device") + ".disable"
    app = flask_app(client, action, trusted=["10.0.0.0/8"])
    http = app.test_client()
    r = http.post(
        "/devices/SW-01/disable", headers=PROXY_HEADERS, environ_base={"REMOTE_ADDR": "10.0.0.2"}
    )
    e = _stored(server, client, r.get_json()["id"])
    assert e["actor"]["id"] == "3" and e["actor"]["name"] == "luisa"
    assert e["context"] == {
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 test",
        "request_id": "req-123",
    }
    assert e["metadata"] == {"reason": "hardware failure"}

    # The decorator records a failing view as a failure.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    r = http.post("/reports/R-9/export", environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert r.status_code == 500
    assert client.flush(10)
    (e,) = server.events(action=action + ".export")
    assert e["outcome"] == "failure" and e["target"] == {"type": "report", "id": "R-9"}


def test_flask_untrusted_peer_cannot_forge_its_ip(server: Server, client: Bitacora) -> None:
    action = unique("device") + ".disable"
    for trusted in ([], ["10.0.0.0/8"]):
        http = flask_app(client, action, trusted=trusted).test_client()
        r = http.post(
            "/devices/SW-02/disable",
            headers=PROXY_HEADERS,
            environ_base={"REMOTE_ADDR": "198.51.100.30"},
        )
        assert _stored(server, client, r.get_json()["id"])["context"]["ip"] == "198.51.100.30"


def test_no_context_leaks_between_requests(server: Server, client: Bitacora) -> None:
    from bitacora import current_context

    action = unique("device") + ".disable"
    app = flask_app(client, action, trusted=[])
    app.test_client().post("/devices/X/disable", environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert current_context() is None
