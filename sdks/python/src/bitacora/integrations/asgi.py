"""Pure ASGI middleware (FastAPI, Starlette, Quart, any ASGI app).

It opens an audit context for each HTTP or WebSocket connection and runs the rest of the app
inside it. Pure ASGI rather than Starlette's `BaseHTTPMiddleware`, which runs the endpoint in
another task, so context variables set by the endpoint are lost and streaming breaks.

    from bitacora.integrations.asgi import BitacoraMiddleware, audit
    app.add_middleware(BitacoraMiddleware, actor=lambda scope: scope["state"].get("user"),
                       trusted_proxies=["10.0.0.0/8"])

`actor` is given the ASGI scope (Starlette's `request.state` is `scope["state"]`, and
`request.scope` is the same dict), and is called only when an event is logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .._context import audit_context
from ._common import TrustedProxies, audit, forwarded, header

__all__ = ["BitacoraMiddleware", "audit"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BitacoraMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        actor: Callable[[Scope], Any] | None = None,
        trusted_proxies: Iterable[str] = (),
        source: str | None = None,
    ) -> None:
        self.app = app
        self.actor = actor
        self.proxies = TrustedProxies(trusted_proxies)
        self.source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers") or ():
            # Repeated headers: X-Forwarded-For may be split over several lines; join them in
            # order, as RFC 9110 allows.
            key = name.lower()
            headers[key] = headers[key] + b"," + value if key in headers else value
        client = scope.get("client")
        peer = str(client[0]) if client else None
        ip = self.proxies.client_ip(
            peer, forwarded(headers.get(b"x-forwarded-for")), header(headers.get(b"x-real-ip"))
        )
        actor = self.actor
        with audit_context(
            actor=(lambda: actor(scope)) if actor is not None else None,
            ip=ip,
            user_agent=header(headers.get(b"user-agent")),
            request_id=header(headers.get(b"x-request-id")),
            source=self.source,
        ):
            await self.app(scope, receive, send)
