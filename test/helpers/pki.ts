/**
 * Test fixtures: a fresh PKI per test run, good and bad certificates alike, built with the
 * same issuer as `tollgate certs dev` (src/certs/issue.ts).
 *
 *   const ca = await makeCa();
 *   const server = await makeLeaf(ca, { spiffe: ['spiffe://example.org/api'], eku: 'server' });
 *   const expired = await makeLeaf(ca, { notBefore: hoursAgo(48), notAfter: hoursAgo(24) });
 *   const dir = await tempDir(t, 'inbound-');
 *   const files = await writeIdentityDir(dir, server, ca);
 *   const crl = await makeCrl(ca, { revoked: [server], nextUpdate: hoursAgo(-24) });
 */
import { webcrypto } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import * as x509 from '@peculiar/x509';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCa, issueLeaf } from '../../src/certs/issue.ts';
import type { Issued, KeyType, LeafUsage } from '../../src/certs/issue.ts';
import { writeIdentityDir as writeIdentityFiles } from '../../src/certs/devPki.ts';
import type { IdentityFiles } from '../../src/certs/devPki.ts';

const MINUTE_MS = 60 * 1000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
const SUBJECT_KEY_IDENTIFIER = '2.5.29.14';

/** A CA that can sign leaves: PEM text plus the parsed certificate and key handles (`Issued`). */
export type TestCa = Issued;

export interface CaOptions {
  /** Default 'tollgate test CA'. */
  cn?: string;
  /** Default now - 5 minutes. */
  notBefore?: Date;
  /** Default now + 7 days. */
  notAfter?: Date;
  /** Default 'ec' (P-256). */
  keyType?: 'ec' | 'rsa2048';
}

export interface LeafOptions {
  /** Default 'test'. */
  cn?: string;
  /** URI SANs; default none. */
  spiffe?: string[];
  /** Default ['localhost']. */
  dns?: string[];
  /** Default ['127.0.0.1']. */
  ips?: string[];
  /**
   * Default 'both'. 'none' omits the extension, which OpenSSL reads as "any purpose"; for a
   * certificate refused for its purpose, present a 'server' one as a client (or vice versa).
   */
  eku?: LeafUsage;
  /** Default now - 5 minutes. */
  notBefore?: Date;
  /** Default now + 1 day. */
  notAfter?: Date;
  /** Default 'ec' (P-256). 'rsa1024' is refused by Node's default TLS security level. */
  keyType?: KeyType;
  /** Certify this leaf's key pair instead of a fresh one (a re-issued certificate: same key, new serial). */
  keyOf?: Issued;
}

export interface PemPair {
  certPem: string;
  keyPem: string;
}

/** A fresh self-signed CA (CA:true, pathlen 0, keyCertSign+cRLSign). */
export async function makeCa(opts: CaOptions = {}): Promise<TestCa> {
  const now = Date.now();
  return issueCa({
    commonName: opts.cn ?? 'tollgate test CA',
    notBefore: opts.notBefore ?? new Date(now - 5 * MINUTE_MS),
    notAfter: opts.notAfter ?? new Date(now + 7 * DAY_MS),
    keyType: opts.keyType ?? 'ec',
  });
}

/** A leaf signed by `ca`. The result is an `Issued`, so it also carries the parsed cert and keys. */
export async function makeLeaf(ca: TestCa, opts: LeafOptions = {}): Promise<Issued> {
  const now = Date.now();
  const leaf = await issueLeaf(ca, {
    commonName: opts.cn ?? 'test',
    uris: opts.spiffe ?? [],
    dnsNames: opts.dns ?? ['localhost'],
    ipAddresses: opts.ips ?? ['127.0.0.1'],
    usage: opts.eku ?? 'both',
    notBefore: opts.notBefore ?? new Date(now - 5 * MINUTE_MS),
    notAfter: opts.notAfter ?? new Date(now + DAY_MS),
    keyType: opts.keyType ?? opts.keyOf?.keyType ?? 'ec',
  });
  return opts.keyOf === undefined ? leaf : certifyKey(ca, leaf, opts.keyOf);
}

/** `leaf` issued again for `keyOf`'s key pair: the same fields and extensions, its own serial, the key identifier of that key. */
async function certifyKey(ca: TestCa, leaf: Issued, keyOf: Issued): Promise<Issued> {
  const crypto = webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1];
  const extensions = leaf.cert.extensions.filter((e) => e.type !== SUBJECT_KEY_IDENTIFIER);
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(keyOf.keys.publicKey, false, crypto));
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: leaf.cert.serialNumber,
      subject: leaf.cert.subjectName,
      issuer: ca.cert.subjectName,
      notBefore: leaf.cert.notBefore,
      notAfter: leaf.cert.notAfter,
      signingAlgorithm:
        ca.keyType === 'ec' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      publicKey: keyOf.keys.publicKey,
      signingKey: ca.keys.privateKey,
      extensions,
    },
    crypto,
  );
  return Object.freeze({ ...keyOf, cert, certPem: cert.toString('pem') + '\n' });
}

/** Write `dir/tls.crt`, `dir/tls.key` (0600) and `dir/ca.crt`, creating `dir` if needed. */
export function writeIdentityDir(dir: string, leaf: PemPair, ca: { certPem: string }): Promise<IdentityFiles> {
  return writeIdentityFiles(dir, leaf, ca.certPem);
}

export interface CrlOptions {
  /** certificates to list as revoked; default none */
  revoked?: Issued[];
  /** Default now - 1 hour. */
  thisUpdate?: Date;
  /** Default now + 1 day; null leaves nextUpdate out. */
  nextUpdate?: Date | null;
  /** sign with this key pair instead of the CA's own (a CRL that does not verify) */
  signer?: Issued;
}

/** A CRL issued by `ca`, as PEM "X509 CRL" (the label OpenSSL reads), ending in a newline. */
export async function makeCrl(ca: TestCa, opts: CrlOptions = {}): Promise<string> {
  const now = Date.now();
  const signer = opts.signer ?? ca;
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: ca.cert.subjectName,
      thisUpdate: opts.thisUpdate ?? new Date(now - HOUR_MS),
      ...(opts.nextUpdate === null ? {} : { nextUpdate: opts.nextUpdate ?? new Date(now + DAY_MS) }),
      signingAlgorithm:
        signer.keyType === 'ec' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      signingKey: signer.keys.privateKey,
      entries: (opts.revoked ?? []).map((r) => ({
        serialNumber: r.cert.serialNumber,
        revocationDate: new Date(now - HOUR_MS),
      })),
    },
    webcrypto as unknown as Parameters<typeof x509.X509CrlGenerator.create>[1],
  );
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL') + '\n';
}

/** What tempDir needs from a tap test: somewhere to register cleanup. */
export interface Teardownable {
  teardown(fn: () => unknown): void;
}

/** A new folder under the OS temp dir, removed when the test ends. */
export async function tempDir(t: Teardownable, prefix = 'tollgate-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A date `hours` before now (negative for the future): for expired and not-yet-valid leaves. */
export function hoursAgo(hours: number): Date {
  return new Date(Date.now() - hours * HOUR_MS);
}
