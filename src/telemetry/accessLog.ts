import type { Logger } from 'pino';

/**
 * The access log: one JSON line per request (`msg: "access"`), as Envoy's and HAProxy's users
 * expect, when `log.access` is on. The switch is one object shared by every listener of a
 * thread and flipped by a config reload; with it off, the request path does no work for it.
 *
 * A line never carries secrets: no header values, and the query string only with the values of
 * parameters whose names look like credentials replaced (the path is kept: it is what routes).
 */
export class AccessLog {
  enabled: boolean;

  constructor(enabled: boolean) {
    this.enabled = enabled;
  }
}

/** How an exchange ended, for the `end` field. */
export type AccessEnd = 'complete' | 'refused' | 'upgraded' | 'client_closed' | 'cut';

/**
 * Query parameter names (lowercased, percent-decoded) whose values are never logged: any name
 * containing one of these. Broad on purpose: a redacted harmless value costs nothing.
 */
const SECRET_PARAM_PARTS = [
  'token',
  'secret',
  'key',
  'pass',
  'pwd',
  'sig',
  'auth',
  'credential',
  'session',
  'cookie',
  'code',
  'jwt',
] as const;

const REDACTED = '[REDACTED]';

/** A query string (without the `?`) with the values of credential-like parameters replaced. */
export function redactedQuery(query: string): string {
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return pair;
      return isSecretName(pair.slice(0, eq)) ? `${pair.slice(0, eq)}=${REDACTED}` : pair;
    })
    .join('&');
}

function isSecretName(raw: string): boolean {
  let name: string;
  try {
    name = decodeURIComponent(raw.replace(/\+/g, ' ')).toLowerCase();
  } catch {
    // a name that does not decode is not trusted to be harmless
    return true;
  }
  return SECRET_PARAM_PARTS.some((part) => name.includes(part));
}

/** A request target split for the log: the path, and the query (redacted) or null. */
export function targetForLog(target: string): { path: string; query: string | null } {
  const q = target.indexOf('?');
  if (q < 0) return { path: target, query: null };
  return { path: target.slice(0, q), query: redactedQuery(target.slice(q + 1)) };
}

/** How a TCP listener's connection ended, for its access line. */
export type TcpEnd = 'closed' | 'idle_timeout' | 'error' | 'refused';

/** What a TCP connection carried, for its access line. */
export interface TcpAccess {
  /** client to upstream, and back */
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  readonly end: TcpEnd;
  /** the ERR_ code when the connection was refused (its upstream could not be had) */
  readonly code: string | null;
  readonly error: string | null;
}

/**
 * A TCP listener sees no requests: its access line is one per connection, when it ends (as
 * HAProxy's tcplog), on the connection's logger (which names the listener, connection and peer).
 */
export function logTcpAccess(log: Logger, access: TcpAccess): void {
  log.info({ protocol: 'tcp', ...access }, 'access');
}

/** A TCP connection's access fields: what its pipe carried (`stats`), or a refusal (`code`) before any. */
export function tcpAccess(
  startedAt: bigint,
  now: bigint,
  stats: { readonly bytesDown: number; readonly bytesUp: number; readonly idleTimedOut: boolean } | null,
  code: string | null,
  error: Error | null,
): TcpAccess {
  const end: TcpEnd =
    code !== null ? 'refused' : stats?.idleTimedOut === true ? 'idle_timeout' : error !== null ? 'error' : 'closed';
  return {
    bytesIn: stats?.bytesDown ?? 0,
    bytesOut: stats?.bytesUp ?? 0,
    durationMs: millis(now - startedAt),
    end,
    code,
    error: error?.message ?? null,
  };
}

/** Nanoseconds (a monotonic difference) as milliseconds, to the microsecond. */
export function millis(ns: bigint): number {
  return Number(ns / 1000n) / 1000;
}
