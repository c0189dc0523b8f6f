import { readFile } from 'node:fs/promises';
import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { keyPolicyProblem } from '../tls/policy.ts';
import { notAfter, notBefore, parseCertificates } from './pem.ts';

/** The identity files as configured: a certificate chain, its key, the CA bundle, an optional CRL. */
export interface IdentityFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  readonly crlFile: string | null;
}

/** A loaded and validated identity: the PEM bytes TLS needs plus the parsed certificates. */
export interface IdentityBundle {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly caPem: Buffer;
  readonly crlPem: Buffer | null;
  readonly leaf: X509Certificate;
  /** the leaf followed by any intermediates from the certificate file */
  readonly chain: readonly X509Certificate[];
  readonly cas: readonly X509Certificate[];
  readonly loadedAt: Date;
}

export type IdentityLoadResult =
  | { readonly ok: true; readonly bundle: IdentityBundle; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly problems: readonly string[] };

export const EXPIRY_WARNING_DAYS = 7;
const DAY_MS = 86_400_000;
const MAX_CHAIN_DEPTH = 8;

/**
 * Read and validate an identity: every file readable, the key matches the certificate and
 * is strong enough, the chain verifies to a CA in the bundle, and nothing is expired.
 * All problems are reported together; nothing is half-loaded.
 */
export async function loadIdentity(files: IdentityFiles, now: Date): Promise<IdentityLoadResult> {
  const problems: string[] = [];
  const read = async (label: string, file: string): Promise<Buffer | null> => {
    try {
      return await readFile(file);
    } catch (err) {
      problems.push(`${label} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return null;
    }
  };
  const [certPem, keyPem, caPem, crlPem] = await Promise.all([
    read('certFile', files.certFile),
    read('keyFile', files.keyFile),
    read('caFile', files.caFile),
    files.crlFile === null ? Promise.resolve(null) : read('crlFile', files.crlFile),
  ]);
  if (certPem === null || keyPem === null || caPem === null || (files.crlFile !== null && crlPem === null)) {
    return { ok: false, problems };
  }
  return validateIdentity({ certPem, keyPem, caPem, crlPem }, files, now);
}

export function validateIdentity(
  pems: { certPem: Buffer; keyPem: Buffer; caPem: Buffer; crlPem: Buffer | null },
  files: IdentityFiles,
  now: Date,
): IdentityLoadResult {
  const problems: string[] = [];
  const warnings: string[] = [];
  const chain = parseOrProblem(pems.certPem, `certFile ${files.certFile}`, problems);
  const cas = parseOrProblem(pems.caPem, `caFile ${files.caFile}`, problems);
  let key: KeyObject | null = null;
  try {
    key = createPrivateKey(pems.keyPem);
  } catch (err) {
    problems.push(`keyFile ${files.keyFile}: not a private key (${(err as Error).message})`);
  }
  const leaf = chain[0];
  if (leaf !== undefined && key !== null) {
    if (!leaf.checkPrivateKey(key)) problems.push(`keyFile ${files.keyFile}: does not match the certificate in ${files.certFile}`);
    const weak = keyPolicyProblem(key);
    if (weak !== null) problems.push(`keyFile ${files.keyFile}: ${weak}`);
  }
  if (leaf !== undefined) {
    checkValidity(leaf, `certFile ${files.certFile}`, now, problems, warnings);
    if (cas.length > 0 && !chainVerifies(leaf, chain.slice(1), cas)) {
      problems.push(`certFile ${files.certFile}: chain does not verify against caFile ${files.caFile}`);
    }
  }
  for (const ca of cas) {
    if (!ca.ca) problems.push(`caFile ${files.caFile}: ${ca.subject.replace(/\n/g, ', ')} is not a CA certificate`);
    checkValidity(ca, `caFile ${files.caFile}`, now, problems, warnings);
  }
  if (pems.crlPem !== null && !pems.crlPem.toString('latin1').includes('-----BEGIN X509 CRL-----')) {
    problems.push(`crlFile ${files.crlFile}: no PEM X509 CRL found`);
  }
  if (problems.length > 0 || leaf === undefined) return { ok: false, problems };
  const bundle: IdentityBundle = Object.freeze({
    certPem: pems.certPem,
    keyPem: pems.keyPem,
    caPem: pems.caPem,
    crlPem: pems.crlPem,
    leaf,
    chain,
    cas,
    loadedAt: now,
  });
  return { ok: true, bundle, warnings };
}

function parseOrProblem(pem: Buffer, label: string, problems: string[]): X509Certificate[] {
  try {
    const certs = parseCertificates(pem);
    if (certs.length === 0) problems.push(`${label}: no PEM certificate found`);
    return certs;
  } catch (err) {
    problems.push(`${label}: certificate does not parse (${(err as Error).message})`);
    return [];
  }
}

function checkValidity(cert: X509Certificate, label: string, now: Date, problems: string[], warnings: string[]): void {
  const subject = cert.subject.replace(/\n/g, ', ');
  const end = notAfter(cert);
  if (notBefore(cert).getTime() > now.getTime()) problems.push(`${label}: ${subject} is not valid before ${cert.validFrom}`);
  if (end.getTime() <= now.getTime()) problems.push(`${label}: ${subject} expired at ${cert.validTo}`);
  else if (end.getTime() - now.getTime() < EXPIRY_WARNING_DAYS * DAY_MS) {
    warnings.push(`${label}: ${subject} expires at ${cert.validTo} (less than ${EXPIRY_WARNING_DAYS} days)`);
  }
}

/** Walk leaf -> intermediates -> a CA of the bundle, checking each signature. */
export function chainVerifies(leaf: X509Certificate, intermediates: readonly X509Certificate[], cas: readonly X509Certificate[]): boolean {
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
    if (cas.some((ca) => issuedBy(current, ca))) return true;
    const next = intermediates.find((c) => c !== current && c.ca && issuedBy(current, c));
    if (next === undefined) return false;
    current = next;
  }
  return false;
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}
