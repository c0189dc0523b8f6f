/**
 * The endpoints behind a gateway route's `targets`. An IP literal is one endpoint for good; a DNS
 * name stands for every address it has (A and AAAA, as a Kubernetes headless Service publishes
 * one record per ready pod), asked again when the shortest TTL runs out, and at least every
 * `refreshMs`. A name DNS does not know (an /etc/hosts name such as `localhost`) falls back to
 * getaddrinfo. A failed refresh keeps the last good answer: a DNS outage must not empty a pool
 * whose pods are still there, and passive health ejects the ones that are not.
 */
import { promises as dnsPromises } from 'node:dns';
import { SocketAddress, isIP } from 'node:net';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../core/clock.ts';
import { formatHostPort } from '../config/hostPort.ts';
import type { HostPort } from '../config/types.ts';

export interface ResolvedEndpoint {
  /** `address:port`, IPv6 as `[address]:port`; unique per endpoint */
  readonly key: string;
  /** an IP literal */
  readonly address: string;
  readonly port: number;
  /** the configured target it came from, `name:port` as formatHostPort prints it */
  readonly target: string;
  /** that target's host (the name a TLS server behind it is checked against) */
  readonly targetHost: string;
}

export type TargetSource = 'literal' | 'dns' | 'lookup';

/** One target as the admin API shows it. */
export interface TargetStatus {
  readonly target: string;
  readonly addresses: string[];
  /** when the addresses were last confirmed (ISO), null before the first answer */
  readonly resolvedAt: string | null;
  /** when the name is asked again (ISO), null for a literal or once closed */
  readonly nextAt: string | null;
  /** the last refresh's failure, null when it succeeded */
  readonly error: string | null;
  readonly source: TargetSource;
}

export type AddressLookup = (host: string) => Promise<Array<{ address: string; family: number }>>;

export interface TargetResolverDeps {
  readonly targets: readonly HostPort[];
  /** the longest an answer is used before asking again (also the interval for answers without a TTL) */
  readonly refreshMs: number;
  /** name resolution; defaults to a Resolver with a bounded timeout, so a dead DNS server stalls nothing */
  readonly resolver?: Pick<dnsPromises.Resolver, 'resolve4' | 'resolve6'>;
  /** getaddrinfo-style lookup for names the resolver cannot answer (/etc/hosts names like localhost) */
  readonly lookup?: AddressLookup;
  readonly log: Logger;
  /** called whenever the endpoint set changes (not when an answer brings the same set) */
  readonly onChange: (endpoints: readonly ResolvedEndpoint[]) => void;
  /** for the timestamps in status(); timers run on real time */
  readonly clock?: Clock;
}

/** a TTL of 0 ("do not cache") would have us ask in a loop */
const MIN_REFRESH_MS = 1000;
/** per query try; with two tries a dead server costs a refresh about 4 s */
const DEFAULT_RESOLVER_OPTIONS = { timeout: 2000, tries: 2 } as const;
/** answers that say "no such records", after which getaddrinfo is asked; anything else is a failure */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND', 'ENONAME', 'NXDOMAIN']);

const defaultLookup: AddressLookup = (host) => dnsPromises.lookup(host, { all: true });

/** What one family's query brought. */
type FamilyAnswer =
  | { readonly kind: 'records'; readonly addresses: string[]; readonly minTtlS: number }
  | { readonly kind: 'none' }
  | { readonly kind: 'failed'; readonly error: string };

/** What one refresh of a name brought. */
type Refresh =
  | {
      readonly ok: true;
      readonly source: 'dns' | 'lookup';
      readonly v4: FamilyAnswer;
      readonly v6: FamilyAnswer;
      readonly ttlMs: number | null;
    }
  | { readonly ok: false; readonly error: string };

interface TargetState {
  readonly hostPort: HostPort;
  readonly label: string;
  readonly literal: boolean;
  source: TargetSource;
  /** sorted: IPv4 before IPv6, each in ascending order */
  addresses: string[];
  v4: string[];
  v6: string[];
  resolvedAt: number | null;
  nextAt: number | null;
  error: string | null;
  /** failed refreshes in a row, for the retry backoff */
  failures: number;
  timer: NodeJS.Timeout | null;
}

export class TargetResolver {
  readonly #deps: TargetResolverDeps;
  readonly #resolver: Pick<dnsPromises.Resolver, 'resolve4' | 'resolve6'>;
  /** the Resolver made here, cancelled on close; one handed in belongs to its owner */
  readonly #ownResolver: dnsPromises.Resolver | null;
  readonly #lookup: AddressLookup;
  readonly #clock: Clock;
  readonly #targets: TargetState[];
  #endpoints: readonly ResolvedEndpoint[] = Object.freeze([]);
  /** the keys onChange last saw, joined */
  #notified = '';
  #started: Promise<void> | null = null;
  /** true while start() gathers the first answers: onChange is called once, at its end */
  #starting = false;
  #closed = false;

  constructor(deps: TargetResolverDeps) {
    if (!(deps.refreshMs > 0) || !Number.isFinite(deps.refreshMs))
      throw new RangeError(`refreshMs must be a positive number of milliseconds, got ${deps.refreshMs}`);
    this.#deps = deps;
    this.#ownResolver = deps.resolver === undefined ? new dnsPromises.Resolver(DEFAULT_RESOLVER_OPTIONS) : null;
    this.#resolver = deps.resolver ?? this.#ownResolver!;
    this.#lookup = deps.lookup ?? defaultLookup;
    this.#clock = deps.clock ?? systemClock;
    const now = this.#clock.now();
    this.#targets = deps.targets.map((hp) => newTargetState(hp, now));
    this.#endpoints = buildEndpoints(this.#targets, new Map());
  }

  /** Resolve every target once; resolves (never rejects) when each target got an answer or failed. */
  start(): Promise<void> {
    this.#started ??= this.#startOnce();
    return this.#started;
  }

  /** The current endpoints, in target order then address order, deduplicated by key. */
  current(): readonly ResolvedEndpoint[] {
    return this.#endpoints;
  }

  status(): TargetStatus[] {
    const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
    return this.#targets.map((s) => ({
      target: s.label,
      addresses: [...s.addresses],
      resolvedAt: iso(s.resolvedAt),
      nextAt: iso(s.nextAt),
      error: s.error,
      source: s.source,
    }));
  }

  /** Stop every timer; onChange is not called after this. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#targets) {
      if (s.timer !== null) clearTimeout(s.timer);
      s.timer = null;
      s.nextAt = null;
    }
    // queries in flight end with ECANCELLED, which the closed flag ignores
    this.#ownResolver?.cancel();
  }

  async #startOnce(): Promise<void> {
    this.#starting = true;
    await Promise.all(this.#targets.filter((s) => !s.literal).map((s) => this.#refresh(s)));
    this.#starting = false;
    this.#notify();
  }

  /** Ask for one name, apply the answer, schedule the next question. Never rejects. */
  async #refresh(state: TargetState): Promise<void> {
    state.timer = null;
    let refresh: Refresh;
    try {
      refresh = await this.#ask(state.hostPort.host);
    } catch (err) {
      refresh = { ok: false, error: errorText(err) };
    }
    if (this.#closed) return;
    const delay = refresh.ok ? this.#apply(state, refresh) : this.#keepLastGood(state, refresh.error);
    state.nextAt = this.#clock.now() + delay;
    state.timer = setTimeout(() => void this.#refresh(state), delay);
    state.timer.unref();
  }

  async #ask(host: string): Promise<Refresh> {
    const [v4, v6] = await Promise.all([
      familyAnswer(this.#resolver.resolve4(host, { ttl: true })),
      familyAnswer(this.#resolver.resolve6(host, { ttl: true })),
    ]);
    if (v4.kind === 'records' || v6.kind === 'records') {
      const ttls = [v4, v6].flatMap((a) => (a.kind === 'records' ? [a.minTtlS] : []));
      return { ok: true, source: 'dns', v4, v6, ttlMs: Math.min(...ttls) * 1000 };
    }
    const failure = failureOf(v4, v6);
    if (failure !== null) return { ok: false, error: failure };
    // DNS knows no such name: the system's lookup may (/etc/hosts, nsswitch)
    const found = await this.#lookup(host);
    const unique = (family: number): string[] => [
      ...new Set(found.filter((a) => a.family === family).map((a) => canonicalAddress(a.address))),
    ];
    const asAnswer = (addresses: string[]): FamilyAnswer =>
      addresses.length > 0 ? { kind: 'records', addresses, minTtlS: Infinity } : { kind: 'none' };
    const [lv4, lv6] = [unique(4), unique(6)];
    if (lv4.length === 0 && lv6.length === 0) return { ok: false, error: `no A or AAAA record for ${host}` };
    return { ok: true, source: 'lookup', v4: asAnswer(lv4), v6: asAnswer(lv6), ttlMs: null };
  }

  /** Take an answer; a family whose query failed keeps its last addresses. Returns the delay to the next ask. */
  #apply(state: TargetState, refresh: Refresh & { ok: true }): number {
    const sameSource = state.source === refresh.source;
    const pick = (answer: FamilyAnswer, last: string[]): string[] =>
      answer.kind === 'records' ? answer.addresses : answer.kind === 'failed' && sameSource ? last : [];
    state.v4 = sortAddresses(pick(refresh.v4, state.v4));
    state.v6 = sortAddresses(pick(refresh.v6, state.v6));
    state.source = refresh.source;
    state.resolvedAt = this.#clock.now();
    state.failures = 0;
    this.#setAddresses(state, [...state.v4, ...state.v6]);
    this.#setError(state, failureOf(refresh.v4, refresh.v6));
    const ttlMs = refresh.ttlMs ?? this.#deps.refreshMs;
    return Math.min(this.#deps.refreshMs, Math.max(MIN_REFRESH_MS, ttlMs));
  }

  /** A refresh that brought nothing usable: keep what we had, ask again sooner, backing off. */
  #keepLastGood(state: TargetState, error: string): number {
    state.failures += 1;
    this.#setError(state, error);
    return Math.min(this.#deps.refreshMs, MIN_REFRESH_MS * 2 ** Math.min(state.failures - 1, 16));
  }

  /** Log a failure when it starts or changes (a dead DNS server would otherwise warn at every retry), and the recovery. */
  #setError(state: TargetState, error: string | null): void {
    const previous = state.error;
    state.error = error;
    const { log } = this.#deps;
    if (error !== null) {
      const fields = { target: state.label, error, addresses: state.addresses.length, failures: state.failures };
      if (error !== previous) log.warn(fields, 'target resolution failed; keeping the last good addresses');
      else log.debug(fields, 'target resolution still failing');
    } else if (previous !== null) {
      log.info({ target: state.label, addresses: state.addresses.length }, 'target resolution recovered');
    }
  }

  #setAddresses(state: TargetState, addresses: string[]): void {
    if (sameList(state.addresses, addresses)) return;
    this.#deps.log.info(
      { target: state.label, source: state.source, from: state.addresses.length, to: addresses.length, addresses },
      'target addresses changed',
    );
    state.addresses = addresses;
    const previous = new Map(this.#endpoints.map((e) => [e.key, e]));
    this.#endpoints = buildEndpoints(this.#targets, previous);
    this.#notify();
  }

  #notify(): void {
    if (this.#closed || this.#starting) return;
    const keys = this.#endpoints.map((e) => `${e.key} ${e.target}`).join('\n');
    if (keys === this.#notified) return;
    this.#notified = keys;
    try {
      this.#deps.onChange(this.#endpoints);
    } catch (err) {
      // a throw here would surface from a timer as an uncaught exception and end the process
      this.#deps.log.error({ error: errorText(err) }, 'target endpoints listener failed');
    }
  }
}

function newTargetState(hostPort: HostPort, now: number): TargetState {
  const literal = isIP(hostPort.host) !== 0;
  const address = literal ? canonicalAddress(hostPort.host) : '';
  return {
    hostPort,
    label: formatHostPort(hostPort),
    literal,
    source: literal ? 'literal' : 'dns',
    addresses: literal ? [address] : [],
    v4: [],
    v6: [],
    resolvedAt: literal ? now : null,
    nextAt: null,
    error: null,
    failures: 0,
    timer: null,
  };
}

/** Settle one family's query into records, "none such", or a failure; never rejects. */
async function familyAnswer(query: Promise<Array<{ address: string; ttl: number }>>): Promise<FamilyAnswer> {
  try {
    const records = await query;
    if (records.length === 0) return { kind: 'none' };
    const addresses = [...new Set(records.map((r) => canonicalAddress(r.address)))];
    return { kind: 'records', addresses, minTtlS: Math.min(...records.map((r) => r.ttl)) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    if (code !== undefined && NO_RECORDS.has(code)) return { kind: 'none' };
    return { kind: 'failed', error: errorText(err) };
  }
}

/** The first failure among a name's answers, or null. */
function failureOf(...answers: FamilyAnswer[]): string | null {
  for (const a of answers) if (a.kind === 'failed') return a.error;
  return null;
}

/**
 * The endpoints of every target, in target order then address order; an address:port two
 * targets share is one endpoint, credited to the first. An endpoint that was there before is
 * the same object, so a consumer can compare by identity as well as by key.
 */
function buildEndpoints(
  targets: readonly TargetState[],
  previous: ReadonlyMap<string, ResolvedEndpoint>,
): readonly ResolvedEndpoint[] {
  const seen = new Set<string>();
  const out: ResolvedEndpoint[] = [];
  for (const s of targets) {
    const port = s.hostPort.port;
    for (const address of s.addresses) {
      const key = formatHostPort({ host: address, port });
      if (seen.has(key)) continue;
      seen.add(key);
      const before = previous.get(key);
      out.push(
        before?.target === s.label
          ? before
          : Object.freeze({ key, address, port, target: s.label, targetHost: s.hostPort.host }),
      );
    }
  }
  return Object.freeze(out);
}

/** One spelling per address (`0:0::1` and `::1` are one endpoint); a zoned IPv6 address is kept as written. */
function canonicalAddress(address: string): string {
  const family = isIP(address);
  if (family !== 6 || address.includes('%')) return address;
  return new SocketAddress({ address, family: 'ipv6' }).address;
}

/** IPv4 before IPv6; IPv4 in numeric order, IPv6 in text order of the canonical form: stable whatever DNS rotates. */
function sortAddresses(addresses: readonly string[]): string[] {
  return [...addresses].sort(compareAddresses);
}

function compareAddresses(a: string, b: string): number {
  const fa = isIP(a);
  const fb = isIP(b);
  if (fa !== fb) return fa - fb;
  if (fa === 4) return ipv4Number(a) - ipv4Number(b);
  return a < b ? -1 : a > b ? 1 : 0;
}

function ipv4Number(address: string): number {
  return address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
