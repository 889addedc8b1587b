// The client: a never-failing `log()` in front of a bounded queue and one background sender,
// and a strict `send()` beside it (CONTRACT §8).
//
// The shape follows OpenTelemetry's BatchSpanProcessor (queue 10,000, batches of 500, a
// 1 s schedule; `forceFlush`/`shutdown` with timeouts) and the delivery rules of the Python
// SDK: retry network errors, 408, 429 and 5xx with exponential backoff and full jitter,
// honouring `Retry-After`; never retry another 4xx; reuse the event id on every retry so that
// a retry after a lost response is acknowledged as a duplicate, never stored twice.
//
// This module is runtime-neutral: it uses only `fetch`, `setTimeout`, Web Crypto and
// `TextEncoder`, and reaches Node's `process` (for the exit flush and the environment) only
// through `globalThis`, when it exists.

import { BitacoraError, isRetryableStatus } from "./errors.js";
import { currentContext } from "./hooks.js";
import { uuidv7 } from "./ids.js";
import { leafHash } from "./jcs.js";
import type { Ack, Actor, Change, Event, EventInput, InclusionProof, Severity, Target } from "./types.js";

export interface BitacoraOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8480`. Default: `BITACORA_URL`, else `http://127.0.0.1:8480`. */
  url?: string;
  /** An `ingest` (or `admin`) API key. Default: `BITACORA_API_KEY`. `send({verify: true})` and
   * `verifyEvent` also read events back, which needs `read` scope. */
  apiKey?: string;
  /** Tenant for events that name none (a tenant-pinned key needs none). */
  tenant?: string;
  /** Most events waiting to be sent; beyond it the newest is dropped, counted and reported. Default 10,000. */
  maxQueue?: number;
  /** Most events in one request. Default 500. */
  batchSize?: number;
  /** How long an event may wait for a batch to fill, in ms. Default 1000. */
  flushInterval?: number;
  /** Called for events given up on: rejected by the server (a 4xx, or a per-event error in a
   * batch response), dropped from a full queue, or still unsent when `shutdown()` timed out.
   * Default: a rate-limited `console.warn`. Whatever it throws is swallowed. */
  onError?: (error: BitacoraError, events: EventInput[]) => void;
  /** For serverless platforms that freeze or kill the process once the response is sent
   * (Vercel's `waitUntil`, Netlify's `context.waitUntil`): the client hands it a promise that
   * settles when the queue is drained, and sends at once instead of waiting `flushInterval`. */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** Timeout of one HTTP request, in ms. Default 10,000. */
  requestTimeout?: number;
  /** First retry delay bound, in ms (doubled each attempt, full jitter). Default 200. */
  initialRetryDelay?: number;
  /** Largest retry delay, in ms; a longer `Retry-After` is honoured up to 60 s. Default 5000. */
  maxRetryDelay?: number;
  /** Attempts of `send()` on retryable failures before it rejects. Default 3. */
  sendAttempts?: number;
  /** On Node, a best-effort flush of this many ms when the event loop empties (`beforeExit`);
   * 0 disables it. Default 2000. */
  exitFlushTimeout?: number;
  /** The `fetch` to use (tests, proxies, instrumented clients). Default: the global one. */
  fetch?: typeof globalThis.fetch;
}

export interface Stats {
  /** Accepted by `log()` and not yet acknowledged or given up on (waiting or in flight). */
  queued: number;
  /** Acknowledged by the server (duplicates included: the event is stored). */
  sent: number;
  /** Refused by `log()`: the queue was full or the client shut down. */
  dropped: number;
  /** Given up on after being accepted: rejected by the server, or unsent at shutdown. */
  failed: number;
}

export interface SendOptions {
  /** Read the stored event back and recompute its leaf hash (RFC 8785 + SHA-256); reject with
   * `verification_failed` when it differs from the acknowledged one. Needs `read` scope. */
  verify?: boolean;
}

/** One record of a bulk operation: its target and what changed on it. */
export interface BulkItem {
  target: Target;
  changes?: Change[];
  description?: string;
  metadata?: Record<string, unknown>;
}

/** A bulk operation (seed 004's "operación masiva"): the common event fields, the records, and the summary. */
export interface BulkInput extends Omit<EventInput, "id" | "target" | "changes" | "metadata"> {
  items: BulkItem[];
  /** Metadata shared by every event of the operation. */
  metadata?: Record<string, unknown>;
  /** The summary event: its description, target (default `{type: "bulk_operation", id: <its id>}`),
   * extra metadata, and action or severity when they differ from the records'. */
  summary?: {
    action?: string;
    severity?: Severity;
    description?: string;
    target?: Target;
    metadata?: Record<string, unknown>;
  };
}

export interface BulkResult {
  /** The ids of the per-record events, in the order of `items`. */
  ids: string[];
  /** The id of the summary event; every per-record event carries it as `metadata.bulk_id`. */
  summaryId: string;
}

/** An event waiting in the queue. `groupSize` is set on the first event of a bulk group, which
 * the sender never splits across batches. */
interface Queued {
  event: EventInput;
  json: string;
  groupSize: number;
}

const VERSION = "0.1.0";
const MAX_RETRY_AFTER_MS = 60_000;
const WARN_INTERVAL_MS = 10_000;

type Env = Record<string, string | undefined>;
function env(): Env {
  const proc = (globalThis as { process?: { env?: Env } }).process;
  return proc?.env ?? {};
}

function unref(timer: unknown): void {
  // Node and Bun timers have `unref()`: a client must never keep a process alive by itself.
  (timer as { unref?: () => void } | undefined)?.unref?.();
}

/** The bitacora client. One per process is the intended use; it is cheap to keep around. */
export class Bitacora {
  readonly url: string;
  readonly tenant: string | undefined;
  private readonly apiKey: string | undefined;
  private readonly maxQueue: number;
  private readonly batchSize: number;
  private readonly flushInterval: number;
  private readonly onErrorCallback: ((error: BitacoraError, events: EventInput[]) => void) | undefined;
  private readonly waitUntil: ((promise: Promise<unknown>) => void) | undefined;
  private readonly requestTimeout: number;
  private readonly initialRetryDelay: number;
  private readonly maxRetryDelay: number;
  private readonly sendAttempts: number;
  private readonly fetchImpl: typeof globalThis.fetch;

  // The queue is an array consumed from `head`, compacted now and then, so that taking a
  // batch is O(batch) rather than the O(queue) of `Array.prototype.splice(0, n)`.
  private queue: Queued[] = [];
  private head = 0;
  private pendingInQueue = 0;
  private inFlight = 0;

  private enqueued = 0; // events ever accepted
  private settled = 0; // accepted events acknowledged or given up on (a prefix, in order)
  private sentCount = 0;
  private droppedCount = 0;
  private failedCount = 0;

  private running = false;
  private startScheduled = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private abandoned = false;
  private wakeSleep: (() => void) | undefined;
  private waiters: Array<{ target: number; resolve: (done: boolean) => void }> = [];
  private waitUntilPending = false;
  private exitListener: (() => void) | undefined;
  private lastWarn = 0;
  private suppressedWarnings = 0;

  constructor(options: BitacoraOptions = {}) {
    const e = env();
    this.url = (options.url ?? e["BITACORA_URL"] ?? "http://127.0.0.1:8480").replace(/\/+$/, "");
    this.apiKey = options.apiKey ?? e["BITACORA_API_KEY"];
    this.tenant = options.tenant;
    this.maxQueue = positive(options.maxQueue, 10_000);
    this.batchSize = Math.min(positive(options.batchSize, 500), 10_000);
    this.flushInterval = nonNegative(options.flushInterval, 1000);
    this.onErrorCallback = options.onError;
    this.waitUntil = options.waitUntil;
    this.requestTimeout = positive(options.requestTimeout, 10_000);
    this.initialRetryDelay = positive(options.initialRetryDelay, 200);
    this.maxRetryDelay = positive(options.maxRetryDelay, 5000);
    this.sendAttempts = positive(options.sendAttempts, 3);
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new TypeError("bitacora needs a global fetch (Node >= 20) or options.fetch");
    this.fetchImpl = f;

    const exitFlush = nonNegative(options.exitFlushTimeout, 2000);
    const proc = (globalThis as { process?: { once?: Function; removeListener?: Function } }).process;
    if (exitFlush > 0 && typeof proc?.once === "function") {
      // `beforeExit` fires when Node's event loop has nothing left to do — which, since the
      // sender's timers are unref'd, includes "only queued audit events are left". Once per
      // client, a short flush then; a hard exit (`process.exit`, a signal) skips it.
      this.exitListener = () => {
        this.exitListener = undefined;
        if (this.enqueued > this.settled && !this.closed) void this.shutdown(exitFlush);
      };
      proc.once("beforeExit", this.exitListener);
    }
  }

  /**
   * Queues an event and returns its id at once. Never throws, never blocks on the network,
   * never rejects: an event that cannot be queued (full queue, not serializable, client shut
   * down) is counted in `stats()` and reported to `onError`, and its id is returned all the same.
   */
  log(event: EventInput): string {
    let prepared: EventInput;
    try {
      prepared = this.prepare(event);
    } catch (err) {
      return this.reportUnqueueable(event, err);
    }
    const id = prepared.id as string;
    let json: string;
    try {
      // Serialized now, not when sent: the caller may go on mutating the objects it passed,
      // and a value JSON cannot carry (a BigInt, a cycle) is reported here, not in the sender.
      json = JSON.stringify(prepared);
    } catch (err) {
      this.failedCount++;
      this.report(new BitacoraError("invalid_event", `event is not JSON-serializable: ${String(err)}`, { cause: err }), [prepared]);
      return id;
    }
    this.enqueue([{ event: prepared, json, groupSize: 1 }]);
    return id;
  }

  /**
   * Logs one event per affected record plus a summary event naming them all, queued together
   * so that they travel in one batch (seed 004's bulk role change). Never throws.
   */
  logBulk(input: BulkInput): BulkResult {
    const summaryId = uuidv7();
    const ids: string[] = [];
    const items: Queued[] = [];
    const { items: records, summary, metadata, ...common } = input;
    try {
      const occurredAt = common.occurred_at ?? new Date().toISOString();
      for (const record of records) {
        const ev = this.prepare({
          ...common,
          occurred_at: occurredAt,
          target: record.target,
          ...(record.changes !== undefined ? { changes: record.changes } : {}),
          ...(record.description !== undefined ? { description: record.description } : {}),
          metadata: { ...metadata, ...record.metadata, bulk_id: summaryId },
        });
        ids.push(ev.id as string);
        items.push({ event: ev, json: JSON.stringify(ev), groupSize: 0 });
      }
      const summaryEvent = this.prepare({
        ...common,
        id: summaryId,
        occurred_at: occurredAt,
        action: summary?.action ?? common.action,
        ...(summary?.severity ?? common.severity ? { severity: summary?.severity ?? common.severity } : {}),
        target: summary?.target ?? { type: "bulk_operation", id: summaryId },
        ...(summary?.description ?? common.description ? { description: summary?.description ?? common.description } : {}),
        metadata: {
          ...metadata,
          ...summary?.metadata,
          bulk: {
            count: records.length,
            target_ids: records.map((r) => r.target.id ?? null),
            event_ids: ids,
          },
        },
      });
      items.push({ event: summaryEvent, json: JSON.stringify(summaryEvent), groupSize: 0 });
    } catch (err) {
      this.failedCount += records.length + 1;
      this.report(new BitacoraError("invalid_event", `bulk operation is not loggable: ${String(err)}`, { cause: err }), items.map((q) => q.event));
      while (ids.length < records.length) ids.push(uuidv7());
      return { ids, summaryId };
    }
    items[0]!.groupSize = items.length;
    this.enqueue(items);
    return { ids, summaryId };
  }

  /**
   * Sends one event and waits for the server's acknowledgement. Rejects with a
   * `BitacoraError` carrying the server's code, field, message and status; retries network
   * errors, 408, 429 and 5xx a few times first (with the same id, so never twice stored).
   */
  async send(event: EventInput, options: SendOptions = {}): Promise<Ack> {
    const prepared = this.prepare(event);
    const body = JSON.stringify(prepared);
    let attempt = 0;
    for (;;) {
      attempt++;
      const outcome = await this.post("/v1/events", body, "application/json");
      if (outcome.ok) {
        const ack = outcome.body as Ack;
        if (outcome.status !== 201 && outcome.status !== 200) {
          throw new BitacoraError("bad_response", `unexpected status ${outcome.status}`, { status: outcome.status });
        }
        if (options.verify) await this.verifyAck(ack, prepared.tenant ?? undefined);
        return ack;
      }
      const error = outcome.error;
      if (!error.retryable || attempt >= this.sendAttempts) throw error;
      // Not `this.sleep`: that one is the sender's, which `shutdown()` may cut short.
      await new Promise((r) => setTimeout(r, outcome.retryAfter ?? this.backoff(attempt)));
    }
  }

  /**
   * Resolves `true` once every event accepted before the call is acknowledged or given up on
   * (given up on counts as done: it went to `onError`), `false` if `timeoutMs` passes first.
   */
  flush(timeoutMs = 5000): Promise<boolean> {
    return this.waitFor(this.enqueued, timeoutMs);
  }

  /**
   * Stops accepting events, flushes for at most `timeoutMs`, and gives up on whatever is still
   * unsent then (reported to `onError` with code `shutdown`). Resolves `true` when nothing was lost.
   */
  async shutdown(timeoutMs = 2000): Promise<boolean> {
    this.closed = true;
    this.removeExitListener();
    const done = await this.flush(timeoutMs);
    if (!done) this.abandon();
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    return done;
  }

  /** Counters since the client was created. */
  stats(): Stats {
    return {
      queued: this.enqueued - this.settled,
      sent: this.sentCount,
      dropped: this.droppedCount,
      failed: this.failedCount,
    };
  }

  /** Reads one stored event (`GET /v1/events/{id}`; needs `read` scope). */
  async getEvent(id: string, tenant?: string): Promise<Event> {
    const t = tenant ?? this.tenant;
    const q = t === undefined ? "" : `?tenant=${encodeURIComponent(t)}`;
    return (await this.getJson(`/v1/events/${encodeURIComponent(id)}${q}`)) as Event;
  }

  /** The tenant's latest signed checkpoint, as served (`text/plain`). */
  async checkpoint(tenant?: string): Promise<string> {
    const t = tenant ?? this.tenant;
    const q = t === undefined ? "" : `?tenant=${encodeURIComponent(t)}`;
    return this.getText(`/v1/log/checkpoint${q}`);
  }

  /**
   * `GET /v1/events/{id}/proof`: the event's C2SP tlog-proof (text), to check offline with
   * `verifyTlogProof` from `bitacora/verify`. Rejects with code `no_checkpoint` until the event
   * is signed (within about a second).
   */
  async eventProof(id: string, tenant?: string): Promise<string> {
    const t = tenant ?? this.tenant;
    const q = t === undefined ? "" : `?tenant=${encodeURIComponent(t)}`;
    return this.getText(`/v1/events/${encodeURIComponent(id)}/proof${q}`);
  }

  /** The inclusion proof of leaf `seq` in the tree of `treeSize` leaves. */
  async inclusionProof(seq: number, treeSize: number, tenant?: string): Promise<InclusionProof> {
    const t = tenant ?? this.tenant;
    const q = `seq=${seq}&tree_size=${treeSize}` + (t === undefined ? "" : `&tenant=${encodeURIComponent(t)}`);
    return (await this.getJson(`/v1/log/proof/inclusion?${q}`)) as InclusionProof;
  }

  /** The server's checkpoint verifier keys (`GET /v1/log/public-key`), one per line. Fetch it
   * once and pin it in your configuration: a key fetched at verification time proves nothing. */
  async publicKey(): Promise<string> {
    return this.getText("/v1/log/public-key");
  }

  // ---- preparing events -------------------------------------------------------------------

  /** Names the event (id, time) and fills in the audit context, without touching the caller's object. */
  private prepare(input: EventInput): EventInput {
    if (input === null || typeof input !== "object") throw new TypeError("an event must be an object");
    const ev: EventInput = { ...input };
    if (ev.id == null) ev.id = uuidv7();
    // Fixed here so that every retry carries identical content: the server acknowledges an
    // identical re-send as a duplicate, but a different `occurred_at` would be a 409.
    if (ev.occurred_at == null) ev.occurred_at = new Date().toISOString();
    if (ev.tenant == null && this.tenant !== undefined) ev.tenant = this.tenant;
    const ctx = currentContext();
    if (ctx !== undefined) {
      if (ev.actor == null && ctx.actor != null) ev.actor = ctx.actor;
      if (ev.tenant == null && ctx.tenant != null) ev.tenant = ctx.tenant;
      const given = ev.context ?? undefined;
      const ip = given?.ip ?? ctx.ip;
      const userAgent = given?.user_agent ?? ctx.userAgent;
      const requestId = given?.request_id ?? ctx.requestId;
      const source = given?.source ?? ctx.source;
      if (ip != null || userAgent != null || requestId != null || source != null) {
        ev.context = {
          ...(ip != null ? { ip } : {}),
          ...(userAgent != null ? { user_agent: userAgent } : {}),
          ...(requestId != null ? { request_id: requestId } : {}),
          ...(source != null ? { source } : {}),
        };
      }
    }
    return ev;
  }

  private reportUnqueueable(event: unknown, err: unknown): string {
    const id =
      event !== null && typeof event === "object" && typeof (event as { id?: unknown }).id === "string"
        ? ((event as { id: string }).id)
        : uuidv7();
    this.failedCount++;
    this.report(new BitacoraError("invalid_event", `event cannot be logged: ${String(err)}`, { cause: err }), [
      event as EventInput,
    ]);
    return id;
  }

  // ---- the queue --------------------------------------------------------------------------

  private enqueue(items: Queued[]): void {
    if (this.closed) {
      this.droppedCount += items.length;
      this.report(new BitacoraError("closed", "the client is shut down; event dropped"), items.map((q) => q.event));
      return;
    }
    if (this.pendingInQueue + items.length > this.maxQueue) {
      // Drop the newest (these), as OpenTelemetry's processors do: what is queued is older
      // and already promised to the sender; counting and reporting make the loss visible.
      this.droppedCount += items.length;
      this.report(
        new BitacoraError("queue_full", `queue full (${this.maxQueue} events); event dropped`),
        items.map((q) => q.event),
      );
      return;
    }
    for (const q of items) this.queue.push(q);
    this.pendingInQueue += items.length;
    this.enqueued += items.length;
    if (this.waitUntil !== undefined) {
      this.registerWaitUntil();
    } else if (this.pendingInQueue >= this.batchSize) {
      this.startSoon();
    } else if (this.timer === undefined && !this.running) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.startSender();
      }, this.flushInterval);
      unref(this.timer);
    }
  }

  private registerWaitUntil(): void {
    this.startSoon();
    if (this.waitUntilPending) return;
    this.waitUntilPending = true;
    // One promise per drain: it settles when the queue is empty, covering events logged while it
    // was pending too, so the platform keeps the invocation alive until all of them are sent.
    const drained = this.waitFor(-1, this.requestTimeout * 2).then(() => {
      this.waitUntilPending = false;
    });
    try {
      this.waitUntil!(drained);
    } catch (err) {
      this.warn(`waitUntil threw: ${String(err)}`);
    }
  }

  /** Starts the sender after the caller's synchronous code, keeping batch building off `log()`. */
  private startSoon(): void {
    if (this.running || this.startScheduled) return;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.startScheduled = true;
    queueMicrotask(() => {
      this.startScheduled = false;
      this.startSender();
    });
  }

  private startSender(): void {
    if (this.running) return;
    this.running = true;
    this.drain()
      .catch((err: unknown) => this.warn(`bitacora sender failed unexpectedly: ${String(err)}`))
      .finally(() => {
        this.running = false;
        // Events queued while the last request was on its way get their own schedule.
        if (this.pendingInQueue > 0 && !this.abandoned) {
          if (this.pendingInQueue >= this.batchSize || this.waiters.length > 0 || this.closed) this.startSoon();
          else if (this.timer === undefined) {
            this.timer = setTimeout(() => {
              this.timer = undefined;
              this.startSender();
            }, this.flushInterval);
            unref(this.timer);
          }
        }
      });
  }

  private takeBatch(): Queued[] {
    const batch: Queued[] = [];
    while (this.head < this.queue.length) {
      const first = this.queue[this.head]!;
      const size = Math.max(first.groupSize, 1);
      // A bulk group travels whole; one larger than a batch goes alone.
      if (batch.length > 0 && batch.length + size > this.batchSize) break;
      for (let i = 0; i < size; i++) batch.push(this.queue[this.head++]!);
      if (batch.length >= this.batchSize) break;
    }
    this.pendingInQueue -= batch.length;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return batch;
  }

  private async drain(): Promise<void> {
    while (this.pendingInQueue > 0 && !this.abandoned) {
      const batch = this.takeBatch();
      this.inFlight = batch.length;
      try {
        await this.deliver(batch);
      } finally {
        this.inFlight = 0;
      }
    }
  }

  // ---- delivery ---------------------------------------------------------------------------

  private async deliver(batch: Queued[]): Promise<void> {
    const body = "[" + batch.map((q) => q.json).join(",") + "]";
    let attempt = 0;
    for (;;) {
      if (this.abandoned) {
        this.giveUp(batch, new BitacoraError("shutdown", "shutdown timed out before the event was delivered"));
        return;
      }
      attempt++;
      const outcome = await this.post("/v1/events/batch", body, "application/json");
      if (outcome.ok) {
        if (this.handleBatchResults(batch, outcome.body)) return;
        // A 200 we cannot read: the events may or may not be stored. Re-sending is safe
        // (same ids: duplicates are acknowledged, never stored twice), so retry.
      } else {
        const error = outcome.error;
        if (error.status === 413 && batch.length > 1) {
          // Over the server's request limit: halve until it fits (order is kept).
          const mid = Math.ceil(batch.length / 2);
          await this.deliver(batch.slice(0, mid));
          await this.deliver(batch.slice(mid));
          return;
        }
        if (!error.retryable) {
          this.giveUp(batch, error);
          return;
        }
        if (outcome.retryAfter !== undefined) {
          await this.sleep(outcome.retryAfter);
          continue;
        }
      }
      await this.sleep(this.backoff(attempt));
    }
  }

  /** Settles a batch from a `200 {"results": [...]}`; false when the body is not that. */
  private handleBatchResults(batch: Queued[], body: unknown): boolean {
    const results = (body as { results?: unknown } | null)?.results;
    if (!Array.isArray(results) || results.length !== batch.length) return false;
    let sent = 0;
    for (let i = 0; i < batch.length; i++) {
      const r = results[i] as { seq?: unknown; error?: { code?: string; message?: string; field?: string } };
      if (r !== null && typeof r === "object" && r.error !== undefined) {
        this.failedCount++;
        this.report(
          new BitacoraError(r.error.code ?? "rejected", r.error.message ?? "event rejected", {
            field: r.error.field,
            status: 200,
          }),
          [batch[i]!.event],
        );
      } else {
        sent++;
      }
    }
    this.sentCount += sent;
    this.settle(batch.length);
    return true;
  }

  private giveUp(batch: Queued[], error: BitacoraError): void {
    this.failedCount += batch.length;
    this.report(error, batch.map((q) => q.event));
    this.settle(batch.length);
  }

  private settle(n: number): void {
    this.settled += n;
    if (this.waiters.length === 0) return;
    const pending = this.enqueued - this.settled;
    this.waiters = this.waiters.filter((w) => {
      const done = w.target < 0 ? pending === 0 : this.settled >= w.target;
      if (done) w.resolve(true);
      return !done;
    });
  }

  /** Resolves when `settled` reaches `target` (or, for -1, when nothing is pending), or false on timeout. */
  private waitFor(target: number, timeoutMs: number): Promise<boolean> {
    if (target < 0 ? this.enqueued === this.settled : this.settled >= target) return Promise.resolve(true);
    this.startSoon();
    return new Promise<boolean>((resolve) => {
      // Deliberately not unref'd: whoever awaits a flush wants the process to live that long.
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      const waiter = {
        target,
        resolve: (done: boolean) => {
          clearTimeout(timer);
          resolve(done);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** After a timed-out shutdown: everything still queued is reported and counted as failed. */
  private abandon(): void {
    this.abandoned = true;
    this.wakeSleep?.();
    const rest = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    this.pendingInQueue = 0;
    if (rest.length > 0) {
      this.giveUp(rest, new BitacoraError("shutdown", "shutdown timed out before the event was delivered"));
    }
    // The batch in flight, if any, settles when its request ends (delivered or given up).
  }

  private removeExitListener(): void {
    const proc = (globalThis as { process?: { removeListener?: Function } }).process;
    if (this.exitListener !== undefined && typeof proc?.removeListener === "function") {
      proc.removeListener("beforeExit", this.exitListener);
    }
    this.exitListener = undefined;
  }

  /** Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^(attempt-1))]. */
  private backoff(attempt: number): number {
    const ceiling = Math.min(this.maxRetryDelay, this.initialRetryDelay * 2 ** Math.min(attempt - 1, 30));
    return Math.random() * ceiling;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      unref(timer);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        if (self.wakeSleep === done) self.wakeSleep = undefined;
        resolve();
      }
      this.wakeSleep = done;
    });
  }

  // ---- HTTP -------------------------------------------------------------------------------

  private headers(contentType?: string): Record<string, string> {
    const h: Record<string, string> = { accept: "application/json", "user-agent": `bitacora-node/${VERSION}` };
    if (contentType !== undefined) h["content-type"] = contentType;
    if (this.apiKey !== undefined) h["authorization"] = `Bearer ${this.apiKey}`;
    return h;
  }

  private async post(
    path: string,
    body: string,
    contentType: string,
  ): Promise<
    | { ok: true; status: number; body: unknown }
    | { ok: false; error: BitacoraError; retryAfter: number | undefined }
  > {
    let res: Response;
    try {
      res = await this.fetchImpl(this.url + path, {
        method: "POST",
        headers: this.headers(contentType),
        body,
        signal: AbortSignal.timeout(this.requestTimeout),
      });
    } catch (err) {
      const timeout = (err as { name?: string } | null)?.name === "TimeoutError";
      return {
        ok: false,
        error: new BitacoraError(timeout ? "timeout" : "network_error", `${timeout ? "request timed out" : "network error"}: ${describe(err)}`, {
          retryable: true,
          cause: err,
        }),
        retryAfter: undefined,
      };
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      return {
        ok: false,
        error: new BitacoraError("network_error", `network error reading the response: ${describe(err)}`, { retryable: true, cause: err }),
        retryAfter: undefined,
      };
    }
    if (res.status >= 200 && res.status < 300) {
      try {
        return { ok: true, status: res.status, body: JSON.parse(text) as unknown };
      } catch {
        return {
          ok: false,
          error: new BitacoraError("bad_response", `response is not JSON (status ${res.status})`, { status: res.status, retryable: true }),
          retryAfter: undefined,
        };
      }
    }
    return { ok: false, error: errorFromResponse(res.status, text), retryAfter: parseRetryAfter(res.headers.get("retry-after")) };
  }

  private async getResponse(path: string): Promise<Response> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.url + path, { headers: this.headers(), signal: AbortSignal.timeout(this.requestTimeout) });
    } catch (err) {
      throw new BitacoraError("network_error", `network error: ${describe(err)}`, { retryable: true, cause: err });
    }
    if (!res.ok) throw errorFromResponse(res.status, await res.text().catch(() => ""));
    return res;
  }

  private async getJson(path: string): Promise<unknown> {
    const res = await this.getResponse(path);
    try {
      return (await res.json()) as unknown;
    } catch (err) {
      throw new BitacoraError("bad_response", "response is not JSON", { status: res.status, cause: err });
    }
  }

  private async getText(path: string): Promise<string> {
    return (await this.getResponse(path)).text();
  }

  private async verifyAck(ack: Ack, tenant: string | undefined): Promise<void> {
    const stored = await this.getEvent(ack.id, tenant);
    const recomputed = await leafHash(stored as unknown as Record<string, unknown>);
    if (recomputed !== ack.leaf_hash || (stored.leaf_hash != null && stored.leaf_hash !== ack.leaf_hash)) {
      throw new BitacoraError(
        "verification_failed",
        `leaf hash mismatch for event ${ack.id}: acknowledged ${ack.leaf_hash}, recomputed ${recomputed}`,
      );
    }
  }

  // ---- reporting --------------------------------------------------------------------------

  private report(error: BitacoraError, events: EventInput[]): void {
    if (this.onErrorCallback === undefined) {
      this.warn(`bitacora: ${events.length} event(s) not delivered: ${error.code}: ${error.message}`);
      return;
    }
    try {
      this.onErrorCallback(error, events);
    } catch {
      // The callback is the application's; whatever it throws must not reach the caller of
      // `log()` or become an unhandled rejection in the sender.
    }
  }

  /** At most one warning per 10 s, with the number suppressed meanwhile: an outage must not flood logs. */
  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarn < WARN_INTERVAL_MS) {
      this.suppressedWarnings++;
      return;
    }
    const suffix = this.suppressedWarnings > 0 ? ` (${this.suppressedWarnings} similar warnings suppressed)` : "";
    this.lastWarn = now;
    this.suppressedWarnings = 0;
    try {
      console.warn(message + suffix);
    } catch {
      // A closed stdout must not break auditing either.
    }
  }
}

function errorFromResponse(status: number, text: string): BitacoraError {
  let detail: { code?: string; message?: string; field?: string } | undefined;
  try {
    detail = (JSON.parse(text) as { error?: typeof detail }).error;
  } catch {
    detail = undefined;
  }
  return new BitacoraError(detail?.code ?? `http_${status}`, detail?.message ?? (text.slice(0, 200) || `HTTP ${status}`), {
    field: detail?.field,
    status,
    retryable: isRetryableStatus(status),
  });
}

/** `Retry-After` as delta-seconds or an HTTP date, in ms, capped at 60 s. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  let ms: number;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else {
    const at = Date.parse(v);
    if (Number.isNaN(at)) return undefined;
    ms = at - Date.now();
  }
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}

function positive(v: number | undefined, dflt: number): number {
  return v !== undefined && Number.isFinite(v) && v > 0 ? v : dflt;
}

function nonNegative(v: number | undefined, dflt: number): number {
  return v !== undefined && Number.isFinite(v) && v >= 0 ? v : dflt;
}

export type { Actor };
