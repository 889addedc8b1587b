"""The official Python SDK for bitacora, the tamper-evident audit-trail server.

from bitacora import Bitacora, audit_context
client = Bitacora()                      # BITACORA_URL, BITACORA_API_KEY
with audit_context(actor={"id": "42", "name": "ana"}, ip="192.168.1.100"):
    client.log(action="device.disable", target={"type": "device", "id": "SW-01"},
               metadata={"reason": "maintenance"})
"""

from ._client import Ack, AsyncBitacora, Bitacora, BulkResult, OnError
from ._context import AuditContext, audit_context, current_context, set_actor
from ._errors import BitacoraError, VerificationError
from ._transport import __version__
from ._types import (
    Actor,
    ActorType,
    BulkItem,
    BulkSummary,
    Change,
    Context,
    Event,
    EventInput,
    Outcome,
    Severity,
    Stats,
    Target,
)

__all__ = [
    "Ack",
    "Actor",
    "ActorType",
    "AsyncBitacora",
    "AuditContext",
    "Bitacora",
    "BitacoraError",
    "BulkItem",
    "BulkResult",
    "BulkSummary",
    "Change",
    "Context",
    "Event",
    "EventInput",
    "OnError",
    "Outcome",
    "Severity",
    "Stats",
    "Target",
    "VerificationError",
    "__version__",
    "audit_context",
    "current_context",
    "set_actor",
]
