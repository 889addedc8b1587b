// The seam between the runtime-neutral core and the Node-only audit context.
//
// `bitacora` (the core) must load on Bun, Deno and edge runtimes, so it cannot import
// `node:async_hooks`. `bitacora/context` registers a provider here when it is loaded, and the
// core asks it for the current request's actor, IP, user agent and request id at `log()` time.
// The provider lives on `globalThis` under a registered symbol, not in a module variable, so
// that an application that loads the ESM build of one entry point and the CommonJS build of
// another (the "dual package hazard") still shares one provider.

import type { Actor } from "./types.js";

/** What the current audit context says about who is acting, resolved at `log()` time. */
export interface ResolvedContext {
  actor?: Actor | undefined;
  ip?: string | undefined;
  userAgent?: string | undefined;
  requestId?: string | undefined;
  source?: string | undefined;
  tenant?: string | undefined;
}

export type ContextProvider = () => ResolvedContext | undefined;

const KEY = Symbol.for("bitacora.auditContextProvider");

type Holder = { [KEY]?: ContextProvider };

/** Installs the function the core calls to read the current audit context. */
export function setContextProvider(provider: ContextProvider | undefined): void {
  (globalThis as Holder)[KEY] = provider;
}

/** The current audit context, or undefined outside one (or when no provider is installed). */
export function currentContext(): ResolvedContext | undefined {
  const provider = (globalThis as Holder)[KEY];
  if (provider === undefined) return undefined;
  try {
    return provider();
  } catch {
    // A failing actor resolver must not fail the caller's operation; the event goes out
    // without the context rather than not at all.
    return undefined;
  }
}
