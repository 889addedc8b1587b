#!/usr/bin/env python3
"""Independent verifier of a bitacora bundle, written from docs/BUNDLE.md alone.

usage: verify_bundle.py BUNDLE [TRUSTED_VERIFIER_KEY...]
Exit 0 and "OK ..." when every event verifies; exit 1 and "line N: reason" otherwise.
"""
import base64, hashlib, json, math, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

H = lambda b: hashlib.sha256(b).digest()

def num(x):  # ECMAScript Number.prototype.toString, as RFC 8785 requires
    if isinstance(x, bool) or not math.isfinite(float(x)): raise ValueError("bad number")
    f = float(x)
    if f == 0: return "0"
    if f.is_integer() and abs(f) < 1e21: return str(int(f))
    m, _, e = repr(abs(f)).partition("e")
    ip, _, fp = m.partition(".")
    fp = fp.rstrip("0")
    digits = (ip + fp).lstrip("0")
    n = int(e or 0) + (len(ip.lstrip("0")) if ip.strip("0") else -(len(fp) - len(fp.lstrip("0"))))
    digits, k = digits.rstrip("0"), len(digits.rstrip("0"))
    if k <= n <= 21: s = digits + "0" * (n - k)
    elif 0 < n <= 21: s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0: s = "0." + "0" * -n + digits
    else: s = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if n > 0 else "-") + str(abs(n - 1))
    return ("-" if f < 0 else "") + s

def jcs(v):
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(jcs(k) + ":" + jcs(v[k]) for k in keys) + "}"
    if isinstance(v, list): return "[" + ",".join(jcs(x) for x in v) + "]"
    if isinstance(v, str) or v is None or isinstance(v, bool): return json.dumps(v, ensure_ascii=False)
    return num(v)

def parse_key(k):
    name, kid, b64 = k.split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 1 and len(raw) == 33 and H(name.encode() + b"\n" + raw)[:4].hex() == kid, "bad key " + k
    return (name, bytes.fromhex(kid)), Ed25519PublicKey.from_public_bytes(raw[1:])

def open_note(note, keys):
    i = note.rindex("\n\n")
    text, ok = note[: i + 1], []
    for line in note[i + 2 :].rstrip("\n").split("\n"):
        assert line.startswith("\u2014 "), "bad signature line"
        name, b64 = line[2:].split(" ", 1)
        blob = base64.b64decode(b64)
        if (name, blob[:4]) in keys:
            keys[(name, blob[:4])].verify(blob[4:], text.encode())  # raises if invalid
            ok.append(name)
    assert ok, "no trusted key signed the checkpoint"
    return text

def root_from_proof(leaf, fn, size, proof):
    if fn >= size: raise ValueError("seq not in tree")
    sn, r = size - 1, leaf
    for p in proof:
        if sn == 0: raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = H(b"\x01" + p + r)
            while not fn & 1 and fn != 0: fn, sn = fn >> 1, sn >> 1
        else: r = H(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0: raise ValueError("proof too short")
    return r

def verify(path, trusted):
    lines = open(path, encoding="utf-8").read().split("\n")
    hdr = json.loads(lines[0])
    prefix, _, tenant = hdr["origin"].rpartition("/")
    assert hdr["bitacora_bundle"] == 1 and prefix and tenant == hdr["tenant"], "bad header"
    keys = dict(parse_key(k) for k in (trusted or hdr["verifier_keys"]))
    origin, size, root = open_note(hdr["checkpoint"], keys).split("\n")[:3]
    assert origin == hdr["origin"] and int(size) == hdr["tree_size"], "checkpoint does not match header"
    root, size, count = base64.b64decode(root), int(size), 0
    for n, line in enumerate(lines[1:], start=2):
        try:
            obj = json.loads(line)
            if obj.get("end") is True:
                assert obj["events"] == count, "trailer count %s != %d events" % (obj["events"], count)
                assert all(not l.strip() for l in lines[n:]), "content after trailer"
                return "OK %d events of %s at tree size %d" % (count, hdr["tenant"], size)
            ev = obj["event"]
            body = {k: v for k, v in ev.items() if k not in ("seq", "leaf_hash")}
            leaf = H(b"\x00" + jcs(body).encode("utf-8"))
            assert leaf.hex() == ev["leaf_hash"], "event content does not match its leaf_hash"
            assert ev["tenant"] == hdr["tenant"], "wrong tenant"
            proof = [bytes.fromhex(h) for h in obj["proof"]]
            assert root_from_proof(leaf, ev["seq"], size, proof) == root, "inclusion proof does not verify"
            count += 1
        except Exception as e:
            raise SystemExit("line %d: %s" % (n, str(e) or type(e).__name__))
    raise SystemExit("line %d: missing trailer (truncated)" % len(lines))

if __name__ == "__main__":
    try:
        print(verify(sys.argv[1], sys.argv[2:]))
    except SystemExit: raise
    except Exception as e:
        raise SystemExit("line 1: %s" % (str(e) or type(e).__name__))
