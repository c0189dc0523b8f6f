import type { HandshakeFailureReason } from '../telemetry/metrics.ts';

/**
 * Classify a failed server-side handshake (`tlsClientError`) into INTERFACE.md's reasons,
 * from Node's error code, OpenSSL's reason string, and the verification error code.
 */
const BY_CODE: Readonly<Record<string, HandshakeFailureReason>> = {
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'no_client_cert',
  ERR_TLS_HANDSHAKE_TIMEOUT: 'timeout',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'protocol_version',
  ERR_SSL_WRONG_VERSION_NUMBER: 'protocol_version',
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: 'protocol_version',
  ERR_SSL_NO_PROTOCOLS_AVAILABLE: 'protocol_version',
  ERR_SSL_NO_SHARED_CIPHER: 'no_shared_cipher',
  ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM: 'no_shared_cipher',
  ERR_SSL_NO_SHARED_GROUPS: 'no_shared_cipher',
  ERR_SSL_CERTIFICATE_VERIFY_FAILED: 'bad_certificate',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'unknown_ca',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: 'cert_expired',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED: 'cert_revoked',
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: 'bad_certificate',
  ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE: 'bad_certificate',
  // X.509 verification codes (when the verification error itself is reported)
  UNABLE_TO_GET_ISSUER_CERT: 'unknown_ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown_ca',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown_ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown_ca',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown_ca',
  CERT_HAS_EXPIRED: 'cert_expired',
  CERT_NOT_YET_VALID: 'cert_expired',
  CERT_REVOKED: 'cert_revoked',
  // revocation could not be checked (our CRL is missing for that CA, stale, not yet valid or
  // badly signed): not the peer's fault, so not cert_revoked
  UNABLE_TO_GET_CRL: 'other',
  CRL_HAS_EXPIRED: 'other',
  CRL_NOT_YET_VALID: 'other',
  CRL_SIGNATURE_FAILURE: 'other',
  INVALID_PURPOSE: 'bad_certificate',
  CERT_SIGNATURE_FAILURE: 'bad_certificate',
};

/**
 * `verifyError` is the socket's `authorizationError`: when a client certificate fails
 * verification, Node destroys the socket itself and reports only a generic ECONNRESET
 * ("socket hang up"), so the verification code is the only trace of why.
 */
export function classifyHandshakeFailure(err: Error, verifyError?: string | null): HandshakeFailureReason {
  if (typeof verifyError === 'string') {
    const known = BY_CODE[verifyError];
    if (known !== undefined) return known;
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined) {
    const known = BY_CODE[code];
    if (known !== undefined) return known;
  }
  const reason = (err as { reason?: string }).reason;
  if (typeof reason === 'string') {
    if (/certificate expired/i.test(reason)) return 'cert_expired';
    if (/unknown ca/i.test(reason)) return 'unknown_ca';
    if (/revoked/i.test(reason)) return 'cert_revoked';
    if (/version/i.test(reason)) return 'protocol_version';
    if (/cipher/i.test(reason)) return 'no_shared_cipher';
    if (/certificate/i.test(reason)) return 'bad_certificate';
  }
  return 'other';
}
