import type { Socket } from 'node:net';
import type { HttpParserBinding } from './parserBinding.ts';
import type { Exchange } from './exchange.ts';
import {
  UpstreamConnection,
  type ConnectionOwner,
  type UpstreamEvents,
  type UpstreamLink,
} from './upstreamConnection.ts';

/**
 * A bounded pool of keep-alive connections to one upstream. A connection carries one exchange
 * at a time and goes back to the pool only when its last exchange ended cleanly (the whole
 * request sent, the whole response read, neither side asked to close), and only from the next
 * turn of the event loop on. The most recently used idle connection is handed out first (the
 * warmest one; the others age out after the keep-alive time). Beyond `maxConnections`,
 * requests wait in arrival order.
 */

/** Opens one connection to the upstream (plain TCP to the app, or verified mTLS to a remote tollgate). */
export type Dial = (done: (err: Error | null, socket: Socket | null) => void) => void;

export interface PoolSettings {
  readonly maxConnections: number;
  /** how long an idle connection is kept */
  readonly keepAliveMs: number;
  /** the longest the upstream may stay silent in an exchange */
  readonly timeoutMs: number;
  /** the largest response head accepted */
  readonly maxHeaderBytes: number;
}

export type Acquired = (err: Error | null, conn: UpstreamLink | null) => void;

/**
 * Where a request path sends its exchanges: one pool (an inbound listener's app, an outbound
 * listener's remote peer) or a gateway route's endpoints, each with a pool, balanced.
 */
export interface Upstream {
  /** a connection for the exchange: an idle one, a new one, or the next one released */
  acquire(done: Acquired, ex: Exchange): void;
  /** a new connection for an exchange sent again (the one it had was closed under it) */
  fresh(done: Acquired, ex: Exchange): void;
  /** give back a connection the exchange no longer needs (its client left while it was being had) */
  release(conn: UpstreamLink, reusable: boolean): void;
  /** the final status the upstream answered on `conn` (a gateway's passive health counts 5xx) */
  answered(conn: UpstreamLink, status: number): void;
  /** the exchange on `conn` failed upstream (reset, timeout, a malformed answer) */
  failedOn(conn: UpstreamLink, err: Error): void;
  /** close idle connections now and every other one when its exchange ends */
  close(): Promise<void>;
}

export class UpstreamPool implements ConnectionOwner, Upstream {
  readonly dial: Dial;
  readonly settings: PoolSettings;
  readonly binding: HttpParserBinding;
  readonly events: UpstreamEvents;
  readonly idle: UpstreamConnection[] = [];
  readonly waiting: Acquired[] = [];
  /** connections released this turn, not handed out yet */
  settling: UpstreamConnection[] = [];
  settleScheduled = false;
  sweeper: NodeJS.Timeout | null = null;
  /** connections open or being opened */
  open = 0;
  closed = false;

  constructor(dial: Dial, settings: PoolSettings, binding: HttpParserBinding, events: UpstreamEvents) {
    this.dial = dial;
    this.settings = settings;
    this.binding = binding;
    this.events = events;
    this.settle = this.settle.bind(this);
  }

  /** A connection for one exchange: an idle one, a new one, or the next one released. */
  acquire(done: Acquired, _ex?: Exchange): void {
    if (this.closed) return done(Object.assign(new Error('the upstream pool is closed'), { code: 'ECONNRESET' }), null);
    const conn = this.idle.pop();
    if (conn !== undefined) return done(null, conn);
    if (this.open < this.settings.maxConnections) return this.connect(done);
    this.waiting.push(done);
  }

  /** A connection made just for one exchange sent again (the one it had was closed under it). */
  fresh(done: Acquired, _ex?: Exchange): void {
    if (this.closed) return done(Object.assign(new Error('the upstream pool is closed'), { code: 'ECONNRESET' }), null);
    this.connect(done);
  }

  connect(done: Acquired): void {
    this.open += 1;
    this.dial((err, socket) => {
      if (err !== null || socket === null) {
        this.open -= 1;
        this.serveWaiting();
        return done(err ?? new Error('no socket'), null);
      }
      const s = this.settings;
      done(null, new UpstreamConnection(socket, this.binding, s.maxHeaderBytes, s.timeoutMs, this, this.events));
    });
  }

  /** one upstream has no health to keep: its answers and failures reach the client as they are */
  answered(): void {}

  failedOn(): void {}

  /** exchanges on the way: on a connection, or waiting for one */
  outstanding(): number {
    return this.open - this.idle.length - this.settling.length + this.waiting.length;
  }

  /** ConnectionOwner: an exchange is over on `conn` (always one of this pool's connections). */
  release(link: UpstreamLink, reusable: boolean): void {
    const conn = link as UpstreamConnection;
    if (conn.dead || !reusable || this.closed) {
      if (!conn.dead) conn.kill();
      else {
        this.open -= 1;
        this.forget(conn);
        this.serveWaiting();
      }
      return;
    }
    // not handed out again in this turn of the event loop: an upstream that hangs up right after a
    // response (a FIN behind the last byte, no `Connection: close`) is seen closing first
    this.settling.push(conn);
    if (this.settleScheduled) return;
    this.settleScheduled = true;
    setImmediate(this.settle);
  }

  /** connections released in the last turn that are still open go back to work */
  settle(): void {
    this.settleScheduled = false;
    const settled = this.settling;
    this.settling = [];
    for (const conn of settled) {
      if (conn.dead || this.closed) continue;
      const next = this.waiting.shift();
      if (next !== undefined) {
        next(null, conn);
        continue;
      }
      conn.idleSince = performance.now();
      this.idle.push(conn);
      this.sweepIdle();
    }
  }

  /** close connections idle longer than the keep-alive time: one timer for the pool, not one per connection */
  sweepIdle(): void {
    if (this.sweeper !== null) return;
    const every = Math.max(50, Math.floor(this.settings.keepAliveMs / 4));
    this.sweeper = setInterval(() => {
      const cutoff = performance.now() - this.settings.keepAliveMs;
      // oldest first: the idle list is in release order
      while (this.idle.length > 0 && this.idle[0]!.idleSince <= cutoff) this.idle[0]!.kill();
      if (this.idle.length === 0 && this.sweeper !== null) {
        clearInterval(this.sweeper);
        this.sweeper = null;
      }
    }, every);
    this.sweeper.unref();
  }

  forget(conn: UpstreamConnection): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    const j = this.settling.indexOf(conn);
    if (j >= 0) this.settling.splice(j, 1);
  }

  /** a connection slot came free: the oldest waiting exchange gets a new connection */
  serveWaiting(): void {
    if (this.closed) return;
    const next = this.waiting.shift();
    if (next !== undefined) this.connect(next);
  }

  /** Close idle connections now and every other one when its exchange ends; waiting exchanges fail. */
  close(): Promise<void> {
    this.closed = true;
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const conn of this.idle.splice(0)) conn.kill();
    for (const conn of this.settling.splice(0)) conn.kill();
    const err = Object.assign(new Error('the upstream pool is closed'), { code: 'ECONNRESET' });
    for (const w of this.waiting.splice(0)) w(err, null);
    return Promise.resolve();
  }
}
