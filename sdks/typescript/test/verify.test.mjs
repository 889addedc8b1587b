// `bitacora/verify` on real events and proofs from a real server, and on tampered ones.

import assert from "node:assert/strict";
import { generateKeyPairSync, createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { Bitacora, BitacoraError } from "../dist/esm/index.js";
import { canonicalize, formatVerifierKey, leafHash, parseVerifierKey, verifierKeyFor, verifyCheckpoint, verifyEvent, verifyEventProof, verifyTlogProof } from "../dist/esm/verify.js";
import { startProxy, startServer, uniqueAction, unhandled } from "./helpers.mjs";

let server;
let b;
let publicKey;

before(async () => {
  server = await startServer();
  b = new Bitacora({ url: server.url, apiKey: server.adminKey, exitFlushTimeout: 0 });
  // Pinned once, as an application would keep it in its configuration.
  publicKey = await (await fetch(`${server.url}/v1/log/public-key`)).text();
});

after(async () => {
  await b.shutdown(500);
  await server.stop();
  server.cleanup();
  assert.deepEqual(unhandled, []);
});

describe("RFC 8785 canonical JSON", () => {
  test("the RFC's own example (Appendix / §3.2.2)", () => {
    const input = JSON.parse(
      '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}',
    );
    assert.equal(
      canonicalize(input),
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  test("member names sort by UTF-16 code units (§3.2.3)", () => {
    const input = { "\u20ac": 1, "\r": 2, "\ufb33": 3, 1: 4, "\ud83d\ude00": 5, "\u0080": 6, "\u00f6": 7 };
    // Read the names from the text: Object.keys would list the integer-like "1" first.
    const order = [...canonicalize(input).matchAll(/"((?:[^"\\]|\\.)*)":/g)].map((m) => JSON.parse(`"${m[1]}"`));
    assert.deepEqual(order, ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\ud83d\ude00", "\ufb33"]);
  });

  test("ECMAScript number formatting, and what JCS cannot carry", () => {
    assert.equal(canonicalize([0, -0, 1e21, 1e-7, 1.5e22, 2500, 1e20, 0.1]), "[0,0,1e+21,1e-7,1.5e+22,2500,100000000000000000000,0.1]");
    assert.throws(() => canonicalize(NaN), TypeError);
    assert.throws(() => canonicalize(Infinity), TypeError);
    assert.throws(() => canonicalize("\ud800"), TypeError);
    assert.throws(() => canonicalize(1n), TypeError);
  });
});

describe("against the real server", () => {
  test("the client's leaf hash equals the server's, for awkward content (send with verify)", async () => {
    const ack = await b.send(
      {
        action: uniqueAction("user.role_change"),
        severity: "critical",
        actor: { id: "admin_789", name: "Admin User", email: "admin@example.com" },
        target: { type: "user", id: "456", name: "Juan Pérez" },
        changes: [{ field: "role", label: "Rol del Usuario", old: "user", new: "admin" }, { field: "banned", old: null, new: true }],
        description: "Rol cambiado de user a admin — ✓ \u0001 \"quoted\" \\ 😀",
        metadata: { "€": 1.5, "😀": [1e21, 0.1, 333333333.33333329, -42, 1e-7], z: { b: 1, a: null, "\r": "cr" }, n: 12345678901234 },
      },
      { verify: true },
    );
    const stored = await b.getEvent(ack.id);
    assert.equal(await leafHash(stored), ack.leaf_hash);
  });

  test("verifyEvent proves real events at many positions against the pinned key", async () => {
    const ids = [];
    for (let i = 0; i < 37; i++) ids.push((await b.send({ action: uniqueAction("proof"), target: { type: "n", id: String(i) } })).id);
    for (const id of [ids[0], ids[1], ids[16], ids[31], ids[36]]) {
      const v = await verifyEvent(b, id, publicKey);
      assert.equal(v.event.id, id);
      assert.ok(v.checkpoint.treeSize > v.event.seq);
      assert.equal(v.checkpoint.origin, "bitacora/default");
      assert.deepEqual(v.checkpoint.signedBy.length, 1);
    }
  });

  test("a tampered event, proof or checkpoint, and an unpinned key, all fail", async () => {
    const { id } = await b.send({ action: uniqueAction("tamper"), description: "original", metadata: { amount: 10 } });
    await verifyEvent(b, id, publicKey); // genuine first

    const cases = [
      // A man in the middle (or a rewritten row) changes the event but keeps its leaf_hash.
      [(url) => url.startsWith("/v1/events/"), (t) => t.replace('"amount":10', '"amount":1000'), /altered/],
      // ...or recomputes the leaf hash too: then the proof no longer leads to the signed root.
      [
        (url) => url.startsWith("/v1/events/"),
        (t) => {
          const e = JSON.parse(t);
          e.description = "forged";
          e.leaf_hash = createHash("sha256").update(Buffer.concat([Buffer.from([0]), Buffer.from(canonicalize({ ...e, seq: undefined, leaf_hash: undefined }))])).digest("hex");
          return JSON.stringify(e);
        },
        /inclusion proof/,
      ],
      [(url) => url.startsWith("/v1/log/proof/inclusion"), (t) => t.replace(/"hashes":\["([0-9a-f])/, (_, c) => `"hashes":["${c === "f" ? "0" : "f"}`), /inclusion proof/],
      [(url) => url.startsWith("/v1/log/checkpoint"), (t) => t.replace(/\n(\d+)\n/, (_, n) => `\n${Number(n) + 1}\n`), /does not verify/],
    ];
    for (const [match, rewrite, expected] of cases) {
      const proxy = await startProxy(server.url, ({ url }) => (match(url) ? { rewrite } : "forward"));
      const through = new Bitacora({ url: proxy.url, apiKey: server.adminKey, exitFlushTimeout: 0 });
      const err = await verifyEvent(through, id, publicKey).then(() => undefined, (e) => e);
      assert.ok(err instanceof BitacoraError, `expected a failure matching ${expected}`);
      assert.equal(err.code, "verification_failed");
      assert.match(err.message, expected);
      await proxy.close();
    }

    // A key the server never signed with: pinned, but no signature by it.
    const { publicKey: otherKey } = generateKeyPairSync("ed25519");
    const raw = otherKey.export({ format: "der", type: "spki" }).subarray(-32);
    const body = Buffer.concat([Buffer.from([1]), raw]);
    const name = publicKey.split("+")[0];
    const keyId = createHash("sha256").update(Buffer.concat([Buffer.from(name + "\n"), body])).digest().subarray(0, 4).toString("hex");
    const stranger = `${name}+${keyId}+${body.toString("base64")}`;
    await parseVerifierKey(stranger); // well-formed
    const err = await verifyEvent(b, id, stranger).then(() => undefined, (e) => e);
    assert.equal(err?.code, "verification_failed");
    assert.match(err.message, /not signed by any pinned key|does not verify/);
    await assert.rejects(parseVerifierKey(`${name}+00000000+${body.toString("base64")}`), /key id/);
  });

  test("offline verification from a bundle's lines", async () => {
    const action = uniqueAction("bundle");
    for (let i = 0; i < 5; i++) await b.send({ action, target: { type: "x", id: String(i) } });
    // Wait for a checkpoint covering them, then export a bundle and verify each line offline.
    let lines;
    for (let tries = 0; tries < 50; tries++) {
      const res = await fetch(`${server.url}/v1/export?format=bundle&action=${action}`, { headers: { authorization: `Bearer ${server.adminKey}` } });
      lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
      if (lines.at(-1).events === 5) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const [header, ...rest] = lines;
    const trailer = rest.pop();
    assert.equal(trailer.events, 5);
    const cp = await verifyCheckpoint(header.checkpoint, publicKey);
    assert.equal(cp.treeSize, header.tree_size);
    // Signed under the log's origin as key name (C2SP): the log's own verifier key, the one
    // `GET /v1/log` lists, checks it alone; the pinned key is that key under another name.
    assert.deepEqual(cp.signedBy, [cp.origin]);
    const logKey = formatVerifierKey(await verifierKeyFor(publicKey.split("\n")[0], cp.origin));
    const described = await (await fetch(`${server.url}/v1/log`, { headers: { authorization: `Bearer ${server.adminKey}` } })).json();
    assert.equal(described.verifier_key, logKey);
    assert.deepEqual((await verifyCheckpoint(header.checkpoint, logKey)).signedBy, [cp.origin]);
    // A signature line under a third name (another log's) is no pinned key's.
    const renamed = header.checkpoint.replace(`\u2014 ${cp.origin} `, "\u2014 bitacora/elsewhere ");
    await assert.rejects(verifyCheckpoint(renamed, publicKey), /not signed by any pinned key/);
    for (const line of rest) {
      const v = await verifyEventProof({ event: line.event, proof: line.proof, checkpoint: header.checkpoint, publicKey });
      assert.equal(v.event.id, line.event.id);
    }
    const forged = { ...rest[0].event, action: "user.delete" };
    await assert.rejects(verifyEventProof({ event: forged, proof: rest[0].proof, checkpoint: header.checkpoint, publicKey }), /altered/);
  });

  test("a C2SP tlog-proof from GET /v1/events/{id}/proof verifies offline", async () => {
    const { id } = await b.send({ action: uniqueAction("tlogproof"), description: "proved" });
    let proof;
    for (let tries = 0; tries < 50 && proof === undefined; tries++) {
      try {
        proof = await b.eventProof(id);
      } catch (err) {
        // 404 no_checkpoint until the server signs the event (within about a second).
        if (!(err instanceof BitacoraError && err.code === "no_checkpoint")) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    assert.ok(proof.startsWith("c2sp.org/tlog-proof@v1\nindex "));
    const event = await b.getEvent(id);
    const v = await verifyTlogProof({ event, proof, publicKey });
    assert.equal(v.event.id, id);
    assert.ok(v.checkpoint.treeSize > event.seq);
    // An altered event, a wrong origin, or a proof for another index fails.
    await assert.rejects(verifyTlogProof({ event: { ...event, description: "rewritten" }, proof, publicKey }), /altered/);
    await assert.rejects(verifyTlogProof({ event, proof, publicKey, origin: "example.com/other" }), /origin/);
    await assert.rejects(verifyTlogProof({ event, proof: proof.replace(/index (\d+)/, (_, n) => `index ${Number(n) + 1}`), publicKey }), /index/);
  });
});
