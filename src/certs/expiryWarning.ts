/**
 * When a certificate "expires soon": less than a fraction of its own lifetime (notAfter − notBefore)
 * is left. A fixed number of days fits no lifetime: 7 days is the whole life of a 24 h certificate
 * (a warning at every start, reload and re-check) and short notice for a 5-year CA. cert-manager
 * renews at two thirds of the lifetime by default (`renewBefore` a third), so with the default
 * fraction of a third the warning means renewal is late, not that renewal is coming.
 */
import type { X509Certificate } from 'node:crypto';
import { notAfter, notBefore } from './pem.ts';

/** "expires at …, 7h of its 24h lifetime left", or null while more than `fraction` of the lifetime is left or once expired. */
export function expirySoonNotice(cert: X509Certificate, now: Date, fraction: number): string | null {
  const start = notBefore(cert).getTime();
  const end = notAfter(cert).getTime();
  const left = end - now.getTime();
  const lifetime = end - start;
  if (left <= 0 || left >= fraction * lifetime) return null;
  return `expires at ${cert.validTo}, ${formatSpan(left)} of its ${formatSpan(lifetime)} lifetime left`;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** A span, rounded, in the largest unit that keeps it readable: days from 2 days up, hours from 2 hours, then minutes, then seconds. */
function formatSpan(ms: number): string {
  if (ms >= 2 * DAY_MS) return `${Math.round(ms / DAY_MS)}d`;
  if (ms >= 2 * HOUR_MS) return `${Math.round(ms / HOUR_MS)}h`;
  if (ms >= 2 * MINUTE_MS) return `${Math.round(ms / MINUTE_MS)}m`;
  return `${Math.round(ms / 1000)}s`;
}
