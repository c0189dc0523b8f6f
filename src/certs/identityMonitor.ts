/**
 * Watches the identity in use over time: certificate expiry (gauges, a warning when less than
 * expiryWarningFraction of a certificate's lifetime is left, re-checked periodically) and CRL
 * freshness (gauges, a warning when a CRL is past its nextUpdate, repeated at most once per
 * interval while it stays stale, and a wake-up at each nextUpdate so staleness is noticed without
 * a reload). All timers are unref'd and cleared by close().
 */
import type { Logger } from 'pino';
import { DEFAULT_EXPIRY_WARNING_FRACTION } from '../config/defaults.ts';
import type { Clock } from '../core/clock.ts';
import { wakeAt, type Wake } from '../core/wakeAt.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { notAfter } from './pem.ts';
import { expiryNotices, type IdentityBundle } from './identityBundle.ts';
import { isStale, staleCrlMessage, type CrlStalePolicy } from './crl.ts';

export interface MonitorTiming {
  /** how often expiry is re-checked; default 6 h */
  readonly expiryCheckIntervalMs?: number;
  /** how often a stale CRL is warned about again; default 1 h */
  readonly staleWarningIntervalMs?: number;
}

export interface MonitorDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  readonly crlStale: CrlStalePolicy;
  /** warn when less than this part of a certificate's lifetime is left; default a third */
  readonly expiryWarningFraction?: number;
  /**
   * With crlStale "warn", stale CRLs are taken away from OpenSSL this long before their
   * nextUpdate (OpenSSL would refuse every peer from that moment on).
   */
  readonly staleLeadMs: number;
  /** called at each CRL deadline (a nextUpdate, or nextUpdate - staleLeadMs): the CRLs to apply may have changed */
  readonly onCrlDeadline: () => void;
  readonly timing?: MonitorTiming;
}

export interface IdentityMonitor {
  /** the identity in use (new, or unchanged after a reload or a CRL deadline): publish, warn, re-arm */
  observe(bundle: IdentityBundle, changed: boolean): void;
  /** the CRL state for /status */
  crlStatus(): { crls: number; stale: boolean; nextUpdate: string | null } | null;
  close(): void;
}

const HOUR_MS = 3_600_000;
export const DEFAULT_EXPIRY_CHECK_INTERVAL_MS = 6 * HOUR_MS;
export const DEFAULT_STALE_WARNING_INTERVAL_MS = HOUR_MS;

export function createIdentityMonitor(deps: MonitorDeps): IdentityMonitor {
  const { log, metrics, clock } = deps;
  const expiryEvery = deps.timing?.expiryCheckIntervalMs ?? DEFAULT_EXPIRY_CHECK_INTERVAL_MS;
  const staleEvery = deps.timing?.staleWarningIntervalMs ?? DEFAULT_STALE_WARNING_INTERVAL_MS;
  const expiryFraction = deps.expiryWarningFraction ?? DEFAULT_EXPIRY_WARNING_FRACTION;
  let bundle: IdentityBundle | null = null;
  let lastStaleWarning: number | null = null;
  let crlWake: Wake | null = null;
  let expiryTimer: NodeJS.Timeout | null = null;
  let closed = false;

  function checkExpiry(): void {
    if (bundle === null) return;
    const { expiring, expired } = expiryNotices(bundle, new Date(clock.now()), expiryFraction);
    for (const warning of expiring) log.warn({ warning }, 'certificate expires soon');
    for (const problem of expired) log.error({ problem }, 'certificate has expired');
  }

  function publishExpiry(b: IdentityBundle): void {
    metrics.certExpiration.reset();
    metrics.certExpiration.labels('identity').set(notAfter(b.leaf).getTime() / 1000);
    b.cas.forEach((ca, i) =>
      metrics.certExpiration.labels(i === 0 ? 'ca' : `ca_${i}`).set(notAfter(ca).getTime() / 1000),
    );
  }

  function publishCrls(b: IdentityBundle): void {
    metrics.crlNextUpdate.reset();
    b.crls.forEach((c, i) => {
      if (c.nextUpdate !== null)
        metrics.crlNextUpdate.labels(i === 0 ? 'crl' : `crl_${i}`).set(c.nextUpdate.getTime() / 1000);
    });
  }

  /** gauge and (at most once per interval) a log line while a CRL is stale */
  function checkCrls(b: IdentityBundle, now: number): boolean {
    const stale = b.crls.filter((c) => isStale(c, new Date(now)));
    metrics.crlStale.set(stale.length > 0 ? 1 : 0);
    if (stale.length === 0) {
      lastStaleWarning = null;
      return false;
    }
    if (lastStaleWarning === null || now - lastStaleWarning >= staleEvery) {
      lastStaleWarning = now;
      const fields = {
        stale: stale.map((c) => staleCrlMessage(c, deps.crlStale, 'identity.crlFile')),
        crlStale: deps.crlStale,
      };
      if (deps.crlStale === 'refuse')
        log.error(fields, 'CRL is stale: every handshake it covers is refused until a fresh CRL is loaded');
      else log.warn(fields, 'CRL is stale: revocation is not checked from crlFile until a fresh CRL is loaded');
    }
    return true;
  }

  /** the next moment something about the CRLs changes: a (lead) deadline, or the next stale warning */
  function armCrlWake(b: IdentityBundle, now: number, stale: boolean): void {
    crlWake?.cancel();
    crlWake = null;
    let next = Infinity;
    for (const c of b.crls) {
      if (c.nextUpdate === null) continue;
      const due = c.nextUpdate.getTime();
      if (deps.crlStale === 'warn' && due - deps.staleLeadMs > now) next = Math.min(next, due - deps.staleLeadMs);
      if (due > now) next = Math.min(next, due);
    }
    if (stale && lastStaleWarning !== null) next = Math.min(next, lastStaleWarning + staleEvery);
    if (next === Infinity || closed) return;
    crlWake = wakeAt(clock, next, () => {
      crlWake = null;
      deps.onCrlDeadline();
    });
  }

  return {
    observe(b, changed) {
      if (closed) return;
      bundle = b;
      const now = clock.now();
      if (changed) {
        publishExpiry(b);
        publishCrls(b);
        checkExpiry();
      }
      armCrlWake(b, now, checkCrls(b, now));
      if (expiryTimer === null) {
        expiryTimer = setInterval(checkExpiry, expiryEvery);
        expiryTimer.unref();
      }
    },
    crlStatus() {
      if (bundle === null || bundle.crls.length === 0) return null;
      const now = new Date(clock.now());
      const next = bundle.crls.reduce<Date | null>(
        (min, c) => (c.nextUpdate !== null && (min === null || c.nextUpdate < min) ? c.nextUpdate : min),
        null,
      );
      return {
        crls: bundle.crls.length,
        stale: bundle.crls.some((c) => isStale(c, now)),
        nextUpdate: next?.toISOString() ?? null,
      };
    },
    close() {
      closed = true;
      crlWake?.cancel();
      crlWake = null;
      if (expiryTimer !== null) clearInterval(expiryTimer);
      expiryTimer = null;
    },
  };
}
