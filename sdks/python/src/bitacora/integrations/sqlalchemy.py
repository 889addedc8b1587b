"""Tells `bitacora capture`'s triggers who acts, from SQLAlchemy (CONTRACT §5).

    from bitacora.integrations.sqlalchemy import install
    install(engine)          # or a sessionmaker, a Session subclass, or an AsyncEngine

At the start of every transaction, when an audit context is open (the web middleware opens
one per request), one statement with bound parameters sets `bitacora.actor_id`,
`actor_name`, `actor_email`, `actor_type`, `ip`, `user_agent` and `request_id` for that
transaction only (`set_config(..., true)`): a pooled connection never carries one request's
user into the next, and a rolled-back transaction takes its settings (and its capture rows)
with it. Outside an audit context nothing is run, and changes are recorded without actor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from .._context import CAPTURE_SETTINGS, capture_settings

__all__ = ["SET_CONTEXT_SQL", "install", "set_context"]

SET_CONTEXT_SQL = "SELECT " + ", ".join(
    f"set_config('bitacora.{name}', :{name}, true)" for name in CAPTURE_SETTINGS
)
_SET_CONTEXT = text(SET_CONTEXT_SQL)

# DB-API placeholders by paramstyle, for the engine-level hook that runs on the raw cursor.
_PLACEHOLDERS: dict[str, Callable[[int, str], str]] = {
    "format": lambda i, n: "%s",
    "pyformat": lambda i, n: f"%({n})s",
    "qmark": lambda i, n: "?",
    "numeric": lambda i, n: f":{i + 1}",
    "numeric_dollar": lambda i, n: f"${i + 1}",
    "named": lambda i, n: f":{n}",
}


def set_context(connection: Connection) -> bool:
    """Applies the current audit context to `connection`'s transaction (call it right after
    BEGIN). Returns False, running nothing, outside an audit context."""
    values = capture_settings()
    if values is None:
        return False
    connection.execute(_SET_CONTEXT, values)
    return True


def _session_after_begin(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    set_context(connection)


def _engine_begin(conn: Connection) -> None:
    # The "begin" event fires before the DB-API's implicit BEGIN, inside Connection's own
    # transaction bookkeeping, so the statement goes straight to a DB-API cursor: it opens the
    # driver's transaction and the settings last until it ends.
    values = capture_settings()
    if values is None:
        return
    style = conn.dialect.paramstyle
    place = _PLACEHOLDERS.get(style, _PLACEHOLDERS["named"])
    sql = "SELECT " + ", ".join(
        f"set_config('bitacora.{name}', {place(i, name)}, true)"
        for i, name in enumerate(CAPTURE_SETTINGS)
    )
    params: Any = (
        values if style in ("pyformat", "named") else [values[n] for n in CAPTURE_SETTINGS]
    )
    dbapi_conn: Any = conn.connection.dbapi_connection
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()


def install(target: Any) -> None:
    """Installs the hook on an `Engine` or `AsyncEngine` (every transaction of every
    connection), or a `sessionmaker`, `async_sessionmaker`, `Session` subclass or session
    instance (every transaction of those sessions). Install on one or the other, not both."""
    sync_engine = getattr(target, "sync_engine", None)  # AsyncEngine
    if isinstance(sync_engine, Engine):
        target = sync_engine
    if isinstance(target, Engine):
        if not event.contains(target, "begin", _engine_begin):
            event.listen(target, "begin", _engine_begin)
        return
    sync_session_class = getattr(target, "sync_session_class", None)  # AsyncSession(maker)
    if (
        isinstance(target, sessionmaker)
        or (isinstance(target, type) and issubclass(target, Session))
        or isinstance(target, Session)
    ):
        pass
    elif sync_session_class is not None:
        target = sync_session_class
    elif hasattr(target, "class_") and isinstance(getattr(target, "kw", None), dict):
        # async_sessionmaker: hook the sync Session class its sessions use.
        target = target.kw.get("sync_session_class", Session)
    else:
        raise TypeError(
            f"cannot install bitacora on {type(target).__name__}: give an Engine, "
            "AsyncEngine, sessionmaker, Session class or session"
        )
    if not event.contains(target, "after_begin", _session_after_begin):
        event.listen(target, "after_begin", _session_after_begin)
