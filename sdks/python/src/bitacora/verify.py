"""Checks on the client what the server promises (CONTRACT §4, docs/BUNDLE.md).

- `canonical(value)`: RFC 8785 (JCS) bytes of a JSON value.
- `leaf_hash(event)`: `SHA-256(0x00 || canonical(event minus seq and leaf_hash))`, hex.
- `root_from_inclusion_proof(...)` / `verify_inclusion(...)`: RFC 9162 §2.1.3.2.
- `parse_verifier_key(...)`, `open_checkpoint(note, keys)`: C2SP signed-note + tlog-checkpoint
  with Ed25519 (needs `cryptography`: `pip install "bitacora-sdk[verify]"`).
- `verify_event(client, event_id, public_key)`: all of the above for one stored event.
- `verify_tlog_proof(event, proof, public_key)`: one event's C2SP `tlog-proof@v1`
  (`GET /v1/events/{id}/proof`), offline.

Only the Ed25519 signature check needs the extra; hashes and proofs use the standard library.
Everything here raises `VerificationError` (a `BitacoraError`) when a check fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import BitacoraError, VerificationError

if TYPE_CHECKING:
    from ._client import AsyncBitacora, Bitacora

__all__ = [
    "Checkpoint",
    "VerificationError",
    "VerifiedEvent",
    "VerifierKey",
    "averify_event",
    "canonical",
    "leaf_hash",
    "open_checkpoint",
    "parse_verifier_key",
    "root_from_inclusion_proof",
    "verifier_key_for",
    "verify_event",
    "verify_inclusion",
    "verify_tlog_proof",
]

# ---- RFC 8785 ----


def _number(value: int | float) -> str:
    """ECMAScript `Number.prototype.toString` of the double nearest `value` (RFC 8785 §3.2.2.3).

    Python's `repr(float)` yields the same shortest round-tripping digits as ECMAScript; only
    the layout (where the point goes, when to switch to exponent form) differs, so the digits
    and the decimal exponent are taken from `repr` and laid out by ECMAScript's rules."""
    try:
        f = float(value)
    except OverflowError as overflow:
        raise ValueError(f"number out of the IEEE 754 double range: {value}") from overflow
    if not math.isfinite(f):
        raise ValueError("NaN and Infinity are not JSON")
    if f == 0.0:
        return "0"  # -0 too
    sign = "-" if f < 0 else ""
    mantissa, _, exp = repr(abs(f)).partition("e")
    int_part, _, frac = mantissa.partition(".")
    digits = int_part + frac
    # value = 0.DIGITS x 10^n
    n = len(int_part) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * -n + digits
    else:
        e = n - 1
        s = (
            digits[0]
            + ("." + digits[1:] if k > 1 else "")
            + "e"
            + ("+" if e >= 0 else "-")
            + str(abs(e))
        )
    return sign + s


def _utf16_key(key: str) -> bytes:
    # RFC 8785 §3.2.3 sorts member names as arrays of UTF-16 code units; big-endian UTF-16
    # bytes compare in exactly that order (unlike code points, for characters above U+FFFF).
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        # json.dumps escapes exactly what JCS escapes: " \ and the C0 controls (\b \t \n \f \r
        # short forms, \u00xx lowercase otherwise), nothing else with ensure_ascii=False.
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, (int, float)):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        out.append("{")
        first = True
        for key in sorted(value, key=_check_key):
            if not first:
                out.append(",")
            first = False
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise ValueError(f"not a JSON value: {type(value).__name__}")


def _check_key(key: Any) -> bytes:
    if not isinstance(key, str):
        raise ValueError(f"object member names must be strings, not {type(key).__name__}")
    return _utf16_key(key)


def canonical(value: Any) -> bytes:
    """The RFC 8785 canonical JSON of `value` (as `json.loads` returns it), UTF-8 encoded.
    Raises ValueError for what JSON cannot hold (NaN, non-string keys, lone surrogates)."""
    out: list[str] = []
    _write(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("strings must be valid Unicode (no lone surrogates)") from e


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(event: Mapping[str, Any]) -> str:
    """The event's Merkle leaf hash (lowercase hex), computed from the event exactly as
    `GET /v1/events/{id}` returns it: its `seq` and `leaf_hash` members are left out."""
    body = {k: v for k, v in event.items() if k not in ("seq", "leaf_hash")}
    return _sha256(b"\x00" + canonical(body)).hex()


# ---- RFC 9162 inclusion proofs ----


def _hash_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        raw = value
    else:
        try:
            raw = bytes.fromhex(value)
        except ValueError as e:
            raise VerificationError(f"{what} is not hex") from e
    if len(raw) != 32:
        raise VerificationError(f"{what} is not a SHA-256 hash")
    return raw


def root_from_inclusion_proof(
    leaf: str | bytes, index: int, tree_size: int, proof: Sequence[str | bytes]
) -> bytes:
    """The root that `proof` leads to from leaf `index` in a tree of `tree_size` leaves
    (RFC 9162 §2.1.3.2). Raises VerificationError for a proof of the wrong shape."""
    if not 0 <= index < tree_size:
        raise VerificationError(f"leaf {index} is not in a tree of {tree_size}")
    fn, sn = index, tree_size - 1
    r = _hash_bytes(leaf, "leaf hash")
    for i, p in enumerate(proof):
        if sn == 0:
            raise VerificationError("inclusion proof is too long")
        h = _hash_bytes(p, f"proof hash {i}")
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + h + r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(b"\x01" + r + h)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf: str | bytes, index: int, tree_size: int, proof: Sequence[str | bytes], root: bytes
) -> None:
    """Raises VerificationError unless `proof` proves leaf `index` under `root`."""
    if root_from_inclusion_proof(leaf, index, tree_size, proof) != root:
        raise VerificationError(f"inclusion proof of leaf {index} does not lead to the root")


# ---- signed notes and checkpoints ----


@dataclass(frozen=True)
class VerifierKey:
    """A signed-note verifier key: `<name>+<key id hex>+<base64(0x01 || public key)>`."""

    name: str
    key_id: bytes
    public_key: bytes

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([0x01]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"


def parse_verifier_key(text: str) -> VerifierKey:
    """Parses one verifier key (as `GET /v1/log/public-key` serves it) and checks its key id,
    which binds the name to the key."""
    parts = text.strip().split("+", 2)  # the base64 key may itself contain "+"
    if len(parts) != 3 or not parts[0]:
        raise VerificationError("a verifier key is <name>+<key id>+<base64 key>")
    name, kid_hex, b64 = parts
    try:
        kid = bytes.fromhex(kid_hex)
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error) as e:
        raise VerificationError(f"malformed verifier key: {e}") from e
    if len(kid) != 4 or len(raw) != 33 or raw[0] != 0x01:
        raise VerificationError("not an Ed25519 verifier key")
    if _sha256(name.encode() + b"\n" + raw)[:4] != kid:
        raise VerificationError("verifier key id does not match its name and key")
    return VerifierKey(name, kid, raw[1:])


def _renamed(key: VerifierKey, name: str) -> VerifierKey:
    """The same Ed25519 key under another name (the key id changes with it)."""
    raw = bytes([0x01]) + key.public_key
    return VerifierKey(name, _sha256(name.encode() + b"\n" + raw)[:4], key.public_key)


def verifier_key_for(public_key: str | VerifierKey, origin: str) -> VerifierKey:
    """The verifier key of the log `origin`: the server's key (as `/v1/log/public-key` serves
    it) named by the origin, as `GET /v1/log` lists it (`verifier_key`) and as C2SP witnesses
    and tlog-policy files name a log."""
    return _renamed(_keys(public_key)[0], origin)


def _keys(public_key: str | VerifierKey | Iterable[str | VerifierKey]) -> list[VerifierKey]:
    if isinstance(public_key, VerifierKey):
        return [public_key]
    items = public_key.splitlines() if isinstance(public_key, str) else list(public_key)
    keys = [
        k if isinstance(k, VerifierKey) else parse_verifier_key(k)
        for k in items
        if isinstance(k, VerifierKey) or k.strip()
    ]
    if not keys:
        raise VerificationError("no verifier key given")
    return keys


def _ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError(
            "checking checkpoint signatures needs the 'cryptography' package: "
            'pip install "bitacora-sdk[verify]"'
        ) from e
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: the log `origin`, its `tree_size`, and the 32-byte `root`."""

    origin: str
    tree_size: int
    root: bytes
    extensions: tuple[str, ...]
    signed_by: tuple[str, ...]


def open_checkpoint(
    note: str,
    public_key: str | VerifierKey | Iterable[str | VerifierKey],
    *,
    origin: str | None = None,
) -> Checkpoint:
    """Verifies a signed checkpoint note with the trusted key(s) and returns its body.

    Each log's checkpoints are signed under the log's origin as key name (the C2SP convention:
    `GET /v1/log` gives the log's `verifier_key`); a trusted key counts under its own name and
    under the checkpoint's origin, so the key of `/v1/log/public-key` (named after the key file)
    checks every log, and checkpoints signed under that name before still verify. The origin is
    inside the signed text: pass `origin` to insist on one log. Signature lines from unknown keys
    (e.g. witnesses' cosignatures) are ignored; at least one trusted key must have signed, and a
    trusted key's bad signature fails the note."""
    trusted = _keys(public_key)
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise VerificationError("malformed note: no signature block")
    text = note[: split + 1]
    keys = {(k.name, k.key_id): k for k in trusted}
    signed_origin = text.split("\n", 1)[0]
    if signed_origin and not any(c.isspace() or c == "+" for c in signed_origin):
        for k in trusted:
            named = _renamed(k, signed_origin)
            keys.setdefault((named.name, named.key_id), named)
    signed_by: list[str] = []
    for line in note[split + 2 :].rstrip("\n").split("\n"):
        if not line.startswith("\u2014 "):
            raise VerificationError("malformed note: bad signature line")
        name, _, b64 = line[2:].partition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error) as e:
            raise VerificationError("malformed note: bad signature encoding") from e
        if len(blob) < 5:
            raise VerificationError("malformed note: short signature")
        key = keys.get((name, blob[:4]))
        if key is None:
            continue
        if not _ed25519_verify(key.public_key, blob[4:], text.encode("utf-8")):
            raise VerificationError(f"checkpoint signature by {name} does not verify")
        signed_by.append(name)
    if not signed_by:
        raise VerificationError("no trusted key signed the checkpoint")
    lines = text.split("\n")[:-1]
    if len(lines) < 3:
        raise VerificationError("malformed checkpoint: needs origin, size and root lines")
    try:
        size = int(lines[1])
        if lines[1] != str(size) or size < 0:
            raise ValueError(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error) as e:
        raise VerificationError(f"malformed checkpoint: {e}") from e
    if len(root) != 32:
        raise VerificationError("malformed checkpoint: root is not 32 bytes")
    if origin is not None and lines[0] != origin:
        raise VerificationError(f"checkpoint is for log {lines[0]!r}, not {origin!r}")
    return Checkpoint(lines[0], size, root, tuple(lines[3:]), tuple(signed_by))


# ---- one stored event, end to end ----


@dataclass(frozen=True)
class VerifiedEvent:
    """The event that verified, and the checkpoint it was proven against."""

    event: dict[str, Any]
    checkpoint: Checkpoint


def _check_event(event: Mapping[str, Any]) -> tuple[str, int]:
    computed = leaf_hash(event)
    if event.get("leaf_hash") != computed:
        raise VerificationError(
            f"event {event.get('id')}: content does not match its leaf_hash (recomputed {computed})"
        )
    seq = event.get("seq")
    if not isinstance(seq, int):
        raise VerificationError("the event has no seq")
    return computed, seq


def _check_proof(
    event: Mapping[str, Any], leaf: str, seq: int, cp: Checkpoint, proof: Mapping[str, Any]
) -> None:
    hashes = proof.get("hashes")
    if not isinstance(hashes, list) or proof.get("tree_size") != cp.tree_size:
        raise VerificationError("the server's inclusion proof is not for the checkpoint's tree")
    verify_inclusion(leaf, seq, cp.tree_size, hashes, cp.root)


def _note_or_none(fetch: Callable[[], str], deadline: float) -> str | None:
    """The checkpoint note, or None while the log has none yet (`404 no_checkpoint`: a
    fresh log's first events are signed within a second) and the deadline is not past."""
    try:
        return fetch()
    except BitacoraError as e:
        if e.code != "no_checkpoint" or time.monotonic() >= deadline:
            raise
        return None


def verify_event(
    client: Bitacora,
    event_id: str,
    public_key: str | VerifierKey | Iterable[str | VerifierKey],
    *,
    tenant: str | None = None,
    wait: float = 5.0,
) -> VerifiedEvent:
    """Fetches event `event_id`, recomputes its leaf hash, fetches the latest checkpoint and
    checks its signature with `public_key` (pinned by you: the text of `/v1/log/public-key`),
    then checks the event's inclusion proof against the signed root. The client's key needs
    read scope. Waits up to `wait` seconds for a checkpoint that covers a just-written event
    (the server signs at least once a second). Raises VerificationError when anything fails."""
    keys = _keys(public_key)
    event: dict[str, Any] = dict(client.get_event(event_id, tenant=tenant))
    leaf, seq = _check_event(event)
    tenant = tenant or event.get("tenant")
    deadline = time.monotonic() + wait
    while True:
        note = _note_or_none(lambda: client.checkpoint(tenant=tenant), deadline)
        cp = open_checkpoint(note, keys) if note is not None else None
        if (cp is not None and cp.tree_size > seq) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if cp is None:
        raise VerificationError(f"no signed checkpoint covers seq {seq} yet")
    if cp.tree_size <= seq:
        raise VerificationError(f"no signed checkpoint covers seq {seq} yet")
    _check_origin(cp, tenant)
    _check_proof(event, leaf, seq, cp, client.inclusion_proof(seq, cp.tree_size, tenant=tenant))
    return VerifiedEvent(event, cp)


async def averify_event(
    client: AsyncBitacora,
    event_id: str,
    public_key: str | VerifierKey | Iterable[str | VerifierKey],
    *,
    tenant: str | None = None,
    wait: float = 5.0,
) -> VerifiedEvent:
    """`verify_event` for `AsyncBitacora`."""
    import asyncio

    keys = _keys(public_key)
    event: dict[str, Any] = dict(await client.get_event(event_id, tenant=tenant))
    leaf, seq = _check_event(event)
    tenant = tenant or event.get("tenant")
    deadline = time.monotonic() + wait
    while True:
        try:
            note: str | None = await client.checkpoint(tenant=tenant)
        except BitacoraError as e:
            if e.code != "no_checkpoint" or time.monotonic() >= deadline:
                raise
            note = None
        cp = open_checkpoint(note, keys) if note is not None else None
        if (cp is not None and cp.tree_size > seq) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    if cp is None:
        raise VerificationError(f"no signed checkpoint covers seq {seq} yet")
    if cp.tree_size <= seq:
        raise VerificationError(f"no signed checkpoint covers seq {seq} yet")
    _check_origin(cp, tenant)
    proof = await client.inclusion_proof(seq, cp.tree_size, tenant=tenant)
    _check_proof(event, leaf, seq, cp, proof)
    return VerifiedEvent(event, cp)


def _check_origin(cp: Checkpoint, tenant: str | None) -> None:
    # The origin is `<prefix>/<tenant>` (the prefix is configurable, CONTRACT §11): a checkpoint
    # of another tenant's log must not vouch for this event.
    if tenant and not cp.origin.endswith("/" + tenant):
        raise VerificationError(f"checkpoint is for log {cp.origin!r}, not tenant {tenant!r}")


# ---- C2SP tlog-proof ----

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"


def verify_tlog_proof(
    event: Mapping[str, Any],
    proof: str,
    public_key: str | VerifierKey | Iterable[str | VerifierKey],
    *,
    origin: str | None = None,
) -> Checkpoint:
    """Checks a C2SP `tlog-proof@v1` (what `GET /v1/events/{id}/proof` returns) for `event`
    (as `GET /v1/events/{id}` returns it) offline: the proof's checkpoint must be signed by a
    trusted key and be for `origin` (default: any `<prefix>/<event's tenant>`), and its
    inclusion proof must lead from the event's recomputed leaf hash, at the proof's index, to
    the checkpoint's root. Returns the checkpoint; raises VerificationError otherwise.
    Cosignatures in the checkpoint are ignored (their quorum is a policy of yours)."""
    lines = proof.split("\n")
    if not lines or lines[0] != TLOG_PROOF_HEADER:
        raise VerificationError("not a tlog-proof: the first line is not " + TLOG_PROOF_HEADER)
    i = 1
    if i < len(lines) and lines[i].startswith("extra "):
        i += 1
    if i >= len(lines) or not lines[i].startswith("index "):
        raise VerificationError("malformed tlog-proof: no index line")
    digits = lines[i][len("index ") :]
    if not digits.isdigit() or not digits.isascii() or (len(digits) > 1 and digits[0] == "0"):
        raise VerificationError("malformed tlog-proof: bad index")
    index = int(digits)
    i += 1
    hashes: list[bytes] = []
    while i < len(lines) and lines[i]:
        try:
            hashes.append(base64.b64decode(lines[i], validate=True))
        except (ValueError, binascii.Error) as e:
            raise VerificationError("malformed tlog-proof: a proof line is not base64") from e
        i += 1
    if i >= len(lines) - 1:
        raise VerificationError("malformed tlog-proof: no checkpoint after the proof")
    note = "\n".join(lines[i + 1 :])
    cp = open_checkpoint(note, public_key, origin=origin)
    if origin is None:
        _check_origin(cp, event.get("tenant"))
    computed = leaf_hash(event)
    stated = event.get("leaf_hash")
    if stated is not None and stated != computed:
        raise VerificationError(
            f"event {event.get('id')}: content does not match its leaf_hash (recomputed {computed})"
        )
    seq = event.get("seq")
    if seq is not None and seq != index:
        raise VerificationError(f"the proof is for index {index}, the event has seq {seq}")
    verify_inclusion(computed, index, cp.tree_size, hashes, cp.root)
    return cp
