import t from 'tap';
import { Worker } from 'node:worker_threads';
import type { Clock } from '../src/core/clock.ts';
import { attachSharedReplayCache, createSharedReplayCache } from '../src/integrity/sharedReplayCache.ts';

interface FakeClock extends Clock {
  advance(ms: number): void;
  set(ms: number): void;
}

function fakeClock(start = 1_700_000_000_000): FakeClock {
  let now = start;
  return {
    now: () => now,
    monotonic: () => BigInt(now) * 1_000_000n,
    advance(ms) {
      now += ms;
    },
    set(ms) {
      now = ms;
    },
  };
}

t.test('a new nonce is fresh, the same pair again is replayed, another key id is fresh', async (t) => {
  const cache = createSharedReplayCache({ ttlMs: 60_000, maxEntries: 100, clock: fakeClock() });
  t.equal(cache.checkAndInsert('k1', 'n1'), 'fresh');
  t.equal(cache.checkAndInsert('k1', 'n1'), 'replayed');
  t.equal(cache.checkAndInsert('k1', 'n1'), 'replayed');
  t.equal(cache.checkAndInsert('k2', 'n1'), 'fresh');
  t.equal(cache.size, 2);
  t.equal(cache.capacity, 100);
});

t.test('a second attachment to the same buffer sees the same entries', async (t) => {
  const clock = fakeClock();
  const a = createSharedReplayCache({ ttlMs: 60_000, maxEntries: 100, clock });
  const b = attachSharedReplayCache(a.handle, clock);
  t.equal(a.checkAndInsert('k', 'x'), 'fresh');
  t.equal(b.checkAndInsert('k', 'x'), 'replayed');
  t.equal(b.checkAndInsert('k', 'y'), 'fresh');
  t.equal(a.checkAndInsert('k', 'y'), 'replayed');
  t.equal(a.size, 2);
  t.equal(b.size, 2);
});

t.test('at maxEntries new pairs get full and live entries are never evicted', async (t) => {
  const clock = fakeClock();
  const cache = createSharedReplayCache({ ttlMs: 60_000, maxEntries: 10, clock });
  for (let i = 0; i < 10; i++) t.equal(cache.checkAndInsert('k', `n${i}`), 'fresh');
  t.equal(cache.checkAndInsert('k', 'n10'), 'full');
  for (let i = 0; i < 10; i++) t.equal(cache.checkAndInsert('k', `n${i}`), 'replayed', 'still remembered');
  t.equal(cache.size, 10);
});

t.test('entries live at least ttl and at most ttl + one tick; expired ones free their room', async (t) => {
  const clock = fakeClock();
  const ttlMs = 16_000; // 16 ticks of 1 s
  const cache = createSharedReplayCache({ ttlMs, maxEntries: 4, clock });
  t.equal(cache.checkAndInsert('k', 'a'), 'fresh');
  clock.advance(ttlMs - 1);
  t.equal(cache.checkAndInsert('k', 'a'), 'replayed', 'still live just before ttl');
  clock.advance(1_001 + 1_000);
  t.equal(cache.size, 0, 'gone after ttl + one tick');
  t.equal(cache.checkAndInsert('k', 'a'), 'fresh', 'the same pair is fresh again');
  for (let i = 0; i < 3; i++) cache.checkAndInsert('k', `b${i}`);
  t.equal(cache.checkAndInsert('k', 'c'), 'full');
  clock.advance(ttlMs + 2_000);
  t.equal(cache.checkAndInsert('k', 'c'), 'fresh', 'room again once they expired');
});

t.test('a clock stepping backwards neither drops live entries nor shortens their life', async (t) => {
  const clock = fakeClock();
  const cache = createSharedReplayCache({ ttlMs: 10_000, maxEntries: 100, clock });
  clock.advance(5_000);
  t.equal(cache.checkAndInsert('k', 'a'), 'fresh');
  clock.advance(-60_000);
  t.equal(cache.checkAndInsert('k', 'a'), 'replayed');
  t.equal(cache.checkAndInsert('k', 'b'), 'fresh');
  clock.advance(60_000 + 9_000);
  t.equal(cache.checkAndInsert('k', 'b'), 'replayed', 'inserted at the highest time seen');
});

t.test('churn far past the table size keeps exact answers (expired slots reused, table rebuilt)', async (t) => {
  const clock = fakeClock();
  const cache = createSharedReplayCache({ ttlMs: 1_600, maxEntries: 500, clock });
  let fresh = 0;
  for (let round = 0; round < 40; round++) {
    for (let i = 0; i < 400; i++) if (cache.checkAndInsert('k', `r${round}-${i}`) === 'fresh') fresh++;
    for (let i = 0; i < 400; i += 37) t.equal(cache.checkAndInsert('k', `r${round}-${i}`), 'replayed');
    clock.advance(2_000);
  }
  t.equal(fresh, 40 * 400);
  t.equal(cache.size, 0);
});

t.test('random inserts and expiry agree exactly with a model (sweep deletions keep every chain intact)', async (t) => {
  // ttl 16 ms in 16 ticks: 1 ms ticks, an entry of tick e lives while the tick is below e + 17
  let seed = 12345;
  const random = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 16) % n;
  };
  const clock = fakeClock(0);
  let now = 0;
  const maxEntries = 48;
  const cache = createSharedReplayCache({ ttlMs: 16, maxEntries, buckets: 16, clock });
  const model = new Map<string, number>();
  let mismatches = 0;
  const verdicts = { fresh: 0, replayed: 0, full: 0 };
  for (let step = 0; step < 50_000; step++) {
    if (random(8) === 0) {
      now += random(4);
      clock.set(now);
    }
    const nonce = `n${random(150)}`;
    const live = [...model.values()].filter((d) => d > now).length;
    const d = model.get(nonce);
    const expected = d !== undefined && d > now ? 'replayed' : live >= maxEntries ? 'full' : 'fresh';
    if (expected === 'fresh') model.set(nonce, now + 17);
    const got = cache.checkAndInsert('k', nonce);
    verdicts[got]++;
    if (got !== expected) mismatches++;
  }
  t.equal(mismatches, 0, `every verdict as the model says (${JSON.stringify(verdicts)})`);
  t.ok(verdicts.fresh > 1000 && verdicts.replayed > 1000 && verdicts.full > 100, 'all three verdicts exercised');
  t.equal(cache.size, [...model.values()].filter((d) => d > now).length);
});

t.test('tick numbers are rebased before they outgrow 32 bits', async (t) => {
  const clock = fakeClock(0);
  const cache = createSharedReplayCache({ ttlMs: 16, maxEntries: 10, buckets: 16, clock });
  t.equal(cache.checkAndInsert('k', 'old'), 'fresh');
  clock.set(2 ** 32 + 5); // 1 ms ticks: past uint32
  t.equal(cache.checkAndInsert('k', 'a'), 'fresh');
  t.equal(cache.checkAndInsert('k', 'a'), 'replayed');
  clock.advance(10);
  t.equal(cache.checkAndInsert('k', 'a'), 'replayed', 'still live after the rebase');
  clock.advance(20);
  t.equal(cache.checkAndInsert('k', 'a'), 'fresh', 'and expires on time');
});

t.test('memory: bytes per entry at 1,000,000 live entries', async (t) => {
  const clock = fakeClock();
  const cache = createSharedReplayCache({ ttlMs: 330_000, maxEntries: 1_000_000, clock });
  for (let i = 0; i < 1_000_000; i++) cache.checkAndInsert('key-1', `nonce-${i}`);
  t.equal(cache.size, 1_000_000);
  t.equal(cache.checkAndInsert('key-1', 'one-more'), 'full');
  const perEntry = cache.bytes / 1_000_000;
  t.comment(
    `shared replay cache: ${cache.bytes} bytes (${(cache.bytes / 2 ** 20).toFixed(1)} MiB) for 1,000,000 live entries = ${perEntry.toFixed(1)} bytes per entry`,
  );
  t.ok(cache.bytes <= 128 * 2 ** 20, 'within the 128 MiB budget');
});

const RACE_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.module).then(({ attachSharedReplayCache }) => {
  const cache = attachSharedReplayCache(workerData.handle, { now: () => Date.now(), monotonic: () => process.hrtime.bigint() });
  const start = new Int32Array(workerData.start);
  // say so before waiting: the main thread releases everyone once all have said so; one that
  // is released before it reaches the wait finds the flag already set and goes straight on
  parentPort.postMessage({ ready: true });
  Atomics.wait(start, 0, 0);
  const fresh = [];
  for (let round = 0; round < workerData.rounds; round++) {
    for (let i = 0; i < workerData.nonces; i++) {
      const n = (i + workerData.offset * 997) % workerData.nonces;
      if (cache.checkAndInsert('key', 'n' + n) === 'fresh') fresh.push(n);
    }
  }
  parentPort.postMessage({ fresh });
});
`;

t.test('threads racing on the same nonces: exactly one fresh per nonce across all of them', async (t) => {
  const cache = createSharedReplayCache({
    ttlMs: 300_000,
    maxEntries: 100_000,
    clock: { now: () => Date.now(), monotonic: () => process.hrtime.bigint() },
  });
  const nonces = 20_000;
  const start = new SharedArrayBuffer(4);
  const module = new URL('../src/integrity/sharedReplayCache.ts', import.meta.url).href;
  const threads = 4;
  const results = await new Promise<number[][]>((resolve, reject) => {
    const out: number[][] = [];
    let ready = 0;
    for (let w = 0; w < threads; w++) {
      const worker = new Worker(RACE_WORKER, {
        eval: true,
        workerData: { module, handle: cache.handle, start, nonces, rounds: 2, offset: w },
      });
      let reported = false;
      worker.on('message', (m: { ready?: true; fresh?: number[] }) => {
        if (m.ready === true) {
          ready++;
          // every thread has attached the cache and is at (or about to enter) Atomics.wait: release them at once
          if (ready === threads) {
            Atomics.store(new Int32Array(start), 0, 1);
            Atomics.notify(new Int32Array(start), 0);
          }
          return;
        }
        reported = true;
        out.push(m.fresh!);
        if (out.length === threads) resolve(out);
      });
      worker.once('error', reject);
      worker.once('exit', (code) => {
        if (!reported) reject(new Error(`a racing thread exited (${code}) before reporting`));
      });
    }
  });
  const seen = new Map<number, number>();
  for (const list of results) for (const n of list) seen.set(n, (seen.get(n) ?? 0) + 1);
  t.equal(seen.size, nonces, 'every nonce was fresh somewhere');
  t.ok(
    [...seen.values()].every((c) => c === 1),
    'and nowhere twice',
  );
  t.ok(
    results.filter((r) => r.length > 0).length >= 2,
    `more than one thread won some (${results.map((r) => r.length).join(', ')})`,
  );
  t.equal(cache.size, nonces);
});
