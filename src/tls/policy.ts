import tls from 'node:tls';
import type { KeyObject } from 'node:crypto';
import type { TlsMinVersion } from '../config/types.ts';

/**
 * The TLS policy every listener and every upstream connection uses:
 * TLS 1.3 preferred; TLS 1.2 only with ECDHE key exchange and AEAD ciphers;
 * nothing older; groups X25519MLKEM768 (where the runtime's OpenSSL has it), X25519, P-256.
 * Node has no 0-RTT (early data) API, so there is nothing to switch off for it.
 */
export const TLS13_SUITES = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
] as const;

export const TLS12_SUITES = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
] as const;

/**
 * Signature algorithms, offered and accepted, for handshake signatures and certificate chains
 * (OpenSSL's list for both unless told otherwise; it also goes into our CertificateRequest).
 * SHA-256 and up only: OpenSSL's default list still has SHA-224 for TLS 1.2 (ECDSA+SHA224,
 * RSA+SHA224), which a scanner flags and no client of ours needs. SHA-1 is not listed either.
 * In TLS 1.2 an `ecdsa_secp*_sha*` name means ECDSA with that hash on any curve.
 */
export const SIGNATURE_ALGORITHMS = [
  'ecdsa_secp256r1_sha256',
  'ecdsa_secp384r1_sha384',
  'ecdsa_secp521r1_sha512',
  'ed25519',
  'ed448',
  'rsa_pss_rsae_sha256',
  'rsa_pss_rsae_sha384',
  'rsa_pss_rsae_sha512',
  'rsa_pss_pss_sha256',
  'rsa_pss_pss_sha384',
  'rsa_pss_pss_sha512',
  'rsa_pkcs1_sha256',
  'rsa_pkcs1_sha384',
  'rsa_pkcs1_sha512',
] as const;

export const HYBRID_PQ_GROUP = 'X25519MLKEM768';
const CLASSIC_GROUPS = ['X25519', 'P-256'] as const;

export const MIN_RSA_BITS = 2048;

export interface TlsPolicy {
  readonly minVersion: TlsMinVersion;
  readonly maxVersion: 'TLSv1.3';
  readonly ciphers: string;
  /** SIGNATURE_ALGORITHMS, colon-separated */
  readonly sigalgs: string;
  readonly ecdhCurve: string;
  readonly honorCipherOrder: true;
  /** whether the hybrid post-quantum group is offered */
  readonly postQuantum: boolean;
}

/** Whether this runtime's OpenSSL knows the hybrid group (OpenSSL >= 3.5: Node 22.20+/24). Asked once at startup. */
export function runtimeSupportsGroup(group: string): boolean {
  try {
    tls.createSecureContext({ ecdhCurve: group });
    return true;
  } catch {
    return false;
  }
}

export function tlsPolicy(minVersion: TlsMinVersion, postQuantum = runtimeSupportsGroup(HYBRID_PQ_GROUP)): TlsPolicy {
  const groups = postQuantum ? [HYBRID_PQ_GROUP, ...CLASSIC_GROUPS] : [...CLASSIC_GROUPS];
  return Object.freeze({
    minVersion,
    maxVersion: 'TLSv1.3',
    ciphers: [...TLS13_SUITES, ...TLS12_SUITES].join(':'),
    sigalgs: SIGNATURE_ALGORITHMS.join(':'),
    ecdhCurve: groups.join(':'),
    honorCipherOrder: true,
    postQuantum,
  });
}

/** A key the policy refuses at load, or null when it is acceptable. */
export function keyPolicyProblem(key: KeyObject): string | null {
  const type = key.asymmetricKeyType;
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) return `RSA key of ${bits} bits is below the minimum of ${MIN_RSA_BITS}`;
    return null;
  }
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve !== 'prime256v1' && curve !== 'secp384r1' && curve !== 'secp521r1')
      return `EC curve ${curve ?? 'unknown'} is not allowed`;
    return null;
  }
  if (type === 'ed25519') return null;
  return `key type ${type ?? 'unknown'} is not allowed`;
}
