"""The request-scoped audit context: who acts, from where, in which request.

A `ContextVar` holds it, so it follows a request through threads started with
`contextvars.copy_context()`, asyncio tasks and FastAPI's threadpool, and never leaks between
concurrent requests. The framework middlewares set it; scripts and Celery tasks use
`audit_context(...)` directly.

The actor may be a callable, resolved only when an event is logged or a database transaction
begins: a user authenticated *inside* the view (DRF token auth, a FastAPI dependency) is then
seen, which resolving it when the request starts would miss (django-auditlog's known issue).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ._types import Actor

_logger = logging.getLogger("bitacora")

ActorSource = Actor | Mapping[str, Any] | Callable[[], Actor | Mapping[str, Any] | None]
"""An actor dict, or a function returning one (or `None`) when it is needed."""


class AuditContext:
    """One scope's values. Mutable only through `set_actor`, so that a view can name the actor
    after the middleware opened the scope (the object is shared with threads copied from it)."""

    __slots__ = ("actor", "ip", "request_id", "source", "user_agent")

    def __init__(
        self,
        actor: ActorSource | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        request_id: str | None = None,
        source: str | None = None,
    ) -> None:
        self.actor = actor
        self.ip = ip
        self.user_agent = user_agent
        self.request_id = request_id
        self.source = source

    def resolve_actor(self) -> Actor | None:
        """The actor as a dict, calling the actor function if there is one. Never raises: a
        failing actor function is logged and treated as no actor, because auditing must never
        fail the caller's operation."""
        actor = self.actor
        if actor is None:
            return None
        if callable(actor):
            try:
                actor = actor()
            except Exception:
                _logger.warning(
                    "bitacora: the actor function raised; event logged without actor", exc_info=True
                )
                return None
            if actor is None:
                return None
        if not isinstance(actor, Mapping):
            return None
        return _clean_actor(actor)


def _clean_actor(actor: Mapping[str, Any]) -> Actor:
    # Ids are often ints (user.pk); the API wants strings. Unknown keys are dropped rather than
    # sent, so an ORM object's extra attributes never make the server reject the event.
    out: dict[str, str] = {}
    for key in ("id", "name", "email", "type"):
        value = actor.get(key)
        if value is not None and value != "":
            out[key] = value if isinstance(value, str) else str(value)
    return out  # type: ignore[return-value]


_current: ContextVar[AuditContext | None] = ContextVar("bitacora_audit_context", default=None)


def current_context() -> AuditContext | None:
    """The innermost audit context, or `None` outside any."""
    return _current.get()


@contextmanager
def audit_context(
    *,
    actor: ActorSource | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
    source: str | None = None,
) -> Iterator[AuditContext]:
    """Within the block, `log()`, `send()` and the database integrations use these values
    unless a call gives its own. Nested blocks inherit what they don't override.

        with audit_context(actor={"id": "42", "name": "ana"}, ip="192.168.1.100"):
            client.log(action="device.disable", target={"type": "device", "id": "SW-01"})
    """
    parent = _current.get()
    ctx = AuditContext(actor, ip, user_agent, request_id, source)
    if parent is not None:
        ctx.actor = actor if actor is not None else parent.actor
        ctx.ip = ip if ip is not None else parent.ip
        ctx.user_agent = user_agent if user_agent is not None else parent.user_agent
        ctx.request_id = request_id if request_id is not None else parent.request_id
        ctx.source = source if source is not None else parent.source
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def set_actor(actor: ActorSource | None) -> bool:
    """Names the actor of the current audit context (e.g. from a view, once authentication
    happened). Returns False, and does nothing, outside an audit context."""
    ctx = _current.get()
    if ctx is None:
        return False
    ctx.actor = actor
    return True


def capture_settings() -> dict[str, str] | None:
    """The `bitacora.*` transaction settings (CONTRACT §5) for the current context, or `None`
    outside one. Empty strings stand for "unset": the capture trigger reads them with
    `nullif(current_setting(...), '')`."""
    ctx = _current.get()
    if ctx is None:
        return None
    actor = ctx.resolve_actor() or {}
    return {
        "actor_id": actor.get("id", ""),
        "actor_name": actor.get("name", ""),
        "actor_email": actor.get("email", ""),
        "actor_type": actor.get("type", ""),
        "ip": ctx.ip or "",
        "user_agent": ctx.user_agent or "",
        "request_id": ctx.request_id or "",
    }


CAPTURE_SETTINGS = (
    "actor_id",
    "actor_name",
    "actor_email",
    "actor_type",
    "ip",
    "user_agent",
    "request_id",
)
