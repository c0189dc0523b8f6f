/**
 * The webhook's own serving certificate and key, read from files and checked the way the
 * sidecar checks its identity: the key matches the certificate and meets the TLS policy, and
 * the certificate is within its validity (less than a third of its lifetime left is a warning, as
 * for the identity's default). No CA bundle: the API server trusts this certificate
 * through the webhook configuration's caBundle (cert-manager's CA injector fills it in).
 */
import { createPrivateKey, type X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DEFAULT_EXPIRY_WARNING_FRACTION } from '../config/defaults.ts';
import { expirySoonNotice } from '../certs/expiryWarning.ts';
import { notAfter, notBefore, parseCertificates } from '../certs/pem.ts';
import { keyPolicyProblem } from '../tls/policy.ts';

export interface ServingCertFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface ServingCert {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly leaf: X509Certificate;
}

export type ServingCertLoad =
  | { readonly ok: true; readonly cert: ServingCert; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly problems: readonly string[] };

export async function loadServingCert(files: ServingCertFiles, now: Date): Promise<ServingCertLoad> {
  const problems: string[] = [];
  const read = async (label: string, file: string): Promise<Buffer | null> => {
    try {
      return await readFile(file);
    } catch (err) {
      problems.push(`${label} ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      return null;
    }
  };
  const [certPem, keyPem] = await Promise.all([read('--cert', files.certFile), read('--key', files.keyFile)]);
  if (certPem === null || keyPem === null) return { ok: false, problems };
  return checkServingCert(certPem, keyPem, files, now);
}

export function checkServingCert(certPem: Buffer, keyPem: Buffer, files: ServingCertFiles, now: Date): ServingCertLoad {
  const problems: string[] = [];
  const warnings: string[] = [];
  let leaf: X509Certificate | undefined;
  try {
    leaf = parseCertificates(certPem)[0];
    if (leaf === undefined) problems.push(`--cert ${files.certFile}: no PEM certificate found`);
  } catch (err) {
    problems.push(`--cert ${files.certFile}: the certificate does not parse (${(err as Error).message})`);
  }
  let keyOk = false;
  try {
    const key = createPrivateKey(keyPem);
    const weak = keyPolicyProblem(key);
    if (weak !== null) problems.push(`--key ${files.keyFile}: ${weak}`);
    if (leaf !== undefined && !leaf.checkPrivateKey(key))
      problems.push(`--key ${files.keyFile}: does not match the certificate in ${files.certFile}`);
    keyOk = true;
  } catch (err) {
    problems.push(`--key ${files.keyFile}: not a private key (${(err as Error).message})`);
  }
  if (leaf !== undefined) {
    const subject = leaf.subject.replace(/\n/g, ', ');
    if (notBefore(leaf).getTime() > now.getTime())
      problems.push(`--cert ${files.certFile}: ${subject} is not valid before ${leaf.validFrom}`);
    if (notAfter(leaf).getTime() <= now.getTime())
      problems.push(`--cert ${files.certFile}: ${subject} expired at ${leaf.validTo}`);
    const soon = expirySoonNotice(leaf, now, DEFAULT_EXPIRY_WARNING_FRACTION);
    if (soon !== null) warnings.push(`--cert ${files.certFile}: ${subject} ${soon}`);
  }
  if (problems.length > 0 || leaf === undefined || !keyOk) return { ok: false, problems };
  return { ok: true, cert: Object.freeze({ certPem, keyPem, leaf }), warnings };
}
