/**
 * Reading a CRL file and checking it against the identity: parsed with @peculiar/x509 (Node's
 * crypto has no CRL parser), each CRL checked to be signed by a CA we trust, with thisUpdate /
 * nextUpdate read for staleness. Imported only when `identity.crlFile` is set: @peculiar/x509
 * and its ASN.1 stack cost a process ~7 MiB that a sidecar without CRLs does not pay.
 */
import { webcrypto, type X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { revocationKey } from '../tls/revocation.ts';
import type { CrlInfo } from './crl.ts';

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
  certs: {
    readonly leaf: X509Certificate;
    readonly intermediates: readonly X509Certificate[];
    readonly cas: readonly X509Certificate[];
  },
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
      problems.push(
        `${label}: the CRL issued by ${crl.issuer} is not valid before ${crl.thisUpdate.toISOString()} (thisUpdate)`,
      );
      continue;
    }
    if (leaf.issuer === crl.issuer && crl.findRevoked(leaf) !== null) {
      problems.push(
        `certFile: our own certificate (serial ${leaf.serialNumber}) is revoked by the CRL of ${crl.issuer}`,
      );
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
      problems.push(
        `${label}: no CRL from the CA ${ca.subject} (with a CRL file set, OpenSSL refuses every peer of a CA that has no CRL)`,
      );
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
