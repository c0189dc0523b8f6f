/**
 * The verdict of `tollgate probe`: the report of probeEndpoint.ts held against what the command's
 * flags expect, one check per expectation.
 */
import type { ProbeReport } from './probeEndpoint.ts';

const DAY_MS = 86_400_000;

/** What the CLI's flags ask of the endpoint. */
export interface ProbeExpectations {
  /** the leaf must be valid for at least this many more days; 0 = just not expired */
  readonly minDaysValid: number;
  /** every one of these must be among the leaf's URI SANs */
  readonly spiffe: readonly string[];
  /** the leaf's SPKI pin must be one of these (when any are given) */
  readonly spkiPins: readonly string[];
}

export interface ProbeCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

const NOT_CHECKED = 'not checked: the server presented no certificate';

/** One check per expectation, in a fixed order: connection, trust, hostname, validity, min-days-valid, spiffe…, spki-pin. */
export function judgeProbe(report: ProbeReport, expect: ProbeExpectations): ProbeCheck[] {
  const checks: ProbeCheck[] = [];
  const e = report.error;
  checks.push(
    e === null
      ? { name: 'connection', ok: true, detail: `${report.tlsVersion ?? 'TLS'} handshake completed` }
      : { name: 'connection', ok: false, detail: `${e.message} [${e.reason}, ${e.code}]` },
  );
  const leaf = report.leaf;

  if (report.trust.verified === true) {
    const aside = report.trust.error === null ? '' : ` (the leaf's own dates aside: ${report.trust.error})`;
    checks.push({ name: 'trusted', ok: true, detail: `the chain verifies against --ca${aside}` });
  } else if (report.trust.verified === false) {
    checks.push({
      name: 'trusted',
      ok: false,
      detail: `the chain does not verify against --ca (${report.trust.error ?? 'unknown error'})`,
    });
  } else {
    checks.push({
      name: 'trusted',
      ok: false,
      detail: leaf === null ? NOT_CHECKED : 'not checked: the handshake did not complete',
    });
  }

  if (report.hostname.matches === null) checks.push({ name: 'hostname', ok: false, detail: NOT_CHECKED });
  else if (report.hostname.matches)
    checks.push({ name: 'hostname', ok: true, detail: `the certificate is valid for ${report.serverName}` });
  else
    checks.push({
      name: 'hostname',
      ok: false,
      detail: report.hostname.error ?? `the certificate is not valid for ${report.serverName}`,
    });

  const probedAt = new Date(report.probedAt).getTime();
  if (leaf === null) {
    checks.push({ name: 'validity', ok: false, detail: NOT_CHECKED });
  } else if (probedAt < new Date(leaf.notBefore).getTime()) {
    checks.push({ name: 'validity', ok: false, detail: `not valid before ${leaf.notBefore}` });
  } else if (probedAt > new Date(leaf.notAfter).getTime()) {
    const expiredDays = Math.floor((probedAt - new Date(leaf.notAfter).getTime()) / DAY_MS);
    checks.push({ name: 'validity', ok: false, detail: `expired at ${leaf.notAfter} (${daysAgo(expiredDays)})` });
  } else {
    checks.push({
      name: 'validity',
      ok: true,
      detail: `valid until ${leaf.notAfter} (${plural(leaf.daysLeft, 'day')} left)`,
    });
  }

  if (expect.minDaysValid > 0) {
    const need = `at least ${plural(expect.minDaysValid, 'day')} required`;
    if (leaf === null) checks.push({ name: 'min-days-valid', ok: false, detail: NOT_CHECKED });
    else {
      const msLeft = new Date(leaf.notAfter).getTime() - probedAt;
      const ok = msLeft >= expect.minDaysValid * DAY_MS;
      checks.push({ name: 'min-days-valid', ok, detail: `${plural(Math.max(leaf.daysLeft, 0), 'day')} left, ${need}` });
    }
  }

  for (const id of expect.spiffe) {
    if (leaf === null) checks.push({ name: `spiffe ${id}`, ok: false, detail: NOT_CHECKED });
    else if (leaf.spiffe.includes(id))
      checks.push({ name: `spiffe ${id}`, ok: true, detail: 'present among the URI SANs' });
    else
      checks.push({
        name: `spiffe ${id}`,
        ok: false,
        detail: `not among the URI SANs (${leaf.spiffe.length === 0 ? 'none' : leaf.spiffe.join(', ')})`,
      });
  }

  if (expect.spkiPins.length > 0) {
    if (leaf === null) checks.push({ name: 'spki-pin', ok: false, detail: NOT_CHECKED });
    else if (expect.spkiPins.includes(leaf.spkiPin))
      checks.push({ name: 'spki-pin', ok: true, detail: `${leaf.spkiPin} is pinned` });
    else
      checks.push({
        name: 'spki-pin',
        ok: false,
        detail: `${leaf.spkiPin} is not one of the ${plural(expect.spkiPins.length, 'expected pin')}`,
      });
  }
  return checks;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function daysAgo(days: number): string {
  return days <= 0 ? 'today' : `${plural(days, 'day')} ago`;
}
