"""A Django app through its test clients (sync and async), logging into the real server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from bitacora import Bitacora
from conftest import Server, unique

HEADERS = {
    "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.9",
    "HTTP_USER_AGENT": "Mozilla/5.0 dj",
    "HTTP_X_REQUEST_ID": "req-dj",
}


@pytest.fixture(scope="module")
def django_client(server: Server) -> Iterator[Bitacora]:
    import django
    from django.conf import settings

    os.environ["DJANGO_TEST_ACTION"] = unique("dj") + ".role_change"
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF="django_app",
            MIDDLEWARE=["bitacora.integrations.django.BitacoraMiddleware"],
            INSTALLED_APPS=[],
            BITACORA={"actor": "django_app.actor", "trusted_proxies": ["10.0.0.0/8"]},
        )
        django.setup()
    import django_app

    client = Bitacora(url=server.url, api_key=server.admin_key, flush_interval=0.05)
    django_app.CLIENT["c"] = client
    django_app.urlpatterns[:] = django_app.urls()
    yield client
    client.close()


def _stored(server: Server, client: Bitacora, response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    assert client.flush(10)
    return server.event(response.json()["id"])


def test_django_sync_middleware(server: Server, django_client: Bitacora) -> None:
    from django.test import Client

    http = Client(REMOTE_ADDR="10.0.0.2")
    e = _stored(server, django_client, http.post("/users/456/role", **HEADERS))
    assert e["actor"] == {"id": "42", "name": "admin", "type": "user"}
    assert e["context"] == {
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 dj",
        "request_id": "req-dj",
    }
    # An untrusted peer's forwarded header is ignored.
    untrusted = Client(REMOTE_ADDR="198.51.100.40")
    e = _stored(server, django_client, untrusted.post("/users/456/role", **HEADERS))
    assert e["context"]["ip"] == "198.51.100.40"
    # The per-route decorator.
    assert http.post("/devices/SW-01/disable", **HEADERS).status_code == 200
    assert django_client.flush(10)
    (e,) = server.events(action=os.environ["DJANGO_TEST_ACTION"] + ".device_disable")
    assert e["target"] == {"type": "device", "id": "SW-01"} and e["outcome"] == "success"
    assert e["context"]["ip"] == "203.0.113.9"


def test_django_async_middleware(server: Server, django_client: Bitacora) -> None:
    from django.test import AsyncClient

    async def run() -> Any:
        # ASGI: the peer is the scope's "client", which AsyncClient fixes to 127.0.0.1.
        class FromProxy(AsyncClient):  # type: ignore[misc]
            def _base_scope(self, **request: Any) -> dict[str, Any]:
                scope: dict[str, Any] = super()._base_scope(**request)
                scope["client"] = ["10.0.0.2", 1234]
                return scope

        http = FromProxy()
        return await http.post(
            "/login",
            headers={
                "X-Forwarded-For": "6.6.6.6, 203.0.113.9",
                "User-Agent": "Mozilla/5.0 dj",
                "X-Request-Id": "req-dj",
            },
        )

    e = _stored(server, django_client, asyncio.run(run()))
    assert "actor" not in e and e["outcome"] == "failure"
    assert e["context"]["ip"] == "203.0.113.9" and e["context"]["request_id"] == "req-dj"
