import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { TollgateError } from '../core/errors.ts';
import type { PassiveHealthConfig } from '../config/types.ts';
import type { Exchange } from '../http1/exchange.ts';
import type { ConnectionOwner, UpstreamLink } from '../http1/upstreamConnection.ts';
import type { Acquired, Upstream } from '../http1/upstreamPool.ts';
import type { ResolvedEndpoint } from './targetResolver.ts';

/**
 * A gateway route's upstream: its endpoints (every address its targets resolve to), each with
 * its own keep-alive pool, balanced by the power of two choices on outstanding requests, with
 * passive health.
 *
 * - Balancing: two healthy endpoints drawn at random, the one with fewer exchanges on the way
 *   (on a connection or waiting for one) gets the request; with one healthy endpoint, it does.
 * - Passive health: `consecutiveFailures` in a row (a connect that failed, a connection reset or
 *   timed out under an exchange, a 5xx answer) eject the endpoint for `ejectSeconds`, doubled for
 *   each ejection that follows a return, up to `maxEjectSeconds`; an answer below 500 clears the
 *   count. An endpoint back from ejection that fails once is ejected again (with the longer time).
 *   With every endpoint ejected the route answers 503 ERR_NO_HEALTHY_UPSTREAM.
 * - Retries, as the HTTP/1.1 core allows and at most once per exchange: a connect that failed
 *   (no byte of the request was sent) goes to another endpoint; an idempotent request on a reused
 *   connection closed under it is sent again by the request path through `fresh`, which prefers
 *   another endpoint too.
 */
export interface RouteUpstreamDeps {
  readonly route: string;
  readonly health: PassiveHealthConfig;
  readonly clock: Clock;
  /** the route's logger (it names the route) */
  readonly log: Logger;
  /** a keep-alive pool of connections to one endpoint (HTTP/1.1), or its HTTP/2 sessions */
  readonly poolFor: (endpoint: ResolvedEndpoint) => EndpointPool;
  /** in [0, 1); Math.random when not given */
  readonly random?: () => number;
  /** an endpoint was ejected or came back (metrics and audit) */
  readonly onHealth?: (endpoint: ResolvedEndpoint, event: 'ejected' | 'returned', detail: EjectionDetail) => void;
}

/** What carries a route's exchanges to one endpoint: it makes the links it owns, and counts what is on the way. */
export interface EndpointPool extends Upstream, ConnectionOwner {
  /** exchanges on the way: on a connection or stream, or waiting for one */
  outstanding(): number;
}

export interface EjectionDetail {
  readonly failures: number;
  readonly ejectSeconds: number;
  readonly cause: string;
}

/** One endpoint of a route, as /routes shows it. */
export interface EndpointStatus {
  readonly address: string;
  readonly target: string;
  readonly healthy: boolean;
  readonly outstanding: number;
  readonly consecutiveFailures: number;
  readonly ejections: number;
  readonly ejectedUntil: string | null;
  readonly lastFailure: string | null;
}

class Endpoint {
  readonly at: ResolvedEndpoint;
  readonly pool: EndpointPool;
  failures = 0;
  /** ejections since the endpoint last answered well after a return */
  ejections = 0;
  /** epoch ms the ejection ends; 0: not ejected */
  ejectedUntil = 0;
  /** back from an ejection and not yet proven: one failure ejects it again */
  probation = false;
  lastFailure: string | null = null;

  constructor(at: ResolvedEndpoint, pool: EndpointPool) {
    this.at = at;
    this.pool = pool;
  }
}

export class RouteUpstream implements Upstream {
  readonly deps: RouteUpstreamDeps;
  endpoints: Endpoint[] = [];
  readonly byPool = new Map<ConnectionOwner, Endpoint>();
  readonly random: () => number;
  closed = false;

  constructor(deps: RouteUpstreamDeps) {
    this.deps = deps;
    this.random = deps.random ?? Math.random;
  }

  /** The endpoints the targets resolve to now: kept ones keep their pool and health; gone ones close when idle. */
  setEndpoints(list: readonly ResolvedEndpoint[]): void {
    if (this.closed) return;
    const old = new Map(this.endpoints.map((e) => [e.at.key, e]));
    const next: Endpoint[] = [];
    for (const at of list) {
      const kept = old.get(at.key);
      if (kept !== undefined) {
        old.delete(at.key);
        next.push(kept);
        continue;
      }
      const pool = this.deps.poolFor(at);
      const e = new Endpoint(at, pool);
      this.byPool.set(pool, e);
      next.push(e);
    }
    this.endpoints = next;
    for (const gone of old.values()) {
      this.byPool.delete(gone.pool);
      void gone.pool.close();
    }
  }

  acquire(done: Acquired, ex: Exchange): void {
    const first = this.pick(null);
    if (first === null) return done(this.noEndpoint(), null);
    this.connectVia(first, ex, done);
  }

  /** An exchange sent again: another endpoint than the one whose connection was closed under it, when there is one. */
  fresh(done: Acquired, ex: Exchange): void {
    const failedOn = this.endpointOf(ex.upstream as UpstreamLink | null);
    const e =
      this.pick(failedOn) ?? (failedOn !== null && this.healthy(failedOn, this.deps.clock.now()) ? failedOn : null);
    if (e === null) return done(this.noEndpoint(), null);
    e.pool.fresh(this.reporting(e, done), ex);
  }

  release(conn: UpstreamLink, reusable: boolean): void {
    conn.owner.release(conn, reusable);
  }

  answered(conn: UpstreamLink, status: number): void {
    const e = this.endpointOf(conn);
    if (e === null) return;
    if (status >= 500) this.failure(e, `answered ${status}`);
    else this.success(e);
  }

  failedOn(conn: UpstreamLink, err: Error): void {
    const e = this.endpointOf(conn);
    if (e !== null) this.failure(e, causeOf(err));
  }

  close(): Promise<void> {
    this.closed = true;
    const pools = this.endpoints.map((e) => e.pool.close());
    this.endpoints = [];
    this.byPool.clear();
    return Promise.all(pools).then(() => undefined);
  }

  status(): EndpointStatus[] {
    const now = this.deps.clock.now();
    return this.endpoints.map((e) => ({
      address: e.at.key,
      target: e.at.target,
      // what is shown changes nothing: an endpoint whose ejection is over returns when a request next picks it
      healthy: e.ejectedUntil <= now,
      outstanding: e.pool.outstanding(),
      consecutiveFailures: e.failures,
      ejections: e.ejections,
      ejectedUntil: e.ejectedUntil > now ? new Date(e.ejectedUntil).toISOString() : null,
      lastFailure: e.lastFailure,
    }));
  }

  /* ------------------------------------------------------------------ */

  /** A connection on `e`; a connect that fails goes once to another endpoint (nothing of the request was sent). */
  private connectVia(e: Endpoint, ex: Exchange, done: Acquired): void {
    e.pool.acquire((err, conn) => {
      if (err === null) return done(null, conn);
      this.failure(e, causeOf(err));
      const other = ex.retried || ex.finished || ex.clientGone ? null : this.pick(e);
      if (other === null) return done(err, null);
      ex.retried = true;
      this.deps.log.info(
        { endpoint: e.at.key, next: other.at.key, cause: causeOf(err) },
        'upstream connect failed: trying another endpoint of the route',
      );
      other.pool.acquire(this.reporting(other, done), ex);
    }, ex);
  }

  /** `done`, after counting a connect failure against `e` */
  private reporting(e: Endpoint, done: Acquired): Acquired {
    return (err, conn) => {
      if (err !== null) this.failure(e, causeOf(err));
      done(err, conn);
    };
  }

  /** power of two choices among the healthy endpoints other than `except` */
  private pick(except: Endpoint | null): Endpoint | null {
    const now = this.deps.clock.now();
    const list = this.endpoints;
    let a: Endpoint | null = null;
    let b: Endpoint | null = null;
    let healthy = 0;
    // reservoir sampling of two distinct healthy endpoints in one pass, no allocation
    for (const e of list) {
      if (e === except || !this.healthy(e, now)) continue;
      healthy += 1;
      if (healthy === 1) a = e;
      else if (healthy === 2) b = e;
      else {
        const r = Math.floor(this.random() * healthy);
        if (r === 0) a = e;
        else if (r === 1) b = e;
      }
    }
    if (a === null) return null;
    if (b === null) return a;
    if (this.random() < 0.5) [a, b] = [b, a];
    return b.pool.outstanding() < a.pool.outstanding() ? b : a;
  }

  /** whether `e` may be picked now; an endpoint whose ejection is over comes back here, on probation */
  private healthy(e: Endpoint, now: number): boolean {
    if (e.ejectedUntil === 0) return true;
    if (now < e.ejectedUntil) return false;
    e.ejectedUntil = 0;
    e.probation = true;
    e.failures = 0;
    this.deps.log.info({ endpoint: e.at.key }, 'endpoint back from ejection');
    this.deps.onHealth?.(e.at, 'returned', { failures: 0, ejectSeconds: 0, cause: 'ejection over' });
    return true;
  }

  private success(e: Endpoint): void {
    e.failures = 0;
    if (e.probation) {
      e.probation = false;
      e.ejections = 0;
    }
  }

  private failure(e: Endpoint, cause: string): void {
    if (!this.byPool.has(e.pool)) return;
    e.failures += 1;
    e.lastFailure = cause;
    if (e.ejectedUntil !== 0) return;
    const h = this.deps.health;
    if (!e.probation && e.failures < h.consecutiveFailures) return;
    const seconds = Math.min(h.maxEjectSeconds, h.ejectSeconds * 2 ** e.ejections);
    e.ejections += 1;
    e.probation = false;
    e.ejectedUntil = this.deps.clock.now() + seconds * 1000;
    const detail = { failures: e.failures, ejectSeconds: seconds, cause };
    this.deps.log.warn({ endpoint: e.at.key, ...detail }, 'endpoint ejected');
    this.deps.onHealth?.(e.at, 'ejected', detail);
  }

  /** the endpoint whose pool made `conn` */
  private endpointOf(conn: UpstreamLink | null): Endpoint | null {
    if (conn === null) return null;
    return this.byPool.get(conn.owner) ?? null;
  }

  private noEndpoint(): Error {
    if (this.endpoints.length === 0)
      return Object.assign(new Error(`no address for the targets of route ${this.deps.route}`), { code: 'ENOTFOUND' });
    return new TollgateError('ERR_NO_HEALTHY_UPSTREAM', `every endpoint of route ${this.deps.route} is ejected`);
  }
}

function causeOf(err: Error): string {
  return (err as { code?: string }).code ?? err.message;
}
