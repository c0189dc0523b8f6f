import { isDeepStrictEqual } from 'node:util';
import type { Config } from './types.ts';

/**
 * What a config reload would change, split into what a running tollgate can take over live and
 * what needs a restart. The diff is taken field by field over the whole validated config, and
 * anything not named below as live needs a restart, so a field added later is safe by default
 * (fail closed: it is reported, never silently ignored).
 *
 * Live, swapped as one snapshot (proxy/liveSettings.ts, main's reload):
 * - `log.level`, `log.access`, `drainTimeoutSeconds`;
 * - per listener: `allow` (new connections; earlier TLS sessions end), `verify` (new upstream
 *   connections), `integrity.keyId` (the next request is signed with the new key), `anomaly`
 *   (a changed section starts learning afresh);
 * - per HTTP listener, `limits`: `maxBodyBytes`, `maxHeaderBytes`, `requestsPerSecond`, `burst`
 *   (new buckets), `headersTimeoutSeconds`, `idleTimeoutSeconds`, `bodyTimeoutSeconds`,
 *   `minBodyBytesPerSecond` (new requests).
 *
 * - per gateway listener: `routes` (the table is swapped whole: new requests take the new one,
 *   those in flight finish on the old; a route whose targets and upstream settings stay keeps its
 *   endpoints and their health) and `integrity.verify` (the routes' default);
 *
 * Everything else needs a restart: the listener set (names and order), each listener's mode,
 * protocol, listen address, target, serverName, integrity.verify/sign; the limits sized into a
 * server or pool at start (maxConnections, the handshake limits, upstreamTimeoutSeconds) and a
 * TCP listener's limits; admin, health, identity and audit files, keys.dir, the integrity
 * profile, tls, workers.
 */
export interface ReloadPlan {
  /** config paths whose new value will be applied */
  readonly changed: readonly string[];
  /** config paths whose new value cannot be applied while running */
  readonly restartRequired: readonly string[];
}

const LIVE_TOP = new Set(['log.level', 'log.access', 'drainTimeoutSeconds']);
const LIVE_LISTENER = /^listeners\[\d+\]\.(allow|verify|anomaly)(\.|$)|^listeners\[\d+\]\.integrity\.keyId$/;
const LIVE_GATEWAY = /^listeners\[(\d+)\]\.(routes|integrity\.verify)$/;
const LIVE_HTTP_LIMIT =
  /^listeners\[(\d+)\]\.limits\.(maxBodyBytes|maxHeaderBytes|requestsPerSecond|burst|headersTimeoutSeconds|idleTimeoutSeconds|bodyTimeoutSeconds|minBodyBytesPerSecond)$/;

export function reloadPlan(current: Config, next: Config): ReloadPlan {
  const differences: string[] = [];
  const sameListeners =
    current.listeners.length === next.listeners.length &&
    current.listeners.every((l, i) => l.name === next.listeners[i]!.name);
  diff({ ...current, source: null, listeners: [] }, { ...next, source: null, listeners: [] }, '', differences);
  if (!sameListeners) differences.push('listeners');
  else current.listeners.forEach((l, i) => diff(l, next.listeners[i], `listeners[${i}]`, differences));
  // the key ring is loaded at start only when something signs or verifies: turning that on (or off) is a restart
  if (usesKeys(current) !== usesKeys(next)) differences.push('keys (no listener or route signed or verified before)');

  const changed: string[] = [];
  const restartRequired: string[] = [];
  for (const path of differences) {
    (isLive(path, next) ? changed : restartRequired).push(path);
  }
  return { changed, restartRequired };
}

function isLive(path: string, next: Config): boolean {
  if (LIVE_TOP.has(path) || LIVE_LISTENER.test(path)) return true;
  const g = LIVE_GATEWAY.exec(path);
  if (g !== null) return next.listeners[Number(g[1])]?.mode === 'gateway';
  const m = LIVE_HTTP_LIMIT.exec(path);
  return m !== null && next.listeners[Number(m[1])]?.protocol === 'http';
}

/** Paths of the leaves (arrays and addresses count as leaves) that differ, objects compared key by key. */
function diff(a: unknown, b: unknown, path: string, out: string[]): void {
  // an address is one setting (`listeners[0].listen`), not a host and a port
  if (isRecord(a) && isRecord(b) && !isHostPort(a) && !isHostPort(b)) {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      diff(a[key], b[key], path === '' ? key : `${path}.${key}`, out);
    }
    return;
  }
  if (!isDeepStrictEqual(a, b)) out.push(path);
}

function usesKeys(c: Config): boolean {
  return c.listeners.some(
    (l) => l.integrity.verify || l.integrity.sign || l.routes.some((r) => r.integrity.verify || r.integrity.sign),
  );
}

function isHostPort(v: Record<string, unknown>): boolean {
  const keys = Object.keys(v);
  return keys.length === 2 && 'host' in v && 'port' in v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
