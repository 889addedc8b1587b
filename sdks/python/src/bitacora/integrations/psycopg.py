"""Tells `bitacora capture`'s triggers who acts, from psycopg 3 (CONTRACT §5).

    from bitacora.integrations.psycopg import transaction
    with transaction(conn):                 # BEGIN + the audit context's settings
        conn.execute("UPDATE users SET role = 'admin' WHERE id = %s", (456,))
    # COMMIT (or ROLLBACK on an exception, taking the capture rows with it)

Or, where your code opens transactions itself, call the hook right after BEGIN:
`set_context(conn)` (`await aset_context(aconn)` for `AsyncConnection`). The settings are
transaction-local (`set_config(..., true)`), so they never leak to the connection's next user.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg

from .._context import CAPTURE_SETTINGS, audit_context, capture_settings

__all__ = ["SET_CONTEXT_SQL", "aset_context", "atransaction", "set_context", "transaction"]

SET_CONTEXT_SQL = "SELECT " + ", ".join(
    f"set_config('bitacora.{name}', %({name})s, true)" for name in CAPTURE_SETTINGS
)


def set_context(conn: psycopg.Connection[Any]) -> bool:
    """Applies the current audit context to the open transaction of `conn`. Returns False,
    running nothing, outside an audit context. Outside a transaction block the settings would
    last one statement: call it inside one."""
    values = capture_settings()
    if values is None:
        return False
    conn.execute(SET_CONTEXT_SQL, values)
    return True


async def aset_context(conn: psycopg.AsyncConnection[Any]) -> bool:
    """`set_context` for an `AsyncConnection`."""
    values = capture_settings()
    if values is None:
        return False
    await conn.execute(SET_CONTEXT_SQL, values)
    return True


@contextmanager
def transaction(conn: psycopg.Connection[Any], **context: Any) -> Iterator[psycopg.Transaction]:
    """`conn.transaction()` with the audit context's settings applied first. Keyword arguments
    (`actor`, `ip`, ...) open a nested audit context for this transaction alone — handy in
    scripts and Celery tasks."""
    with audit_context(**context) if context else _nothing(), conn.transaction() as tx:
        set_context(conn)
        yield tx


@asynccontextmanager
async def atransaction(
    conn: psycopg.AsyncConnection[Any], **context: Any
) -> AsyncIterator[psycopg.AsyncTransaction]:
    """`transaction` for an `AsyncConnection`."""
    with audit_context(**context) if context else _nothing():
        async with conn.transaction() as tx:
            await aset_context(conn)
            yield tx


@contextmanager
def _nothing() -> Iterator[None]:
    yield
