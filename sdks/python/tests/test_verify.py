"""`bitacora.verify`: RFC 8785 vectors, Merkle proofs, signed notes, and real events."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time

import pytest

from bitacora import Bitacora, BitacoraError
from bitacora.verify import (
    VerificationError,
    canonical,
    leaf_hash,
    open_checkpoint,
    parse_verifier_key,
    root_from_inclusion_proof,
    verifier_key_for,
    verify_event,
    verify_inclusion,
    verify_tlog_proof,
)
from conftest import Server, unique

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
NUMBER_VECTORS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), NUMBER_VECTORS)
def test_rfc8785_numbers(bits: str, expected: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonical(value) == expected.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_rfc8785_rejects_nan_and_infinity(bits: str) -> None:
    with pytest.raises(ValueError, match="NaN"):
        canonical(struct.unpack(">d", bytes.fromhex(bits))[0])


def test_rfc8785_example_3_2_2() -> None:
    source = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,'
        '1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical(json.loads(source)) == expected.encode("utf-8")


def test_rfc8785_sorts_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33, unlike by code point.
    source = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical(source)).keys())
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_canonical_integers_are_doubles() -> None:
    assert canonical([1, -0.0, 2**53 + 1, 10**21, 1e-7]) == b"[1,0,9007199254740992,1e+21,1e-7]"
    with pytest.raises(ValueError, match="names must be strings"):
        canonical({1: "a"})
    with pytest.raises(ValueError, match="surrogates"):
        canonical("\ud800")


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _node(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    # RFC 9162 §2.1.3.1 PATH(m, D[n]).
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if index < k:
        return [*_path(index, leaves[:k]), _mth(leaves[k:])]
    return [*_path(index - k, leaves[k:]), _mth(leaves[:k])]


def test_inclusion_proofs_for_every_leaf_of_small_trees() -> None:
    for size in range(1, 20):
        leaves = [hashlib.sha256(bytes([0, i])).digest() for i in range(size)]
        root = _mth(leaves)
        for i in range(size):
            proof = _path(i, leaves)
            verify_inclusion(leaves[i], i, size, proof, root)
            if proof:
                bad = [*proof]
                bad[0] = bytes(32)
                with pytest.raises(VerificationError):
                    verify_inclusion(leaves[i], i, size, bad, root)
                with pytest.raises(VerificationError, match="too short"):
                    root_from_inclusion_proof(leaves[i], i, size, proof[:-1])
        with pytest.raises(VerificationError, match="not in a tree"):
            root_from_inclusion_proof(leaves[0], size, size, [])


def test_rfc6962_empty_leaf_vector() -> None:
    # SHA-256(0x00): the RFC 6962 hash of an empty leaf.
    assert hashlib.sha256(b"\x00").hexdigest() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_real_event_verifies_end_to_end(server: Server) -> None:
    client = Bitacora(url=server.url, api_key=server.admin_key)
    public_key = client.public_key()  # pinned here once, as a user would from their config
    key = parse_verifier_key(public_key.splitlines()[0])
    assert str(key) == public_key.splitlines()[0]
    acks = [
        client.send(
            unique("verify"),
            actor={"id": "1", "name": "José"},
            metadata={"n": i, "ratio": 0.1 * i, "big": 2**60, "text": "ñ\u2028\U0001f600"},
        )
        for i in range(5)
    ]
    for ack in acks:
        verified = verify_event(client, ack.id, public_key)
        assert verified.event["leaf_hash"] == ack.leaf_hash
        assert verified.checkpoint.tree_size > ack.seq
        assert leaf_hash(verified.event) == ack.leaf_hash
    client.close()


def test_tampered_event_fails(server: Server) -> None:
    client = Bitacora(url=server.url, api_key=server.admin_key)
    public_key = client.public_key()
    ack = client.send(unique("tamper"), actor={"id": "42"}, description="original")
    event = server.event(ack.id)
    assert leaf_hash(event) == event["leaf_hash"]
    forged = {**event, "description": "rewritten"}
    assert leaf_hash(forged) != event["leaf_hash"]

    # A server that returns a rewritten event (keeping the original leaf hash) is caught.
    class Tampering(Bitacora):
        def get_event(self, event_id: str, *, tenant: str | None = None):  # type: ignore[override]
            return {**super().get_event(event_id, tenant=tenant), "description": "rewritten"}

    liar = Tampering(url=server.url, api_key=server.admin_key)
    with pytest.raises(VerificationError, match="does not match its leaf_hash"):
        verify_event(liar, ack.id, public_key)

    # ...and so is one whose rewritten event carries a recomputed leaf hash: the proof fails.
    class Rehashing(Bitacora):
        def get_event(self, event_id: str, *, tenant: str | None = None):  # type: ignore[override]
            forged = {**super().get_event(event_id, tenant=tenant), "description": "rewritten"}
            forged["leaf_hash"] = leaf_hash(forged)
            return forged

    with pytest.raises(VerificationError, match="inclusion proof"):
        verify_event(Rehashing(url=server.url, api_key=server.admin_key), ack.id, public_key)
    client.close()


def test_checkpoint_with_wrong_key_or_signature_fails(server: Server) -> None:
    client = Bitacora(url=server.url, api_key=server.admin_key)
    client.send(unique("cp"))
    public_key = client.public_key()
    note = client.checkpoint()
    cp = open_checkpoint(note, public_key)
    assert cp.origin.endswith("/default") and len(cp.root) == 32
    # Signed under the log's origin as key name (the C2SP convention); the published key
    # (named after the key file) checks it under that name, and so does the log's own key.
    assert cp.signed_by == (cp.origin,)
    log_key = verifier_key_for(public_key.splitlines()[0], cp.origin)
    assert str(log_key).startswith(cp.origin + "+")
    assert open_checkpoint(note, log_key, origin=cp.origin).signed_by == (cp.origin,)

    # Another key under the same name is not trusted: nobody it trusts signed.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    name = public_key.split("+", 1)[0]
    kid = hashlib.sha256(name.encode() + b"\n\x01" + other).digest()[:4].hex()
    encoded = base64.b64encode(bytes([1]) + other).decode()
    stranger = f"{name}+{kid}+{encoded}"
    with pytest.raises(VerificationError, match="no trusted key"):
        open_checkpoint(note, stranger)

    # A changed tree size under the genuine signature fails.
    lines = note.split("\n")
    lines[1] = str(int(lines[1]) + 1)
    with pytest.raises(VerificationError, match="does not verify"):
        open_checkpoint("\n".join(lines), public_key)

    # A key whose id does not match its name and bytes is refused when parsed.
    with pytest.raises(VerificationError, match="key id"):
        parse_verifier_key(name + "+00000000+" + public_key.strip().split("+", 2)[2])
    client.close()


def test_tlog_proof_verifies_offline(server: Server) -> None:
    client = Bitacora(url=server.url, api_key=server.admin_key)
    public_key = client.public_key()
    ack = client.send(unique("tlogproof"), actor={"id": "7"}, description="proved")
    deadline = time.monotonic() + 5
    while True:  # the server signs within about a second: 404 no_checkpoint until then
        try:
            proof = client.event_proof(ack.id)
            break
        except BitacoraError as e:
            if e.code != "no_checkpoint" or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert proof.startswith("c2sp.org/tlog-proof@v1\nindex ")
    event = server.event(ack.id)
    cp = verify_tlog_proof(event, proof, public_key)
    assert cp.tree_size > ack.seq and cp.origin.endswith("/default")

    # An altered event, another origin, or an altered proof line fails.
    with pytest.raises(VerificationError):
        verify_tlog_proof({**event, "description": "rewritten"}, proof, public_key)
    rehashed = {**event, "description": "rewritten"}
    rehashed["leaf_hash"] = leaf_hash(rehashed)
    with pytest.raises(VerificationError, match=r"inclusion proof|not in a tree"):
        verify_tlog_proof(rehashed, proof, public_key)
    with pytest.raises(VerificationError, match="not"):
        verify_tlog_proof(event, proof, public_key, origin="example.com/other")
    with pytest.raises(VerificationError, match="tlog-proof"):
        verify_tlog_proof(event, proof.replace("index ", "index 0", 1), public_key)
    client.close()


def _signed(seed: bytes, name: str, text: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(seed)
    raw = bytes([1]) + key.public_key().public_bytes_raw()
    kid = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    sig = base64.b64encode(kid + key.sign(text.encode())).decode()
    return f"{text}\n\u2014 {name} {sig}\n"


def _vkey(seed: bytes, name: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = bytes([1]) + Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    kid = hashlib.sha256(name.encode() + b"\n" + raw).hexdigest()[:8]
    return f"{name}+{kid}+{base64.b64encode(raw).decode()}"


def test_a_key_vouches_under_its_own_name_and_the_logs_origin_only() -> None:
    pytest.importorskip("cryptography")
    seed = bytes(range(32))
    root = base64.b64encode(bytes(32)).decode()
    text = f"bitacora/acme\n3\n{root}\n"
    published = _vkey(seed, "bitacora")
    # Under the origin (how logs are signed now) and under the key's name (before).
    for name in ["bitacora/acme", "bitacora"]:
        cp = open_checkpoint(_signed(seed, name, text), published, origin="bitacora/acme")
        assert cp.signed_by == (name,)
    # Under another log's name: not a checkpoint of this log's key.
    with pytest.raises(VerificationError, match="no trusted key"):
        open_checkpoint(_signed(seed, "bitacora/other", text), published)
    # The log's own key is the published one named by the origin.
    assert str(verifier_key_for(published, "bitacora/acme")) == _vkey(seed, "bitacora/acme")
