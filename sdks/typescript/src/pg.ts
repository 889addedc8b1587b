// `bitacora/pg`: the database capture context (CONTRACT §5) for node-postgres.
//
// Capture triggers read who acts from transaction-local settings. `withAuditContext` opens a
// transaction, sets them from the current audit context in one bound statement, runs your
// writes, and commits — or rolls back on error. `set_config(..., true)` lasts until COMMIT or
// ROLLBACK, so a pooled connection never carries one request's user into the next.

import { resolveAuditContext } from "./context.js";
import type { ResolvedContext } from "./hooks.js";

/** The one statement that sets every setting, `$1`..`$7` in `auditSettings()` order. The
 * triggers read an empty string as "absent". */
export const SET_AUDIT_CONTEXT_SQL =
  "SELECT set_config('bitacora.actor_id', $1, true), set_config('bitacora.actor_name', $2, true), " +
  "set_config('bitacora.actor_email', $3, true), set_config('bitacora.actor_type', $4, true), " +
  "set_config('bitacora.ip', $5, true), set_config('bitacora.user_agent', $6, true), " +
  "set_config('bitacora.request_id', $7, true)";

/** The part of a `pg.PoolClient` used here. */
export interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<unknown>;
  release(err?: Error | boolean): void;
}

/** The part of a `pg.Pool` used here. */
export interface PgPoolLike<C extends PgClientLike = PgClientLike> {
  connect(): Promise<C>;
}

/** `pg.Pool`'s own shape: its promise `connect()` overload comes before the callback one. Spelling
 * both lets TypeScript infer `PoolClient` for `fn`'s argument (inference from an overloaded
 * method otherwise reads only its last signature, the callback one). */
export interface NodePgPoolLike<C extends PgClientLike> {
  connect(): Promise<C>;
  connect(callback: (...args: any[]) => void): void;
}

/** The values for `SET_AUDIT_CONTEXT_SQL` from a context (default: the current audit context). */
export function auditSettings(ctx: ResolvedContext | undefined = resolveAuditContext()): string[] {
  const actor = ctx?.actor;
  return [
    actor?.id ?? "",
    actor?.name ?? "",
    actor?.email ?? "",
    actor == null ? "" : (actor.type ?? ""),
    ctx?.ip ?? "",
    ctx?.userAgent ?? "",
    ctx?.requestId ?? "",
  ].map((v) => (v == null ? "" : String(v)));
}

/** Sets the `bitacora.*` settings for the rest of the client's current transaction. Call it
 * inside a transaction: outside one they would last for this one statement only. */
export async function setAuditContext(client: Pick<PgClientLike, "query">, ctx?: ResolvedContext): Promise<void> {
  await client.query(SET_AUDIT_CONTEXT_SQL, auditSettings(ctx ?? resolveAuditContext()));
}

/**
 * Runs `fn(client)` in one transaction attributed to the current audit context: `BEGIN`, the
 * settings, `fn`, then `COMMIT` — or `ROLLBACK` and rethrow when `fn` (or the commit) fails.
 */
export function withAuditContext<T, C extends PgClientLike>(pool: NodePgPoolLike<C>, fn: (client: C) => Promise<T>): Promise<T>;
export function withAuditContext<T, C extends PgClientLike>(pool: PgPoolLike<C>, fn: (client: C) => Promise<T>): Promise<T>;
export async function withAuditContext<T, C extends PgClientLike>(pool: PgPoolLike<C>, fn: (client: C) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query("BEGIN");
    await setAuditContext(client);
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    try {
      await client.query("ROLLBACK");
    } catch (rollbackError) {
      // A connection that cannot even roll back is broken: hand it back to be destroyed,
      // not reused by the next request.
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    }
    throw err;
  } finally {
    client.release(broken);
  }
}
