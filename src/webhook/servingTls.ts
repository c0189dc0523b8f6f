/**
 * The webhook's HTTPS server options: tollgate's TLS policy (TLS 1.3 preferred, TLS 1.2 with
 * ECDHE + AEAD only, the hybrid post-quantum group where the runtime has it) with the serving
 * certificate. The API server presents no client certificate, so none is requested.
 */
import tls, { type SecureContextOptions } from 'node:tls';
import type { TlsPolicy } from '../tls/policy.ts';
import type { ServingCert } from './servingCert.ts';

export function servingContextOptions(cert: ServingCert, policy: TlsPolicy): SecureContextOptions {
  return {
    cert: cert.certPem,
    key: cert.keyPem,
    minVersion: policy.minVersion,
    maxVersion: policy.maxVersion,
    ciphers: policy.ciphers,
    sigalgs: policy.sigalgs,
    ecdhCurve: policy.ecdhCurve,
    honorCipherOrder: policy.honorCipherOrder,
  };
}

/** Build the context once to find out whether OpenSSL accepts the material (it throws if not). */
export function checkServingContext(options: SecureContextOptions): void {
  tls.createSecureContext(options);
}
