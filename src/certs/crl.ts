/**
 * Certificate revocation lists from `identity.crlFile`: what a loaded CRL is (CrlInfo), when one
 * is stale, and which CRLs TLS and the per-connection revocation check get at a given time.
 * Reading and checking a CRL file is crlCheck.ts, imported only when a crlFile is configured.
 *
 * What OpenSSL (through the secure context's `crl` option) does with them, checked on Node 24
 * / OpenSSL 3.5: once any CRL is set, revocation is checked for EVERY certificate of a peer's
 * chain except the trust anchor (X509_V_FLAG_CRL_CHECK_ALL), so each CA needs a CRL or its
 * peers fail with UNABLE_TO_GET_CRL; a CRL past its nextUpdate refuses every peer it covers
 * (CRL_HAS_EXPIRED); only the first CRL of a PEM buffer is read, so each CRL is handed over
 * separately; the PEM label must be "X509 CRL".
 */
import { NOTHING_REVOKED, type RevokedSerials } from '../tls/revocation.ts';

/** What a stale CRL does: `warn` keeps serving without it; `refuse` refuses every handshake it covers. */
export type CrlStalePolicy = 'warn' | 'refuse';

/** One CRL of the file, parsed and checked. */
export interface CrlInfo {
  /** the CRL alone, as "X509 CRL" PEM: what OpenSSL reads */
  readonly pem: Buffer;
  /** its issuer's subject, one line */
  readonly issuer: string;
  readonly thisUpdate: Date;
  /** absent in a CRL that never goes stale */
  readonly nextUpdate: Date | null;
  /** the serials it revokes, as revocationKey(issuer as Node prints it, serial) */
  readonly revoked: readonly string[];
}

/** A CRL is stale once its nextUpdate has passed. */
export function isStale(crl: CrlInfo, now: Date): boolean {
  return crl.nextUpdate !== null && crl.nextUpdate.getTime() <= now.getTime();
}

/** The problem (refuse) or warning (warn) a stale CRL gives. */
export function staleCrlMessage(crl: CrlInfo, policy: CrlStalePolicy, label: string): string {
  const since = `${label}: the CRL of ${crl.issuer} is stale since ${crl.nextUpdate?.toISOString() ?? '?'} (nextUpdate)`;
  return policy === 'refuse'
    ? `${since}; with identity.crlStale "refuse" every handshake it covers is refused`
    : `${since}; with identity.crlStale "warn" revocation is not checked from crlFile while it is stale`;
}

/**
 * The CRLs to hand OpenSSL at time `at`. `refuse`: all of them (OpenSSL refuses what a stale
 * one covers). `warn`: all of them while every one is fresh, none once any is stale (OpenSSL
 * checks every CA once a CRL is set, so dropping only the stale one would refuse its peers).
 */
export function crlsToApply(crls: readonly CrlInfo[], policy: CrlStalePolicy, at: Date): readonly Buffer[] {
  return inForce(crls, policy, at).map((c) => c.pem);
}

/** What the CRLs handed to OpenSSL at time `at` revoke, as one set (tls/revocation.ts), for the connections OpenSSL does not check. */
export function revokedToApply(crls: readonly CrlInfo[], policy: CrlStalePolicy, at: Date): RevokedSerials {
  const applied = inForce(crls, policy, at);
  return applied.length === 0 ? NOTHING_REVOKED : new Set(applied.flatMap((c) => c.revoked));
}

function inForce(crls: readonly CrlInfo[], policy: CrlStalePolicy, at: Date): readonly CrlInfo[] {
  return policy === 'warn' && crls.some((c) => isStale(c, at)) ? [] : crls;
}
