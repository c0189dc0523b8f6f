import type { X509Certificate } from 'node:crypto';
import { spkiPinOfKeyObject } from '../core/spkiPin.ts';

/** What a verified peer certificate says about who the peer is. Computed once per connection. */
export interface PeerIdentity {
  readonly spiffe: readonly string[];
  readonly dns: readonly string[];
  readonly cn: string | null;
  readonly subject: string;
  /** sha256/BASE64 of the SPKI */
  readonly spkiPin: string;
  /** the name shown in logs, metrics and the audit log: the first SPIFFE ID, else the subject */
  readonly display: string;
  /** `display` as the value of x-tollgate-peer: anything outside visible ASCII and space percent-encoded (a header line stays one line) */
  readonly headerValue: string;
}

export function spkiPinOf(cert: X509Certificate): string {
  return spkiPinOfKeyObject(cert.publicKey);
}

export function peerIdentity(cert: X509Certificate): PeerIdentity {
  const sans = parseSubjectAltName(cert.subjectAltName ?? '');
  const spiffe: string[] = [];
  const dns: string[] = [];
  for (const [kind, value] of sans) {
    if (kind === 'URI' && value.startsWith('spiffe://')) spiffe.push(value);
    else if (kind === 'DNS') dns.push(value.toLowerCase());
  }
  const cn = commonName(cert.subject);
  const subject = cert.subject.replace(/\n/g, ', ');
  const display = spiffe[0] ?? subject;
  return Object.freeze({
    spiffe,
    dns,
    cn,
    subject,
    spkiPin: spkiPinOf(cert),
    display,
    headerValue: headerSafe(display),
  });
}

function headerSafe(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : value.replace(/[^\x20-\x7e]/gu, (c) => encodeURIComponent(c));
}

/**
 * Parse Node's `subjectAltName` string ("DNS:a, URI:spiffe://td/x, IP Address:127.0.0.1").
 * Node JSON-quotes a value that contains characters which would make the list ambiguous
 * (`URI:"a, b"`), so quoted values are decoded with JSON.parse rather than split on commas.
 */
export function parseSubjectAltName(s: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let i = 0;
  while (i < s.length) {
    const colon = s.indexOf(':', i);
    if (colon < 0) break;
    const kind = s.slice(i, colon);
    let j = colon + 1;
    let value: string;
    if (s[j] === '"') {
      let k = j + 1;
      while (k < s.length && s[k] !== '"') k += s[k] === '\\' ? 2 : 1;
      value = JSON.parse(s.slice(j, k + 1)) as string;
      j = k + 1;
    } else {
      const comma = s.indexOf(', ', j);
      const end = comma < 0 ? s.length : comma;
      value = s.slice(j, end);
      j = end;
    }
    out.push([kind, value]);
    i = s.startsWith(', ', j) ? j + 2 : s.length;
  }
  return out;
}

/** The CN of an X509Certificate#subject ("C=..\nO=..\nCN=name"); the last CN wins, as in most TLS stacks. */
export function commonName(subject: string): string | null {
  let cn: string | null = null;
  for (const line of subject.split('\n')) {
    if (line.startsWith('CN=')) cn = line.slice(3);
  }
  return cn;
}
