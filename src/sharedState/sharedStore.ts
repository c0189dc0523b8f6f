/**
 * The replay cache and rate-limit buckets every replica shares, in Redis or Valkey (ioredis,
 * loaded only when `sharedState` is configured):
 *
 * - a nonce: `SET key 1 PX ttl NX` on a keyed fingerprint of (keyid, nonce), never the nonce
 *   itself: set means fresh, not set means another replica (or this one) accepted it first.
 *   The claims of one turn of the event loop are one script that runs those SETs in order
 *   (claimBatch.ts): one command, one write and one reply for all of them. On a cluster their
 *   keys fall in different slots (a script may only touch one), so there each claim stays its own
 *   SET, the SETs of a turn auto-pipelined per node;
 * - a rate decision: one Lua script (GCRA over the server's clock, so replicas with skewed
 *   clocks share one bucket), answering allowed or the seconds until the next token; the
 *   decisions of one turn go out in one write (auto-pipelining).
 *
 * No command waits for a connection: while the store is unreachable every check answers
 * `unavailable` at once (no offline queue), and after `timeoutMs` an answer that did not come is
 * unavailable too. Only the start waits: the store is handed over once its client connected or
 * failed, at most max(1 s, 10 × `timeoutMs`), so a thread does not open its listeners to refuse
 * the first requests while its client is still connecting.
 * The caller decides what unavailable means (refuse or local). The change of state is logged,
 * counted and audited once each way, not per request.
 */
import { readFile } from 'node:fs/promises';
import { watchFileContents, type FileContentWatch } from '../core/fileContentWatch.ts';
import type { Logger } from 'pino';
import type { SharedStateConfig } from '../config/types.ts';
import type { Clock } from '../core/clock.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { ClaimBatch, HELD, NO_ANSWER, SET, type ClaimDone, type ClaimVerdict, type SendClaims } from './claimBatch.ts';

export type { ClaimDone, ClaimVerdict } from './claimBatch.ts';
export type SharedRate = { readonly ok: true } | { readonly ok: false; readonly retryAfterSeconds: number };

export interface SharedStore {
  readonly settings: SharedStateConfig;
  /** one accepted use of `fingerprint` (a keyed digest of keyid and nonce) within `ttlMs`; `done` hears the verdict */
  claim(fingerprint: string, ttlMs: number, done: ClaimDone): void;
  /** one token from the bucket `bucket` (rate per second, burst banked) */
  take(bucket: string, ratePerSecond: number, burst: number): Promise<SharedRate | 'unavailable'>;
  /** the store answered its last command */
  available(): boolean;
  close(): Promise<void>;
}

export interface SharedStoreDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  readonly clock: Clock;
}

/** GCRA: the theoretical arrival time of the next request, kept per bucket; the server's TIME is the clock. */
const TAKE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nextTat = tat + interval
local allowAt = nextTat - tolerance
if now < allowAt then return {0, math.ceil(allowAt - now)} end
redis.call('SET', KEYS[1], nextTat, 'PX', math.ceil(nextTat - now) + 1000)
return {1, 0}
`;

/** the claims of a batch, in order: 1 for a key set now (fresh), 0 for one held already (replayed) */
const CLAIM_SCRIPT = `
local set = {}
for i = 1, #KEYS do
  set[i] = redis.call('SET', KEYS[i], '1', 'PX', ARGV[i], 'NX') and 1 or 0
end
return set
`;

/** the commands of ioredis this module uses (Redis and Cluster both have them) */
interface RedisLike {
  set(key: string, value: string, px: 'PX', ms: string, nx: 'NX'): Promise<'OK' | null>;
  /** numkeys, the keys, then one expiry per key (arrays are flattened into arguments) */
  tollgateClaim(numberOfKeys: number, keys: string[], ttls: string[]): Promise<number[]>;
  tollgateTake(key: string, interval: number, tolerance: number): Promise<[number, number]>;
  defineCommand(name: string, def: { numberOfKeys?: number; lua: string }): void;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
  quit(): Promise<unknown>;
  disconnect(): void;
  status: string;
}

export async function openSharedStore(settings: SharedStateConfig, deps: SharedStoreDeps): Promise<SharedStore> {
  const files = secretFiles(settings);
  let store: RedisSharedStore | null = null;
  // watched from before the client reads them, so a renewal in between is not missed
  const watch =
    files.length === 0
      ? null
      : await watchFileContents({
          files,
          log: deps.log,
          what: 'shared state TLS directory',
          keeping: 'the shared state client in use',
          settleMs: FILES_SETTLE_MS,
          onChange: () => void store?.renew(),
        });
  // the client connects at once: the store listens to it in the same turn, so no event is missed
  store = new RedisSharedStore(settings, await newClient(settings), deps, watch);
  // the listeners open once the store has answered or failed (bounded): a thread that accepted
  // before its client was ready would refuse its first requests (503) for nothing
  await store.firstState(connectWaitMs(settings));
  return store;
}

/** one client (a server, or a cluster through its seed node) with the settings and files as they are now */
async function newClient(settings: SharedStateConfig): Promise<RedisLike> {
  const options = await connectionOptions(settings);
  const { Redis, Cluster } = await import('ioredis');
  const url = new URL(settings.url);
  const client = (settings.topology === 'cluster'
    ? new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
        redisOptions: options,
        enableAutoPipelining: true,
        enableOfflineQueue: false,
        keyPrefix: settings.keyPrefix,
        clusterRetryStrategy: reconnectDelay,
      })
    : new Redis(settings.url, {
        ...options,
        enableAutoPipelining: true,
        // a batch of claims is one command already: it goes out in the turn's check phase, as it is
        autoPipeliningIgnoredCommands: ['tollgateClaim'],
        keyPrefix: settings.keyPrefix,
      })) as unknown as RedisLike;
  client.defineCommand('tollgateTake', { numberOfKeys: 1, lua: TAKE_SCRIPT });
  // the number of keys is the first argument (a batch's size)
  if (settings.topology !== 'cluster') client.defineCommand('tollgateClaim', { lua: CLAIM_SCRIPT });
  return client;
}

/** the CA, client certificate, key and password files (a renewal of any of them makes a new client) */
function secretFiles(s: SharedStateConfig): string[] {
  return [s.caFile, s.certFile, s.keyFile, s.passwordFile].filter((f): f is string => f !== null);
}

/**
 * `tollgate check`: connect as a replica would (TLS, client certificate, password) and PING,
 * within a few seconds. null when the store answered; else what went wrong (a CA that does not
 * sign the server, a refused certificate, nothing listening).
 */
export async function probeSharedStore(settings: SharedStateConfig, waitMs = 3000): Promise<string | null> {
  let options: Record<string, unknown>;
  try {
    options = await connectionOptions(settings);
  } catch (err) {
    return (err as Error).message;
  }
  const { Redis } = await import('ioredis');
  const url = new URL(settings.url);
  // a cluster's seed node answers PING like any server
  const client = new Redis(settings.url, {
    ...options,
    host: url.hostname,
    lazyConnect: true,
    retryStrategy: () => null,
    connectTimeout: waitMs,
    commandTimeout: waitMs,
  });
  let lastError: Error | null = null;
  client.on('error', (err: Error) => (lastError = err));
  try {
    await client.connect();
    await client.ping();
    return null;
  } catch (err) {
    return (lastError ?? (err as Error)).message;
  } finally {
    client.disconnect();
  }
}

/** connection settings shared by a standalone client and a cluster's node clients */
async function connectionOptions(s: SharedStateConfig): Promise<Record<string, unknown>> {
  const password = s.passwordFile === null ? undefined : (await readFile(s.passwordFile, 'utf8')).trim();
  const tls =
    new URL(s.url).protocol === 'rediss:'
      ? {
          ca: await readFile(s.caFile!),
          ...(s.certFile === null ? {} : { cert: await readFile(s.certFile), key: await readFile(s.keyFile!) }),
          // the name in the URL is the one the server certificate must carry
          servername: new URL(s.url).hostname,
          minVersion: 'TLSv1.2',
        }
      : undefined;
  return {
    ...(password === undefined ? {} : { password }),
    ...(tls === undefined ? {} : { tls }),
    // a request never waits for a connection: while there is none, a check is unavailable at once
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: s.timeoutMs,
    connectTimeout: connectWaitMs(s),
    retryStrategy: reconnectDelay,
    lazyConnect: false,
  };
}

/** how long a connection may take to open */
function connectWaitMs(s: SharedStateConfig): number {
  return Math.max(1000, s.timeoutMs * 10);
}

/** reconnect quickly at first, then once a second */
function reconnectDelay(times: number): number {
  return Math.min(1000, 50 * times);
}

/** how long a burst of file events (cert-manager writes a Secret volume in one swap, a person in several writes) settles */
const FILES_SETTLE_MS = 500;
/** an old client finishes what it has in flight for this long after a new one took over */
const OLD_CLIENT_GRACE_MS = 5_000;

class RedisSharedStore implements SharedStore {
  readonly settings: SharedStateConfig;
  client: RedisLike;
  readonly deps: SharedStoreDeps;
  /** the TLS and password files, watched for a renewal; null without any */
  readonly files: FileContentWatch | null;
  up = false;
  /** the state last reported (log, audit): null until the first answer or failure */
  reported: boolean | null = null;
  /** told when the first state is reported */
  private firstReported: (() => void) | null = null;
  closed = false;
  /** the claims of the turn, sent together */
  readonly claims: ClaimBatch;
  /** the replay series, resolved once */
  readonly replayDuration: ReturnType<Metrics['sharedStateDuration']['labels']>;
  readonly replayCounts: Record<ClaimVerdict, ReturnType<Metrics['sharedStateOperations']['labels']>>;

  constructor(settings: SharedStateConfig, client: RedisLike, deps: SharedStoreDeps, files: FileContentWatch | null) {
    this.settings = settings;
    this.client = client;
    this.deps = deps;
    this.files = files;
    const m = deps.metrics;
    this.replayDuration = m.sharedStateDuration.labels('replay');
    this.replayCounts = {
      fresh: m.sharedStateOperations.labels('replay', 'fresh'),
      replayed: m.sharedStateOperations.labels('replay', 'replayed'),
      unavailable: m.sharedStateOperations.labels('replay', 'unavailable'),
    };
    const send = settings.topology === 'cluster' ? this.claimEach.bind(this) : this.claimInOneScript.bind(this);
    this.claims = new ClaimBatch(
      send,
      {
        answered: (count, fresh, seconds) => this.claimsAnswered(count, fresh, seconds),
        failed: (count, err) => this.claimsFailed(count, err),
      },
      deps.clock,
    );
    m.sharedStateUp.set(0);
    this.listen(client);
  }

  /** the client's connection events are the store's (an old client's, once replaced, are not) */
  listen(client: RedisLike): void {
    const mine = (fn: () => void) => () => {
      if (client === this.client) fn();
    };
    client.on(
      'ready',
      mine(() => this.changed(true, null)),
    );
    client.on('error', (err) => {
      if (client === this.client) this.changed(false, err as Error);
    });
    client.on(
      'close',
      mine(() => this.changed(false, null)),
    );
    client.on(
      'end',
      mine(() => this.changed(false, null)),
    );
  }

  /**
   * A renewed client certificate, key, CA bundle or password (their directories are watched, as
   * the identity's are): a new client is made with them and takes every new command; the old one
   * finishes what it has in flight, then closes. Files that do not load leave the client as it is.
   */
  async renew(): Promise<void> {
    if (this.closed) return;
    let next: RedisLike;
    try {
      next = await newClient(this.settings);
    } catch (err) {
      this.deps.log.warn(
        { err: (err as Error).message },
        'shared state files changed but do not load; the client in use stays',
      );
      return;
    }
    if (this.closed) return next.disconnect();
    const old = this.client;
    this.client = next;
    this.listen(next);
    this.deps.log.info('shared state TLS files renewed: new connections use them');
    setTimeout(() => void old.quit().catch(() => old.disconnect()), OLD_CLIENT_GRACE_MS).unref();
  }

  claim(fingerprint: string, ttlMs: number, done: ClaimDone): void {
    this.claims.add(`replay:${fingerprint}`, ttlMs, done);
  }

  /** a batch of claims as one script, on the client in use when it goes out */
  claimInOneScript(keys: string[], ttls: string[], answer: Parameters<SendClaims>[2]): void {
    this.client.tollgateClaim(keys.length, keys, ttls).then(
      (results) => answer(Array.isArray(results) ? results : NO_RESULTS, null),
      (err: Error) => answer(NO_RESULTS, err),
    );
  }

  /** a cluster: one SET per claim (their keys are in different slots), auto-pipelined per node */
  claimEach(keys: string[], ttls: string[], answer: Parameters<SendClaims>[2]): void {
    const results = new Int8Array(keys.length).fill(NO_ANSWER);
    let left = keys.length;
    let error: Error | null = null;
    const settle = (): void => {
      if (--left === 0) answer(results, error);
    };
    for (let i = 0; i < keys.length; i++) {
      this.client.set(keys[i]!, '1', 'PX', ttls[i]!, 'NX').then(
        (set) => {
          results[i] = set === 'OK' ? SET : HELD;
          settle();
        },
        (err: Error) => {
          error ??= err;
          settle();
        },
      );
    }
  }

  private claimsAnswered(count: number, fresh: number, seconds: number): void {
    // one round trip for the batch: each claim in it is observed with it
    for (let i = 0; i < count; i++) this.replayDuration.observe(seconds);
    if (fresh > 0) this.replayCounts.fresh.inc(fresh);
    if (count > fresh) this.replayCounts.replayed.inc(count - fresh);
    this.changed(true, null);
  }

  private claimsFailed(count: number, err: Error): void {
    this.replayCounts.unavailable.inc(count);
    this.changed(false, err);
  }

  async take(bucket: string, ratePerSecond: number, burst: number): Promise<SharedRate | 'unavailable'> {
    const started = this.deps.clock.monotonic();
    const interval = 1000 / ratePerSecond;
    try {
      const [allowed, waitMs] = await this.client.tollgateTake(`rate:${bucket}`, interval, interval * burst);
      this.answered('rate', started);
      this.count('rate', allowed === 1 ? 'allowed' : 'limited');
      return allowed === 1 ? ALLOWED : { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
    } catch (err) {
      this.failed('rate', err as Error);
      return 'unavailable';
    }
  }

  available(): boolean {
    return this.up;
  }

  /** resolves once the client connected or failed (its first state), or after `waitMs` */
  firstState(waitMs: number): Promise<void> {
    if (this.reported !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      this.firstReported = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.files?.close();
    try {
      await Promise.race([this.client.quit(), new Promise((r) => setTimeout(r, 500).unref())]);
    } catch {
      // already gone
    }
    this.client.disconnect();
  }

  private answered(operation: string, started: bigint): void {
    this.deps.metrics.sharedStateDuration
      .labels(operation)
      .observe(Number(this.deps.clock.monotonic() - started) / 1e9);
    this.changed(true, null);
  }

  private failed(operation: string, err: Error): void {
    this.count(operation, 'unavailable');
    this.changed(false, err);
  }

  private count(operation: string, result: string): void {
    this.deps.metrics.sharedStateOperations.labels(operation, result).inc();
  }

  /** the store's state as last seen; a change is logged, audited and set on the gauge once */
  private changed(up: boolean, err: Error | null): void {
    if (this.closed) return;
    this.up = up;
    if (this.reported === up) return;
    const first = this.reported === null;
    this.reported = up;
    if (first) {
      this.firstReported?.();
      this.firstReported = null;
    }
    this.deps.metrics.sharedStateUp.set(up ? 1 : 0);
    const mode = this.settings.onUnavailable;
    if (up) {
      this.deps.log.info(
        { url: this.settings.url },
        first ? 'shared state store connected' : 'shared state store available again',
      );
      if (!first) this.deps.audit.record('shared_state', { state: 'available', onUnavailable: mode });
      return;
    }
    this.deps.log.warn(
      { url: this.settings.url, err: err?.message ?? 'connection closed', onUnavailable: mode },
      mode === 'refuse'
        ? 'shared state store unavailable: requests that need it are refused (503) until it is back'
        : 'shared state store unavailable: answering from this process (replay cache and rate limits per replica) until it is back',
    );
    this.deps.audit.record('shared_state', { state: 'unavailable', onUnavailable: mode, err: err?.message ?? null });
  }
}

const ALLOWED: SharedRate = Object.freeze({ ok: true });
const NO_RESULTS: readonly number[] = Object.freeze([]);
