/**
 * Why a TLS handshake failed, as a closed list: the `reason` label of tollgate_handshakes_total,
 * the reasons README.md lists, and what tls/handshakeFailure.ts classifies Node's errors into.
 * Here, below both tls/ and telemetry/, so the classifier need not load the metrics to name them.
 */
export const HANDSHAKE_FAILURE_REASONS = [
  'no_client_cert',
  'unknown_ca',
  'cert_expired',
  'cert_revoked',
  'bad_certificate',
  'protocol_version',
  'no_shared_cipher',
  'timeout',
  'handshake_cap',
  'other',
] as const;
export type HandshakeFailureReason = (typeof HANDSHAKE_FAILURE_REASONS)[number];
