// Client-side UUIDv7 (RFC 9562 §5.7) event ids.
//
// The SDK names every event itself, before the first attempt, so that a retry after a lost
// response carries the same id and the server acknowledges it as a duplicate instead of
// storing it twice. UUIDv7 keeps ids roughly time-ordered, as the server's own ids are.

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

// `crypto.getRandomValues` costs a fixed overhead per call; drawing 4 KiB at a time keeps
// `log()` well under its microsecond budget.
const POOL_SIZE = 4096;
let pool = new Uint8Array(0);
let poolOffset = POOL_SIZE;

function randomBytes10(): Uint8Array {
  if (poolOffset + 10 > pool.length) {
    pool = new Uint8Array(POOL_SIZE);
    globalThis.crypto.getRandomValues(pool);
    poolOffset = 0;
  }
  const out = pool.subarray(poolOffset, poolOffset + 10);
  poolOffset += 10;
  return out;
}

let lastMs = 0;
let seq = 0;

/** A new UUIDv7: 48-bit Unix milliseconds, then a 12-bit counter within the millisecond, then random bits. */
export function uuidv7(): string {
  let ms = Date.now();
  // The counter (rand_a, RFC 9562 method 1) keeps ids from one process strictly increasing
  // even within one millisecond or when the clock steps back a little.
  if (ms > lastMs) {
    lastMs = ms;
    seq = 0;
  } else {
    seq++;
    if (seq > 0xfff) {
      lastMs++;
      seq = 0;
    }
    ms = lastMs;
  }
  const r = randomBytes10();
  const hi = Math.floor(ms / 0x10000);
  const lo = ms % 0x10000;
  return (
    HEX[(hi >>> 24) & 0xff]! +
    HEX[(hi >>> 16) & 0xff]! +
    HEX[(hi >>> 8) & 0xff]! +
    HEX[hi & 0xff]! +
    "-" +
    HEX[(lo >>> 8) & 0xff]! +
    HEX[lo & 0xff]! +
    "-" +
    HEX[0x70 | (seq >>> 8)]! +
    HEX[seq & 0xff]! +
    "-" +
    HEX[0x80 | (r[0]! & 0x3f)]! +
    HEX[r[1]!]! +
    "-" +
    HEX[r[2]!]! +
    HEX[r[3]!]! +
    HEX[r[4]!]! +
    HEX[r[5]!]! +
    HEX[r[6]!]! +
    HEX[r[7]!]!
  );
}
