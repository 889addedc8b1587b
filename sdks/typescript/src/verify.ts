// `bitacora/verify`: CONTRACT §4 checked on the client, with Web Crypto only (runtime-neutral).
//
// What `verifyEvent` proves, step by step:
// 1. the event as served hashes (RFC 8785 canonical JSON minus `seq` and `leaf_hash`, then
//    SHA-256(0x00 || bytes)) to its own `leaf_hash` — else it was altered after it was logged;
// 2. a checkpoint (C2SP tlog-checkpoint in a signed note) carries a valid Ed25519 signature by a
//    key *you* pinned (the text of `GET /v1/log/public-key`, fetched once and kept in your
//    configuration — a key fetched at verification time would be whatever the server says);
// 3. the RFC 9162 inclusion proof leads from the recomputed leaf hash at index `seq` to that
//    checkpoint's root — so the event is in the one append-only log the server signed.

import type { Bitacora } from "./client.js";
import { BitacoraError } from "./errors.js";
import { bufferSource, fromHex, leafHash, sha256, toHex } from "./jcs.js";
import type { Event } from "./types.js";

export { canonicalize, leafHash } from "./jcs.js";

/** A parsed signed-note verifier key: `<name>+<8 hex key id>+<base64(0x01 || 32-byte Ed25519 key)>`. */
export interface VerifierKey {
  name: string;
  keyId: Uint8Array;
  publicKey: Uint8Array;
}

/** A checkpoint whose signature verified. */
export interface Checkpoint {
  origin: string;
  treeSize: number;
  rootHash: Uint8Array;
  /** Extension lines after the root, if any. */
  extensions: string[];
  /** Names of the pinned keys whose signatures verified. */
  signedBy: string[];
}

export interface VerifiedEvent {
  event: Event;
  leafHash: string;
  checkpoint: Checkpoint;
}

export interface VerifyEventOptions {
  /** The tenant the event is in (default: the client's). */
  tenant?: string;
  /** The exact checkpoint origin to expect. Default: any origin ending in `/<tenant>`
   * (`bitacora/<tenant>`, or `<integrity.origin_prefix>/<tenant>`). */
  origin?: string;
  /** How long to wait for a checkpoint that covers a just-logged event, in ms (the server signs
   * at least once a second while its log grows). Default 5000. */
  timeout?: number;
}

function fail(message: string): never {
  throw new BitacoraError("verification_failed", message);
}

function base64ToBytes(text: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new TypeError("not standard padded base64");
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesToBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

const encoder = new TextEncoder();

/** Parses one verifier key and checks that its key id matches its name and public key. */
export async function parseVerifierKey(text: string): Promise<VerifierKey> {
  // Split at the first two `+` only: the base64 key may itself contain `+`.
  const m = /^([^+]*)\+([^+]*)\+(.*)$/s.exec(text.trim());
  if (m === null) fail("verifier key: expected <name>+<key id>+<key>");
  const [, name, idHex, keyB64] = m as unknown as [string, string, string, string];
  if (name === "" || /[\s+]/.test(name)) fail("verifier key: bad name");
  if (!/^[0-9a-f]{8}$/.test(idHex)) fail("verifier key: the key id must be 8 lowercase hex digits");
  let key: Uint8Array;
  try {
    key = base64ToBytes(keyB64);
  } catch {
    return fail("verifier key: the key is not base64");
  }
  if (key.length !== 33 || key[0] !== 0x01) fail("verifier key: not an Ed25519 (type 0x01) key");
  const publicKey = key.subarray(1);
  const nameBytes = encoder.encode(name);
  const preimage = new Uint8Array(nameBytes.length + 1 + key.length);
  preimage.set(nameBytes, 0);
  preimage[nameBytes.length] = 0x0a;
  preimage.set(key, nameBytes.length + 1);
  const keyId = (await sha256(preimage)).subarray(0, 4);
  if (toHex(keyId) !== idHex) fail("verifier key: the key id does not match the name and key");
  return { name, keyId, publicKey };
}

/** Parses every non-empty line of a `GET /v1/log/public-key` text (current key, then retired ones). */
export async function parseVerifierKeys(text: string | readonly string[]): Promise<VerifierKey[]> {
  const lines = (typeof text === "string" ? text.split("\n") : text.flatMap((t) => t.split("\n")))
    .map((l) => l.trim())
    .filter((l) => l !== "");
  if (lines.length === 0) fail("no verifier key given");
  return Promise.all(lines.map(parseVerifierKey));
}

/** The signed-note key id of an Ed25519 key under `name`. */
async function keyIdOf(name: string, publicKey: Uint8Array): Promise<Uint8Array> {
  const nameBytes = encoder.encode(name);
  const preimage = new Uint8Array(nameBytes.length + 2 + publicKey.length);
  preimage.set(nameBytes, 0);
  preimage[nameBytes.length] = 0x0a;
  preimage[nameBytes.length + 1] = 0x01;
  preimage.set(publicKey, nameBytes.length + 2);
  return (await sha256(preimage)).subarray(0, 4);
}

/**
 * The verifier key of the log `origin`: the server's key (as `GET /v1/log/public-key` serves it)
 * named by the origin, as `GET /v1/log` lists it (`verifier_key`) and as C2SP witnesses and
 * tlog-policy files name a log.
 */
export async function verifierKeyFor(key: string | VerifierKey, origin: string): Promise<VerifierKey> {
  const parsed = typeof key === "string" ? await parseVerifierKey(key) : key;
  return { name: origin, keyId: await keyIdOf(origin, parsed.publicKey), publicKey: parsed.publicKey };
}

/** Formats a verifier key as `<name>+<key id hex>+<base64(0x01 || key)>`. */
export function formatVerifierKey(key: VerifierKey): string {
  const typed = new Uint8Array(33);
  typed[0] = 0x01;
  typed.set(key.publicKey, 1);
  return `${key.name}+${toHex(key.keyId)}+${bytesToBase64(typed)}`;
}

/**
 * Opens a signed checkpoint: at least one signature line by a pinned key must verify over the
 * note's text (lines by unknown keys are ignored, as signed-note says); then the body is parsed.
 *
 * Each log's checkpoints are signed under the log's origin as key name (the C2SP convention;
 * `GET /v1/log` gives the log's `verifier_key`). A pinned key counts under its own name and under
 * the checkpoint's origin, so the key of `/v1/log/public-key` checks every log, and checkpoints
 * signed under its name before still verify. The origin is inside the signed text: check it
 * (the verifiers below do) to insist on one log.
 */
export async function verifyCheckpoint(note: string, keys: string | readonly string[] | readonly VerifierKey[]): Promise<Checkpoint> {
  const pinned: VerifierKey[] =
    typeof keys === "string" || (keys.length > 0 && typeof keys[0] === "string")
      ? await parseVerifierKeys(keys as string | readonly string[])
      : (keys as VerifierKey[]);
  const split = note.lastIndexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) fail("checkpoint: not a signed note");
  const text = note.slice(0, split + 1);
  const signedOrigin = text.slice(0, text.indexOf("\n"));
  const verifiers: VerifierKey[] = [...pinned];
  if (signedOrigin !== "" && !/[\s+]/.test(signedOrigin)) {
    for (const k of pinned) {
      const named = await verifierKeyFor(k, signedOrigin);
      if (!verifiers.some((v) => v.name === named.name && bytesEqual(v.keyId, named.keyId))) verifiers.push(named);
    }
  }
  const sigLines = note.slice(split + 2, -1).split("\n");
  const textBytes = encoder.encode(text);
  const signedBy: string[] = [];
  for (const line of sigLines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (m === null) fail("checkpoint: malformed signature line");
    let sig: Uint8Array;
    try {
      sig = base64ToBytes(m[2]!);
    } catch {
      return fail("checkpoint: signature is not base64");
    }
    if (sig.length < 5) fail("checkpoint: signature too short");
    for (const v of verifiers) {
      if (v.name !== m[1] || !bytesEqual(v.keyId, sig.subarray(0, 4))) continue;
      if (sig.length !== 68) fail("checkpoint: an Ed25519 signature is 64 bytes");
      const key = await globalThis.crypto.subtle.importKey("raw", bufferSource(v.publicKey), { name: "Ed25519" }, false, ["verify"]);
      if (!(await globalThis.crypto.subtle.verify({ name: "Ed25519" }, key, bufferSource(sig.subarray(4)), bufferSource(textBytes)))) {
        fail(`checkpoint: the signature by ${v.name} does not verify`);
      }
      signedBy.push(v.name);
    }
  }
  if (signedBy.length === 0) fail("checkpoint: not signed by any pinned key");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) fail("checkpoint: expected origin, tree size and root hash lines");
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) fail("checkpoint: bad tree size");
  let rootHash: Uint8Array;
  try {
    rootHash = base64ToBytes(rootText);
  } catch {
    return fail("checkpoint: root hash is not base64");
  }
  if (rootHash.length !== 32) fail("checkpoint: root hash is not 32 bytes");
  return { origin, treeSize: Number(sizeText), rootHash, extensions, signedBy };
}

async function nodeHash(left: Uint8Array, right: Uint8Array): Promise<Uint8Array> {
  const buf = new Uint8Array(65);
  buf[0] = 0x01;
  buf.set(left, 1);
  buf.set(right, 33);
  return sha256(buf);
}

/**
 * RFC 9162 §2.1.3.2: does `proof` lead from leaf hash `leaf` at `index` to `root` in a tree of
 * `size` leaves? (Plain division rather than bit operators: JS bit operators are 32-bit.)
 */
export async function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): Promise<boolean> {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (p.length !== 32 || sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(r, root);
}

/**
 * Verifies an event offline, from material you already hold (a bundle line, an archived
 * copy): the leaf hash, the checkpoint signature by a pinned key, and the inclusion proof.
 * Throws `BitacoraError` with code `verification_failed` naming the first check that failed.
 */
export async function verifyEventProof(input: {
  event: Event;
  proof: readonly string[];
  checkpoint: string;
  publicKey: string | readonly string[];
  origin?: string;
}): Promise<VerifiedEvent> {
  const { event } = input;
  const recomputed = await leafHash(event as unknown as Record<string, unknown>);
  if (event.leaf_hash == null || recomputed !== event.leaf_hash) {
    fail(`event ${event.id}: its content hashes to ${recomputed}, not to its leaf_hash ${String(event.leaf_hash)}: altered`);
  }
  if (event.seq == null) fail(`event ${event.id}: no seq`);
  const checkpoint = await verifyCheckpoint(input.checkpoint, input.publicKey);
  const expected = input.origin;
  if (expected !== undefined ? checkpoint.origin !== expected : !checkpoint.origin.endsWith(`/${event.tenant}`)) {
    fail(`checkpoint origin ${checkpoint.origin} is not the log of tenant ${event.tenant}`);
  }
  let proof: Uint8Array[];
  try {
    proof = input.proof.map(fromHex);
  } catch {
    return fail("inclusion proof: not hex");
  }
  if (!(await verifyInclusion(fromHex(recomputed), Number(event.seq), checkpoint.treeSize, proof, checkpoint.rootHash))) {
    fail(`event ${event.id}: the inclusion proof does not lead to the signed root of tree size ${checkpoint.treeSize}`);
  }
  return { event, leafHash: recomputed, checkpoint };
}

/**
 * Fetches event `eventId` through `client` and proves it (see the module comment): leaf hash,
 * a checkpoint signed by `publicKey` (pinned), inclusion proof. Resolves with the verified event,
 * or rejects with `BitacoraError` code `verification_failed` (or the server's error). Needs `read` scope.
 */
export async function verifyEvent(
  client: Bitacora,
  eventId: string,
  publicKey: string | readonly string[],
  options: VerifyEventOptions = {},
): Promise<VerifiedEvent> {
  const keys = await parseVerifierKeys(publicKey);
  const event = await client.getEvent(eventId, options.tenant);
  if (event.seq == null) fail(`event ${eventId}: the server returned no seq`);
  const seq = Number(event.seq);
  const tenant = options.tenant ?? event.tenant;
  const deadline = Date.now() + (options.timeout ?? 5000);
  // A just-logged event may be newer than the latest checkpoint; wait for one that covers it.
  let note!: string;
  let checkpoint!: Checkpoint;
  for (;;) {
    let latest: number | undefined;
    try {
      note = await client.checkpoint(tenant);
      checkpoint = await verifyCheckpoint(note, keys);
      if (checkpoint.treeSize > seq) break;
      latest = checkpoint.treeSize;
    } catch (err) {
      // A log whose first events are not signed yet has no checkpoint at all (404 no_checkpoint).
      if (!(err instanceof BitacoraError && err.code === "no_checkpoint")) throw err;
    }
    if (Date.now() >= deadline) {
      fail(`no signed checkpoint covers seq ${seq} yet (latest: ${latest === undefined ? "none" : `tree size ${latest}`})`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const proof = await client.inclusionProof(seq, checkpoint.treeSize, tenant);
  if (Number(proof.tree_size) !== checkpoint.treeSize || Number(proof.leaf_index) !== seq) {
    fail("inclusion proof: the server answered for another leaf or tree size");
  }
  return verifyEventProof({
    event,
    proof: proof.hashes,
    checkpoint: note,
    publicKey,
    ...(options.origin !== undefined ? { origin: options.origin } : {}),
  });
}

/**
 * Checks one event's C2SP `tlog-proof@v1` (the text of `GET /v1/events/{id}/proof`) offline:
 * the proof's checkpoint must be signed by a pinned key and be the log of the event's tenant
 * (or `origin`), and its inclusion proof must lead from the event's recomputed leaf hash at the
 * proof's index (which must be the event's `seq`) to the signed root. Cosignatures are ignored.
 */
export async function verifyTlogProof(input: {
  event: Event;
  proof: string;
  publicKey: string | readonly string[];
  origin?: string;
}): Promise<VerifiedEvent> {
  const lines = input.proof.split("\n");
  if (lines[0] !== "c2sp.org/tlog-proof@v1") fail("tlog-proof: the first line is not c2sp.org/tlog-proof@v1");
  let i = 1;
  if (lines[i]?.startsWith("extra ")) i++;
  const index = /^index (0|[1-9][0-9]*)$/.exec(lines[i] ?? "");
  if (index === null || !Number.isSafeInteger(Number(index[1]))) fail("tlog-proof: no valid index line");
  i++;
  const hashes: string[] = [];
  for (; i < lines.length && lines[i] !== ""; i++) {
    let bytes: Uint8Array;
    try {
      bytes = base64ToBytes(lines[i]!);
    } catch {
      return fail("tlog-proof: a proof line is not base64");
    }
    if (bytes.length !== 32) fail("tlog-proof: a proof hash is not 32 bytes");
    hashes.push(toHex(bytes));
  }
  if (i >= lines.length - 1) fail("tlog-proof: no checkpoint after the proof");
  if (input.event.seq == null || Number(input.event.seq) !== Number(index[1])) {
    fail(`tlog-proof: the proof is for index ${index[1]}, the event has seq ${String(input.event.seq)}`);
  }
  return verifyEventProof({
    event: input.event,
    proof: hashes,
    checkpoint: lines.slice(i + 1).join("\n"),
    publicKey: input.publicKey,
    ...(input.origin !== undefined ? { origin: input.origin } : {}),
  });
}
