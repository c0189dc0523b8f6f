import { readFile } from 'node:fs/promises';
import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { DEFAULT_EXPIRY_WARNING_FRACTION } from '../config/defaults.ts';
import { keyPolicyProblem } from '../tls/policy.ts';
import { expirySoonNotice } from './expiryWarning.ts';
import { notAfter, notBefore, parseCertificates } from './pem.ts';
import { isStale, staleCrlMessage, type CrlInfo, type CrlStalePolicy } from './crl.ts';

/** The identity files as configured: a certificate chain, its key, the CA bundle, an optional CRL. */
export interface IdentityFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  readonly crlFile: string | null;
  /** what a CRL past its nextUpdate means; default warn */
  readonly crlStale?: CrlStalePolicy;
  /** warn when less than this part of a certificate's lifetime is left; default a third */
  readonly expiryWarningFraction?: number;
}

/**
 * A loaded and validated identity: the bytes as read (to tell whether a reload changed
 * anything) plus the parsed certificates and CRLs. Which CRLs TLS gets depends on the stale
 * policy and the time (see crlsToApply), so a bundle is not itself TLS material.
 */
export interface IdentityBundle {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly caPem: Buffer;
  /** the CRL file as read, or null without one */
  readonly crlPem: Buffer | null;
  readonly crls: readonly CrlInfo[];
  readonly leaf: X509Certificate;
  /** the leaf followed by any intermediates from the certificate file */
  readonly chain: readonly X509Certificate[];
  readonly cas: readonly X509Certificate[];
  readonly loadedAt: Date;
}

export type IdentityLoadResult =
  | { readonly ok: true; readonly bundle: IdentityBundle; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly problems: readonly string[] };

const MAX_CHAIN_DEPTH = 8;

/**
 * Read and validate an identity: every file readable, the key matches the certificate and
 * is strong enough, the chain verifies to a CA in the bundle, nothing is expired (a certificate
 * with less than expiryWarningFraction of its lifetime left is a warning), and the CRLs (when
 * configured) parse, are signed by CAs of the bundle and cover each of them.
 * A stale CRL is a problem with `crlStale: "refuse"`, a warning with `"warn"`.
 * All problems are reported together; nothing is half-loaded.
 */
export async function loadIdentity(files: IdentityFiles, now: Date): Promise<IdentityLoadResult> {
  const read = await readIdentityFiles(files);
  if (!read.ok) return read;
  return validateIdentity(read.pems, files, now);
}

/** The identity files' bytes as they are now. */
export interface IdentityPems {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly caPem: Buffer;
  readonly crlPem: Buffer | null;
}

/** Read every identity file (all of them, so every unreadable one is named). */
export async function readIdentityFiles(
  files: IdentityFiles,
): Promise<
  { readonly ok: true; readonly pems: IdentityPems } | { readonly ok: false; readonly problems: readonly string[] }
> {
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
  return { ok: true, pems: { certPem, keyPem, caPem, crlPem } };
}

/** Whether a loaded identity was made of exactly these bytes. */
export function madeOf(bundle: IdentityBundle, pems: IdentityPems): boolean {
  const same = (x: Buffer | null, y: Buffer | null): boolean => (x === null || y === null ? x === y : x.equals(y));
  return (
    same(bundle.certPem, pems.certPem) &&
    same(bundle.keyPem, pems.keyPem) &&
    same(bundle.caPem, pems.caPem) &&
    same(bundle.crlPem, pems.crlPem)
  );
}

export async function validateIdentity(
  pems: IdentityPems,
  files: IdentityFiles,
  now: Date,
): Promise<IdentityLoadResult> {
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
  const fraction = files.expiryWarningFraction ?? DEFAULT_EXPIRY_WARNING_FRACTION;
  if (leaf !== undefined && key !== null) {
    if (!leaf.checkPrivateKey(key))
      problems.push(`keyFile ${files.keyFile}: does not match the certificate in ${files.certFile}`);
    const weak = keyPolicyProblem(key);
    if (weak !== null) problems.push(`keyFile ${files.keyFile}: ${weak}`);
  }
  if (leaf !== undefined) {
    checkValidity(leaf, `certFile ${files.certFile}`, now, fraction, problems, warnings);
    if (cas.length > 0 && !chainVerifies(leaf, chain.slice(1), cas)) {
      problems.push(`certFile ${files.certFile}: chain does not verify against caFile ${files.caFile}`);
    }
  }
  for (const ca of cas) {
    if (!ca.ca) problems.push(`caFile ${files.caFile}: ${ca.subject.replace(/\n/g, ', ')} is not a CA certificate`);
    checkValidity(ca, `caFile ${files.caFile}`, now, fraction, problems, warnings);
  }
  let crls: CrlInfo[] = [];
  if (pems.crlPem !== null) {
    const label = `crlFile ${files.crlFile}`;
    // only here: a sidecar without a crlFile never loads the CRL parser (crlCheck.ts)
    const { checkCrls, parseCrls } = await import('./crlCheck.ts');
    const parsed = parseCrls(pems.crlPem, label, problems);
    if (leaf !== undefined && problems.length === 0)
      crls = await checkCrls(parsed, { leaf, intermediates: chain.slice(1), cas }, now, label, problems);
    const policy = files.crlStale ?? 'warn';
    for (const crl of crls) {
      if (isStale(crl, now)) (policy === 'refuse' ? problems : warnings).push(staleCrlMessage(crl, policy, label));
    }
  }
  if (problems.length > 0 || leaf === undefined) return { ok: false, problems };
  const bundle: IdentityBundle = Object.freeze({
    certPem: pems.certPem,
    keyPem: pems.keyPem,
    caPem: pems.caPem,
    crlPem: pems.crlPem,
    crls: Object.freeze(crls),
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

/** Certificates of a loaded identity with less than `fraction` of their lifetime left, or expired, at `now`. */
export function expiryNotices(
  bundle: IdentityBundle,
  now: Date,
  fraction: number,
): { expiring: string[]; expired: string[] } {
  const expiring: string[] = [];
  const expired: string[] = [];
  const look = (cert: X509Certificate, label: string): void => {
    const problems: string[] = [];
    checkValidity(cert, label, now, fraction, problems, expiring);
    for (const p of problems) if (notAfter(cert).getTime() <= now.getTime()) expired.push(p);
  };
  look(bundle.leaf, 'certFile');
  for (const c of bundle.chain.slice(1)) look(c, 'certFile');
  for (const ca of bundle.cas) look(ca, 'caFile');
  return { expiring, expired };
}

function checkValidity(
  cert: X509Certificate,
  label: string,
  now: Date,
  fraction: number,
  problems: string[],
  warnings: string[],
): void {
  const subject = cert.subject.replace(/\n/g, ', ');
  if (notBefore(cert).getTime() > now.getTime())
    problems.push(`${label}: ${subject} is not valid before ${cert.validFrom}`);
  if (notAfter(cert).getTime() <= now.getTime()) problems.push(`${label}: ${subject} expired at ${cert.validTo}`);
  const soon = expirySoonNotice(cert, now, fraction);
  if (soon !== null) warnings.push(`${label}: ${subject} ${soon}`);
}

/** Walk leaf -> intermediates -> a CA of the bundle, checking each signature. */
export function chainVerifies(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  cas: readonly X509Certificate[],
): boolean {
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
