// Express and Fastify apps driven over real HTTP, logging into a real server: the audit
// context (actor resolved late, IP behind trusted and untrusted proxies, UA, request id).

import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";

import express from "express";
import Fastify from "fastify";

import { Bitacora } from "../dist/esm/index.js";
import { bitacoraExpress } from "../dist/esm/express.js";
import { bitacoraFastify } from "../dist/esm/fastify.js";
import { createKey, startServer, uniqueAction, unhandled } from "./helpers.mjs";

let server;
let b;

before(async () => {
  server = await startServer();
  // `send()` answers with the id; the test then reads the stored event back with `getEvent`.
  b = new Bitacora({ url: server.url, apiKey: createKey(server, "admin"), exitFlushTimeout: 0 });
});

after(async () => {
  await b.shutdown(1000);
  await server.stop();
  server.cleanup();
  assert.deepEqual(unhandled, []);
});

/** Fake authentication that runs *after* the bitacora middleware, as real auth often does. */
function authenticate(headers) {
  const user = headers["x-test-user"];
  return user ? { id: user, name: `user ${user}`, email: `${user}@example.com` } : undefined;
}

async function call(base, path, { headers = {}, body } = {}) {
  const res = await fetch(base + path, {
    method: body === undefined ? "GET" : "POST",
    headers: { "user-agent": "sdk-test/1.0", ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const { id } = await res.json();
  return b.getEvent(id);
}

/** The same scenarios for both frameworks. */
function scenarios(name, start) {
  describe(name, () => {
    let trusted;
    let untrusted;
    before(async () => {
      trusted = await start({ trustedProxies: ["127.0.0.1", "10.0.0.0/8"] });
      untrusted = await start({});
    });
    after(async () => {
      await trusted.close();
      await untrusted.close();
    });

    test("actor from auth that runs later, UA and request id; a POST body does not lose the context", async () => {
      const action = uniqueAction("user.update");
      const e = await call(untrusted.url, `/update?action=${action}`, {
        headers: { "x-test-user": "42", "x-request-id": "req-abc" },
        body: { email: "new@example.com" },
      });
      assert.equal(e.action, action);
      assert.deepEqual({ id: e.actor.id, name: e.actor.name, email: e.actor.email }, { id: "42", name: "user 42", email: "42@example.com" });
      assert.equal(e.context.ip, "127.0.0.1");
      assert.equal(e.context.user_agent, "sdk-test/1.0");
      assert.equal(e.context.request_id, "req-abc");
      assert.deepEqual(e.changes, [{ field: "email", old: "old@example.com", new: "new@example.com" }]);
    });

    test("no authenticated user: no actor", async () => {
      const e = await call(untrusted.url, `/update?action=${uniqueAction("anon")}`, { body: {} });
      assert.equal(e.actor, undefined);
    });

    test("without trusted proxies, X-Forwarded-For is ignored", async () => {
      const e = await call(untrusted.url, `/update?action=${uniqueAction("spoof")}`, {
        headers: { "x-forwarded-for": "6.6.6.6" },
        body: {},
      });
      assert.equal(e.context.ip, "127.0.0.1");
    });

    test("behind trusted proxies, the right-most untrusted hop is the client (a spoofed left-most entry is not)", async () => {
      const e = await call(trusted.url, `/update?action=${uniqueAction("xff")}`, {
        headers: { "x-forwarded-for": "6.6.6.6, 198.51.100.9, 10.1.2.3" },
        body: {},
      });
      assert.equal(e.context.ip, "198.51.100.9");
      const all = await call(trusted.url, `/update?action=${uniqueAction("xff_all")}`, {
        headers: { "x-forwarded-for": "203.0.113.5, 10.0.0.7" },
        body: {},
      });
      assert.equal(all.context.ip, "203.0.113.5");
    });

    test("concurrent requests never see each other's context", async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          call(untrusted.url, `/update?action=${uniqueAction("concurrent")}&delay=${(i * 7) % 30}`, {
            headers: { "x-test-user": `u${i}`, "x-request-id": `r${i}` },
            body: {},
          }),
        ),
      );
      results.forEach((e, i) => {
        assert.equal(e.actor.id, `u${i}`);
        assert.equal(e.context.request_id, `r${i}`);
      });
    });
  });
}

/** The handler both apps run: seed 004's "update with changes", sent strictly so the test gets the id. */
async function handle(query, body, user) {
  if (query.delay) await new Promise((r) => setTimeout(r, Number(query.delay)));
  const changes = body.email === undefined ? [] : [{ field: "email", old: "old@example.com", new: body.email }];
  // The actor is not passed: it comes from the audit context, resolved now (after auth).
  void user;
  const ack = await b.send({ action: query.action, severity: "medium", target: { type: "user", id: "456" }, changes });
  return { id: ack.id };
}

scenarios("Express", async (options) => {
  const app = express();
  app.use(bitacoraExpress({ ...options, actor: (req) => req.user }));
  app.use(express.json());
  app.use((req, _res, next) => {
    req.user = authenticate(req.headers);
    next();
  });
  app.post("/update", async (req, res, next) => {
    try {
      res.json(await handle(req.query, req.body, req.user));
    } catch (err) {
      next(err);
    }
  });
  const listener = app.listen(0, "127.0.0.1");
  await once(listener, "listening");
  return {
    url: `http://127.0.0.1:${listener.address().port}`,
    close: () => new Promise((r) => { listener.closeAllConnections(); listener.close(r); }),
  };
});

scenarios("Fastify", async (options) => {
  const app = Fastify();
  await app.register(bitacoraFastify, { ...options, actor: (request) => request.user });
  app.decorateRequest("user", undefined);
  app.addHook("preHandler", async (request) => {
    request.user = authenticate(request.headers);
  });
  app.post("/update", async (request) => handle(request.query, request.body ?? {}, request.user));
  await app.listen({ port: 0, host: "127.0.0.1" });
  return { url: `http://127.0.0.1:${app.server.address().port}`, close: () => app.close() };
});
