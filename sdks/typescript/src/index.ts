// `bitacora`: the runtime-neutral core (Node, Bun, Deno, edge runtimes). Node-only helpers
// live in the subpaths `bitacora/context`, `bitacora/express`, `bitacora/fastify` and
// `bitacora/pg`; proof verification in `bitacora/verify`.

export { Bitacora, parseRetryAfter } from "./client.js";
export type { BitacoraOptions, BulkInput, BulkItem, BulkResult, SendOptions, Stats } from "./client.js";
export { BitacoraError } from "./errors.js";
export { uuidv7 } from "./ids.js";
export type { ContextProvider, ResolvedContext } from "./hooks.js";
export { setContextProvider } from "./hooks.js";
export type {
  Ack,
  Actor,
  ActorType,
  BatchResponse,
  Change,
  ErrorDetail,
  Event,
  EventContext,
  EventInput,
  InclusionProof,
  Outcome,
  Severity,
  Target,
} from "./types.js";
