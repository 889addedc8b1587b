"""Pieces of the HTTP exchange shared by the background sender and the strict `send()`."""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import json
import math
import random
import uuid
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ._errors import BitacoraError

__version__ = "0.1.0"
USER_AGENT = f"bitacora-python/{__version__}"

# Backoff: full jitter (sleep a random time in [0, min(cap, base * 2^attempt)]) spreads the
# retries of many processes after an outage instead of having them hammer the server in step.
BACKOFF_BASE = 0.5
# A server's Retry-After is honoured, but never beyond this: a wrong header must not park the
# sender for hours while the queue fills.
MAX_RETRY_AFTER = 60.0


def backoff_delay(attempt: int, cap: float) -> float:
    return random.uniform(0.0, min(cap, BACKOFF_BASE * (2.0 ** min(attempt, 30))))


def retry_delay(error: BitacoraError, attempt: int, cap: float) -> float:
    """How long to wait before retry `attempt`: the server's `Retry-After` when it gave one,
    else exponential backoff with full jitter (the one rule of the sender, `send()` and the
    async client alike)."""
    if error.retry_after is not None:
        return error.retry_after
    return backoff_delay(attempt, cap)


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        seconds = (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_from_response(response: httpx.Response) -> BitacoraError:
    """The server's error body as a `BitacoraError` (or a generic one for a foreign body, e.g.
    a proxy's HTML 502 page)."""
    detail: Any = None
    try:
        body = response.json()
        if isinstance(body, Mapping):
            detail = body.get("error")
    except (ValueError, UnicodeDecodeError):
        pass
    err = (
        BitacoraError.from_detail(detail, response.status_code)
        if isinstance(detail, Mapping)
        else BitacoraError(
            f"HTTP {response.status_code} {response.reason_phrase}".strip(),
            code=f"http_{response.status_code}",
            status=response.status_code,
        )
    )
    err.retry_after = parse_retry_after(response.headers.get("retry-after"))
    return err


def error_from_exception(exc: Exception) -> BitacoraError:
    if isinstance(exc, httpx.TimeoutException):
        return BitacoraError(f"request timed out: {exc!r}", code="timeout")
    return BitacoraError(f"could not reach bitacora: {exc!r}", code="network_error")


def json_default(value: Any) -> Any:
    """Makes the values applications commonly put in events serializable, instead of
    failing the event: datetimes, UUIDs, decimals, enums, sets, bytes."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def dumps(value: Any) -> bytes:
    # allow_nan=False: NaN/Infinity are not JSON; the server would reject the whole batch.
    return json.dumps(
        value, default=json_default, allow_nan=False, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def headers(api_key: str | None) -> dict[str, str]:
    h = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        h["Authorization"] = f"Bearer {api_key}"
    return h
