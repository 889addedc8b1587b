// What both HTTP middlewares take from a Node request: the audit context of CONTEXT §8.

import type { IncomingMessage } from "node:http";

import type { AuditContext } from "./context.js";
import { clientIp, header, ProxyMatcher } from "./net.js";
import type { Actor } from "./types.js";

/** Longest request id taken from `X-Request-Id`; anything longer is not an id, it is an attack. */
const MAX_REQUEST_ID = 200;

export interface RequestContextOptions {
  /** Addresses or CIDR blocks of your own proxies / load balancers. Default none: no
   * `X-Forwarded-For` is believed, the client is the socket peer. */
  trustedProxies?: readonly string[];
  /** `context.source` for the events of these requests, e.g. `admin_panel`. */
  source?: string;
  /** Tenant for events that name none. */
  tenant?: string;
}

export function requestContext(
  raw: IncomingMessage,
  trusted: ProxyMatcher,
  actor: (() => Actor | null | undefined) | undefined,
  options: RequestContextOptions,
): AuditContext {
  const requestId = header(raw.headers["x-request-id"]);
  return {
    actor,
    ip: clientIp(raw.socket?.remoteAddress, raw.headers["x-forwarded-for"], trusted),
    userAgent: header(raw.headers["user-agent"]),
    requestId: requestId !== undefined && requestId.length <= MAX_REQUEST_ID ? requestId : undefined,
    source: options.source,
    tenant: options.tenant,
  };
}
