// Client addresses behind proxies, for the Node middleware.
//
// `X-Forwarded-For` is a list each proxy appends the address it received from to; only the
// entries added by proxies you run can be believed. So the walk starts at the connection's own
// address and moves left through the header only while the current hop is a trusted proxy; the
// first untrusted address is the client. The left-most entry, which anyone can write, is used
// only when every hop up to it is trusted (django-auditlog's spoofable-IP issue is the lesson).

import { isIP } from "node:net";

interface Cidr {
  v6: boolean;
  bytes: Uint8Array;
  prefix: number;
}

/** Compiled trusted-proxy list: addresses (`10.0.0.1`, `::1`) or CIDR blocks (`10.0.0.0/8`). */
export class ProxyMatcher {
  private readonly blocks: Cidr[];

  constructor(entries: readonly string[] = []) {
    this.blocks = entries.map((entry) => {
      const [addr = "", prefixText] = entry.trim().split("/");
      const bytes = parseIp(addr);
      if (bytes === undefined) throw new TypeError(`trustedProxies: \`${entry}\` is not an IP address or CIDR block`);
      const max = bytes.length * 8;
      const prefix = prefixText === undefined ? max : Number(prefixText);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) {
        throw new TypeError(`trustedProxies: \`${entry}\` has a bad prefix length`);
      }
      return { v6: bytes.length === 16, bytes, prefix };
    });
  }

  get empty(): boolean {
    return this.blocks.length === 0;
  }

  matches(address: string): boolean {
    const bytes = parseIp(address);
    if (bytes === undefined) return false;
    return this.blocks.some((b) => b.bytes.length === bytes.length && prefixEqual(b.bytes, bytes, b.prefix));
  }
}

function prefixEqual(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  let i = 0;
  for (; bits >= 8; bits -= 8, i++) if (a[i] !== b[i]) return false;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (a[i]! & mask) === (b[i]! & mask);
}

/** `::ffff:1.2.3.4` (how a dual-stack socket reports IPv4 peers) becomes `1.2.3.4`. */
export function normalizeIp(address: string): string {
  const a = address.trim();
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return m ? m[1]! : a;
}

function parseIp(text: string): Uint8Array | undefined {
  const a = normalizeIp(text);
  const kind = isIP(a);
  if (kind === 4) return Uint8Array.from(a.split(".").map(Number));
  if (kind !== 6) return undefined;
  // Expand `::` and an embedded IPv4 tail into eight 16-bit groups.
  let head = a.replace(/%.*$/, "");
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(head);
  if (v4) {
    const p = v4[1]!.split(".").map(Number);
    head = head.slice(0, -v4[1]!.length) + ((p[0]! << 8) | p[1]!).toString(16) + ":" + ((p[2]! << 8) | p[3]!).toString(16);
  }
  const [left = "", right] = head.split("::");
  const l = left === "" ? [] : left.split(":");
  const r = right === undefined || right === "" ? [] : right.split(":");
  const groups = right === undefined ? l : [...l, ...Array<string>(8 - l.length - r.length).fill("0"), ...r];
  if (groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

/**
 * The client's address: the socket peer, or — when the peer is a trusted proxy — the right-most
 * `X-Forwarded-For` entry that is not a trusted proxy.
 */
export function clientIp(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: ProxyMatcher,
): string | undefined {
  if (peer === undefined || peer === "") return undefined;
  let current = normalizeIp(peer);
  if (trusted.empty || forwardedFor === undefined) return current;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor)
    .split(",")
    .map((h) => h.trim())
    .filter((h) => h !== "");
  while (trusted.matches(current) && hops.length > 0) {
    const next = normalizeIp(hops.pop()!);
    // A malformed entry ends the walk: believe the last trusted hop's peer, never garbage.
    if (isIP(next) === 0) break;
    current = next;
  }
  return current;
}

/** First value of a header that may arrive repeated. */
export function header(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  return v === undefined || v === "" ? undefined : v;
}
