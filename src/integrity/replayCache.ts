/**
 * The replay cache: remembers every (keyid, nonce) pair of a verified
 * signature for as long as a signature carrying it could still be accepted
 * (the profile's maxAge + skew), so a second request with the same pair is
 * refused.
 *
 * Layout
 * ------
 * Time is cut into `buckets` slices of width ceil(ttlMs / buckets). An entry
 * goes into the bucket of the (effective) time it was inserted, and a bucket
 * is dropped whole once its newest possible entry is more than ttlMs old, i.e.
 * at (epoch + 1) * width + ttlMs. An entry inserted at t is therefore
 * remembered for at least ttlMs and at most ttlMs + width.
 *
 * Expiry is lazy (checked on every call, O(buckets), and skipped outright
 * until the oldest bucket is due); there are no timers. The clock is only
 * ever read forwards: a reading below the highest one seen counts as "no time
 * passed", so a clock stepping backwards can neither drop live entries nor put
 * an entry into a bucket that expires before its time.
 *
 * The strings are never stored. Each pair is reduced to a 64-bit fingerprint,
 * the first 8 bytes of
 *
 *   SHA-256(salt ‖ u32le(utf8 length of keyId) ‖ keyId ‖ 0x00 ‖ nonce)
 *
 * where `salt` is 16 random bytes drawn per cache. The length prefix makes
 * the encoding injective even if a key id contains NUL; the salt means nobody
 * outside the process can compute fingerprints, so nobody can craft pairs that
 * collide (false "replayed") or that pile into one probe chain (hash
 * flooding), because the table index is taken from the same salted bits.
 *
 * False positives: a fresh pair is wrongly reported as replayed only if its
 * fingerprint equals one of the n live fingerprints. For a keyed random
 * 64-bit value that is ≈ n / 2^64 per lookup (a real all-zero fingerprint is
 * stored as 1, which doubles that for two values out of 2^64 — negligible):
 * with 1,000,000 live entries ≈ 5.4e-14 per request, i.e. one spurious
 * refusal per ~1.8e13 requests. There are no false negatives.
 *
 * Each bucket is an open-addressing hash set over a Uint32Array holding
 * (hi, lo) word pairs, linear probing, all-zero meaning "empty", doubling
 * whenever it would pass a load factor of 1/2. That costs 16–32 bytes per
 * live entry plus small per-bucket tables, so a million entries take
 * ~16–35 MiB.
 */
import { randomBytes } from 'node:crypto';
import { FINGERPRINT_SALT_BYTES, PairFingerprint } from './pairFingerprint.ts';
import { checkedReplayOptions, type ReplayCacheOptions } from './replayOptions.ts';

export type ReplayVerdict = 'fresh' | 'replayed' | 'full';

export interface ReplayCache {
  /** atomically: 'replayed' if (keyId, nonce) is live, else 'full' if at capacity, else insert and 'fresh' */
  checkAndInsert(keyId: string, nonce: string): ReplayVerdict;
  /** live entries (after dropping expired buckets) */
  readonly size: number;
  readonly capacity: number;
}

/** 2^27 entries would already need 2–4 GiB; anything beyond is a configuration error */
const MAX_REPLAY_ENTRIES = 2 ** 27;

/** smallest table, in slots (one slot = two uint32 words) */
const MIN_SLOTS = 16;

/** smallest power-of-two slot count (≥ MIN_SLOTS) that holds n entries at load ≤ 1/2 */
function slotsFor(n: number): number {
  let slots = MIN_SLOTS;
  while (slots / 2 < n) slots *= 2;
  return slots;
}

/** One time bucket: its epoch and an open-addressing set of 64-bit fingerprints. */
class Bucket {
  /** floor(insertion time / width) of its entries; NaN while unused */
  epoch = Number.NaN;
  /** when the whole bucket is forgotten: (epoch + 1) * width + ttlMs */
  dropAt = Number.POSITIVE_INFINITY;
  count = 0;
  /** slot i is words 2i (hi) and 2i + 1 (lo); (0, 0) is empty */
  table = new Uint32Array(MIN_SLOTS * 2);
  mask = MIN_SLOTS - 1;
  /** grow before count exceeds this */
  limit = MIN_SLOTS / 2;

  has(hi: number, lo: number): boolean {
    const table = this.table;
    const mask = this.mask;
    let i = lo & mask;
    for (;;) {
      const j = i << 1;
      const h = table[j]!;
      const l = table[j + 1]!;
      if (h === hi && l === lo) return true;
      if (h === 0 && l === 0) return false;
      i = (i + 1) & mask;
    }
  }

  /** insert a fingerprint known to be absent */
  add(hi: number, lo: number): void {
    if (this.count >= this.limit) this.grow();
    place(this.table, this.mask, hi, lo);
    this.count++;
  }

  private grow(): void {
    const old = this.table;
    const slots = (this.mask + 1) * 2;
    const table = new Uint32Array(slots * 2);
    const mask = slots - 1;
    for (let j = 0; j < old.length; j += 2) {
      const h = old[j]!;
      const l = old[j + 1]!;
      if (h !== 0 || l !== 0) place(table, mask, h, l);
    }
    this.table = table;
    this.mask = mask;
    this.limit = slots / 2;
  }

  /**
   * Forget everything. A table no larger than `retainSlots` is zeroed and
   * kept for the bucket's next turn; a bigger one (left by a burst) is let go,
   * so idle buckets never pin more than their fair share of memory.
   */
  clear(retainSlots: number): void {
    if (this.mask + 1 <= retainSlots) {
      this.table.fill(0);
    } else {
      this.table = new Uint32Array(MIN_SLOTS * 2);
      this.mask = MIN_SLOTS - 1;
      this.limit = MIN_SLOTS / 2;
    }
    this.count = 0;
    this.epoch = Number.NaN;
    this.dropAt = Number.POSITIVE_INFINITY;
  }
}

function place(table: Uint32Array, mask: number, hi: number, lo: number): void {
  let i = lo & mask;
  for (;;) {
    const j = i << 1;
    if (table[j] === 0 && table[j + 1] === 0) {
      table[j] = hi;
      table[j + 1] = lo;
      return;
    }
    i = (i + 1) & mask;
  }
}

export function createReplayCache(options: ReplayCacheOptions): ReplayCache {
  const { ttlMs, maxEntries, buckets: bucketCount } = checkedReplayOptions('replay cache', options, MAX_REPLAY_ENTRIES);
  const clock = options.clock;
  if (clock === null || typeof clock !== 'object' || typeof clock.now !== 'function') {
    throw new TypeError('replay cache: clock must have a now() method');
  }

  const width = Math.ceil(ttlMs / bucketCount);
  // With a non-decreasing "now", live epochs always lie within
  // [epochNow - ceil(ttlMs / width), epochNow], so this many slots give every
  // live bucket its own slot at index epoch mod ring.length.
  const ring: Bucket[] = [];
  for (let i = Math.ceil(ttlMs / width) + 1; i > 0; i--) ring.push(new Bucket());
  const ringSize = ring.length;
  /** a dropped bucket keeps its table if it is no bigger than an even share of maxEntries needs */
  const retainSlots = slotsFor(Math.ceil(maxEntries / (ringSize - 1)));

  let live = 0;
  /** the highest clock reading seen; time as this cache sees it */
  let high = Number.NEGATIVE_INFINITY;
  /** the earliest dropAt among live buckets */
  let nextDrop = Number.POSITIVE_INFINITY;
  /** the bucket that took the last insert (most inserts land in it again) */
  let current: Bucket | undefined;

  const fp = new PairFingerprint(randomBytes(FINGERPRINT_SALT_BYTES));

  function now(): number {
    const t = clock.now();
    if (t > high && Number.isFinite(t)) high = t;
    else if (high === Number.NEGATIVE_INFINITY) throw new TypeError(`replay cache: clock.now() returned ${String(t)}`);
    return high;
  }

  function expire(t: number): void {
    if (t < nextDrop) return;
    let next = Number.POSITIVE_INFINITY;
    for (let i = 0; i < ringSize; i++) {
      const b = ring[i]!;
      if (b.count === 0) continue;
      if (b.dropAt <= t) {
        live -= b.count;
        b.clear(retainSlots);
      } else if (b.dropAt < next) {
        next = b.dropAt;
      }
    }
    nextDrop = next;
  }

  function checkAndInsert(keyId: string, nonce: string): ReplayVerdict {
    const t = now();
    expire(t);
    fp.of(keyId, nonce);
    const hi = fp.hi;
    const lo = fp.lo;
    for (let i = 0; i < ringSize; i++) {
      const b = ring[i]!;
      if (b.count !== 0 && b.has(hi, lo)) return 'replayed';
    }
    if (live >= maxEntries) return 'full';

    const epoch = Math.floor(t / width);
    let b = current;
    if (b === undefined || b.epoch !== epoch) {
      b = ring[((epoch % ringSize) + ringSize) % ringSize]!;
      if (b.epoch !== epoch) {
        // By the ring-size argument above, the slot's previous bucket has expired
        // and been cleared; anything else is a bug, not something to paper over
        // by dropping live entries.
        if (b.count !== 0) throw new Error('replay cache: time bucket slot still live');
        b.epoch = epoch;
        b.dropAt = (epoch + 1) * width + ttlMs;
        if (b.dropAt < nextDrop) nextDrop = b.dropAt;
      }
      current = b;
    }
    b.add(hi, lo);
    live++;
    return 'fresh';
  }

  return {
    checkAndInsert,
    get size(): number {
      expire(now());
      return live;
    },
    get capacity(): number {
      return maxEntries;
    },
  };
}
