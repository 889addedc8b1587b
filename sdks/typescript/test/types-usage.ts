// Compile-only: the public surface as applications use it, against the *built* declarations
// and the frameworks' real types (checked by `npm run typecheck`). A change that breaks
// a user's code at the type level fails here.

import express, { type Request } from "express";
import Fastify, { type FastifyRequest } from "fastify";
import pg from "pg";
import { drizzle } from "drizzle-orm/node-postgres";

import { Bitacora, BitacoraError, type Ack, type Actor, type EventInput, type Stats } from "bitacora";
import { auditContext, runWithAuditContext } from "bitacora/context";
import { bitacoraExpress } from "bitacora/express";
import { bitacoraFastify } from "bitacora/fastify";
import { SET_AUDIT_CONTEXT_SQL, withAuditContext } from "bitacora/pg";
import { verifyEvent, type VerifiedEvent } from "bitacora/verify";

type User = { id: number; name: string; email: string };
declare module "express-serve-static-core" {
  interface Request {
    user?: User;
  }
}

const b = new Bitacora({ url: "http://127.0.0.1:8480", apiKey: "bk_x", onError: (e: BitacoraError, events: EventInput[]) => void [e.code, e.field, e.status, events.length] });
const id: string = b.log({ action: "user.update", target: { type: "user", id: "7" }, changes: [{ field: "role", old: "user", new: "admin" }] });
const bulk: { ids: string[]; summaryId: string } = b.logBulk({ action: "user.role_change", severity: "critical", items: [{ target: { type: "user", id: "1" } }] });
const ackP: Promise<Ack> = b.send({ action: "user.delete", target: { type: "user", id: "7" } }, { verify: true });
const flushed: Promise<boolean> = b.flush(5000);
const stats: Stats = b.stats();
const shut: Promise<boolean> = b.shutdown(2000);

const toActor = (u: User | undefined): Actor | undefined => (u ? { id: String(u.id), name: u.name, email: u.email, type: "user" } : undefined);

const app = express();
app.use(bitacoraExpress<Request>({ actor: (req) => toActor(req.user), trustedProxies: ["10.0.0.0/8"] }));
app.use(bitacoraExpress({ actor: (req: Request) => toActor(req.user) }));

const f = Fastify();
void f.register(bitacoraFastify, { actor: (request: FastifyRequest) => toActor((request as FastifyRequest & { user?: User }).user), trustedProxies: [] });

const pool = new pg.Pool();
const n: Promise<number> = withAuditContext(pool, async (client) => {
  const r = await client.query<{ n: number }>("SELECT 1 AS n");
  await drizzle(client).execute("SELECT 1");
  return r.rows[0]!.n;
});
const sql: string = SET_AUDIT_CONTEXT_SQL;

const inCtx: number = runWithAuditContext({ actor: () => ({ id: "1" }), ip: "10.0.0.1", requestId: "r" }, () => 1);
const ctx = auditContext();
const v: Promise<VerifiedEvent> = verifyEvent(b, id, "bitacora+01020304+AQ==");

export { ackP, bulk, ctx, flushed, inCtx, n, shut, sql, stats, v };
