"""The event model of the HTTP API (CONTRACT §2), as TypedDicts.

These mirror the server's OpenAPI schemas (`EventInput`, `Event`, `Actor`, `Target`, `Change`,
`Context`, `Ack`); `tests/test_openapi.py` fetches `/openapi.json` from a real server and fails
when the two disagree, so drift is caught in CI rather than by users.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Severity = Literal["low", "medium", "high", "critical"]
Outcome = Literal["success", "failure"]
ActorType = Literal["user", "service", "system", "anonymous"]


class Actor(TypedDict, total=False):
    """Who acted. `type` defaults to `user` on the server."""

    id: str
    name: str
    email: str
    type: ActorType


class Target(TypedDict, total=False):
    """What was acted on: a record's type and id (`type` is required by the server)."""

    type: str
    id: str
    name: str


class Change(TypedDict, total=False):
    """One changed field, with its old and new values (any JSON)."""

    field: str
    label: str
    old: Any
    new: Any


class Context(TypedDict, total=False):
    """Where the action came from."""

    ip: str
    user_agent: str
    request_id: str
    source: str


class EventInput(TypedDict, total=False):
    """What a client sends; only `action` is required."""

    id: str
    occurred_at: str
    tenant: str
    action: str
    category: str
    severity: Severity
    outcome: Outcome
    actor: Actor
    target: Target
    changes: list[Change]
    description: str
    context: Context
    metadata: dict[str, Any]


class _EventRequired(TypedDict):
    id: str
    tenant: str
    occurred_at: str
    received_at: str
    action: str
    category: str
    severity: Severity
    outcome: Outcome
    context: Context


class Event(_EventRequired, total=False):
    """An event as the server stores and returns it (`GET /v1/events/{id}`).

    (Two classes because `typing.NotRequired` needs Python 3.11 and this SDK supports 3.10.)
    """

    seq: int
    actor: Actor
    target: Target
    changes: list[Change]
    description: str
    metadata: dict[str, Any]
    leaf_hash: str


class _BulkItemRequired(TypedDict):
    target: Target


class BulkItem(_BulkItemRequired, total=False):
    """One record of `log_bulk()`: its target (required) and what changed on it. `description`
    replaces the operation's; `metadata` is merged over the operation's."""

    changes: list[Change]
    description: str
    metadata: dict[str, Any]


class BulkSummary(TypedDict, total=False):
    """The summary event of `log_bulk()`: `action` and `severity` when they differ from the
    records', its `description` and `target` (default `{"type": "bulk_operation", "id": <its
    id>}`), and metadata merged over the operation's."""

    action: str
    severity: Severity
    target: Target
    description: str
    metadata: dict[str, Any]


class Stats(TypedDict):
    """`Bitacora.stats()`: events waiting or in flight, acknowledged, dropped on a full queue,
    and given up on (reported to `on_error`)."""

    queued: int
    sent: int
    dropped: int
    failed: int
