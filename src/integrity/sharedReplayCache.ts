/**
 * The replay cache for `workers` > 1: ONE table in a SharedArrayBuffer that every thread of
 * the instance attaches to, so a (keyid, nonce) pair is accepted once per instance whichever
 * worker's listener receives it. Same contract as replayCache.ts (ReplayCache): exact
 * ('fresh' at most once per live pair), bounded ('full' at maxEntries, never evicting a live
 * entry), entries remembered at least ttlMs and at most ttlMs + ttlMs / buckets.
 *
 * Layout (all in the one buffer)
 * ------------------------------
 *   ctrl   Int32[4]    lock word, live entries, used slots (live + expired), sweep cursor
 *   clock  Float64[3]  base epoch, highest tick seen, tick through which expiry was counted
 *   salt   16 bytes    the per-instance fingerprint salt (the same for every thread)
 *   counts Uint32[R]   live entries per expiry tick, R = k + 2 ring slots (k = ceil(ttl / width))
 *   table  Uint32[3S]  S = pow2 ≥ 2 × maxEntries slots of (fpHi, fpLo, expiry tick)
 *
 * Time is cut into ticks of width = ceil(ttlMs / buckets) ms, counted from the base epoch. An
 * entry inserted in tick e gets expiry tick D = e + 1 + k and is live while the cache's tick is
 * below D; counts[D mod R] says how many live entries expire at D, so `live` is exact and
 * drops by a whole tick at once, like replayCache.ts's buckets. Time only moves forwards: the
 * highest tick any thread has seen is shared.
 *
 * The table is open addressing with linear probing over salted 64-bit fingerprints (the first
 * 8 bytes of SHA-256(salt ‖ u32le(len keyId) ‖ keyId ‖ 0x00 ‖ nonce), as in replayCache.ts;
 * (0, 0) marks an empty slot). Expired entries are reclaimed three ways: every insert first
 * sweeps the next SWEEP slots after a shared cursor and deletes the expired ones it finds with
 * backward-shift deletion (no tombstones: the chain stays as if they had never been there),
 * so the whole table is swept once per S / SWEEP inserts; an insert whose chain passes an
 * expired slot reuses it; and, as a safety net, when used slots would still pass 3/4 of the
 * table it is rebuilt in place from its live entries (live ≤ maxEntries ≤ S / 2). With the
 * sweep, steady churn never gets there (measured: no rebuild in 3.3M inserts at ~0.9M live),
 * which matters because a rebuild of a 1M-entry table holds the lock for ~50 ms.
 *
 * Concurrency: the fingerprint (the SHA-256, the costly part) is computed outside the lock;
 * check-and-insert and expiry run under a futex-style mutex on ctrl[0] (Atomics CAS, then
 * Atomics.wait when contended; Node allows Atomics.wait on the main thread). Plain reads and
 * writes inside the lock are ordered by the lock's atomics. A thread that dies while holding
 * the lock would block the others, which is why a worker that dies makes the process exit
 * (src/workers/pool.ts).
 *
 * Memory: 12 bytes per slot and S ≥ 2 × maxEntries slots: 24 MiB for 1,000,000 entries
 * (25.2 bytes per entry at capacity), allocated once at start.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { ReplayCache, ReplayVerdict } from './replayCache.ts';
import { FINGERPRINT_SALT_BYTES as SALT_BYTES, PairFingerprint } from './pairFingerprint.ts';
import { checkedReplayOptions, type ReplayCacheOptions } from './replayOptions.ts';

/** What a thread needs to attach to the cache: structured-cloneable (postMessage, workerData). */
export interface SharedReplayHandle {
  readonly buffer: SharedArrayBuffer;
  readonly ttlMs: number;
  readonly maxEntries: number;
  readonly buckets: number;
}

export interface SharedReplayCache extends ReplayCache {
  /** hand this to another thread's attachSharedReplayCache */
  readonly handle: SharedReplayHandle;
  /** bytes of the shared buffer (for the memory figure) */
  readonly bytes: number;
}

const MAX_ENTRIES = 2 ** 26;
const WORDS_PER_SLOT = 3;
/** lock spins before sleeping on the futex */
const SPINS = 64;
/** slots the sweep looks at per insert */
const SWEEP = 8;
/** rebase tick numbers before they could pass a uint32 */
const REBASE_AT = 2 ** 31;

const CTRL_LOCK = 0;
const CTRL_LIVE = 1;
const CTRL_USED = 2;
const CTRL_SWEEP = 3;
const CTRL_BYTES = 16;
const CLOCK_BASE = 0;
const CLOCK_HIGH = 1;
const CLOCK_EXPIRED = 2;
const CLOCK_BYTES = 24;

interface Geometry {
  readonly width: number;
  readonly k: number;
  readonly ring: number;
  readonly slots: number;
  readonly countsOffset: number;
  readonly tableOffset: number;
  readonly bytes: number;
}

function geometry(ttlMs: number, maxEntries: number, buckets: number): Geometry {
  const width = Math.ceil(ttlMs / buckets);
  const k = Math.ceil(ttlMs / width);
  const ring = k + 2;
  let slots = 16;
  while (slots < 2 * maxEntries) slots *= 2;
  const countsOffset = CTRL_BYTES + CLOCK_BYTES + SALT_BYTES;
  const tableOffset = countsOffset + Math.ceil((ring * 4) / 8) * 8;
  return { width, k, ring, slots, countsOffset, tableOffset, bytes: tableOffset + slots * WORDS_PER_SLOT * 4 };
}

/** Make the shared table (the main thread does this once) and attach to it. */
export function createSharedReplayCache(options: ReplayCacheOptions): SharedReplayCache {
  const { ttlMs, maxEntries, buckets } = checkedReplayOptions('shared replay cache', options, MAX_ENTRIES);
  const g = geometry(ttlMs, maxEntries, buckets);
  const buffer = new SharedArrayBuffer(g.bytes);
  randomBytes(SALT_BYTES).copy(new Uint8Array(buffer, CTRL_BYTES + CLOCK_BYTES, SALT_BYTES));
  const clockWords = new Float64Array(buffer, CTRL_BYTES, 3);
  const t = options.clock.now();
  if (!Number.isFinite(t)) throw new TypeError(`shared replay cache: clock.now() returned ${String(t)}`);
  clockWords[CLOCK_BASE] = Math.floor(t / g.width);
  return attachSharedReplayCache({ buffer, ttlMs, maxEntries, buckets }, options.clock);
}

/** Attach to a table made by createSharedReplayCache (in this thread or another). */
export function attachSharedReplayCache(handle: SharedReplayHandle, clock: Clock): SharedReplayCache {
  const { buffer, ttlMs, maxEntries } = handle;
  const g = geometry(ttlMs, maxEntries, handle.buckets);
  if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== g.bytes)
    throw new TypeError('shared replay cache: the buffer does not match its parameters');
  const ctrl = new Int32Array(buffer, 0, 4);
  const time = new Float64Array(buffer, CTRL_BYTES, 3);
  const counts = new Uint32Array(buffer, g.countsOffset, g.ring);
  const table = new Uint32Array(buffer, g.tableOffset, g.slots * WORDS_PER_SLOT);
  const { width, k, ring, slots } = g;
  const mask = slots - 1;
  const usedLimit = Math.floor((slots * 3) / 4);

  const fp = new PairFingerprint(new Uint8Array(buffer, CTRL_BYTES + CLOCK_BYTES, SALT_BYTES));

  function lock(): void {
    if (Atomics.compareExchange(ctrl, CTRL_LOCK, 0, 1) === 0) return;
    for (let i = 0; i < SPINS; i++) {
      if (Atomics.load(ctrl, CTRL_LOCK) === 0 && Atomics.compareExchange(ctrl, CTRL_LOCK, 0, 1) === 0) return;
    }
    // 2 = locked with (possible) waiters
    let state = Atomics.exchange(ctrl, CTRL_LOCK, 2);
    while (state !== 0) {
      Atomics.wait(ctrl, CTRL_LOCK, 2);
      state = Atomics.exchange(ctrl, CTRL_LOCK, 2);
    }
  }

  function unlock(): void {
    if (Atomics.sub(ctrl, CTRL_LOCK, 1) !== 1) {
      Atomics.store(ctrl, CTRL_LOCK, 0);
      Atomics.notify(ctrl, CTRL_LOCK, 1);
    }
  }

  /** under the lock: the cache's tick (never below the highest any thread has seen) */
  function nowTick(): number {
    const t = clock.now();
    if (!Number.isFinite(t)) throw new TypeError(`shared replay cache: clock.now() returned ${String(t)}`);
    const e = Math.floor(t / width) - time[CLOCK_BASE]!;
    let high = time[CLOCK_HIGH]!;
    if (e > high) time[CLOCK_HIGH] = high = e;
    return high;
  }

  /** under the lock: every entry with expiry tick ≤ t leaves the live count */
  function expire(t: number): void {
    const done = time[CLOCK_EXPIRED]!;
    if (t <= done) return;
    if (t - done >= ring) {
      counts.fill(0);
      ctrl[CTRL_LIVE] = 0;
    } else {
      let live = ctrl[CTRL_LIVE]!;
      for (let d = done + 1; d <= t; d++) {
        const i = d % ring;
        live -= counts[i]!;
        counts[i] = 0;
      }
      ctrl[CTRL_LIVE] = live;
    }
    time[CLOCK_EXPIRED] = t;
  }

  function place(hi: number, lo: number, d: number): void {
    let i = lo & mask;
    for (;;) {
      const j = i * WORDS_PER_SLOT;
      if (table[j] === 0 && table[j + 1] === 0) {
        table[j] = hi;
        table[j + 1] = lo;
        table[j + 2] = d;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  /** under the lock: empty slot i, moving later entries of its cluster back (Knuth's algorithm R) */
  function remove(i: number): void {
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const jw = j * WORDS_PER_SLOT;
      if (table[jw] === 0 && table[jw + 1] === 0) break;
      const home = table[jw + 1]! & mask;
      // the entry at j may fill the hole at i only if its home is not cyclically in (i, j]
      if (i <= j ? i < home && home <= j : i < home || home <= j) continue;
      const iw = i * WORDS_PER_SLOT;
      table[iw] = table[jw]!;
      table[iw + 1] = table[jw + 1]!;
      table[iw + 2] = table[jw + 2]!;
      i = j;
    }
    const iw = i * WORDS_PER_SLOT;
    table[iw] = 0;
    table[iw + 1] = 0;
    table[iw + 2] = 0;
    ctrl[CTRL_USED] = ctrl[CTRL_USED]! - 1;
  }

  /** under the lock: look at the next SWEEP slots and delete the expired entries there */
  function sweep(t: number): void {
    let c = ctrl[CTRL_SWEEP]!;
    for (let n = 0; n < SWEEP; n++) {
      const w = c * WORDS_PER_SLOT;
      if ((table[w] !== 0 || table[w + 1] !== 0) && table[w + 2]! <= t) {
        // an entry from further on may have moved into c: look at c again
        remove(c);
        continue;
      }
      c = (c + 1) & mask;
    }
    ctrl[CTRL_SWEEP] = c;
  }

  /** under the lock: drop expired slots (and rebase tick numbers when they grow large) */
  function rebuild(t: number): void {
    const live = ctrl[CTRL_LIVE]!;
    const keep = new Uint32Array(live * WORDS_PER_SLOT);
    let n = 0;
    for (let j = 0; j < table.length; j += WORDS_PER_SLOT) {
      if ((table[j] !== 0 || table[j + 1] !== 0) && table[j + 2]! > t) {
        keep[n++] = table[j]!;
        keep[n++] = table[j + 1]!;
        keep[n++] = table[j + 2]!;
      }
    }
    // a multiple of the ring, so counts[d mod ring] keep their slots
    const shift = t + k + 1 >= REBASE_AT ? t - (t % ring) : 0;
    table.fill(0);
    for (let m = 0; m < n; m += WORDS_PER_SLOT) place(keep[m]!, keep[m + 1]!, keep[m + 2]! - shift);
    if (shift > 0) {
      time[CLOCK_BASE] = time[CLOCK_BASE]! + shift;
      time[CLOCK_HIGH] = time[CLOCK_HIGH]! - shift;
      time[CLOCK_EXPIRED] = time[CLOCK_EXPIRED]! - shift;
    }
    ctrl[CTRL_USED] = n / WORDS_PER_SLOT;
  }

  function checkAndInsert(keyId: string, nonce: string): ReplayVerdict {
    fp.of(keyId, nonce);
    const hi = fp.hi;
    const lo = fp.lo;
    lock();
    try {
      let t = nowTick();
      expire(t);
      sweep(t);
      let i = lo & mask;
      let reuse = -1;
      for (;;) {
        const j = i * WORDS_PER_SLOT;
        const h = table[j]!;
        const l = table[j + 1]!;
        if (h === 0 && l === 0) break;
        if (table[j + 2]! > t) {
          if (h === hi && l === lo) return 'replayed';
        } else if (reuse < 0) {
          reuse = i;
        }
        i = (i + 1) & mask;
      }
      if (ctrl[CTRL_LIVE]! >= maxEntries) return 'full';
      if ((reuse < 0 && ctrl[CTRL_USED]! + 1 > usedLimit) || t + k + 1 >= REBASE_AT) {
        rebuild(t);
        t = time[CLOCK_HIGH]!;
        // no expired slot is left: the pair goes into the first empty slot of its chain
        reuse = -1;
        i = lo & mask;
        while (table[i * WORDS_PER_SLOT] !== 0 || table[i * WORDS_PER_SLOT + 1] !== 0) i = (i + 1) & mask;
      }
      const slot = reuse >= 0 ? reuse : i;
      if (reuse < 0) ctrl[CTRL_USED] = ctrl[CTRL_USED]! + 1;
      const d = t + 1 + k;
      const j = slot * WORDS_PER_SLOT;
      table[j] = hi;
      table[j + 1] = lo;
      table[j + 2] = d;
      counts[d % ring] = counts[d % ring]! + 1;
      ctrl[CTRL_LIVE] = ctrl[CTRL_LIVE]! + 1;
      return 'fresh';
    } finally {
      unlock();
    }
  }

  return {
    checkAndInsert,
    get size(): number {
      lock();
      try {
        expire(nowTick());
        return ctrl[CTRL_LIVE]!;
      } finally {
        unlock();
      }
    },
    get capacity(): number {
      return maxEntries;
    },
    handle: Object.freeze({ buffer, ttlMs, maxEntries, buckets: handle.buckets }),
    bytes: buffer.byteLength,
  };
}
