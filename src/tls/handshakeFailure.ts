import type { HandshakeFailureReason } from '../core/handshakeFailureReasons.ts';

/**
 * Classify a failed server-side handshake (`tlsClientError`) into HANDSHAKE_FAILURE_REASONS (README.md lists them),
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
  // the client offered no signature algorithm of ours (SHA-224 only, say): a policy mismatch like a cipher one
  ERR_SSL_NO_SHARED_SIGNATURE_ALGORITHMS: 'no_shared_cipher',
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
  // OpenSSL reports only the LAST error of a chain it verifies (Node's verify callback lets it go
  // on after each one). With a CRL set, every certificate's issuer must have a CRL
  // (X509_V_FLAG_CRL_CHECK_ALL), and that lookup runs after chain building: a chain that does
  // not end in our bundle (SELF_SIGNED_CERT_IN_CHAIN without a CRL) then also has no CRL for
  // its foreign issuer, and UNABLE_TO_GET_CRL is what is left. A CA of ours cannot be the one
  // missing: the identity loader refuses a CRL file that does not cover every CA of the bundle,
  // and CRLs are applied all or none (crl.ts). So the issuer without a CRL is one the peer
  // brought, not one we trust: unknown_ca. Our own CRL problems have their own codes below.
  UNABLE_TO_GET_CRL: 'unknown_ca',
  // OpenSSL 3 gives up building a chain that uses a leaf as an issuer (no CA flag, no
  // keyCertSign) without naming an error, and X509_verify_cert's safety net reports
  // X509_V_ERR_UNSPECIFIED; only a failed verification of the peer's chain reaches us with it
  // (with a CRL or without), so the peer's certificate is at fault
  UNSPECIFIED: 'bad_certificate',
  // revocation could not be checked because OUR CRL is stale, not yet valid or badly signed:
  // not the peer's fault, so not cert_revoked
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
