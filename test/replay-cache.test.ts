import t from 'tap';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../src/core/clock.ts';
import { createReplayCache, type ReplayVerdict } from '../src/integrity/replayCache.ts';

interface FakeClock extends Clock {
  set(ms: number): void;
  advance(ms: number): void;
}

function fakeClock(start = 1_700_000_000_000): FakeClock {
  let now = start;
  return {
    now: () => now,
    monotonic: () => BigInt(now) * 1_000_000n,
    set(ms) {
      now = ms;
    },
    advance(ms) {
      now += ms;
    },
  };
}

const nonce = (i: number): string => `nonce-${i.toString(36)}`;

t.test('a new nonce is fresh, the same keyid and nonce again is replayed', async (t) => {
  const cache = createReplayCache({ ttlMs: 60_000, maxEntries: 100, clock: fakeClock() });
  t.equal(cache.checkAndInsert('key-a', 'n1'), 'fresh');
  t.equal(cache.checkAndInsert('key-a', 'n1'), 'replayed');
  t.equal(cache.checkAndInsert('key-a', 'n1'), 'replayed', 'stays replayed on every repeat');
  t.equal(cache.checkAndInsert('key-a', 'n2'), 'fresh');
  t.equal(cache.size, 2, 'a replay is not inserted a second time');
});

t.test('the same nonce under another keyid is fresh', async (t) => {
  const cache = createReplayCache({ ttlMs: 60_000, maxEntries: 100, clock: fakeClock() });
  t.equal(cache.checkAndInsert('key-a', 'shared'), 'fresh');
  t.equal(cache.checkAndInsert('key-b', 'shared'), 'fresh');
  t.equal(cache.checkAndInsert('key-b', 'shared'), 'replayed');
  t.equal(cache.checkAndInsert('', 'shared'), 'fresh', 'an empty keyid is a keyid of its own');
});

t.test('keyid and nonce cannot be shifted into each other', async (t) => {
  const cache = createReplayCache({ ttlMs: 60_000, maxEntries: 100, clock: fakeClock() });
  t.equal(cache.checkAndInsert('ab', 'c'), 'fresh');
  t.equal(cache.checkAndInsert('a', 'bc'), 'fresh');
  t.equal(cache.checkAndInsert('a\0b', 'c'), 'fresh');
  t.equal(cache.checkAndInsert('a', 'b\0c'), 'fresh');
  t.equal(cache.checkAndInsert('a', '\0bc'), 'fresh');
});

t.test('non-ASCII and very long keyids and nonces are remembered like short ones', async (t) => {
  const cache = createReplayCache({ ttlMs: 60_000, maxEntries: 100, clock: fakeClock() });
  const long = 'x'.repeat(5000);
  for (const [k, n] of [
    ['clé-ü', 'nönce-☃'],
    ['key', long],
    ['key', `${long}y`],
    [long, 'n'],
    ['key', '😀'.repeat(400)],
  ] as const) {
    t.equal(cache.checkAndInsert(k, n), 'fresh', `${k.slice(0, 8)} / ${n.slice(0, 8)} fresh`);
    t.equal(cache.checkAndInsert(k, n), 'replayed', `${k.slice(0, 8)} / ${n.slice(0, 8)} replayed`);
  }
});

t.test('an entry is remembered through ttl - 1 ms and forgotten by ttl + one bucket width', async (t) => {
  // ttl 1000 in 10 buckets -> width 100; 1001 in 16 -> width 63 (rounded up)
  for (const [ttlMs, buckets] of [
    [1000, 10],
    [1001, 16],
    [330_000, 16],
    [7, 16],
  ] as const) {
    const width = Math.ceil(ttlMs / buckets);
    const base = 1_700_000_000_000 - (1_700_000_000_000 % width);
    // insert at the start, middle and last millisecond of a bucket
    for (const offset of [0, Math.floor(width / 2), width - 1]) {
      const clock = fakeClock(base + offset);
      const cache = createReplayCache({ ttlMs, maxEntries: 10, clock, buckets });
      t.equal(cache.checkAndInsert('k', 'n'), 'fresh');
      clock.advance(ttlMs - 1);
      t.equal(cache.checkAndInsert('k', 'n'), 'replayed', `ttl ${ttlMs}, offset ${offset}: still there at ttl - 1`);
      t.equal(cache.size, 1);
      clock.set(base + offset + ttlMs + width);
      t.equal(cache.size, 0, `ttl ${ttlMs}, offset ${offset}: gone at ttl + width`);
      t.equal(cache.checkAndInsert('k', 'n'), 'fresh', `ttl ${ttlMs}, offset ${offset}: fresh again`);
    }
  }
});

t.test('the default is 16 buckets', async (t) => {
  const clock = fakeClock(0);
  const cache = createReplayCache({ ttlMs: 1600, maxEntries: 10, clock });
  cache.checkAndInsert('k', 'n'); // bucket [0, 100)
  clock.set(1699);
  t.equal(cache.checkAndInsert('k', 'n'), 'replayed', 'newest possible entry (99) is exactly ttl old');
  clock.set(1700);
  t.equal(cache.checkAndInsert('k', 'n'), 'fresh', 'dropped once the newest possible entry is older than ttl');
});

t.test('at capacity new nonces are refused as full and nothing live is evicted', async (t) => {
  const clock = fakeClock();
  const cache = createReplayCache({ ttlMs: 10_000, maxEntries: 3, clock });
  t.equal(cache.capacity, 3);
  for (let i = 0; i < 3; i++) {
    t.equal(cache.checkAndInsert('k', nonce(i)), 'fresh');
    clock.advance(1000);
  }
  t.equal(cache.checkAndInsert('k', 'one-too-many'), 'full');
  t.equal(cache.checkAndInsert('other-key', nonce(0)), 'full');
  for (let i = 0; i < 3; i++) t.equal(cache.checkAndInsert('k', nonce(i)), 'replayed', `entry ${i} still detected`);
  t.equal(cache.size, 3);
  t.equal(cache.checkAndInsert('k', 'one-too-many'), 'full', 'a refused nonce was not remembered either');
});

t.test('capacity frees up as entries expire', async (t) => {
  const clock = fakeClock(0);
  const cache = createReplayCache({ ttlMs: 1000, maxEntries: 2, clock, buckets: 10 });
  t.equal(cache.checkAndInsert('k', 'a'), 'fresh'); // bucket [0, 100), dropped at 1100
  clock.set(500);
  t.equal(cache.checkAndInsert('k', 'b'), 'fresh'); // bucket [500, 600), dropped at 1600
  t.equal(cache.checkAndInsert('k', 'c'), 'full');
  clock.set(1100);
  t.equal(cache.size, 1);
  t.equal(cache.checkAndInsert('k', 'c'), 'fresh', 'room again once the oldest bucket expired');
  t.equal(cache.checkAndInsert('k', 'b'), 'replayed', 'the younger entry survived');
  t.equal(cache.checkAndInsert('k', 'd'), 'full');
  clock.set(10_000);
  t.equal(cache.size, 0);
  t.equal(cache.checkAndInsert('k', 'd'), 'fresh');
});

t.test('a clock going backwards keeps every entry', async (t) => {
  const clock = fakeClock(1_000_000);
  const cache = createReplayCache({ ttlMs: 1000, maxEntries: 100, clock, buckets: 10 });
  t.equal(cache.checkAndInsert('k', 'before'), 'fresh');
  clock.set(1_000_000 - 3_600_000); // an hour back
  t.equal(cache.checkAndInsert('k', 'before'), 'replayed');
  t.equal(cache.checkAndInsert('k', 'during'), 'fresh');
  t.equal(cache.size, 2);
  clock.set(1_000_000 + 999); // forwards again: 'before' is at ttl - 1
  t.equal(cache.checkAndInsert('k', 'before'), 'replayed');
  t.equal(cache.checkAndInsert('k', 'during'), 'replayed');
  clock.set(1_000_000 + 1100);
  t.equal(cache.size, 0, 'then they expire on the forward clock');
});

t.test('an entry inserted while the clock is behind is still remembered for ttl on that clock', async (t) => {
  const clock = fakeClock(50_000);
  const cache = createReplayCache({ ttlMs: 1000, maxEntries: 100, clock, buckets: 10 });
  cache.checkAndInsert('k', 'first');
  clock.set(20_000);
  t.equal(cache.checkAndInsert('k', 'late'), 'fresh');
  clock.set(20_999);
  t.equal(cache.checkAndInsert('k', 'late'), 'replayed');
});

t.test('a non-finite clock reading counts as no time passed', async (t) => {
  const clock = fakeClock(0);
  const cache = createReplayCache({ ttlMs: 1000, maxEntries: 100, clock, buckets: 10 });
  cache.checkAndInsert('k', 'n');
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    clock.set(bad);
    t.equal(cache.checkAndInsert('k', 'n'), 'replayed', String(bad));
    t.equal(cache.size, 1);
  }
  clock.set(500);
  t.equal(cache.checkAndInsert('k', 'n'), 'replayed');
  const never = createReplayCache({ ttlMs: 1000, maxEntries: 100, clock: fakeClock(Number.NaN) });
  t.throws(() => never.checkAndInsert('k', 'n'), TypeError, 'but there must have been one good reading');
});

t.test('size counts live entries and drops expired buckets when read', async (t) => {
  const clock = fakeClock(0);
  const cache = createReplayCache({ ttlMs: 1000, maxEntries: 1000, clock, buckets: 10 });
  t.equal(cache.size, 0);
  // 10 entries in each of the buckets starting at 0, 100, ..., 900
  for (let b = 0; b < 10; b++) {
    clock.set(b * 100);
    for (let i = 0; i < 10; i++) cache.checkAndInsert('k', nonce(b * 10 + i));
  }
  t.equal(cache.size, 100);
  cache.checkAndInsert('k', nonce(0));
  t.equal(cache.size, 100, 'a replay does not count twice');
  clock.set(1099);
  t.equal(cache.size, 100);
  clock.set(1100);
  t.equal(cache.size, 90, 'first bucket dropped whole');
  clock.set(1550);
  t.equal(cache.size, 50);
  clock.set(1999);
  t.equal(cache.size, 10);
  clock.set(2000);
  t.equal(cache.size, 0);
});

t.test('distinct nonces over a large fill are all fresh and every repeat is detected', async (t) => {
  const n = 200_000;
  const clock = fakeClock();
  const cache = createReplayCache({ ttlMs: 330_000, maxEntries: n, clock });
  const nonces: string[] = [];
  for (let i = 0; i < n; i++) nonces.push(randomBytes(16).toString('base64url'));
  let notFresh = 0;
  for (let i = 0; i < n; i++) {
    if (i % 10_000 === 0) clock.advance(15_000); // spread over ~14 buckets
    if (cache.checkAndInsert(`key-${i % 7}`, nonces[i]!) !== 'fresh') notFresh++;
  }
  t.equal(notFresh, 0, 'no distinct nonce was taken for a replay');
  t.equal(cache.size, n);
  let missed = 0;
  for (let i = 0; i < n; i++) if (cache.checkAndInsert(`key-${i % 7}`, nonces[i]!) !== 'replayed') missed++;
  t.equal(missed, 0, 'every repeat was caught');
  t.equal(cache.checkAndInsert('key-0', 'one more'), 'full');
});

t.test('tables growing from their small start keep every entry', async (t) => {
  const clock = fakeClock();
  const cache = createReplayCache({ ttlMs: 60_000, maxEntries: 100_000, clock });
  // all in one bucket: the table doubles from 16 slots many times over
  for (let i = 0; i < 100_000; i++) {
    if (cache.checkAndInsert('k', nonce(i)) !== 'fresh') {
      t.fail(`insert ${i} not fresh`);
      return;
    }
    // after each growth step (the set holds half its slots), everything so far is still there
    if (i >= 8 && ((i + 1) & i) === 0) {
      let lost = 0;
      for (let j = 0; j <= i; j++) if (cache.checkAndInsert('k', nonce(j)) !== 'replayed') lost++;
      if (lost !== 0) t.fail(`${lost} entries lost after ${i + 1} inserts`);
    }
  }
  let lost = 0;
  for (let i = 0; i < 100_000; i++) if (cache.checkAndInsert('k', nonce(i)) !== 'replayed') lost++;
  t.equal(lost, 0);
  t.equal(cache.size, 100_000);
});

t.test('a bucket reused after expiry starts empty', async (t) => {
  const clock = fakeClock(0);
  const cache = createReplayCache({ ttlMs: 1000, maxEntries: 100_000, clock, buckets: 10 });
  for (let round = 0; round < 5; round++) {
    clock.set(round * 5000);
    // a burst big enough to outgrow the retained table size in some rounds
    const count = round % 2 === 0 ? 50_000 : 100;
    for (let i = 0; i < count; i++) cache.checkAndInsert('k', `${round}-${i}`);
    t.equal(cache.size, count, `round ${round} holds only its own entries`);
    t.equal(cache.checkAndInsert('k', `${round}-0`), 'replayed');
    if (round > 0) t.equal(cache.checkAndInsert('k', `${round - 1}-0`), 'fresh', 'previous round forgotten');
  }
});

t.test('two caches do not share entries', async (t) => {
  const clock = fakeClock();
  const a = createReplayCache({ ttlMs: 1000, maxEntries: 10, clock });
  const b = createReplayCache({ ttlMs: 1000, maxEntries: 10, clock });
  t.equal(a.checkAndInsert('k', 'n'), 'fresh');
  t.equal(b.checkAndInsert('k', 'n'), 'fresh');
});

t.test('creating and using a cache starts no timers or handles', async (t) => {
  const before = process.getActiveResourcesInfo().sort();
  const cache = createReplayCache({ ttlMs: 1000, maxEntries: 10, clock: fakeClock() });
  cache.checkAndInsert('k', 'n');
  void cache.size;
  t.same(process.getActiveResourcesInfo().sort(), before);
});

t.test('invalid options are refused up front', async (t) => {
  const clock = fakeClock();
  const bad: Array<Record<string, unknown>> = [
    { ttlMs: 0 },
    { ttlMs: -1 },
    { ttlMs: 1.5 },
    { ttlMs: Number.NaN },
    { ttlMs: Number.POSITIVE_INFINITY },
    { maxEntries: 0 },
    { maxEntries: 2.5 },
    { maxEntries: 2 ** 40 },
    { buckets: 0 },
    { buckets: 1e6 },
    { buckets: 3.5 },
  ];
  for (const override of bad) {
    const options = { ttlMs: 1000, maxEntries: 10, clock, ...override } as unknown as Parameters<
      typeof createReplayCache
    >[0];
    t.throws(
      () => createReplayCache(options),
      RangeError,
      Object.entries(override)
        .map(([k, v]) => `${k}: ${String(v)}`)
        .join(),
    );
  }
  t.throws(() => createReplayCache({ ttlMs: 1000, maxEntries: 10, clock: {} as Clock }), TypeError);
});

t.test('matches a reference model under arbitrary clock moves', async (t) => {
  type Op = { kind: 'move'; delta: number } | { kind: 'check'; key: number; nonce: number } | { kind: 'size' };
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      arbitrary: fc.record({
        kind: fc.constant('move' as const),
        delta: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -1500, max: 1500 })),
      }),
      weight: 2,
    },
    { arbitrary: fc.record({ kind: fc.constant('check' as const), key: fc.nat(2), nonce: fc.nat(9) }), weight: 6 },
    { arbitrary: fc.constant({ kind: 'size' as const }), weight: 1 },
  );
  fc.assert(
    fc.property(
      fc.oneof(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 1200 })),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: -5000, max: 5000 }),
      fc.array(op, { maxLength: 200 }),
      (ttlMs, buckets, maxEntries, start, ops) => {
        const clock = fakeClock(start);
        const cache = createReplayCache({ ttlMs, maxEntries, clock, buckets });
        const width = Math.ceil(ttlMs / buckets);
        // the model: pair -> effective insertion time; live while its bucket's deadline is ahead
        const model = new Map<string, number>();
        let high = Number.NEGATIVE_INFINITY; // the cache reads the clock only when called
        let now = start;
        const liveIn = (at: number): number => Math.floor(at / width) * width + width + ttlMs;
        const prune = (): void => {
          for (const [k, at] of model) if (liveIn(at) <= high) model.delete(k);
        };
        for (const o of ops) {
          if (o.kind === 'move') {
            now += o.delta;
            clock.set(now);
            continue;
          }
          high = Math.max(high, now);
          prune();
          if (o.kind === 'size') {
            if (cache.size !== model.size) return false;
            continue;
          }
          const pair = `${o.key}\n${o.nonce}`;
          let expected: ReplayVerdict;
          if (model.has(pair)) expected = 'replayed';
          else if (model.size >= maxEntries) expected = 'full';
          else {
            expected = 'fresh';
            model.set(pair, high);
          }
          if (cache.checkAndInsert(`key${o.key}`, `n${o.nonce}`) !== expected) return false;
        }
        return true;
      },
    ),
    { numRuns: 2000 },
  );
  t.pass('model and cache agreed');
});
