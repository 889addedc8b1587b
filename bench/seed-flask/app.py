"""The seed-style audit log, as a reference point for bitacora's benchmarks (never part of
the product): what the project's seed documents do in their own applications.

A Flask view validates a little, builds an SQLAlchemy ``AuditLog`` row (JSON columns for the
changes and metadata, indexed actor, target, action and time) and commits it: one commit per
request, on SQLite, behind gunicorn with two workers. ``bench/seed-flask/serve PORT`` runs it;
``bitacora-bench seed`` drives it with the same events as bitacora.
"""

import os
from datetime import datetime, timezone

from flask import Flask, jsonify, request
from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class AuditLog(Base):
    __tablename__ = "audit_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    action: Mapped[str] = mapped_column(String(128), index=True)
    category: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16), default="low")
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    actor_id: Mapped[str | None] = mapped_column(String(128), index=True)
    actor_name: Mapped[str | None] = mapped_column(String(256))
    actor_email: Mapped[str | None] = mapped_column(String(256))
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[list | None] = mapped_column(JSON)
    extra: Mapped[dict | None] = mapped_column("metadata", JSON)
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_audit_target", "target_type", "target_id"),)


engine = create_engine(f"sqlite:///{os.environ.get('SEED_DB', 'seed.db')}")


@event.listens_for(engine, "connect")
def _pragmas(dbapi_conn, _record):
    # What a careful seed app would set: WAL, durable commits, wait for the other worker.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


# The schema is created once, in gunicorn's master (`serve` runs it with --preload): two
# workers creating it at the same time on a fresh file race ("table already exists"). The
# master's connections are closed so that no SQLite handle crosses the fork.
Base.metadata.create_all(engine)
engine.dispose()
app = Flask(__name__)


def _parse_time(value):
    if not value:
        return datetime.now(timezone.utc)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@app.post("/events")
def create_event():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("action"), str):
        return jsonify(error="action is required"), 422
    actor = data.get("actor") or {}
    target = data.get("target") or {}
    context = data.get("context") or {}
    row = AuditLog(
        event_id=data.get("id"),
        action=data["action"],
        category=data.get("category") or data["action"].split(".")[0],
        severity=data.get("severity", "low"),
        outcome=data.get("outcome", "success"),
        actor_id=actor.get("id"),
        actor_name=actor.get("name"),
        actor_email=actor.get("email"),
        target_type=target.get("type"),
        target_id=target.get("id"),
        description=data.get("description"),
        changes=data.get("changes"),
        extra=data.get("metadata"),
        ip_address=context.get("ip") or request.remote_addr,
        user_agent=context.get("user_agent"),
        occurred_at=_parse_time(data.get("occurred_at")),
        created_at=datetime.now(timezone.utc),
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()
        return jsonify(id=row.id), 201
