import type { ErrorCode } from '../core/errors.ts';

/**
 * gRPC over HTTP/2 as a proxy sees it (grpc/grpc PROTOCOL-HTTP2.md): a refusal answered as a
 * gRPC status, so a gRPC client reports a proper code instead of "unexpected HTTP status", and the
 * call's own deadline (`grpc-timeout`), which bounds how long tollgate waits upstream.
 */

/** gRPC status codes used here (grpc/grpc doc/statuscodes.md) */
export const GRPC_STATUS = {
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/**
 * The gRPC status a refusal is answered with. What the peer must fix in its credentials is
 * UNAUTHENTICATED, what it may not do is PERMISSION_DENIED, a limit it hit is
 * RESOURCE_EXHAUSTED, what it sent malformed is INVALID_ARGUMENT, an upstream that is away is
 * UNAVAILABLE (which gRPC clients may retry) and one that was too slow DEADLINE_EXCEEDED.
 */
const STATUS_OF: Readonly<Record<ErrorCode, number>> = {
  ERR_PEER_NOT_ALLOWED: GRPC_STATUS.PERMISSION_DENIED,
  ERR_SIG_MISSING: GRPC_STATUS.UNAUTHENTICATED,
  ERR_SIG_MALFORMED: GRPC_STATUS.UNAUTHENTICATED,
  ERR_SIG_COVERAGE: GRPC_STATUS.UNAUTHENTICATED,
  ERR_SIG_UNKNOWN_KEY: GRPC_STATUS.UNAUTHENTICATED,
  ERR_SIG_INVALID: GRPC_STATUS.UNAUTHENTICATED,
  ERR_SIG_EXPIRED: GRPC_STATUS.UNAUTHENTICATED,
  ERR_SIG_REPLAYED: GRPC_STATUS.UNAUTHENTICATED,
  ERR_DIGEST_MISSING: GRPC_STATUS.INVALID_ARGUMENT,
  ERR_DIGEST_MISMATCH: GRPC_STATUS.INVALID_ARGUMENT,
  ERR_REPLAY_CACHE_FULL: GRPC_STATUS.UNAVAILABLE,
  ERR_PAYLOAD_TOO_LARGE: GRPC_STATUS.RESOURCE_EXHAUSTED,
  ERR_PAYLOAD_ANOMALY: GRPC_STATUS.INVALID_ARGUMENT,
  ERR_RATE_LIMITED: GRPC_STATUS.RESOURCE_EXHAUSTED,
  ERR_UPSTREAM_UNAVAILABLE: GRPC_STATUS.UNAVAILABLE,
  ERR_UPSTREAM_TIMEOUT: GRPC_STATUS.DEADLINE_EXCEEDED,
  ERR_UPSTREAM_IDENTITY: GRPC_STATUS.UNAVAILABLE,
  ERR_DRAINING: GRPC_STATUS.UNAVAILABLE,
  ERR_HEADERS_TOO_LARGE: GRPC_STATUS.RESOURCE_EXHAUSTED,
  ERR_HEADERS_TIMEOUT: GRPC_STATUS.DEADLINE_EXCEEDED,
  ERR_BAD_REQUEST: GRPC_STATUS.INVALID_ARGUMENT,
  ERR_BODY_TIMEOUT: GRPC_STATUS.DEADLINE_EXCEEDED,
  ERR_UPSTREAM_PROTOCOL: GRPC_STATUS.INTERNAL,
  ERR_UNSUPPORTED_CODING: GRPC_STATUS.UNIMPLEMENTED,
  ERR_METHOD_NOT_ALLOWED: GRPC_STATUS.UNIMPLEMENTED,
  ERR_GRPC_NEEDS_HTTP2: GRPC_STATUS.UNIMPLEMENTED,
  ERR_NO_ROUTE: GRPC_STATUS.UNIMPLEMENTED,
  ERR_BAD_PATH: GRPC_STATUS.INVALID_ARGUMENT,
  ERR_SHARED_STATE_UNAVAILABLE: GRPC_STATUS.UNAVAILABLE,
  ERR_NO_HEALTHY_UPSTREAM: GRPC_STATUS.UNAVAILABLE,
  ERR_ADMIN_UNAUTHORIZED: GRPC_STATUS.UNAUTHENTICATED,
  ERR_ADMIN_FORBIDDEN: GRPC_STATUS.PERMISSION_DENIED,
  ERR_ADMIN_NOT_FOUND: GRPC_STATUS.UNIMPLEMENTED,
  ERR_ADMIN_METHOD_NOT_ALLOWED: GRPC_STATUS.UNIMPLEMENTED,
  ERR_ADMIN_CONFLICT: GRPC_STATUS.UNAVAILABLE,
  ERR_ADMIN_FAILED: GRPC_STATUS.INTERNAL,
};

export function grpcStatusOf(code: ErrorCode): number {
  return STATUS_OF[code];
}

/**
 * A `grpc-message` value: percent-encoded UTF-8, every byte outside printable ASCII and `%` itself
 * (PROTOCOL-HTTP2.md, "Responses").
 */
export function grpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    if (byte >= 0x20 && byte <= 0x7e && byte !== 0x25) out += String.fromCharCode(byte);
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * A `grpc-timeout` value (1 to 8 digits and a unit: H, M, S, m, u, n) in milliseconds, at least 1;
 * null when it is absent or malformed (a malformed one is not trusted to shorten anything).
 */
export function grpcTimeoutMs(value: string | undefined): number | null {
  if (value === undefined) return null;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (m === null) return null;
  return Math.max(1, Math.ceil(Number(m[1]) * UNIT_MS[m[2]!]!));
}
