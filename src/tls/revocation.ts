import type { X509Certificate } from 'node:crypto';

/**
 * The certificates the CRLs in force revoke, as one set of `revocationKey(issuer, serial)`
 * strings, built once per reload (certs/crl.ts) and swapped whole with the TLS material.
 *
 * OpenSSL checks CRLs during a full handshake only: a resumed session (a TLS 1.3 PSK or a
 * TLS 1.2 ticket) skips certificate verification, so a peer revoked after its session was
 * issued would still get in. The inbound listener asks this set on every connection instead,
 * which costs one Set lookup. Only the leaf is asked: a resumed session carries the peer's
 * leaf but not its chain (a revoked intermediate is covered by the ticket keys, which change
 * with every CRL change: see tls/sessionBinding.ts).
 */
export type RevokedSerials = ReadonlySet<string>;

export const NOTHING_REVOKED: RevokedSerials = Object.freeze(new Set<string>());

/**
 * `issuer` as Node prints a name (X509Certificate#subject / #issuer), `serial` in hex as either
 * Node (upper case) or @peculiar/x509 (lower case, a leading 00 when the top bit is set) gives it.
 */
export function revocationKey(issuer: string, serial: string): string {
  return `${issuer}\u0000${serial.toUpperCase().replace(/^0+(?=.)/, '')}`;
}

export function revocationKeyOf(cert: X509Certificate): string {
  return revocationKey(cert.issuer, cert.serialNumber);
}
