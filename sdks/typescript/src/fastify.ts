// `bitacora/fastify`: one audit context per request for Fastify (4 and 5).
//
// Fastify runs a request through hooks, body parsing and the handler with callbacks that do
// not all descend from the `onRequest` hook's async context (body parsing runs from the
// socket's stream events). So, as @fastify/request-context does, the context is captured in an
// `AsyncResource` at `onRequest` and re-entered at `preValidation`, after the body is parsed.

import { AsyncResource } from "node:async_hooks";
import type { IncomingMessage } from "node:http";

import { runWithAuditContext } from "./context.js";
import { ProxyMatcher } from "./net.js";
import { requestContext, type RequestContextOptions } from "./request.js";
import type { Actor } from "./types.js";

/** The part of a Fastify request this plugin uses (a `FastifyRequest` is one). */
export interface FastifyRequestLike {
  raw: IncomingMessage;
}

type HookDone = (err?: Error) => void;

/** The part of a Fastify instance this plugin uses. */
export interface FastifyInstanceLike {
  addHook(name: "onRequest" | "preValidation", hook: (request: any, reply: any, done: HookDone) => void): unknown;
}

export interface BitacoraFastifyOptions extends RequestContextOptions {
  /** Who acts, given the Fastify request (e.g. `request.user`). Called when an event is logged,
   * so authentication in later hooks or in the handler is seen. */
  actor?(request: any): Actor | null | undefined;
}

const RESOURCE = Symbol("bitacora.auditContextResource");

/** Register with `app.register(bitacoraFastify, { actor, trustedProxies })`; applies to the whole app. */
export const bitacoraFastify = Object.assign(
  function bitacoraFastify(instance: FastifyInstanceLike, options: BitacoraFastifyOptions, done: HookDone): void {
    const trusted = new ProxyMatcher(options.trustedProxies);
    const actor = options.actor;
    instance.addHook("onRequest", (request: FastifyRequestLike & { [RESOURCE]?: AsyncResource }, _reply, hookDone) => {
      const resolve = actor === undefined ? undefined : () => actor.call(options, request);
      runWithAuditContext(requestContext(request.raw, trusted, resolve, options), () => {
        request[RESOURCE] = new AsyncResource("bitacora.request");
        hookDone();
      });
    });
    instance.addHook("preValidation", (request: FastifyRequestLike & { [RESOURCE]?: AsyncResource }, _reply, hookDone) => {
      const resource = request[RESOURCE];
      if (resource === undefined) hookDone();
      else resource.runInAsyncScope(hookDone);
    });
    done();
  },
  {
    // What `fastify-plugin` sets, without depending on it: the hooks apply to the whole app,
    // not only to an encapsulated child context, and the plugin has a readable name.
    [Symbol.for("skip-override")]: true,
    [Symbol.for("fastify.display-name")]: "bitacora",
  },
);
