import { TollgateError, type ErrorCode } from '../core/errors.ts';

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT', 'ERR_TLS_HANDSHAKE_TIMEOUT']);

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

/** Map an error from the upstream side to the code the downstream sees. */
export function upstreamErrorCode(err: unknown): ErrorCode {
  if (err instanceof TollgateError) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (TIMEOUT_CODES.has(code)) return 'ERR_UPSTREAM_TIMEOUT';
    if (CERT_VERIFY_CODES.has(code)) return 'ERR_UPSTREAM_IDENTITY';
  }
  return 'ERR_UPSTREAM_UNAVAILABLE';
}
