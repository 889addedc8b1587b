// `bitacora/express`: one audit context per request for Express (4 and 5) and Connect-style apps.

import type { IncomingMessage, ServerResponse } from "node:http";

import { runWithAuditContext } from "./context.js";
import { ProxyMatcher } from "./net.js";
import { requestContext, type RequestContextOptions } from "./request.js";
import type { Actor } from "./types.js";

export interface BitacoraExpressOptions<Req extends IncomingMessage = IncomingMessage> extends RequestContextOptions {
  /** Who acts, given the request (e.g. `req.user`). Called when an event is logged, not when the
   * request arrives, so authentication middleware mounted after this one is seen. */
  actor?(req: Req): Actor | null | undefined;
}

/**
 * Express middleware that runs the rest of the request in an audit context. Mount it early;
 * `log()` and `withAuditContext()` anywhere in the request then know the actor, IP, user agent
 * and request id.
 */
export function bitacoraExpress<Req extends IncomingMessage = IncomingMessage>(
  options: BitacoraExpressOptions<Req> = {},
): (req: Req, res: ServerResponse, next: (err?: unknown) => void) => void {
  const trusted = new ProxyMatcher(options.trustedProxies);
  const actor = options.actor;
  return function bitacoraMiddleware(req, _res, next) {
    const resolve = actor === undefined ? undefined : () => actor.call(options, req);
    runWithAuditContext(requestContext(req, trusted, resolve, options), () => next());
  };
}
