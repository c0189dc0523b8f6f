import type { Clock } from '../core/clock.ts';

/**
 * Who may hold a TLS handshake slot on one listener, and for how long, before proving anything.
 *
 * Handshakes are the most CPU a client can make us spend unauthenticated, so they are capped
 * (`maxInProgress`). A cap alone is a lock: 128 TCP connections that never speak would hold it
 * for the whole handshake timeout. So, as HAProxy and Envoy bound the pre-TLS phase:
 *
 * - a connection that has sent no byte of a ClientHello by `clientHelloTimeoutMs` is closed;
 * - one source address (IPv6: one /64) holds at most `maxPerSource` slots;
 * - at a limit, the OLDEST connection that has sent nothing is closed to make room for the new
 *   one; only when every slot holder has spoken is the new connection refused.
 *
 * "Has sent a byte" is the raw TCP socket's `bytesRead`: node:tls moves the socket's handle
 * under a TLSWrap that reads in C++, and the handle's stream counts every read there anyway,
 * so asking costs nothing on the data path (no 'data' listener, no wrapper, no per-byte work).
 * It is asked only at the moments it matters: when a slot is wanted and at the deadline.
 *
 * A connection only counts as silent once it has had a chance to speak: bytes that arrived
 * with the connection are read on the event loop's next poll, so a connection accepted in this
 * turn or the next (a burst of accepts) is never taken for silent and closed. `turn` counts
 * loop turns, only while a new connection is waiting for its chance.
 */

/** What the gate needs of an accepted TCP socket (a net.Socket has it all). */
export interface GateSocket {
  readonly bytesRead: number;
  destroy(): void;
  once(event: 'close', listener: () => void): unknown;
}

export interface GateLimits {
  readonly maxInProgress: number;
  readonly maxPerSource: number;
  readonly clientHelloTimeoutMs: number;
}

/** Why the gate closed a connection it had admitted. */
export type GateClose = 'evicted' | 'client_hello_timeout';
/** What became of a new connection. */
export type Admission = 'admitted' | 'cap' | 'source_cap';

export interface GateTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** run fn after the current turn of the event loop (setImmediate) */
  defer(fn: () => void): void;
}

export interface GateDeps {
  readonly clock: Clock;
  /** told before the gate destroys a connection it admitted, so the caller can count it */
  readonly onClose: (socket: GateSocket, why: GateClose) => void;
  readonly timers?: GateTimers;
}

const systemTimers: GateTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  defer: (fn) => setImmediate(fn),
};

/** loop turns after its accept by which a connection's first bytes have been read, if it sent any */
const TURNS_TO_SPEAK = 2;

interface Entry {
  readonly socket: GateSocket;
  readonly source: Source;
  /** monotonic ms at accept */
  readonly at: number;
  readonly turn: number;
  /** still in the silent lists (has not been seen to speak) */
  silent: boolean;
}

interface Source {
  readonly key: string;
  inProgress: number;
  /** its entries not yet seen to speak, oldest first (Set keeps insertion order) */
  readonly silent: Set<Entry>;
}

export class HandshakeGate {
  readonly limits: GateLimits;
  private readonly clock: Clock;
  private readonly timers: GateTimers;
  private readonly onClose: GateDeps['onClose'];
  private readonly entries = new Map<GateSocket, Entry>();
  private readonly sources = new Map<string, Source>();
  /** every entry not yet seen to speak, oldest first: also the order of their deadlines */
  private readonly silent = new Set<Entry>();
  private deadlineTimer: unknown = null;
  private turn = 0;
  private lastAdmitTurn = -TURNS_TO_SPEAK;
  private ticking = false;

  constructor(limits: GateLimits, deps: GateDeps) {
    this.limits = limits;
    this.clock = deps.clock;
    this.timers = deps.timers ?? systemTimers;
    this.onClose = deps.onClose;
  }

  /** handshakes in progress */
  get inProgress(): number {
    return this.entries.size;
  }

  /** handshakes in progress from one source key (see sourceKey) */
  inProgressFrom(key: string): number {
    return this.sources.get(key)?.inProgress ?? 0;
  }

  /**
   * A new TCP connection from `source` (sourceKey of its address). Admitted (counted until its
   * handshake is done or it closes), possibly after closing an older silent one; or refused and
   * destroyed, when the source's limit or the listener's cap is full of connections that spoke.
   */
  admit(socket: GateSocket, source: string): Admission {
    const from = this.sources.get(source);
    if (from !== undefined && from.inProgress >= this.limits.maxPerSource) {
      const victim = this.oldestSilent(from.silent);
      if (victim === null) return this.refuse(socket, 'source_cap');
      this.close(victim, 'evicted');
    }
    if (this.entries.size >= this.limits.maxInProgress) {
      const victim = this.oldestSilent(this.silent);
      if (victim === null) return this.refuse(socket, 'cap');
      this.close(victim, 'evicted');
    }
    // (an eviction may have emptied the source's record and removed it)
    this.add(socket, this.sources.get(source) ?? this.newSource(source));
    return 'admitted';
  }

  /** The handshake on this connection is over (it succeeded, or the socket is gone). */
  done(socket: GateSocket | undefined): void {
    if (socket === undefined) return;
    const e = this.entries.get(socket);
    if (e === undefined) return;
    this.entries.delete(socket);
    this.forgetSilence(e);
    e.source.inProgress--;
    if (e.source.inProgress === 0) this.sources.delete(e.source.key);
  }

  private refuse(socket: GateSocket, why: Admission): Admission {
    socket.destroy();
    return why;
  }

  private newSource(key: string): Source {
    const s: Source = { key, inProgress: 0, silent: new Set() };
    this.sources.set(key, s);
    return s;
  }

  private add(socket: GateSocket, source: Source): void {
    const e: Entry = { socket, source, at: this.nowMs(), turn: this.turn, silent: true };
    this.entries.set(socket, e);
    source.inProgress++;
    source.silent.add(e);
    this.silent.add(e);
    socket.once('close', () => this.done(socket));
    this.lastAdmitTurn = this.turn;
    if (!this.ticking) {
      this.ticking = true;
      this.timers.defer(this.tick);
    }
    if (this.deadlineTimer === null) this.armDeadline(this.limits.clientHelloTimeoutMs);
  }

  /** one loop turn has passed; keep counting while the newest connection waits for its chance */
  private readonly tick = (): void => {
    this.turn++;
    this.ticking = this.turn < this.lastAdmitTurn + TURNS_TO_SPEAK;
    if (this.ticking) this.timers.defer(this.tick);
  };

  private hadChance(e: Entry): boolean {
    return this.turn >= e.turn + TURNS_TO_SPEAK;
  }

  /**
   * The oldest entry of `list` that had its chance and sent nothing. Entries found to have
   * spoken leave the silent lists for good, so each is looked at once: O(1) amortized.
   */
  private oldestSilent(list: Set<Entry>): Entry | null {
    for (const e of list) {
      if (e.socket.bytesRead > 0) {
        this.forgetSilence(e);
        continue;
      }
      // entries are in accept order: if this one had no chance yet, no later one had
      return this.hadChance(e) ? e : null;
    }
    return null;
  }

  private forgetSilence(e: Entry): void {
    if (!e.silent) return;
    e.silent = false;
    this.silent.delete(e);
    e.source.silent.delete(e);
    // the deadline timer is left to fire and find nothing: clearing and re-arming it for each
    // connection would cost more than one spare wake-up per clientHelloTimeout
  }

  private close(e: Entry, why: GateClose): void {
    this.done(e.socket);
    this.onClose(e.socket, why);
    e.socket.destroy();
  }

  private nowMs(): number {
    return Number(this.clock.monotonic() / 1_000_000n);
  }

  private armDeadline(ms: number): void {
    this.deadlineTimer = this.timers.setTimeout(this.sweep, Math.max(1, ms));
  }

  /** The ClientHello deadline: one timer per listener, set for the oldest silent connection. */
  private readonly sweep = (): void => {
    this.deadlineTimer = null;
    const now = this.nowMs();
    const timeout = this.limits.clientHelloTimeoutMs;
    for (const e of this.silent) {
      if (e.socket.bytesRead > 0) {
        this.forgetSilence(e);
        continue;
      }
      if (e.at + timeout > now) break;
      // a loop stalled past the deadline: let it read what may be waiting before judging
      if (!this.hadChance(e)) {
        this.armDeadline(1);
        return;
      }
      this.close(e, 'client_hello_timeout');
    }
    const oldest = this.silent.values().next();
    if (!oldest.done && this.deadlineTimer === null) this.armDeadline(oldest.value.at + timeout - now);
  };
}

/**
 * The key a source address is limited by: an IPv4 address as is (also when IPv4-mapped), an
 * IPv6 address by its /64, the smallest block one host is usually given.
 */
export function sourceKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return mapped[1]!;
  if (!address.includes(':')) return address;
  return `${ipv6Prefix64(address)}::/64`;
}

/** the first four 16-bit groups of an IPv6 address, expanded (`::` filled in, zone dropped) */
function ipv6Prefix64(address: string): string {
  const bare = address.split('%')[0]!.toLowerCase();
  const [head, tail] = bare.includes('::') ? (bare.split('::', 2) as [string, string]) : [bare, null];
  const left = head === '' ? [] : head.split(':');
  const right = tail === null || tail === '' ? [] : tail.split(':');
  const missing = tail === null ? 0 : 8 - left.length - right.length;
  const groups = [...left, ...Array<string>(Math.max(0, missing)).fill('0'), ...right];
  return groups
    .slice(0, 4)
    .map((g) => (g === '' ? '0' : g.replace(/^0+(?=.)/, '')))
    .join(':');
}
