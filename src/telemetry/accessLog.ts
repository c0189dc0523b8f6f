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
