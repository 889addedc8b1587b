"""Tell bitacora's database change capture who is acting, from SQLAlchemy.

`bitacora capture install` puts triggers on your tables; they read who acts from
transaction-local settings (`bitacora.actor_id`, `bitacora.ip`, ...). This module sets them at
the start of every transaction a Session begins, from a context variable your web framework
fills per request. `set_config(..., true)` lasts until the transaction ends, so a pooled
connection never carries one request's user into the next.

    from bitacora_audit import audit_context, install_listener
    install_listener()                      # once, at startup

    # per request (e.g. in a FastAPI dependency or middleware):
    token = audit_context.set({"actor_id": str(user.id), "actor_name": user.name,
                               "ip": request.client.host, "request_id": request_id})
    try:
        ...  # every commit of every Session in this request is attributed to `user`
    finally:
        audit_context.reset(token)

Without a context (a script, a migration) the changes are recorded with no actor.
"""

from contextvars import ContextVar
from typing import Optional

from sqlalchemy import event, text
from sqlalchemy.orm import Session

FIELDS = ("actor_id", "actor_name", "actor_email", "actor_type", "ip", "user_agent", "request_id")

audit_context: ContextVar[Optional[dict]] = ContextVar("bitacora_audit_context", default=None)

_SET_CONTEXT = text(
    "SELECT " + ", ".join(f"set_config('bitacora.{f}', :{f}, true)" for f in FIELDS)
)


def set_context(connection, context: dict) -> None:
    """Sets the bitacora.* settings for the rest of `connection`'s current transaction."""
    connection.execute(_SET_CONTEXT, {f: str(context.get(f) or "") for f in FIELDS})


def install_listener(session_class=Session) -> None:
    """Sets the current `audit_context` at the beginning of each Session transaction."""

    @event.listens_for(session_class, "after_begin")
    def _after_begin(session, transaction, connection):
        context = audit_context.get()
        if context:
            set_context(connection, context)
