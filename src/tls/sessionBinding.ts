import { createHash, hkdfSync } from 'node:crypto';
import type { TlsMaterial } from './contexts.ts';

/**
 * What a TLS session issued by an inbound listener is bound to, so that it resumes only while
 * the peer would still be admitted by a full handshake there.
 *
 * A resumed session skips certificate verification, so a session must not outlive a change of
 * what the listener trusts: its CA bundle, its CRLs, its allow-list. Both keys of resumption
 * are derived from a digest of those (the "trust digest"), on every thread alike, with no
 * message between threads:
 * - the session id context (OpenSSL resumes a session, ticket or TLS 1.2 session id, only
 *   under the context it was issued in);
 * - the session ticket keys: HKDF of the instance's shared keys (workers/ticketKeys.ts,
 *   replaced hourly) with the trust digest as salt, so a trust change rotates them at once.
 * Our own certificate and key are left out: rotating them does not change whom we admit.
 */
export function trustDigest(listener: string, material: TlsMaterial, allow: unknown): Buffer {
  const h = createHash('sha256');
  // each part is length-prefixed, so no two different inputs hash alike
  const part = (b: Buffer | string): void => {
    const buf = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
    h.update(`${buf.length}:`).update(buf);
  };
  part(`tollgate listener ${listener}`);
  part(material.caPem);
  part(String(material.crls.length));
  for (const crl of material.crls) part(crl);
  part(JSON.stringify(allow));
  return h.digest();
}

/**
 * The TLS session id context: the same on every thread and across restarts with the same files
 * (Node's default is a hash of process.argv, which differs between threads), different per
 * listener and per trust digest.
 */
export function sessionIdContextOf(trust: Buffer): string {
  return trust.toString('hex').slice(0, SESSION_ID_CONTEXT_CHARS);
}
/** OpenSSL's SSL_MAX_SID_CTX_LENGTH */
const SESSION_ID_CONTEXT_CHARS = 32;

/** The 48 bytes of ticket keys a listener uses under the instance's `shared` keys and its trust digest. */
export function ticketKeysFor(shared: Buffer, trust: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, trust, 'tollgate session ticket keys', TICKET_KEY_BYTES));
}
/** what Node's setTicketKeys takes: 16 bytes of key name, 16 of HMAC key, 16 of AES key */
export const TICKET_KEY_BYTES = 48;
