import type { VerifierDeps } from './verifier.ts';

/**
 * What a shared replay store keeps of a (keyid, nonce) pair: a keyed digest, never the nonce.
 * The key is the pair's own HMAC key, which every replica holds and nobody else does, so every
 * replica computes the same fingerprint while the store (and whoever reads it) cannot learn or
 * forge nonces. The message carries a label and a NUL, so it can never be a signature base (those
 * begin with a quoted component name): the MAC of one is never the MAC of the other.
 *
 *   fingerprint = keyid ":" base64url(HMAC-SHA256(K_keyid, "tollgate-replay" 0x00 nonce)[0..16])
 */
const LABEL = 'tollgate-replay\0';
const FINGERPRINT_BYTES = 16;

/** null when the key left the ring since the signature verified (the request is then refused as an unknown key) */
export function nonceFingerprint(verifier: VerifierDeps, keyId: string, nonce: string): string | null {
  const key = verifier.keys().get(keyId);
  if (key === undefined || verifier.macs === undefined) return null;
  const mac = verifier.macs.for(key).mac(LABEL + nonce);
  return `${keyId}:${mac.subarray(0, FINGERPRINT_BYTES).toString('base64url')}`;
}
