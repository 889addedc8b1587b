// RFC 8785 (JCS) canonical JSON and the leaf hash of CONTRACT §4, runtime-neutral (Web Crypto).
//
// JCS is defined in terms of ECMAScript itself, which is what makes it small here:
// - numbers are printed as `Number.prototype.toString` prints them, which is what
//   `JSON.stringify` does for every finite number (and `-0` becomes `0`, as JCS wants);
// - strings are escaped as `JSON.stringify` escapes them (`\"`, `\\`, `\b\t\n\f\r`, other
//   controls as lowercase `\u00xx`, everything else as is), except that JCS rejects lone
//   surrogates, which `JSON.stringify` would write as `\udxxx` escapes;
// - object members are sorted by their names as arrays of UTF-16 code units, which is exactly
//   the default `Array.prototype.sort` order on strings (not `localeCompare`).

/** The RFC 8785 serialization of a JSON value. Throws on values JSON cannot carry. */
export function canonicalize(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`JCS cannot represent the number ${value}`);
      return JSON.stringify(value);
    case "string":
      if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(value)) {
        throw new TypeError("JCS cannot represent a string with a lone surrogate");
      }
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return "[" + value.map(canonicalize).join(",") + "]";
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return "{" + keys.map((k) => canonicalize(k) + ":" + canonicalize(obj[k])).join(",") + "}";
    }
    default:
      throw new TypeError(`JCS cannot represent a value of type ${typeof value}`);
  }
}

export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(hex: string): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(hex)) throw new TypeError(`not a hex string: ${hex.slice(0, 16)}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// TypeScript's DOM typings want ArrayBuffer-backed views; ours always are (never shared memory).
export function bufferSource(data: Uint8Array): BufferSource {
  return data as unknown as BufferSource;
}

export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bufferSource(data)));
}

/** The canonical bytes of a stored event: its JCS form without `seq` and `leaf_hash`. */
export function canonicalEventBytes(event: Record<string, unknown>): Uint8Array {
  const { seq: _seq, leaf_hash: _leafHash, ...rest } = event;
  return new TextEncoder().encode(canonicalize(rest));
}

/** `SHA-256(0x00 || canonical(event))` in lowercase hex (RFC 6962 leaf hash, CONTRACT §4). */
export async function leafHash(event: Record<string, unknown>): Promise<string> {
  const body = canonicalEventBytes(event);
  const input = new Uint8Array(body.length + 1);
  input[0] = 0x00;
  input.set(body, 1);
  return toHex(await sha256(input));
}
