// The client against a real `bitacora serve`: delivery, retries, duplicates, drops, shutdown.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Bitacora, BitacoraError, parseRetryAfter } from "../dist/esm/index.js";
import { closedPort, createKey, events, startProxy, startServer, uniqueAction, unhandled } from "./helpers.mjs";

let server;
let ingestKey;

before(async () => {
  server = await startServer();
  ingestKey = createKey(server, "ingest");
});

after(async () => {
  await server.stop();
  server.cleanup();
  assert.deepEqual(unhandled, [], "no unhandled rejection may escape the SDK");
});

/** A client whose errors are collected instead of printed. */
function client(options = {}) {
  const errors = [];
  const b = new Bitacora({
    url: server.url,
    apiKey: ingestKey,
    initialRetryDelay: 20,
    maxRetryDelay: 200,
    exitFlushTimeout: 0,
    onError: (error, evs) => errors.push({ error, events: evs }),
    ...options,
  });
  return { b, errors };
}

describe("log()", () => {
  test("queues, returns the client-made id, and delivers on flush", async () => {
    const { b, errors } = client();
    const action = uniqueAction("user.update");
    const ids = [];
    for (let i = 0; i < 25; i++) {
      ids.push(b.log({ action, severity: "medium", target: { type: "user", id: String(i) }, changes: [{ field: "role", old: "user", new: "admin" }] }));
    }
    assert.match(ids[0], /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, "a UUIDv7");
    assert.equal(new Set(ids).size, 25);
    assert.equal(b.stats().queued, 25);
    assert.equal(await b.flush(5000), true);
    assert.deepEqual(b.stats(), { queued: 0, sent: 25, dropped: 0, failed: 0 });
    const stored = await events(server, { action });
    assert.deepEqual(stored.map((e) => e.id).sort(), [...ids].sort());
    assert.equal(stored[0].severity, "medium");
    assert.deepEqual(stored[0].changes, [{ field: "role", old: "user", new: "admin" }]);
    assert.deepEqual(errors, []);
    await b.shutdown(1000);
  });

  test("a lost response is retried with the same ids and acknowledged as duplicates, never stored twice", async () => {
    const proxy = await startProxy(server.url, ({ url, count }) => (url === "/v1/events/batch" && count === 1 ? "drop-response" : "forward"));
    const { b, errors } = client({ url: proxy.url });
    const action = uniqueAction("dup");
    const ids = Array.from({ length: 10 }, (_, i) => b.log({ action, target: { type: "doc", id: String(i) } }));
    assert.equal(await b.flush(5000), true);
    const batches = proxy.requests.filter((r) => r.url === "/v1/events/batch");
    assert.equal(batches.length, 2, "one lost response, one retry");
    assert.equal(batches[0].body, batches[1].body, "the retry is byte-identical (same ids, same occurred_at)");
    const stored = await events(server, { action });
    assert.equal(stored.length, 10, "stored exactly once");
    assert.deepEqual(stored.map((e) => e.id).sort(), [...ids].sort());
    assert.deepEqual(b.stats(), { queued: 0, sent: 10, dropped: 0, failed: 0 });
    assert.deepEqual(errors, []);
    await b.shutdown(1000);
    await proxy.close();
  });

  for (const status of [429, 503]) {
    test(`${status} with Retry-After waits that long, then delivers`, async () => {
      const times = [];
      const proxy = await startProxy(server.url, ({ url, count }) => {
        if (url !== "/v1/events/batch") return "forward";
        times.push(Date.now());
        return count === 1
          ? { status, headers: { "retry-after": "1" }, body: JSON.stringify({ error: { code: "busy", message: "try later" } }) }
          : "forward";
      });
      const { b, errors } = client({ url: proxy.url });
      const action = uniqueAction("retry_after");
      const id = b.log({ action });
      assert.equal(await b.flush(8000), true);
      assert.equal(times.length, 2);
      assert.ok(times[1] - times[0] >= 950, `retried after ${times[1] - times[0]} ms, Retry-After said 1 s`);
      assert.deepEqual((await events(server, { action })).map((e) => e.id), [id]);
      assert.deepEqual(errors, []);
      assert.equal(b.stats().sent, 1);
      await b.shutdown(1000);
      await proxy.close();
    });
  }

  test("a 4xx for the whole request is reported with the server's error and not retried", async () => {
    const proxy = await startProxy(server.url);
    const { b, errors } = client({ url: proxy.url, apiKey: "bk_not_a_real_key" });
    const id = b.log({ action: uniqueAction("unauth") });
    assert.equal(await b.flush(5000), true, "given up on counts as done");
    assert.equal(proxy.requests.length, 1, "never retried");
    assert.equal(errors.length, 1);
    assert.ok(errors[0].error instanceof BitacoraError);
    assert.equal(errors[0].error.status, 401);
    assert.equal(errors[0].error.code, "unauthorized");
    assert.equal(errors[0].events[0].id, id);
    assert.deepEqual(b.stats(), { queued: 0, sent: 0, dropped: 0, failed: 1 });
    await b.shutdown(1000);
    await proxy.close();
  });

  test("a per-event error in a 200 batch response is reported with its code and field; the others are stored", async () => {
    const { b, errors } = client();
    const action = uniqueAction("mixed");
    const good = b.log({ action });
    const bad = b.log({ action, context: { ip: "not-an-ip" } });
    const good2 = b.log({ action, severity: "high" });
    assert.equal(await b.flush(5000), true);
    assert.deepEqual((await events(server, { action })).map((e) => e.id).sort(), [good, good2].sort());
    assert.equal(errors.length, 1);
    assert.equal(errors[0].events[0].id, bad);
    assert.equal(errors[0].error.field, "context.ip");
    assert.equal(typeof errors[0].error.code, "string");
    assert.deepEqual(b.stats(), { queued: 0, sent: 2, dropped: 0, failed: 1 });
    await b.shutdown(1000);
  });

  test("a full queue drops the newest events, counts and reports them, and still returns their ids", async () => {
    const port = await closedPort();
    const { b, errors } = client({ url: `http://127.0.0.1:${port}`, maxQueue: 10 });
    const ids = Array.from({ length: 15 }, () => b.log({ action: "overflow.test" }));
    assert.equal(new Set(ids).size, 15);
    assert.equal(b.stats().dropped, 5);
    assert.equal(b.stats().queued, 10);
    assert.equal(errors.length, 5);
    assert.ok(errors.every((e) => e.error.code === "queue_full"));
    assert.deepEqual(errors.map((e) => e.events[0].id), ids.slice(10), "the newest were dropped");
    assert.equal(await b.shutdown(300), false, "the server is down: shutdown cannot deliver");
    assert.equal(b.stats().failed, 10, "what was still queued at shutdown is given up on and reported");
  });

  test("a batch over the server's size limit (413) is halved until it fits, in order", async () => {
    const proxy = await startProxy(server.url, ({ url, body }) =>
      url === "/v1/events/batch" && JSON.parse(body).length > 3
        ? { status: 413, body: JSON.stringify({ error: { code: "payload_too_large", message: "too large" } }) }
        : "forward",
    );
    const { b, errors } = client({ url: proxy.url, batchSize: 10 });
    const action = uniqueAction("split");
    const ids = Array.from({ length: 10 }, (_, i) => b.log({ action, target: { type: "t", id: String(i) } }));
    assert.equal(await b.flush(5000), true);
    const delivered = proxy.requests.filter((r) => JSON.parse(r.body).length <= 3).flatMap((r) => JSON.parse(r.body).map((e) => e.id));
    assert.deepEqual(delivered, ids, "every event once, in log order");
    assert.deepEqual((await events(server, { action })).map((e) => e.id), ids);
    assert.deepEqual(errors, []);
    await b.shutdown(500);
    await proxy.close();
  });

  test("a bulk group that does not fit in the queue is dropped whole, never half-logged", async () => {
    const port = await closedPort();
    const { b, errors } = client({ url: `http://127.0.0.1:${port}`, maxQueue: 5 });
    b.log({ action: "fill.one" });
    b.log({ action: "fill.two" });
    const { ids, summaryId } = b.logBulk({ action: "user.role_change", items: [1, 2, 3].map((i) => ({ target: { type: "user", id: String(i) } })) });
    assert.equal(ids.length, 3);
    assert.deepEqual(b.stats(), { queued: 2, sent: 0, dropped: 4, failed: 0 });
    assert.equal(errors.length, 1);
    assert.equal(errors[0].error.code, "queue_full");
    assert.deepEqual(errors[0].events.map((e) => e.id), [...ids, summaryId]);
    await b.shutdown(10);
  });

  test("log() never throws, even for values JSON cannot carry", () => {
    const { b, errors } = client();
    const cyclic = { action: "cyclic.test", metadata: {} };
    cyclic.metadata.self = cyclic;
    const id = b.log(cyclic);
    assert.equal(typeof id, "string");
    assert.equal(typeof b.log(null), "string", "an id even for garbage");
    assert.equal(typeof b.log(undefined), "string");
    assert.ok(errors.length >= 2);
    assert.ok(errors.every((e) => e.error.code === "invalid_event"));
    assert.equal(b.stats().queued, 0);
    return b.shutdown(100);
  });

  test("server down, then up again: everything queued meanwhile is delivered", async () => {
    const own = await startServer();
    const key = createKey(own, "ingest");
    const listen = `127.0.0.1:${own.port}`;
    await own.stop();
    const errors = [];
    const b = new Bitacora({ url: own.url, apiKey: key, initialRetryDelay: 50, maxRetryDelay: 300, exitFlushTimeout: 0, onError: (e) => errors.push(e) });
    const action = uniqueAction("downtime");
    const ids = [];
    for (let i = 0; i < 200; i++) ids.push(b.log({ action, target: { type: "t", id: String(i) } }));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(b.stats().sent, 0);
    assert.equal(b.stats().queued, 200);
    const again = await startServer({ dataDir: own.dataDir, listen });
    try {
      assert.equal(await b.flush(15000), true);
      assert.deepEqual(b.stats(), { queued: 0, sent: 200, dropped: 0, failed: 0 });
      const stored = await events(again, { action });
      assert.deepEqual(stored.map((e) => e.id).sort(), [...ids].sort());
      assert.deepEqual(errors, []);
    } finally {
      await b.shutdown(500);
      await again.stop();
      again.cleanup();
    }
  });

  test("shutdown() flushes everything queued, in batches of batchSize", async () => {
    const proxy = await startProxy(server.url);
    const { b, errors } = client({ url: proxy.url, flushInterval: 60_000 });
    const action = uniqueAction("shutdown");
    for (let i = 0; i < 1234; i++) b.log({ action, target: { type: "row", id: String(i) } });
    assert.equal(await b.shutdown(10_000), true);
    assert.equal((await events(server, { action })).length, 1234);
    const sizes = proxy.requests.map((r) => JSON.parse(r.body).length);
    assert.deepEqual(sizes, [500, 500, 234]);
    assert.deepEqual(errors, []);
    const late = b.log({ action });
    assert.equal(typeof late, "string");
    assert.equal(b.stats().dropped, 1, "after shutdown, log() drops and counts");
    assert.equal(errors.at(-1).error.code, "closed");
    await proxy.close();
  });

  test("the audit context hook fills in actor, IP, user agent and request id", async () => {
    const { runWithAuditContext } = await import("../dist/esm/context.js");
    const { b } = client();
    const action = uniqueAction("ctx");
    let id;
    await runWithAuditContext(
      { actor: () => ({ id: "42", name: "ana" }), ip: "192.168.1.100", userAgent: "ua/1", requestId: "r-1", source: "admin_panel" },
      async () => {
        await new Promise((r) => setTimeout(r, 5));
        id = b.log({ action, context: { request_id: "given-wins" } });
      },
    );
    b.log({ action, actor: { id: "7" } });
    assert.equal(await b.flush(5000), true);
    const [first, second] = await events(server, { action });
    assert.equal(first.id, id);
    assert.equal(first.actor.id, "42");
    assert.equal(first.actor.name, "ana");
    assert.deepEqual(first.context, { ip: "192.168.1.100", user_agent: "ua/1", request_id: "given-wins", source: "admin_panel" });
    assert.equal(second.actor.id, "7");
    assert.equal(second.context.ip, "127.0.0.1", "outside a context the server takes the connection's address");
    await b.shutdown(1000);
  });

  test("waitUntil gets a promise that settles once the events are delivered, without waiting flushInterval", async () => {
    const promises = [];
    const { b } = client({ flushInterval: 60_000, waitUntil: (p) => promises.push(p) });
    const action = uniqueAction("serverless");
    const id = b.log({ action });
    b.log({ action });
    assert.equal(promises.length, 1, "one promise per drain");
    const started = Date.now();
    await promises[0];
    assert.ok(Date.now() - started < 5000);
    assert.equal(b.stats().sent, 2);
    assert.ok((await events(server, { action })).some((e) => e.id === id));
    await b.shutdown(100);
  });
});

describe("logBulk()", () => {
  test("one event per record plus a summary naming them, in one batch", async () => {
    const proxy = await startProxy(server.url);
    const { b, errors } = client({ url: proxy.url, batchSize: 4 });
    const action = uniqueAction("user.role_change");
    b.log({ action, description: "before" });
    const users = ["u1", "u2", "u3", "u4", "u5"];
    const { ids, summaryId } = b.logBulk({
      action,
      severity: "critical",
      metadata: { source: "admin_panel", newRole: "admin" },
      items: users.map((u) => ({ target: { type: "user", id: u }, changes: [{ field: "role", label: "Rol", old: "user", new: "admin" }] })),
      summary: { description: `Bulk role update: ${users.length} users changed to admin`, metadata: { operationType: "bulk_update" } },
    });
    assert.equal(ids.length, 5);
    assert.equal(await b.flush(5000), true);
    const bodies = proxy.requests.map((r) => JSON.parse(r.body).map((e) => e.id));
    assert.deepEqual(bodies[1], [...ids, summaryId], "the group travels whole, even beyond batchSize, after the earlier event");
    const stored = await events(server, { action });
    assert.equal(stored.length, 7);
    const summary = stored.find((e) => e.id === summaryId);
    assert.equal(summary.severity, "critical");
    assert.deepEqual(summary.metadata.bulk, { count: 5, target_ids: users, event_ids: ids });
    assert.equal(summary.metadata.operationType, "bulk_update");
    assert.deepEqual(summary.target, { type: "bulk_operation", id: summaryId });
    for (const e of stored.filter((e) => ids.includes(e.id))) {
      assert.equal(e.metadata.bulk_id, summaryId);
      assert.equal(e.severity, "critical");
      assert.equal(e.changes[0].field, "role");
    }
    assert.deepEqual(errors, []);
    await b.shutdown(1000);
    await proxy.close();
  });
});

describe("send()", () => {
  test("resolves with the acknowledgement; verify recomputes the leaf hash", async () => {
    const b = new Bitacora({ url: server.url, apiKey: server.adminKey, exitFlushTimeout: 0 });
    const ack = await b.send({ action: uniqueAction("user.delete"), severity: "critical", target: { type: "user", id: "456", name: "Juan Pérez" } }, { verify: true });
    assert.match(ack.leaf_hash, /^[0-9a-f]{64}$/);
    assert.equal(typeof ack.seq, "number");
    assert.equal(ack.duplicate, false);
    const again = await b.send({ id: ack.id, action: "x.y" }).catch((e) => e);
    assert.ok(again instanceof BitacoraError);
    assert.equal(again.status, 409, "same id, different content");
    await b.shutdown(100);
  });

  test("rejects with the server's code, field, message and status", async () => {
    const b = new Bitacora({ url: server.url, apiKey: ingestKey, exitFlushTimeout: 0 });
    const err = await b.send({ action: "bad action!" }).catch((e) => e);
    assert.ok(err instanceof BitacoraError);
    assert.equal(err.field, "action");
    assert.ok(err.status >= 400 && err.status < 500);
    assert.ok(err.message.length > 0);
    assert.equal(err.retryable, false);
    await b.shutdown(100);
  });

  test("retries a lost response with the same id and reports the duplicate", async () => {
    const proxy = await startProxy(server.url, ({ count }) => (count === 1 ? "drop-response" : "forward"));
    const b = new Bitacora({ url: proxy.url, apiKey: ingestKey, initialRetryDelay: 10, exitFlushTimeout: 0 });
    const ack = await b.send({ action: uniqueAction("send_dup") });
    assert.equal(ack.duplicate, true, "the first attempt was stored; the retry is its duplicate");
    assert.equal(proxy.requests.length, 2);
    await b.shutdown(100);
    await proxy.close();
  });

  test("rejects with a network error when nobody listens", async () => {
    const port = await closedPort();
    const b = new Bitacora({ url: `http://127.0.0.1:${port}`, initialRetryDelay: 10, exitFlushTimeout: 0 });
    const err = await b.send({ action: "a.b" }).catch((e) => e);
    assert.equal(err.code, "network_error");
    assert.equal(err.retryable, true);
  });
});

test("Retry-After parsing: seconds, HTTP dates, garbage", () => {
  assert.equal(parseRetryAfter("2"), 2000);
  assert.equal(parseRetryAfter(null), undefined);
  assert.equal(parseRetryAfter("soon"), undefined);
  assert.equal(parseRetryAfter("100000"), 60_000, "capped");
  const d = parseRetryAfter(new Date(Date.now() + 3000).toUTCString());
  assert.ok(d > 1000 && d <= 3000);
});
