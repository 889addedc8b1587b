// Compile-only: a CommonJS TypeScript consumer resolves the `require` conditions of the exports
// map to dist/cjs/*.d.ts.
import bitacora = require("bitacora");
import context = require("bitacora/context");
import verify = require("bitacora/verify");
import pgHelpers = require("bitacora/pg");
import expressMw = require("bitacora/express");
import fastifyPlugin = require("bitacora/fastify");

const b: bitacora.Bitacora = new bitacora.Bitacora({ url: "http://127.0.0.1:8480" });
const id: string = context.runWithAuditContext({ requestId: "r" }, () => b.log({ action: "a.b" }));
const check: typeof verify.verifyEvent = verify.verifyEvent;
const sql: string = pgHelpers.SET_AUDIT_CONTEXT_SQL;
const mw = expressMw.bitacoraExpress({ trustedProxies: ["127.0.0.1"] });
const plugin = fastifyPlugin.bitacoraFastify;
export = { id, check, sql, mw, plugin };
