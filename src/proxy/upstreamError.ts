import {
  ERRORS,
  TollgateError,
  UPSTREAM_FAILURES,
  type ErrorCode,
  type UpstreamFailureReason,
} from '../core/errors.ts';

const TIMEOUT_CODES = new Set([
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ETIMEDOUT',
  'ERR_TLS_HANDSHAKE_TIMEOUT',
]);
/** getaddrinfo's answers: the name is unknown, or the resolver failed or is unreachable */
const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA', 'ENODATA', 'ESERVFAIL']);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET']);
const UNREACHABLE_CODES = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL']);

/** Certificate verification failures reported by OpenSSL/Node when we check a server. */
export const CERT_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_PURPOSE',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UNABLE_TO_GET_CRL',
  'CRL_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_SIGNATURE_FAILURE',
]);

/** What went wrong upstream: the code the downstream sees, and the finer reason the metric and the log line name. */
export interface UpstreamFailure {
  readonly code: ErrorCode;
  readonly reason: UpstreamFailureReason;
}

/** Classify an error from the upstream side (a dial, a TLS check, the connection, or the response). */
export function upstreamFailure(err: unknown): UpstreamFailure {
  if (err instanceof TollgateError) {
    if (err.code === 'ERR_NO_HEALTHY_UPSTREAM') return failure('upstream_ejected');
    const reason = ERRORS[err.code].reason;
    return {
      code: err.code,
      reason: reason in UPSTREAM_FAILURES ? (reason as UpstreamFailureReason) : 'upstream_unavailable',
    };
  }
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : '';
  if (TIMEOUT_CODES.has(code)) return failure('upstream_timeout');
  if (CERT_VERIFY_CODES.has(code)) return failure('upstream_identity');
  if (DNS_CODES.has(code)) return failure('upstream_dns');
  if (code === 'ECONNREFUSED') return failure('upstream_refused');
  if (RESET_CODES.has(code)) return failure('upstream_reset');
  if (UNREACHABLE_CODES.has(code)) return failure('upstream_unreachable');
  return failure('upstream_unavailable');
}

function failure(reason: UpstreamFailureReason): UpstreamFailure {
  return { code: UPSTREAM_FAILURES[reason].code, reason };
}
