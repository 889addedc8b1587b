"""Django middleware, sync and async.

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "bitacora.integrations.django.BitacoraMiddleware", ...]
    BITACORA = {"actor": "myapp.audit.actor", "trusted_proxies": ["10.0.0.0/8"]}

`actor` is the dotted path of a function taking the `HttpRequest` and returning
`{"id","name","email","type"}` or None. Without one, `request.user` is used when it is
authenticated. Either way it is resolved only when an event is logged, so a user set later in
the request (Django REST framework authenticates inside the view and sets `request.user`) is
the one recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.utils.module_loading import import_string

from .._context import audit_context
from ._common import TrustedProxies, audit, forwarded, header

__all__ = ["BitacoraMiddleware", "audit", "default_actor"]


def default_actor(request: Any) -> dict[str, Any] | None:
    """`request.user` as an actor, when authenticated."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    actor: dict[str, Any] = {"id": str(user.pk), "type": "user"}
    get_username = getattr(user, "get_username", None)
    if callable(get_username):
        actor["name"] = str(get_username())
    email = getattr(user, "email", None)
    if email:
        actor["email"] = str(email)
    return actor


class BitacoraMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        config: dict[str, Any] = dict(getattr(settings, "BITACORA", None) or {})
        actor = config.get("actor")
        self.actor: Callable[[Any], Any] = (
            import_string(actor) if isinstance(actor, str) else actor or default_actor
        )
        self.proxies = TrustedProxies(config.get("trusted_proxies") or ())
        self.source: str | None = config.get("source")

    def _context(self, request: Any) -> Any:
        meta = request.META
        actor = self.actor
        return audit_context(
            actor=lambda: actor(request),
            ip=self.proxies.client_ip(
                meta.get("REMOTE_ADDR"),
                forwarded(meta.get("HTTP_X_FORWARDED_FOR")),
                header(meta.get("HTTP_X_REAL_IP")),
            ),
            user_agent=header(meta.get("HTTP_USER_AGENT")),
            request_id=header(meta.get("HTTP_X_REQUEST_ID")),
            source=self.source,
        )

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        with self._context(request):
            return self.get_response(request)

    async def __acall__(self, request: Any) -> Any:
        with self._context(request):
            response: Awaitable[Any] = self.get_response(request)
            return await response
