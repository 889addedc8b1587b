"""Flask integration.

    from bitacora.integrations.flask import init_app
    init_app(app, actor=lambda request: {"id": str(g.user.id)} if g.get("user") else None,
             trusted_proxies=["10.0.0.0/8"])

`actor` is given `flask.request` and called only when an event is logged, so a user loaded
by a `before_request` hook or inside the view is seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from flask import Flask, g, request

from .._context import audit_context
from ._common import TrustedProxies, audit, forwarded, header

__all__ = ["audit", "init_app"]

_G_KEY = "_bitacora_audit_context"


def init_app(
    app: Flask,
    *,
    actor: Callable[[Any], Any] | None = None,
    trusted_proxies: Iterable[str] = (),
    source: str | None = None,
) -> None:
    """Opens an audit context for every request of `app`."""
    proxies = TrustedProxies(trusted_proxies)

    def open_context() -> None:
        # The real object, not the proxy: the actor function may run on another thread.
        req: Any = request._get_current_object()  # type: ignore[attr-defined]
        cm = audit_context(
            actor=(lambda: actor(req)) if actor is not None else None,
            ip=proxies.client_ip(
                req.remote_addr,
                forwarded(req.headers.get("X-Forwarded-For")),
                header(req.headers.get("X-Real-IP")),
            ),
            user_agent=header(req.headers.get("User-Agent")),
            request_id=header(req.headers.get("X-Request-Id")),
            source=source,
        )
        cm.__enter__()
        setattr(g, _G_KEY, cm)

    def close_context(exc: BaseException | None) -> None:
        cm: AbstractContextManager[Any] | None = g.pop(_G_KEY, None)
        if cm is not None:
            cm.__exit__(None, None, None)

    # First in line, so that other before_request hooks (loading the user) already run inside.
    app.before_request_funcs.setdefault(None, []).insert(0, open_context)
    app.teardown_request(close_context)
    app.extensions["bitacora"] = {"trusted_proxies": proxies, "actor": actor}
