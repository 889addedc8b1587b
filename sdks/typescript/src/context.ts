// `bitacora/context`: the request-scoped audit context on Node's AsyncLocalStorage.
//
// Importing this module installs it as the core's context provider (see hooks.ts), so
// `log()` and `send()` anywhere inside `runWithAuditContext(ctx, fn)` — across awaits,
// timers and callbacks started there — pick up the actor, IP, user agent and request id.

import { AsyncLocalStorage } from "node:async_hooks";

import { setContextProvider, type ResolvedContext } from "./hooks.js";
import type { Actor } from "./types.js";

export interface AuditContext {
  /** Who acts: an actor, or a function returning one, called each time an event is logged —
   * so that authentication that runs after the context was opened (later middleware, the
   * route handler itself) is seen. Returning undefined means "no actor". */
  actor?: Actor | (() => Actor | null | undefined) | null | undefined;
  ip?: string | undefined;
  userAgent?: string | undefined;
  requestId?: string | undefined;
  /** `context.source` of the events, e.g. `admin_panel`. */
  source?: string | undefined;
  /** The tenant of events that name none. */
  tenant?: string | undefined;
}

// One storage per process, kept on `globalThis`: if the ESM build of this module and the
// CommonJS build are both loaded (one dependency imports, another requires), they must see
// the same context, or middleware from one would be invisible to `log()` from the other.
const STORAGE_KEY = Symbol.for("bitacora.auditContextStorage");
const holder = globalThis as { [STORAGE_KEY]?: AsyncLocalStorage<AuditContext> };
const storage: AsyncLocalStorage<AuditContext> = (holder[STORAGE_KEY] ??= new AsyncLocalStorage<AuditContext>());

/** Runs `fn` with `ctx` as the audit context (nested calls see the inner one); returns what `fn` returns. */
export function runWithAuditContext<T>(ctx: AuditContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/** The current audit context as given (the actor not yet resolved), or undefined outside one. */
export function auditContext(): AuditContext | undefined {
  return storage.getStore();
}

/** The current audit context with its actor resolved, or undefined outside one. */
export function resolveAuditContext(): ResolvedContext | undefined {
  const ctx = storage.getStore();
  if (ctx === undefined) return undefined;
  let actor: Actor | undefined;
  if (typeof ctx.actor === "function") {
    try {
      actor = ctx.actor() ?? undefined;
    } catch {
      // An actor resolver that throws (a session store down) costs the actor, not the event.
      actor = undefined;
    }
  } else {
    actor = ctx.actor ?? undefined;
  }
  return {
    actor,
    ip: ctx.ip,
    userAgent: ctx.userAgent,
    requestId: ctx.requestId,
    source: ctx.source,
    tenant: ctx.tenant,
  };
}

setContextProvider(resolveAuditContext);
