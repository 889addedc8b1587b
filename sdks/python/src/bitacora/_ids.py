"""Client-side event ids and timestamps, cheap enough for `log()`'s hot path.

`log()` gives each event an id before it is queued, so every retry of a batch carries the same
ids and the server acknowledges a retried event as a duplicate instead of storing it twice.
UUIDv7 (RFC 9562) keeps ids time-ordered like the server's own.
"""

from __future__ import annotations

import random
import time

# `random` (not `os.urandom`): ids must be unique, not secret, and a syscall per event would
# double the cost of `log()`. The module reseeds itself in a forked child, so parent and child
# never draw the same sequence.
_getrandbits = random.getrandbits
_MASK48 = (1 << 48) - 1
_VERSION_VARIANT = 0x7 << 76 | 0b10 << 62


def uuid7() -> str:
    """A random UUIDv7 string: 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = _getrandbits(74)
    value = (ms & _MASK48) << 80 | _VERSION_VARIANT | (rand >> 62) << 64 | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_cached_second = -1
_cached_prefix = ""


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with microseconds (`2026-01-20T10:30:00.123456Z`);
    the date-and-second part is formatted once per second."""
    global _cached_second, _cached_prefix
    ns = time.time_ns()
    second, rest = divmod(ns, 1_000_000_000)
    if second != _cached_second:
        _cached_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _cached_second = second
    return f"{_cached_prefix}.{rest // 1000:06d}Z"
