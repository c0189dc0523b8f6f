/**
 * The one table of tollgate's stable error codes: code -> HTTP status and the
 * metric reason it is counted under. README.md lists exactly these codes
 * (test/errors-documented.test.ts keeps the two equal).
 */
export const ERRORS = {
  ERR_PEER_NOT_ALLOWED: { status: 403, reason: 'peer_not_allowed', message: 'peer identity is not allowed' },
  ERR_SIG_MISSING: { status: 401, reason: 'missing', message: 'no signature with the expected tag' },
  ERR_SIG_MALFORMED: { status: 400, reason: 'malformed', message: 'signature fields do not parse' },
  ERR_SIG_COVERAGE: { status: 401, reason: 'coverage', message: 'a required component or parameter is not covered' },
  ERR_SIG_UNKNOWN_KEY: { status: 401, reason: 'unknown_key', message: 'unknown key id' },
  ERR_SIG_INVALID: { status: 401, reason: 'invalid', message: 'signature does not verify' },
  ERR_SIG_EXPIRED: { status: 401, reason: 'expired', message: 'signature outside its validity window' },
  ERR_SIG_REPLAYED: { status: 401, reason: 'replayed', message: 'nonce already seen' },
  ERR_DIGEST_MISSING: { status: 400, reason: 'digest_missing', message: 'content without Content-Digest' },
  ERR_DIGEST_MISMATCH: { status: 400, reason: 'digest_mismatch', message: 'Content-Digest does not match the content' },
  ERR_REPLAY_CACHE_FULL: { status: 503, reason: 'replay_cache_full', message: 'replay cache is full' },
  ERR_PAYLOAD_TOO_LARGE: { status: 413, reason: 'payload_too_large', message: 'body over the configured limit' },
  ERR_PAYLOAD_ANOMALY: { status: 422, reason: 'payload_anomaly', message: 'payload size anomaly' },
  ERR_RATE_LIMITED: { status: 429, reason: 'rate_limited', message: 'rate limit exceeded' },
  ERR_UPSTREAM_UNAVAILABLE: {
    status: 502,
    reason: 'upstream_unavailable',
    message: 'the upstream could not be reached',
  },
  ERR_UPSTREAM_TIMEOUT: { status: 504, reason: 'upstream_timeout', message: 'upstream did not answer in time' },
  ERR_UPSTREAM_IDENTITY: {
    status: 502,
    reason: 'upstream_identity',
    message: 'upstream identity or pin does not match',
  },
  ERR_DRAINING: { status: 503, reason: 'draining', message: 'shutting down' },
  ERR_HEADERS_TOO_LARGE: {
    status: 431,
    reason: 'headers_too_large',
    message: 'request head over the configured limit',
  },
  ERR_HEADERS_TIMEOUT: { status: 408, reason: 'headers_timeout', message: 'request head not received in time' },
  ERR_BAD_REQUEST: { status: 400, reason: 'bad_request', message: 'the request does not parse as HTTP' },
  ERR_BODY_TIMEOUT: { status: 408, reason: 'body_timeout', message: 'request body slower than the minimum data rate' },
  ERR_UPSTREAM_PROTOCOL: {
    status: 502,
    reason: 'upstream_protocol',
    message: 'the upstream response is malformed or ambiguous',
  },
  ERR_UNSUPPORTED_CODING: {
    status: 501,
    reason: 'unsupported_coding',
    message: 'a transfer-coding other than chunked',
  },
  ERR_METHOD_NOT_ALLOWED: { status: 405, reason: 'method_not_allowed', message: 'CONNECT is not proxied' },
  ERR_GRPC_NEEDS_HTTP2: {
    status: 502,
    reason: 'grpc_needs_http2',
    message: 'gRPC is carried over HTTP/2 end to end; a hop here speaks HTTP/1.1',
  },
  ERR_NO_ROUTE: { status: 404, reason: 'no_route', message: 'no route of the gateway matches the request' },
  ERR_BAD_PATH: {
    status: 400,
    reason: 'bad_path',
    message: 'the request target is not a canonical origin-form path',
  },
  ERR_SHARED_STATE_UNAVAILABLE: {
    status: 503,
    reason: 'shared_state_unavailable',
    message: 'the shared replay and rate-limit store cannot be reached',
  },
  ERR_NO_HEALTHY_UPSTREAM: {
    status: 503,
    reason: 'no_healthy_upstream',
    message: 'every endpoint of the route is ejected',
  },
  ERR_ADMIN_UNAUTHORIZED: { status: 401, reason: 'admin_unauthorized', message: 'missing or wrong admin credentials' },
  ERR_ADMIN_FORBIDDEN: { status: 403, reason: 'admin_forbidden', message: 'cross-origin request or foreign Host' },
  ERR_ADMIN_NOT_FOUND: { status: 404, reason: 'admin_not_found', message: 'no such admin endpoint' },
  ERR_ADMIN_METHOD_NOT_ALLOWED: {
    status: 405,
    reason: 'admin_method_not_allowed',
    message: 'method not allowed on this admin endpoint',
  },
  ERR_ADMIN_CONFLICT: { status: 409, reason: 'admin_conflict', message: 'not possible while starting or draining' },
  ERR_ADMIN_FAILED: { status: 500, reason: 'admin_failed', message: 'the admin operation failed' },
} as const satisfies Record<string, { status: number; reason: string; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * Why an upstream failed, finer than its code: the `reason` label of
 * tollgate_upstream_errors_total and the message of the log line, so a name that does not
 * resolve, a refused or reset connection, no route and a timeout are told apart. The client
 * sees only the code (how the sidecar's network looks is not its business).
 */
export const UPSTREAM_FAILURES = {
  upstream_dns: { code: 'ERR_UPSTREAM_UNAVAILABLE', message: "the upstream's name does not resolve (DNS)" },
  upstream_refused: {
    code: 'ERR_UPSTREAM_UNAVAILABLE',
    message: 'the upstream refused the connection (nothing listens on its port)',
  },
  upstream_reset: {
    code: 'ERR_UPSTREAM_UNAVAILABLE',
    message: 'the upstream reset or closed the connection before answering',
  },
  upstream_unreachable: { code: 'ERR_UPSTREAM_UNAVAILABLE', message: 'no route to the upstream host' },
  upstream_unavailable: { code: 'ERR_UPSTREAM_UNAVAILABLE', message: 'the upstream could not be reached' },
  upstream_timeout: { code: 'ERR_UPSTREAM_TIMEOUT', message: 'the upstream did not answer in time' },
  upstream_identity: { code: 'ERR_UPSTREAM_IDENTITY', message: "the upstream's identity or pin does not match" },
  upstream_protocol: { code: 'ERR_UPSTREAM_PROTOCOL', message: "the upstream's response is malformed or ambiguous" },
  upstream_ejected: { code: 'ERR_NO_HEALTHY_UPSTREAM', message: 'every endpoint of the route is ejected' },
} as const satisfies Record<string, { code: ErrorCode; message: string }>;

export type UpstreamFailureReason = keyof typeof UPSTREAM_FAILURES;
export const UPSTREAM_FAILURE_REASONS = Object.keys(UPSTREAM_FAILURES) as UpstreamFailureReason[];

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

/** An error that carries one of the table's codes; foreign errors ride along as `cause`. */
export class TollgateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].message, options);
    this.name = 'TollgateError';
    this.code = code;
    this.status = ERRORS[code].status;
  }
}

/** Pre-serialised refusal bodies: built once, so a refusal allocates nothing new per request. */
export const REFUSAL_BODIES: Readonly<Record<ErrorCode, Buffer>> = Object.freeze(
  Object.fromEntries(
    ERROR_CODES.map((code) => [code, Buffer.from(JSON.stringify({ error: code, message: ERRORS[code].message }))]),
  ) as Record<ErrorCode, Buffer>,
);

/**
 * A start that cannot happen, with every problem named by its config path. `usage`: the
 * configuration's fault (exit 2), as opposed to the runtime's (exit 1: a port taken, a
 * worker thread that cannot start).
 */
export class StartupError extends Error {
  readonly problems: readonly string[];
  readonly usage: boolean;
  constructor(message: string, problems: readonly string[], usage: boolean) {
    super(message);
    this.name = 'StartupError';
    this.problems = problems;
    this.usage = usage;
  }
}
