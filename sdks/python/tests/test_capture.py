"""Database capture context against real PostgreSQL: `bitacora capture install` triggers on a
table, `bitacora serve --capture-database-url` draining them, and the SQLAlchemy and psycopg
integrations telling the triggers who acted."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

# Module level: FastAPI resolves the endpoints' (string) annotations from these globals.
from fastapi import Depends, FastAPI, Request
from sqlalchemy.orm import Session

from bitacora import audit_context
from conftest import Database, Server, bitacora_bin


@pytest.fixture(scope="module")
def capture(pg_database: Database, tmp_root: Path) -> Iterator[tuple[Database, Server]]:
    with psycopg.connect(pg_database.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, role text NOT NULL)")
        conn.execute("INSERT INTO public.accounts SELECT g, 'user' FROM generate_series(1, 50) g")
    subprocess.run(
        [
            bitacora_bin(),
            "capture",
            "install",
            "--database-url",
            pg_database.url,
            "--table",
            "public.accounts",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = Server(
        tmp_root / "capture", extra_args=["--capture-database-url", pg_database.url]
    ).start()
    yield pg_database, server
    server.stop()


def _history(server: Server, row: int, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The captured events of row `row`, once at least `count` arrived (or the timeout)."""
    return server.wait_events(
        count, timeout, target_type="accounts", target_id=str(row), order="asc"
    )


def test_sqlalchemy_engine_commit_captured_rollback_not(capture: tuple[Database, Server]) -> None:
    from sqlalchemy import create_engine, text

    from bitacora.integrations.sqlalchemy import install

    db, server = capture
    engine = create_engine(db.url.replace("postgresql://", "postgresql+psycopg://"))
    install(engine)
    with audit_context(
        actor={"id": "42", "name": "ana"},
        ip="192.168.1.100",
        user_agent="pytest-sa",
        request_id="r-sa",
    ):
        with engine.begin() as conn:
            conn.execute(text("UPDATE accounts SET role = 'admin' WHERE id = 1"))
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.execute(text("UPDATE accounts SET role = 'root' WHERE id = 1"))
            raise RuntimeError("roll back")
        # A later committed change on the same row: once it is drained, the rolled-back one
        # would have been too.
        with engine.begin() as conn:
            conn.execute(text("UPDATE accounts SET role = 'auditor' WHERE id = 1"))
    events = _history(server, 1, 2)
    assert [e["changes"][0]["new"] for e in events] == ["admin", "auditor"]
    e = events[0]
    assert e["action"] == "accounts.update" and e["context"]["source"] == "db_trigger"
    assert e["actor"]["id"] == "42" and e["actor"]["name"] == "ana"
    assert e["context"]["ip"] == "192.168.1.100"
    assert e["context"]["user_agent"] == "pytest-sa" and e["context"]["request_id"] == "r-sa"
    # Outside an audit context: captured without actor, and nothing is set.
    with engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET role = 'nobody' WHERE id = 2"))
    (e,) = _history(server, 2, 1)
    assert "actor" not in e
    engine.dispose()


def test_sqlalchemy_sessionmaker(capture: tuple[Database, Server]) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import sessionmaker

    from bitacora.integrations.sqlalchemy import install

    db, server = capture
    engine = create_engine(db.url.replace("postgresql://", "postgresql+psycopg://"))
    Session = sessionmaker(engine)
    install(Session)
    with audit_context(actor={"id": "7", "name": "luis"}, ip="10.1.1.1"), Session() as session:
        session.execute(text("UPDATE accounts SET role = 'editor' WHERE id = 3"))
        session.commit()
        # The next transaction of the same session is set up again.
        session.execute(text("UPDATE accounts SET role = 'viewer' WHERE id = 3"))
        session.rollback()
        session.execute(text("UPDATE accounts SET role = 'owner' WHERE id = 3"))
        session.commit()
    events = _history(server, 3, 2)
    assert [e["changes"][0]["new"] for e in events] == ["editor", "owner"]
    assert all(e["actor"]["id"] == "7" and e["context"]["ip"] == "10.1.1.1" for e in events)
    engine.dispose()


def test_psycopg_transaction(capture: tuple[Database, Server]) -> None:
    from bitacora.integrations.psycopg import set_context, transaction

    db, server = capture
    with psycopg.connect(db.url) as conn:
        with audit_context(actor={"id": "9", "name": "eva"}, ip="172.16.0.9"):
            with transaction(conn):
                conn.execute("UPDATE accounts SET role = 'admin' WHERE id = 4")
            with pytest.raises(RuntimeError), transaction(conn):
                conn.execute("UPDATE accounts SET role = 'root' WHERE id = 4")
                raise RuntimeError("roll back")
        # Keyword arguments open an audit context for one transaction (scripts, Celery).
        with transaction(conn, actor={"id": "cron", "type": "service"}, request_id="job-1"):
            conn.execute("UPDATE accounts SET role = 'batch' WHERE id = 4")
        # The bare hook, for code that opens its transactions itself.
        with audit_context(actor={"id": "10"}), conn.transaction():
            assert set_context(conn)
            conn.execute("UPDATE accounts SET role = 'hooked' WHERE id = 4")
    events = _history(server, 4, 3)
    assert [e["changes"][0]["new"] for e in events] == ["admin", "batch", "hooked"]
    assert events[0]["actor"]["name"] == "eva" and events[0]["context"]["ip"] == "172.16.0.9"
    assert events[1]["actor"] == {"id": "cron", "type": "service"}
    assert events[1]["context"]["request_id"] == "job-1"
    assert events[2]["actor"]["id"] == "10"


def test_fastapi_request_actor_reaches_the_captured_change(
    capture: tuple[Database, Server],
) -> None:
    """Seed 001's shape: a FastAPI app with the middleware and SQLAlchemy installed, and no
    per-request database plumbing: the row change carries the request's actor and IP."""
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import sessionmaker

    from bitacora.integrations.asgi import BitacoraMiddleware
    from bitacora.integrations.sqlalchemy import install

    db, server = capture
    engine = create_engine(db.url.replace("postgresql://", "postgresql+psycopg://"))
    SessionLocal = sessionmaker(engine)
    install(SessionLocal)

    def get_db() -> Iterator[Session]:
        with SessionLocal() as session:
            yield session

    def current_user(request: Request) -> dict[str, str]:
        user = {"id": "42", "name": "admin"}  # e.g. from a JWT
        request.state.user = user
        return user

    app = FastAPI()
    app.add_middleware(
        BitacoraMiddleware,
        trusted_proxies=["10.0.0.0/8"],
        actor=lambda scope: scope.get("state", {}).get("user"),
    )

    @app.put("/accounts/{account_id}/role/{role}")
    def set_role(
        account_id: int,
        role: str,
        db: Session = Depends(get_db),
        user: dict[str, str] = Depends(current_user),
    ) -> dict[str, bool]:
        db.execute(
            text("UPDATE accounts SET role = :role WHERE id = :id"),
            {"role": role, "id": account_id},
        )
        if role == "forbidden":
            db.rollback()
        else:
            db.commit()
        return {"ok": True}

    with TestClient(app, client=("10.0.0.5", 1)) as http:
        for role in ("admin", "forbidden", "manager"):
            r = http.put(
                f"/accounts/5/role/{role}",
                headers={
                    "X-Forwarded-For": "203.0.113.77",
                    "User-Agent": "seed-001",
                    "X-Request-Id": f"req-{role}",
                },
            )
            assert r.status_code == 200
    events = _history(server, 5, 2)
    assert [e["changes"][0]["new"] for e in events] == ["admin", "manager"]
    for e in events:
        assert e["actor"]["id"] == "42" and e["actor"]["name"] == "admin"
        assert e["context"]["ip"] == "203.0.113.77"
        assert e["context"]["user_agent"] == "seed-001"
    assert events[1]["context"]["request_id"] == "req-manager"
    time.sleep(0.1)
    engine.dispose()
