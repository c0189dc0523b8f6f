/**
 * A gateway listener's `routes`: each route's match, its narrowing allow-list, its targets and
 * how they are reached, and the policy sections it may set for itself (integrity, the limits
 * that apply per request, anomaly, passive health), each defaulting to the listener's.
 */
import { isCanonicalPrefix } from '../core/canonicalPath.ts';
import { DEFAULT_PASSIVE_HEALTH, DEFAULT_DNS_REFRESH_SECONDS, HTTP2_LIMIT_KEYS, MAX_ROUTES } from './defaults.ts';
import { isDnsName, isValidHost } from './hostPort.ts';
import type {
  AnomalyConfig,
  HostPort,
  LimitsConfig,
  ListenerIntegrityConfig,
  PassiveHealthConfig,
  RouteConfig,
  RouteMatchConfig,
  RouteTargetProtocol,
  RouteUpstreamTlsConfig,
} from './types.ts';
import { validateAllow, validateVerify } from './validatePeers.ts';
import { validateAnomaly } from './validateAnomaly.ts';
import {
  at,
  bad,
  booleanValue,
  isAbsent,
  misplacedAs,
  nonNegativeInteger,
  nonNegativeNumber,
  nullable,
  ok,
  oneOf,
  positiveInteger,
  read,
  report,
  REQUIRED,
  seconds,
  section,
  targetAddress,
  type Ctx,
  type Obj,
  type Parser,
  labelName,
  serverNameValue,
  keyIdValue,
} from './validateReaders.ts';

/** What a route inherits from its gateway listener. */
export interface RouteDefaults {
  readonly integrity: ListenerIntegrityConfig;
  readonly limits: LimitsConfig;
  readonly anomaly: AnomalyConfig;
  readonly keysDir: string | null;
}

const ROUTE_KEYS = [
  'name',
  'match',
  'allow',
  'targets',
  'dnsRefreshSeconds',
  'upstreamTls',
  'targetProtocol',
  'integrity',
  'limits',
  'anomaly',
  'passiveHealth',
];
/** the limits that apply per request, so a route may set its own; the rest belong to connections and stay the listener's */
const ROUTE_LIMIT_KEYS = [
  'maxBodyBytes',
  'requestsPerSecond',
  'burst',
  'bodyTimeoutSeconds',
  'minBodyBytesPerSecond',
  'upstreamTimeoutSeconds',
] as const;
const LISTENER_LIMIT_KEYS = [
  'maxHeaderBytes',
  'maxConnections',
  'maxConcurrentHandshakes',
  'maxHandshakesPerSource',
  'clientHelloTimeoutSeconds',
  'handshakeTimeoutSeconds',
  'headersTimeoutSeconds',
  'idleTimeoutSeconds',
  ...HTTP2_LIMIT_KEYS,
];
/** RFC 9110 §9.1: a method is a token */
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/;

export function validateRoutes(ctx: Ctx, value: unknown, path: string, defaults: RouteDefaults): RouteConfig[] {
  if (value === undefined) {
    report(ctx, path, 'required: a gateway listener needs at least one route');
    return [];
  }
  if (!Array.isArray(value)) {
    report(ctx, path, 'expected an array of routes');
    return [];
  }
  if (value.length === 0) report(ctx, path, 'at least one route is required');
  if (value.length > MAX_ROUTES) report(ctx, path, `at most ${MAX_ROUTES} routes (each name is a metric label)`);
  const routes = value.map((item: unknown, i) => validateRoute(ctx, item, `${path}[${i}]`, defaults));
  checkRouteNames(ctx, routes, path);
  checkReachable(ctx, routes, path);
  return routes;
}

function validateRoute(ctx: Ctx, value: unknown, path: string, d: RouteDefaults): RouteConfig {
  const o = section(ctx, value, path, ROUTE_KEYS, { required: true });
  const upstreamTls = isAbsent(o.upstreamTls) ? null : validateUpstreamTls(ctx, o.upstreamTls, at(path, 'upstreamTls'));
  return {
    name: read(ctx, o, path, 'name', labelName, '', REQUIRED),
    match: validateMatch(ctx, o.match, at(path, 'match')),
    allow: isAbsent(o.allow) ? null : validateAllow(ctx, o.allow, at(path, 'allow')),
    targets: validateTargets(ctx, o.targets, at(path, 'targets')),
    dnsRefreshSeconds: read(ctx, o, path, 'dnsRefreshSeconds', seconds, DEFAULT_DNS_REFRESH_SECONDS),
    upstreamTls,
    targetProtocol: readRouteTargetProtocol(ctx, o, path, upstreamTls !== null),
    integrity: validateRouteIntegrity(ctx, o.integrity, at(path, 'integrity'), d),
    limits: validateRouteLimits(ctx, o.limits, at(path, 'limits'), d.limits),
    anomaly: validateAnomaly(ctx, o.anomaly, at(path, 'anomaly'), d.anomaly),
    passiveHealth: validatePassiveHealth(ctx, o.passiveHealth, at(path, 'passiveHealth')),
  };
}

/**
 * How a route speaks to its targets: HTTP/1.1, or HTTP/2 — `h2c` in cleartext, `h2` over its
 * `upstreamTls` (ALPN). The name says which, so it must agree with `upstreamTls`.
 */
function readRouteTargetProtocol(ctx: Ctx, o: Obj, path: string, tls: boolean): RouteTargetProtocol {
  const value = read(ctx, o, path, 'targetProtocol', oneOf(['http1', 'h2c', 'h2'] as const), 'http1');
  if (value === 'h2' && !tls)
    report(
      ctx,
      at(path, 'targetProtocol'),
      '"h2" is HTTP/2 over TLS: it needs upstreamTls (or use "h2c" in cleartext)',
    );
  if (value === 'h2c' && tls)
    report(ctx, at(path, 'targetProtocol'), '"h2c" is HTTP/2 in cleartext; with upstreamTls, use "h2"');
  return value;
}

function validateMatch(ctx: Ctx, value: unknown, path: string): RouteMatchConfig {
  const o = section(ctx, value, path, ['pathPrefix', 'host', 'methods'], { required: true });
  return {
    pathPrefix: read(ctx, o, path, 'pathPrefix', pathPrefix, '/', REQUIRED),
    host: read(ctx, o, path, 'host', nullable(hostPattern), null),
    methods: readMethods(ctx, o, path),
  };
}

function readMethods(ctx: Ctx, o: Obj, path: string): readonly string[] | null {
  const value = o.methods;
  if (isAbsent(value)) return null;
  const listPath = at(path, 'methods');
  if (!Array.isArray(value) || value.length === 0) {
    report(ctx, listPath, 'expected a non-empty array of methods (or null for any)');
    return null;
  }
  const methods: string[] = [];
  value.forEach((m: unknown, i) => {
    if (typeof m !== 'string' || !METHOD.test(m)) report(ctx, `${listPath}[${i}]`, 'expected an HTTP method (a token)');
    else if (m === 'CONNECT') report(ctx, `${listPath}[${i}]`, 'CONNECT is never proxied');
    else if (m !== m.toUpperCase())
      report(ctx, `${listPath}[${i}]`, `methods are case-sensitive; did you mean ${m.toUpperCase()}?`);
    else if (!methods.includes(m)) methods.push(m);
  });
  return methods;
}

function validateTargets(ctx: Ctx, value: unknown, path: string): readonly HostPort[] {
  if (value === undefined) {
    report(ctx, path, 'required: at least one HOST:PORT');
    return [];
  }
  if (!Array.isArray(value) || value.length === 0) {
    report(ctx, path, 'expected a non-empty array of HOST:PORT');
    return [];
  }
  const targets: HostPort[] = [];
  value.forEach((t: unknown, i) => {
    const parsed = targetAddress(t);
    if ('problem' in parsed) report(ctx, `${path}[${i}]`, parsed.problem);
    else targets.push(parsed.value);
  });
  return targets;
}

function validateUpstreamTls(ctx: Ctx, value: unknown, path: string): RouteUpstreamTlsConfig {
  const o = section(ctx, value, path, ['serverName', 'verify']);
  return {
    serverName: read(ctx, o, path, 'serverName', nullable(serverNameValue), null),
    verify: validateVerify(ctx, o.verify, at(path, 'verify')),
  };
}

function validateRouteIntegrity(ctx: Ctx, value: unknown, path: string, d: RouteDefaults): ListenerIntegrityConfig {
  const o = section(ctx, value, path, ['verify', 'sign', 'keyId']);
  const verify = read(ctx, o, path, 'verify', booleanValue, d.integrity.verify);
  const sign = read(ctx, o, path, 'sign', booleanValue, false);
  const keyId = read(ctx, o, path, 'keyId', nullable(keyIdValue), null);
  if ((verify || sign) && d.keysDir === null)
    report(ctx, at(path, verify ? 'verify' : 'sign'), 'needs keys.dir (the folder of HMAC key files)');
  if (sign && keyId === null && isAbsent(o.keyId))
    report(ctx, at(path, 'keyId'), 'required when sign is true (the id of the key the gateway signs with)');
  if (!sign && keyId !== null) report(ctx, at(path, 'keyId'), 'only used with sign: true');
  // the gateway vouches with its own key only for what it verified
  if (sign && !verify)
    report(ctx, at(path, 'sign'), 're-signing needs verify: true (the producer signature is checked first)');
  return { verify, sign, keyId: sign ? keyId : null };
}

function validateRouteLimits(ctx: Ctx, value: unknown, path: string, base: LimitsConfig): LimitsConfig {
  const o = section(ctx, value, path, ROUTE_LIMIT_KEYS, {
    misplaced: misplacedAs(LISTENER_LIMIT_KEYS, 'is a limit of the connection: set it on the gateway listener'),
  });
  const requestsPerSecond = read(ctx, o, path, 'requestsPerSecond', nonNegativeNumber, base.requestsPerSecond);
  const burst = read(ctx, o, path, 'burst', nonNegativeInteger, o.requestsPerSecond === undefined ? base.burst : 0);
  return {
    ...base,
    maxBodyBytes: read(ctx, o, path, 'maxBodyBytes', positiveInteger, base.maxBodyBytes),
    requestsPerSecond,
    burst: requestsPerSecond > 0 && burst === 0 ? Math.max(1, Math.ceil(requestsPerSecond)) : burst,
    bodyTimeoutSeconds: read(ctx, o, path, 'bodyTimeoutSeconds', seconds, base.bodyTimeoutSeconds),
    minBodyBytesPerSecond: read(ctx, o, path, 'minBodyBytesPerSecond', nonNegativeInteger, base.minBodyBytesPerSecond),
    upstreamTimeoutSeconds: read(ctx, o, path, 'upstreamTimeoutSeconds', seconds, base.upstreamTimeoutSeconds),
  };
}

function validatePassiveHealth(ctx: Ctx, value: unknown, path: string): PassiveHealthConfig {
  const o = section(ctx, value, path, ['consecutiveFailures', 'ejectSeconds', 'maxEjectSeconds']);
  const d = DEFAULT_PASSIVE_HEALTH;
  const ejectSeconds = read(ctx, o, path, 'ejectSeconds', seconds, d.ejectSeconds);
  const health: PassiveHealthConfig = {
    consecutiveFailures: read(ctx, o, path, 'consecutiveFailures', positiveInteger, d.consecutiveFailures),
    ejectSeconds,
    // a first ejection longer than the default maximum raises the maximum with it
    maxEjectSeconds: read(ctx, o, path, 'maxEjectSeconds', seconds, Math.max(d.maxEjectSeconds, ejectSeconds)),
  };
  if (health.maxEjectSeconds < health.ejectSeconds)
    report(ctx, at(path, 'maxEjectSeconds'), `at least ejectSeconds (${health.ejectSeconds})`);
  return health;
}

function checkRouteNames(ctx: Ctx, routes: readonly RouteConfig[], path: string): void {
  const seen = new Map<string, number>();
  routes.forEach((r, i) => {
    if (r.name === '') return;
    const first = seen.get(r.name);
    if (first === undefined) seen.set(r.name, i);
    else report(ctx, `${path}[${i}].name`, `"${r.name}" is already the name of ${path}[${first}]`);
  });
}

/**
 * A route that an earlier one shadows entirely can never be chosen (first match wins): said at
 * check time, not found in production. The earlier route shadows a later one when every request
 * the later would match, it matches too: its prefix is the later's or a whole-segment prefix of
 * it, its host is any, the same, or a `*.suffix` the later's host is under, and its methods are
 * any or include all of the later's.
 */
function checkReachable(ctx: Ctx, routes: readonly RouteConfig[], path: string): void {
  routes.forEach((r, i) => {
    const shadow = routes.findIndex((e, j) => j < i && covers(e.match, r.match));
    if (shadow >= 0)
      report(ctx, `${path}[${i}].match`, `never chosen: ${path}[${shadow}] matches every request it would`);
  });
}

function covers(earlier: RouteMatchConfig, later: RouteMatchConfig): boolean {
  const e = earlier.pathPrefix;
  const l = later.pathPrefix;
  const path = e === '/' || l === e || l.startsWith(`${e}/`);
  return path && hostCovers(earlier.host, later.host) && methodsCover(earlier.methods, later.methods);
}

function hostCovers(earlier: string | null, later: string | null): boolean {
  if (earlier === null) return true;
  if (later === null) return false;
  if (earlier === later) return true;
  // `*.example.org` covers `a.example.org` and `*.a.example.org`
  return earlier.startsWith('*.') && later.replace(/^\*\./, 'x.').endsWith(earlier.slice(1));
}

function methodsCover(earlier: readonly string[] | null, later: readonly string[] | null): boolean {
  if (earlier === null) return true;
  return later !== null && later.every((m) => earlier.includes(m));
}

const pathPrefix: Parser<string> = (v) =>
  typeof v === 'string' && isCanonicalPrefix(v)
    ? ok(v)
    : bad(
        'expected a path starting with "/" of unreserved characters (letters, digits, "-", ".", "_", "~") and "/", without a trailing "/", "//" or dot segments (e.g. "/v1/events")',
      );

/** An exact host name, or `*.suffix` for every name below suffix. */
const hostPattern: Parser<string> = (v) => {
  if (typeof v !== 'string') return bad('expected a host name, "*.suffix", or null for any host');
  const name = v.startsWith('*.') ? v.slice(2) : v;
  if (!isValidHost(name) || (v.startsWith('*.') && !isDnsName(name)))
    return bad('expected a host name (without a port), "*.suffix", or null for any host');
  return ok(v.toLowerCase());
};
