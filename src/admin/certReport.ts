import type { X509Certificate } from 'node:crypto';
import type { IdentityBundle } from '../certs/identityBundle.ts';
import { notAfter, notBefore } from '../certs/pem.ts';
import { parseSubjectAltName, spkiPinOf } from '../tls/peerIdentity.ts';

/**
 * What `/certs` shows of the identity in use: the leaf, any intermediates from the
 * certificate file, and every CA of the bundle. `name` is the label the certificate has on
 * tollgate_cert_expiration_timestamp_seconds (identity, ca, ca_1…; intermediates are
 * intermediate_1…). Public data only: no key material.
 */
export interface CertInfo {
  readonly name: string;
  readonly role: 'identity' | 'intermediate' | 'ca';
  readonly subject: string;
  readonly issuer: string;
  readonly sans: ReadonlyArray<{ readonly type: string; readonly value: string }>;
  readonly serial: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** whole and fractional days until notAfter, negative once expired */
  readonly daysLeft: number;
  readonly expired: boolean;
  readonly spkiPin: string;
  readonly fingerprint256: string;
  readonly isCA: boolean;
}

export interface CertReport {
  readonly loadedAt: string;
  readonly files: { readonly certFile: string; readonly caFile: string; readonly crlFile: string | null };
  readonly certificates: readonly CertInfo[];
}

const DAY_MS = 86_400_000;

export function certReport(bundle: IdentityBundle, files: CertReport['files'], now: number): CertReport {
  const certificates: CertInfo[] = [];
  bundle.chain.forEach((c, i) =>
    certificates.push(
      certInfo(c, i === 0 ? 'identity' : `intermediate_${i}`, i === 0 ? 'identity' : 'intermediate', now),
    ),
  );
  bundle.cas.forEach((c, i) => certificates.push(certInfo(c, i === 0 ? 'ca' : `ca_${i}`, 'ca', now)));
  return { loadedAt: bundle.loadedAt.toISOString(), files, certificates };
}

function certInfo(cert: X509Certificate, name: string, role: CertInfo['role'], now: number): CertInfo {
  const end = notAfter(cert).getTime();
  return {
    name,
    role,
    subject: oneLine(cert.subject),
    issuer: oneLine(cert.issuer),
    sans: parseSubjectAltName(cert.subjectAltName ?? '').map(([type, value]) => ({ type, value })),
    serial: cert.serialNumber,
    notBefore: notBefore(cert).toISOString(),
    notAfter: new Date(end).toISOString(),
    daysLeft: Math.round(((end - now) / DAY_MS) * 100) / 100,
    expired: end <= now,
    spkiPin: spkiPinOf(cert),
    fingerprint256: cert.fingerprint256,
    isCA: cert.ca,
  };
}

function oneLine(dn: string): string {
  return dn.replace(/\n/g, ', ');
}
