import tls, { type SecureContext, type SecureContextOptions } from 'node:tls';
import type { TlsPolicy } from './policy.ts';
import type { RevokedSerials } from './revocation.ts';

/**
 * The PEM material a TLS context is made of: our certificate chain and key, the CA bundle, and
 * the CRLs to check revocation with (each one separately: OpenSSL reads only the first CRL of
 * a PEM buffer; an empty list means no revocation checking).
 */
export interface TlsMaterial {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly caPem: Buffer;
  readonly crls: readonly Buffer[];
  /** what those CRLs revoke, for the connections OpenSSL does not check (resumed sessions): see revocation.ts */
  readonly revoked: RevokedSerials;
}

/** Options shared by server and client contexts: our certificate, the trust bundle, CRLs, the policy. */
export function secureContextOptions(material: TlsMaterial, policy: TlsPolicy): SecureContextOptions {
  const opts: SecureContextOptions = {
    cert: material.certPem,
    key: material.keyPem,
    ca: material.caPem,
    minVersion: policy.minVersion,
    maxVersion: policy.maxVersion,
    ciphers: policy.ciphers,
    sigalgs: policy.sigalgs,
    ecdhCurve: policy.ecdhCurve,
    honorCipherOrder: policy.honorCipherOrder,
  };
  if (material.crls.length > 0) opts.crl = [...material.crls];
  return opts;
}

/**
 * A client context, built once per identity and reused for every upstream connection
 * (a context per connection costs milliseconds of handshake time).
 */
export function clientSecureContext(material: TlsMaterial, policy: TlsPolicy): SecureContext {
  return tls.createSecureContext(secureContextOptions(material, policy));
}
