// Database capture context against real PostgreSQL: `bitacora capture install` triggers, a
// server draining the outbox, and an Express app writing through `withAuditContext` — with
// node-postgres directly and with Drizzle. A committed change is captured with the request's
// actor; a rolled-back one is not.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { after, before, test } from "node:test";

import { drizzle } from "drizzle-orm/node-postgres";
import { eq } from "drizzle-orm";
import { integer, pgTable, text } from "drizzle-orm/pg-core";
import express from "express";
import pg from "pg";

import { bitacoraExpress } from "../dist/esm/express.js";
import { withAuditContext, auditSettings } from "../dist/esm/pg.js";
import { runWithAuditContext } from "../dist/esm/context.js";
import { bitacora, eventually, events, startServer, unhandled } from "./helpers.mjs";

const PG = process.env.BITACORA_TEST_PG ?? "postgres://postgres@127.0.0.1:5432";
const dbName = `sdkts_${randomBytes(6).toString("hex")}`;
const dbUrl = `${PG}/${dbName}`;

let admin;
let pool;
let server;
let app;
let appUrl;

const notes = pgTable("notes", { id: integer("id").primaryKey(), body: text("body").notNull() });

before(async () => {
  admin = new pg.Client({ connectionString: `${PG}/postgres` });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const setup = new pg.Client({ connectionString: dbUrl });
  await setup.connect();
  await setup.query("CREATE TABLE tickets (id int PRIMARY KEY, title text, status text)");
  await setup.query("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)");
  await setup.end();
  bitacora(["capture", "install", "--database-url", dbUrl, "--table", "public.tickets", "--table", "public.notes"]);
  server = await startServer({ args: ["--capture-database-url", dbUrl] });
  pool = new pg.Pool({ connectionString: dbUrl, max: 2 });

  app = express();
  app.use(bitacoraExpress({ actor: (req) => req.user }));
  app.use(express.json());
  app.use((req, _res, next) => {
    const id = req.headers["x-test-user"];
    if (id) req.user = { id, name: `Dr. ${id}`, email: `${id}@example.com` };
    next();
  });
  app.post("/tickets/:id", async (req, res) => {
    try {
      await withAuditContext(pool, async (client) => {
        await client.query("INSERT INTO tickets VALUES ($1, $2, 'open')", [Number(req.params.id), req.body.title]);
        await client.query("UPDATE tickets SET status = 'closed' WHERE id = $1", [Number(req.params.id)]);
        if (req.body.fail) throw new Error("validation failed after the write");
      });
      res.json({ ok: true });
    } catch (err) {
      res.status(422).json({ error: String(err) });
    }
  });
  app.post("/notes/:id", async (req, res) => {
    // The Drizzle recipe from the README: a Drizzle instance over the transaction's client.
    try {
      await withAuditContext(pool, async (client) => {
        const db = drizzle(client);
        await db.insert(notes).values({ id: Number(req.params.id), body: req.body.body });
        await db.update(notes).set({ body: `${req.body.body}!` }).where(eq(notes.id, Number(req.params.id)));
        if (req.body.fail) throw new Error("rolled back");
      });
      res.json({ ok: true });
    } catch (err) {
      res.status(422).json({ error: String(err) });
    }
  });
  const listener = app.listen(0, "127.0.0.1");
  await once(listener, "listening");
  appUrl = `http://127.0.0.1:${listener.address().port}`;
  app.listener = listener;
});

after(async () => {
  if (app?.listener) {
    app.listener.closeAllConnections();
    await new Promise((r) => app.listener.close(r));
  }
  await pool?.end();
  await server?.stop();
  server?.cleanup();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
  assert.deepEqual(unhandled, []);
});

async function post(path, body, headers = {}) {
  const res = await fetch(appUrl + path, {
    method: "POST",
    headers: { "content-type": "application/json", "user-agent": "capture-test/1", ...headers },
    body: JSON.stringify(body),
  });
  await res.text();
  return res.status;
}

function byTarget(list, id) {
  return list.filter((e) => e.target?.id === String(id));
}

test("node-postgres: a committed change is captured with the request's actor; a rolled-back one is not", async () => {
  assert.equal(await post("/tickets/11", { title: "never", fail: true }, { "x-test-user": "7", "x-request-id": "req-fail" }), 422);
  assert.equal(await post("/tickets/10", { title: "Switch caído" }, { "x-test-user": "7", "x-request-id": "req-js-1" }), 200);
  const captured = await eventually(async () => {
    const list = await events(server, { action: "tickets.*" });
    return byTarget(list, 10).length >= 2 ? list : undefined;
  }, 15_000, "the capture drain");
  const [insert, update] = byTarget(captured, 10);
  assert.equal(insert.action, "tickets.insert");
  assert.equal(update.action, "tickets.update");
  for (const e of [insert, update]) {
    assert.equal(e.category, "db");
    assert.equal(e.actor.id, "7");
    assert.equal(e.actor.name, "Dr. 7");
    assert.equal(e.actor.email, "7@example.com");
    assert.equal(e.context.ip, "127.0.0.1");
    assert.equal(e.context.user_agent, "capture-test/1");
    assert.equal(e.context.request_id, "req-js-1");
    assert.equal(e.context.source, "db_trigger");
  }
  assert.deepEqual(update.changes.map((c) => [c.field, c.old, c.new]), [["status", "open", "closed"]]);
  assert.deepEqual(byTarget(captured, 11), [], "the rolled-back write left no audit record");
});

test("Drizzle over withAuditContext: the same guarantees", async () => {
  assert.equal(await post("/notes/2", { body: "no", fail: true }, { "x-test-user": "99" }), 422);
  assert.equal(await post("/notes/1", { body: "hola" }, { "x-test-user": "99", "x-request-id": "req-drizzle" }), 200);
  const captured = await eventually(async () => {
    const list = await events(server, { action: "notes.*" });
    return byTarget(list, 1).length >= 2 ? list : undefined;
  }, 15_000, "the capture drain");
  const mine = byTarget(captured, 1);
  assert.deepEqual(mine.map((e) => e.action), ["notes.insert", "notes.update"]);
  assert.ok(mine.every((e) => e.actor.id === "99" && e.context.request_id === "req-drizzle"));
  assert.deepEqual(byTarget(captured, 2), []);
});

test("outside any audit context, writes are recorded with no actor; settings never leak between pooled transactions", async () => {
  await runWithAuditContext({ actor: { id: "leaky" }, requestId: "r-leak" }, () =>
    withAuditContext(pool, (c) => c.query("INSERT INTO tickets VALUES (20, 'a', 'open')")),
  );
  // Same pool (max 2 connections), no context now: every set_config was transaction-local.
  for (let i = 0; i < 3; i++) await withAuditContext(pool, (c) => c.query("UPDATE tickets SET title = $1 WHERE id = 20", [`t${i}`]));
  const captured = await eventually(async () => {
    const list = byTarget(await events(server, { action: "tickets.*" }), 20);
    return list.length >= 4 ? list : undefined;
  }, 15_000, "the capture drain");
  assert.equal(captured[0].actor.id, "leaky");
  for (const e of captured.slice(1)) {
    assert.equal(e.actor, undefined, "no actor outside a context");
    assert.equal(e.context.request_id, undefined);
  }
  assert.deepEqual(auditSettings(undefined), ["", "", "", "", "", "", ""]);
});
