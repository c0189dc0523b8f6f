/**
 * SPKI pins: `sha256/` + base64 of the SHA-256 of a certificate's DER SubjectPublicKeyInfo
 * (the HPKP / Envoy `verify_certificate_spki` form). A pin survives re-issuing a certificate
 * for the same key, and changes when the key does.
 */
import { X509Certificate, createHash, createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

const PREFIX = 'sha256/';
const SHA256_BYTES = 32;

/** The pin of a certificate given as PEM (the first certificate of a bundle) or DER. */
export function spkiPin(certPem: string | Buffer): string {
  return spkiPinOfKeyObject(new X509Certificate(certPem).publicKey);
}

/** The pin of a key; a private key is pinned by its public half. */
export function spkiPinOfKeyObject(key: KeyObject): string {
  if (key.type === 'secret') throw new Error('a secret key has no SubjectPublicKeyInfo to pin');
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return PREFIX + createHash('sha256').update(spki).digest('base64');
}

/** Syntax only: `sha256/` followed by canonical standard base64 of exactly 32 bytes. */
export function isSpkiPin(s: string): boolean {
  if (!s.startsWith(PREFIX)) return false;
  const encoded = s.slice(PREFIX.length);
  if (!/^[A-Za-z0-9+/]{43}=$/.test(encoded)) return false;
  // Re-encoding catches non-canonical trailing bits, so each pin has exactly one spelling.
  const bytes = Buffer.from(encoded, 'base64');
  return bytes.length === SHA256_BYTES && bytes.toString('base64') === encoded;
}
