/**
 * The gateway's route table: which route, in order, first takes a request by host, path and method.
 * Everything that can be worked out from the config is worked out once in the constructor (hosts lowercased, routes
 * indexed by prefix); a match reads the request's host once, and only when some route has a host.
 */
import { isIPv6 } from 'node:net';
import { isCanonicalPrefix } from '../core/canonicalPath.ts';

export interface RouteMatchSpec {
  /** canonical, whole segments, no trailing "/" unless "/" itself (see isCanonicalPrefix) */
  readonly pathPrefix: string;
  /** null: any host; "name" (any case, no port; IPv6 as "::1" or "[::1]"); "*.suffix": a name with at least one label before ".suffix" */
  readonly host: string | null;
  /** null: any method; otherwise exact, case-sensitive tokens */
  readonly methods: readonly string[] | null;
}

const LEFT_BRACKET = 0x5b;
const COLON = 0x3a;
const DOT = 0x2e;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

// What a character can be in a host, one table lookup per character: a host is read on every request
const NAME = 1; // a letter, digit, "-" or "_": what DNS names and certificates spell labels with
const UPPER = 2; // an uppercase letter, to be lowercased
const IPV6 = 4; // a hex digit, ":" or ".", inside brackets
const HOST_CHARACTER = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const upper = c >= 0x41 && c <= 0x5a;
  const lower = c >= 0x61 && c <= 0x7a;
  const hex = isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
  HOST_CHARACTER[c] =
    (upper || lower || isDigit(c) || c === 0x2d || c === 0x5f ? NAME : 0) |
    (upper ? UPPER : 0) |
    (hex || c === COLON || c === DOT ? IPV6 : 0);
}

function hostCharacter(c: number): number {
  return c < 128 ? HOST_CHARACTER[c]! : 0;
}

/** Whether authority[from..] is empty or ":" followed by digits only. */
function isPortOrNothing(authority: string, from: number): boolean {
  if (from === authority.length) return true;
  if (authority.charCodeAt(from) !== COLON) return false;
  for (let i = from + 1; i < authority.length; i++) if (!isDigit(authority.charCodeAt(i))) return false;
  return true;
}

/**
 * The host of a Host field value (`host[:port]`), as routes compare it: lowercased, port dropped, one trailing dot
 * dropped ("a.example.org." is "a.example.org"). An IPv6 literal keeps its brackets ("[::1]:8443" is "[::1]"): it is
 * then spelled as in a URL, and a "*.suffix" pattern can never match it. IPv6 text is not otherwise normalised
 * ("[0::1]" is not "[::1]").
 *
 * "" when the value is empty or not a plain host: an empty label (".a", "a..b"), userinfo, a character that is not a
 * letter, digit, "-", "_" or "." in a name, a port that is not digits. "" matches only routes without a host.
 */
export function hostOfAuthority(authority: string): string {
  const n = authority.length;
  if (n === 0) return '';
  let hostEnd: number;
  let portFrom: number;
  let hasUpper = false;
  if (authority.charCodeAt(0) === LEFT_BRACKET) {
    hostEnd = authority.indexOf(']') + 1;
    if (hostEnd <= 2) return '';
    for (let i = 1; i < hostEnd - 1; i++) {
      const kind = hostCharacter(authority.charCodeAt(i));
      if ((kind & IPV6) === 0) return '';
      if ((kind & UPPER) !== 0) hasUpper = true;
    }
    portFrom = hostEnd;
  } else {
    hostEnd = n;
    let labelLength = 0;
    for (let i = 0; i < n; i++) {
      const c = authority.charCodeAt(i);
      if (c === COLON) {
        hostEnd = i;
        break;
      }
      const kind = hostCharacter(c);
      if (kind === (NAME | IPV6) || kind === NAME) labelLength++;
      else if (c === DOT) {
        if (labelLength === 0) return '';
        labelLength = 0;
      } else if ((kind & NAME) !== 0) {
        labelLength++;
        hasUpper = true;
      } else return '';
    }
    if (hostEnd === 0) return '';
    portFrom = hostEnd;
    // a fully qualified name: the root label's dot says nothing about which host is meant
    if (labelLength === 0) hostEnd--;
  }
  if (!isPortOrNothing(authority, portFrom)) return '';
  const host = hostEnd === n ? authority : authority.slice(0, hostEnd);
  return hasUpper ? host.toLowerCase() : host;
}

/** A route's host, compiled: null for any host; exact: the host as hostOfAuthority gives it; suffix: ".example.org". */
type HostRule =
  { readonly exact: string; readonly suffix: null } | { readonly exact: null; readonly suffix: string } | null;

function compileHost(pattern: string): HostRule | undefined {
  // an IPv6 address may be written bare in the config ("::1"); a Host field carries it in brackets
  if (isIPv6(pattern)) return { exact: `[${pattern.toLowerCase()}]`, suffix: null };
  if (pattern.startsWith('*.')) {
    // "x.suffix" must be a valid name, and stays one with its first label cut off
    const asHost = hostOfAuthority('x' + pattern.slice(1));
    if (asHost.length < 3 || pattern.includes(':')) return undefined;
    return { exact: null, suffix: asHost.slice(1) };
  }
  const exact = hostOfAuthority(pattern);
  // a port in a route's host would be dropped silently: refused instead
  if (exact === '') return undefined;
  if (exact.charCodeAt(0) === LEFT_BRACKET)
    return pattern.endsWith(']') && isIPv6(exact.slice(1, -1)) ? { exact, suffix: null } : undefined;
  if (pattern.includes(':')) return undefined;
  return { exact, suffix: null };
}

/** Whether `pattern` can be a route's host: a name, an IPv4 address, an IPv6 address bare or in brackets (no port), or "*.suffix". */
export function isRouteHostPattern(pattern: string): boolean {
  return compileHost(pattern) !== undefined;
}

function hostMatches(rule: NonNullable<HostRule>, host: string): boolean {
  if (rule.exact !== null) return host === rule.exact;
  // the suffix starts with "." and hostOfAuthority leaves no empty label: what precedes it is at least one whole label
  return host.endsWith(rule.suffix);
}

interface CompiledRoute {
  readonly host: HostRule;
  readonly methods: readonly string[] | null;
}

/**
 * The route `candidates` (indexes, ascending) offer first for the host and method, if it comes before `best`; else
 * `best` (-1: none yet).
 */
function firstTaking(
  routes: readonly CompiledRoute[],
  candidates: readonly number[],
  best: number,
  requestHost: string,
  method: string,
): number {
  for (let k = 0; k < candidates.length; k++) {
    const i = candidates[k]!;
    if (best >= 0 && i >= best) return best;
    const route = routes[i]!;
    if (route.methods !== null && !route.methods.includes(method)) continue;
    if (route.host !== null && !hostMatches(route.host, requestHost)) continue;
    return i;
  }
  return best;
}

/**
 * Routes are indexed by their exact prefix: a path looks up each of its own segment prefixes ("/v1", "/v1/events",
 * …), so a match costs a few map lookups and checks only the routes whose prefix it has, however long the table.
 */
export class RouteMatcher {
  private readonly routes: readonly CompiledRoute[];
  /** routes whose prefix is "/", in order */
  private readonly everyPath: readonly number[] = [];
  /** prefix -> its routes, in order */
  private readonly byPrefix = new Map<string, number[]>();
  /** 1 at the length of some prefix: a path boundary at any other length needs no lookup */
  private readonly prefixLengths: Uint8Array;
  private readonly hostsMatter: boolean;

  /** Routes in order; the first that matches wins. Throws a TypeError on a prefix or host that config validation should have refused. */
  constructor(routes: readonly RouteMatchSpec[]) {
    let longest = 0;
    this.routes = routes.map((spec, index): CompiledRoute => {
      const prefix = spec.pathPrefix;
      if (!isCanonicalPrefix(prefix)) throw new TypeError(`route ${index}: pathPrefix is not a canonical prefix`);
      let host: HostRule = null;
      if (spec.host !== null) {
        const compiled = compileHost(spec.host);
        if (compiled === undefined) throw new TypeError(`route ${index}: host is not a host name, [IPv6] or *.suffix`);
        host = compiled;
      }
      if (prefix === '/') (this.everyPath as number[]).push(index);
      else {
        const list = this.byPrefix.get(prefix);
        if (list === undefined) this.byPrefix.set(prefix, [index]);
        else list.push(index);
        longest = Math.max(longest, prefix.length);
      }
      return { host, methods: spec.methods === null ? null : [...spec.methods] };
    });
    this.prefixLengths = new Uint8Array(longest + 1);
    for (const prefix of this.byPrefix.keys()) this.prefixLengths[prefix.length] = 1;
    this.hostsMatter = this.routes.some((r) => r.host !== null);
  }

  /**
   * Index of the first route matching, or -1. `host` is the Host field value as received (any case, maybe ":port");
   * `path` is canonicalPath's output; `method` as received (methods are case-sensitive).
   */
  match(host: string, path: string, method: string): number {
    const routes = this.routes;
    const requestHost = this.hostsMatter ? hostOfAuthority(host) : '';
    let best = firstTaking(routes, this.everyPath, -1, requestHost, method);
    const lengths = this.prefixLengths;
    // each segment boundary of the path ends one prefix it may be routed by: "/v1", then "/v1/events", ...
    for (let end = 0; best !== 0 && end < path.length;) {
      const slash = path.indexOf('/', end + 1);
      end = slash === -1 ? path.length : slash;
      if (end >= lengths.length || lengths[end] !== 1) continue;
      const candidates = this.byPrefix.get(path.slice(0, end));
      if (candidates !== undefined) best = firstTaking(routes, candidates, best, requestHost, method);
    }
    return best;
  }
}
