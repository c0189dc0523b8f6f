/**
 * The development PKI behind `tollgate certs dev`: one ECDSA P-256 CA and, per identity,
 * one certificate usable as both TLS server and client, named by a SPIFFE URI SAN.
 * For development and demos only: the CA key is written next to the certificates.
 */
import { chmod, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';

export interface DevPkiOptions {
  trustDomain: string;
  identities: string[];
  /** Lifetime of the CA and every identity certificate, in days; default 30. */
  validityDays?: number;
  /** The issuing time; default the current time. */
  now?: Date;
}

export interface PemKeyPair {
  certPem: string;
  /** PKCS#8 PEM "PRIVATE KEY". */
  keyPem: string;
}

export interface DevPki {
  ca: PemKeyPair;
  identities: Record<string, PemKeyPair>;
}

export const DEFAULT_VALIDITY_DAYS = 30;
/** notBefore is back-dated by this much so peers with a slightly slow clock accept new certificates. */
export const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const MAX_VALIDITY_DAYS = 3650;

const IDENTITY_NAME = /^[A-Za-z0-9._-]+$/;
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Names that would collide with the files of the output layout or escape the output folder. */
const RESERVED_NAMES = new Set(['.', '..', 'ca.crt', 'ca.key']);

const KEY_FILE_MODE = 0o600;
const CERT_FILE_MODE = 0o644;
const DIR_MODE = 0o700;

/** Build a CA and one certificate per identity, all in memory. Throws listing every invalid input. */
export async function createDevPki(opts: DevPkiOptions): Promise<DevPki> {
  const problems = devPkiProblems(opts);
  if (problems.length > 0) throw new Error(`invalid dev PKI options: ${problems.join('; ')}`);

  const now = opts.now ?? new Date();
  const notBefore = new Date(now.getTime() - CLOCK_SKEW_MS);
  const notAfter = new Date(now.getTime() + (opts.validityDays ?? DEFAULT_VALIDITY_DAYS) * DAY_MS);

  // imported here, not at the top: @peculiar/x509 and its ASN.1 stack cost a process ~7 MiB, and
  // the CLI imports this module for its defaults on every start, `tollgate run` included
  const { issueCa, issueLeaf } = await import('./issue.ts');
  const ca = await issueCa({ commonName: `tollgate dev CA (${opts.trustDomain})`, notBefore, notAfter });
  const identities: Record<string, PemKeyPair> = {};
  for (const name of opts.identities) {
    const leaf = await issueLeaf(ca, {
      commonName: name,
      uris: [`spiffe://${opts.trustDomain}/${name}`],
      dnsNames: name === 'localhost' ? ['localhost'] : [name, 'localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'both',
      notBefore,
      notAfter,
    });
    identities[name] = { certPem: leaf.certPem, keyPem: leaf.keyPem };
  }
  return { ca: { certPem: ca.certPem, keyPem: ca.keyPem }, identities };
}

/**
 * Write `outDir/ca.crt`, `outDir/ca.key` and, per identity, `outDir/NAME/{tls.crt,tls.key,ca.crt}`
 * (the layout of a mounted Kubernetes TLS secret). Keys 0600, certificates 0644, new folders
 * 0700. Existing files are overwritten. Returns the paths written, in order.
 */
export async function writeDevPki(outDir: string, pki: DevPki): Promise<string[]> {
  for (const name of Object.keys(pki.identities)) {
    const problem = identityNameProblem(name);
    if (problem) throw new Error(problem);
  }
  await makePrivateDir(outDir);
  const written = [
    await writeCertFile(join(outDir, 'ca.crt'), pki.ca.certPem),
    await writeKeyFile(join(outDir, 'ca.key'), pki.ca.keyPem),
  ];
  for (const [name, pair] of Object.entries(pki.identities)) {
    const files = await writeIdentityDir(join(outDir, name), pair, pki.ca.certPem);
    written.push(files.certFile, files.keyFile, files.caFile);
  }
  return written;
}

export interface IdentityFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** Write one identity folder: `tls.crt`, `tls.key` (0600) and `ca.crt`. */
export async function writeIdentityDir(dir: string, pair: PemKeyPair, caCertPem: string): Promise<IdentityFiles> {
  await makePrivateDir(dir);
  return {
    certFile: await writeCertFile(join(dir, 'tls.crt'), pair.certPem),
    keyFile: await writeKeyFile(join(dir, 'tls.key'), pair.keyPem),
    caFile: await writeCertFile(join(dir, 'ca.crt'), caCertPem),
  };
}

/** Every problem with the options, each naming the option at fault; empty when valid. */
export function devPkiProblems(opts: DevPkiOptions): string[] {
  const problems: string[] = [];
  const tdProblem = trustDomainProblem(opts.trustDomain);
  if (tdProblem) problems.push(tdProblem);
  const seen = new Set<string>();
  for (const name of opts.identities) {
    const problem = identityNameProblem(name);
    if (problem) problems.push(problem);
    else if (seen.has(name)) problems.push(`identity ${JSON.stringify(name)} is listed twice`);
    seen.add(name);
  }
  const days = opts.validityDays;
  if (days !== undefined && !(Number.isFinite(days) && days > 0 && days <= MAX_VALIDITY_DAYS)) {
    problems.push(
      `validityDays must be a number of days above 0 and at most ${MAX_VALIDITY_DAYS}, got ${String(days)}`,
    );
  }
  if (opts.now !== undefined && Number.isNaN(opts.now.getTime())) problems.push('now is not a valid date');
  return problems;
}

/** A trust domain is a lowercase DNS name: labels of a-z, 0-9 and '-', joined by '.'. */
export function trustDomainProblem(trustDomain: string): string | undefined {
  const ok =
    trustDomain.length > 0 &&
    trustDomain.length <= 253 &&
    trustDomain.split('.').every((label) => DNS_LABEL.test(label));
  if (ok) return undefined;
  return `trust domain ${JSON.stringify(trustDomain)} is not a lowercase DNS name (letters a-z, digits, '-' and '.', e.g. "example.org")`;
}

/** An identity name becomes a path segment, a DNS SAN and a folder name: letters, digits, '.', '_', '-'. */
export function identityNameProblem(name: string): string | undefined {
  if (!IDENTITY_NAME.test(name) || name.length > 63) {
    return `identity name ${JSON.stringify(name)} must be 1 to 63 characters of letters, digits, '.', '_' and '-'`;
  }
  if (RESERVED_NAMES.has(name)) return `identity name ${JSON.stringify(name)} is reserved`;
  return undefined;
}

async function makePrivateDir(dir: string): Promise<void> {
  const firstCreated = await mkdir(dir, { recursive: true, mode: DIR_MODE });
  // The umask can only narrow the mode; chmod states it exactly for the folder we made.
  // A folder that already existed keeps its permissions: it may be the user's own.
  if (firstCreated !== undefined) await chmod(dir, DIR_MODE);
}

function writeKeyFile(path: string, pem: string): Promise<string> {
  return writeFileWithMode(path, pem, KEY_FILE_MODE);
}

function writeCertFile(path: string, pem: string): Promise<string> {
  return writeFileWithMode(path, pem, CERT_FILE_MODE);
}

/** Create or truncate `path`, set its mode before any byte is written, then write. */
async function writeFileWithMode(path: string, contents: string, mode: number): Promise<string> {
  const handle = await open(path, 'w', mode);
  try {
    await handle.chmod(mode);
    await handle.writeFile(contents);
  } finally {
    await handle.close();
  }
  return path;
}
