// The one error type of the SDK: what the server said (code, field, message, HTTP status), or
// what went wrong before it could say anything (code `network_error`, `timeout`, ...).

export class BitacoraError extends Error {
  /** Machine-readable kind: the server's (`invalid_field`, `conflict`, `rate_limited`, ...) or
   * the SDK's own (`network_error`, `timeout`, `queue_full`, `closed`, `shutdown`, `invalid_event`, `bad_response`,
   * `verification_failed`) — the same codes as the Python SDK's. */
  readonly code: string;
  /** The event field or parameter at fault, when the server named one. */
  readonly field: string | undefined;
  /** The HTTP status, when there was a response. */
  readonly status: number | undefined;
  /** Whether the sender retries this failure (network errors, 408, 429, 5xx). */
  readonly retryable: boolean;

  constructor(
    code: string,
    message: string,
    options: { field?: string | undefined; status?: number | undefined; retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BitacoraError";
    this.code = code;
    this.field = options.field;
    this.status = options.status;
    this.retryable = options.retryable ?? false;
  }
}

/** True for the statuses CONTRACT §8 says to retry: 408, 429 and every 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}
