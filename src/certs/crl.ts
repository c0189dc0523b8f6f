/**
 * Certificate revocation lists from `identity.crlFile`: parsed with @peculiar/x509, each one
 * checked to be signed by a CA we trust, with thisUpdate/nextUpdate read for staleness.
 *
 * What OpenSSL (through the secure context's `crl` option) does with them, checked on Node 24
 * / OpenSSL 3.5: once any CRL is set, revocation is checked for EVERY certificate of a peer's
 * chain except the trust anchor (X509_V_FLAG_CRL_CHECK_ALL), so each CA needs a CRL or its
 * peers fail with UNABLE_TO_GET_CRL; a CRL past its nextUpdate refuses every peer it covers
 * (CRL_HAS_EXPIRED); only the first CRL of a PEM buffer is read, so each CRL is handed over
 * separately; the PEM label must be "X509 CRL".
 */
import { webcrypto, type X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { NOTHING_REVOKED, revocationKey, type RevokedSerials } from '../tls/revocation.ts';

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

const PEM_BLOCK = /-----BEGIN (X509 CRL|CRL)-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END \1-----/g;

/** The CRLs of a PEM file ("X509 CRL", or "CRL" as some tools write it), in file order. */
export function parseCrls(text: Buffer, label: string, problems: string[]): x509.X509Crl[] {
  const crls: x509.X509Crl[] = [];
  const pem = text.toString('latin1');
  let index = 0;
  for (const m of pem.matchAll(PEM_BLOCK)) {
    index += 1;
    try {
      crls.push(new x509.X509Crl(Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64')));
    } catch (err) {
      problems.push(`${label}: CRL #${index} does not parse (${(err as Error).message})`);
    }
  }
  if (index === 0) problems.push(`${label}: no PEM X509 CRL found`);
  return crls;
}

/**
 * Check the CRLs against the certificates in play and describe them. Each CRL must be signed
 * by a CA of the bundle (or an intermediate of our own chain) that may sign CRLs, and be valid
 * already; each CA of the bundle needs a CRL (OpenSSL would refuse its peers without one);
 * and our own certificate must not be revoked.
 */
export async function checkCrls(
  crls: readonly x509.X509Crl[],
  certs: { readonly leaf: X509Certificate; readonly intermediates: readonly X509Certificate[]; readonly cas: readonly X509Certificate[] },
  now: Date,
  label: string,
  problems: string[],
): Promise<CrlInfo[]> {
  const issuerCerts = [...certs.cas, ...certs.intermediates];
  const issuers = issuerCerts.map((c) => new x509.X509Certificate(c.raw));
  const cas = issuers.slice(0, certs.cas.length);
  const leaf = new x509.X509Certificate(certs.leaf.raw);
  const infos: CrlInfo[] = [];
  const covered = new Set<x509.X509Certificate>();
  for (const crl of crls) {
    const named = issuers.filter((c) => c.subject === crl.issuer);
    if (named.length === 0) {
      problems.push(`${label}: the CRL issued by ${crl.issuer} is not from a CA in caFile`);
      continue;
    }
    let signer: x509.X509Certificate | null = null;
    for (const c of named) if (await verifies(crl, c)) signer = c;
    if (signer === null) {
      problems.push(`${label}: the CRL issued by ${crl.issuer} is not signed by that CA's key`);
      continue;
    }
    const usage = signer.getExtension(x509.KeyUsagesExtension);
    if (usage !== null && (usage.usages & x509.KeyUsageFlags.cRLSign) === 0) {
      problems.push(`${label}: the CA ${crl.issuer} may not sign CRLs (its key usage lacks cRLSign)`);
      continue;
    }
    if (crl.thisUpdate.getTime() > now.getTime()) {
      problems.push(`${label}: the CRL issued by ${crl.issuer} is not valid before ${crl.thisUpdate.toISOString()} (thisUpdate)`);
      continue;
    }
    if (leaf.issuer === crl.issuer && crl.findRevoked(leaf) !== null) {
      problems.push(`certFile: our own certificate (serial ${leaf.serialNumber}) is revoked by the CRL of ${crl.issuer}`);
    }
    covered.add(signer);
    // keyed by the issuer's name as Node prints it, which is what a peer certificate's `issuer` reads
    const issuerName = issuerCerts[issuers.indexOf(signer)]!.subject;
    infos.push(
      Object.freeze({
        pem: Buffer.from(x509.PemConverter.encode(crl.rawData, 'X509 CRL') + '\n'),
        issuer: crl.issuer,
        thisUpdate: crl.thisUpdate,
        nextUpdate: crl.nextUpdate ?? null,
        revoked: Object.freeze(crl.entries.map((e) => revocationKey(issuerName, e.serialNumber))),
      }),
    );
  }
  for (const ca of cas) {
    if (!covered.has(ca)) {
      problems.push(`${label}: no CRL from the CA ${ca.subject} (with a CRL file set, OpenSSL refuses every peer of a CA that has no CRL)`);
    }
  }
  return infos;
}

async function verifies(crl: x509.X509Crl, issuer: x509.X509Certificate): Promise<boolean> {
  try {
    return await crl.verify({ publicKey: issuer }, webcrypto as unknown as Parameters<x509.X509Crl['verify']>[1]);
  } catch {
    return false;
  }
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
