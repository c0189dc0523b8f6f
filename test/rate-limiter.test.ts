import t from 'tap';
import fc from 'fast-check';
import { PeerRateLimiter, type RateDecision } from '../src/limits/tokenBucket.ts';

/** a fake clock in ms, far from 0 so nothing depends on the epoch */
const T0 = 1_700_000_000_000;

function limiter(requestsPerSecond: number, burst: number, maxPeers = 1000): PeerRateLimiter {
  return new PeerRateLimiter({ requestsPerSecond, burst, maxPeers });
}

/** take `n` tokens for `peer` at `now`; returns how many were granted */
function takeMany(l: PeerRateLimiter, peer: string, now: number, n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (l.take(peer, now).ok) ok++;
  return ok;
}

function retryAfter(d: RateDecision): number | undefined {
  return d.ok ? undefined : d.retryAfterSeconds;
}

t.test('a peer gets burst requests at once, then is limited with Retry-After of at least 1 s', async (t) => {
  const l = limiter(2, 5);
  t.equal(takeMany(l, 'a', T0, 5), 5, 'the burst is granted');
  const d = l.take('a', T0);
  t.equal(d.ok, false, 'the next request is limited');
  t.equal(retryAfter(d), 1, 'rate 2/s: a token is back within a second');
  t.equal(retryAfter(l.take('a', T0 + 400)), 1, 'never less than 1 s');
});

t.test('Retry-After is exact for simple rates and honouring it succeeds', async (t) => {
  for (const [rate, expected] of [
    [1, 1],
    [2, 1],
    [10, 1],
    [0.5, 2],
    [0.25, 4],
    [0.1, 10],
  ] as const) {
    const l = limiter(rate, 1);
    t.ok(l.take('a', T0).ok);
    const d = l.take('a', T0);
    t.equal(retryAfter(d), expected, `rate ${rate}/s: Retry-After ${expected}`);
    if (expected > 1)
      t.equal(l.take('a', T0 + (expected - 1) * 1000).ok, false, `rate ${rate}/s: a second early is still limited`);
    t.equal(l.take('a', T0 + expected * 1000).ok, true, `rate ${rate}/s: after Retry-After the request passes`);
  }
});

t.test('tokens refill at the rate and never beyond burst', async (t) => {
  const l = limiter(2, 4);
  t.equal(takeMany(l, 'a', T0, 10), 4);
  t.equal(l.take('a', T0 + 499).ok, false, 'half a second less 1 ms: no token yet');
  t.equal(l.take('a', T0 + 500).ok, true, 'half a second: one token');
  t.equal(l.take('a', T0 + 500).ok, false);
  t.equal(takeMany(l, 'a', T0 + 1500, 10), 2, 'a second later: two tokens');
  t.equal(takeMany(l, 'a', T0 + 60_000, 10), 4, 'a minute later: burst, not 120');
  // steady use at exactly the rate is never limited
  let limited = 0;
  for (let i = 1; i <= 1000; i++) if (!l.take('a', T0 + 60_000 + i * 500).ok) limited++;
  t.equal(limited, 0, 'a peer sending at the rate is never limited');
});

t.test('one noisy peer does not limit another', async (t) => {
  const l = limiter(5, 10);
  let noisyOk = 0;
  for (let ms = 0; ms < 10_000; ms += 10) noisyOk += takeMany(l, 'noisy', T0 + ms, 3);
  t.ok(noisyOk <= 10 + 5 * 10, `the noisy peer got ${noisyOk} of 3000 through`);
  t.equal(takeMany(l, 'quiet', T0 + 10_000, 10), 10, 'the quiet peer gets its whole burst');
  t.equal(l.take('quiet', T0 + 10_000).ok, false, 'and is limited by its own bucket only');
});

t.test('a clock going backwards never grants extra tokens', async (t) => {
  const l = limiter(2, 2);
  t.equal(takeMany(l, 'a', T0 + 10_000, 2), 2);
  t.equal(l.take('a', T0).ok, false, '10 s back: nothing');
  t.equal(l.take('a', T0 + 5_000).ok, false, 'still behind the last refill: nothing');
  t.equal(l.take('a', T0 + 10_000).ok, false, 'back where it was: nothing, the return is not counted as elapsed');
  t.equal(l.take('a', T0 + 10_499).ok, false);
  t.equal(l.take('a', T0 + 10_500).ok, true, 'only real progress past the last refill refills');
  t.equal(l.take('a', T0 - 1_000_000).ok, false);
  t.equal(l.take('a', T0 + 11_000).ok, true);
  t.equal(l.take('a', T0 + 11_000).ok, false);
});

t.test(
  'with every bucket taken, refilled buckets are dropped (at most one sweep a second) and a new identity gets its own',
  async (t) => {
    // rate 10/s, burst 5: a bucket used once is full again after 100 ms
    const l = limiter(10, 5, 2);
    t.ok(l.take('a', T0).ok);
    t.ok(l.take('b', T0).ok);
    t.equal(l.trackedPeers, 2);

    // a and b are not full yet: c goes to the shared overflow bucket, which it drains
    t.equal(takeMany(l, 'c', T0, 5), 5, 'c gets the overflow bucket');
    t.equal(l.take('c', T0).ok, false);
    t.equal(l.trackedPeers, 2, 'the overflow bucket is not one of the tracked peers');

    // 500 ms on, a and b are full again but the last sweep was under a second ago: d shares c's
    // bucket (refilled by now), and draining it limits c too
    t.equal(takeMany(l, 'd', T0 + 500, 10), 5, 'no sweep within the second: d gets the overflow bucket');
    t.equal(l.take('c', T0 + 500).ok, false, 'which c shares');
    t.equal(l.trackedPeers, 2, 'a and b were kept');

    // a second on, the sweep drops a and b (full: nothing is forgotten) and e gets a bucket of its own
    t.equal(takeMany(l, 'e', T0 + 1000, 5), 5, 'e has its own full bucket, not the overflow');
    t.equal(l.trackedPeers, 1, 'a and b were dropped');
    t.equal(takeMany(l, 'f', T0 + 1000, 5), 5, 'f takes the second free place, not a share of the overflow');
    t.equal(l.trackedPeers, 2);
    t.equal(l.take('g', T0 + 1000).ok, true, 'g, beyond the cap, shares the overflow (refilled meanwhile)');
    t.equal(l.trackedPeers, 2);

    // a dropped peer that comes back starts from a full bucket: exactly what it had
    t.equal(takeMany(l, 'a', T0 + 2100, 10), 5, 'after a sweep frees places, a returning peer has burst again');
    t.ok(l.trackedPeers <= 2);
  },
);

t.test(
  'when every bucket is busy, new identities share the overflow bucket and the limit holds in aggregate',
  async (t) => {
    const rate = 2;
    const burst = 4;
    const l = limiter(rate, burst, 3);
    const busy = ['a', 'b', 'c'];
    let strangersOk = 0;
    let stranger = 0;
    const seconds = 20;
    let mostTracked = 0;
    for (let ms = 0; ms <= seconds * 1000; ms += 50) {
      for (const p of busy) l.take(p, T0 + ms); // 20 per second each: never refilled, never dropped
      // a flood of identities never seen before, ten every 50 ms
      for (let i = 0; i < 10; i++) if (l.take(`stranger-${stranger++}`, T0 + ms).ok) strangersOk++;
      mostTracked = Math.max(mostTracked, l.trackedPeers);
    }
    t.equal(mostTracked, 3, 'never more than maxPeers identities have buckets');
    t.comment(`${stranger} new identities in ${seconds} s: ${strangersOk} admitted`);
    t.ok(
      strangersOk <= burst + rate * seconds,
      `all of them together got ${strangersOk} ≤ burst + rate × ${seconds} s = ${burst + rate * seconds}`,
    );
    t.ok(strangersOk >= rate * seconds, 'and the overflow bucket still refills at the rate');
    t.equal(l.trackedPeers, 3, 'the busy peers keep their buckets');
  },
);

t.test('property: a peer is never admitted more than burst + rate × elapsed', async (t) => {
  const rates = fc.oneof(fc.integer({ min: 1, max: 50 }), fc.constantFrom(0.1, 0.25, 0.5, 1.5, 2.5, 1000 / 3));
  fc.assert(
    fc.property(
      rates,
      fc.integer({ min: 1, max: 20 }),
      // steps of the clock in ms, backwards included; bursts of requests at the same instant
      fc.array(fc.tuple(fc.integer({ min: -5_000, max: 3_000 }), fc.integer({ min: 1, max: 30 })), { maxLength: 200 }),
      (rate, burst, steps) => {
        const l = limiter(rate, burst);
        let now = T0;
        let first = Infinity;
        let latest = -Infinity;
        let admitted = 0;
        for (const [dt, n] of steps) {
          now += dt;
          first = Math.min(first, now); // the bucket starts full at the first request
          latest = Math.max(latest, now);
          admitted += takeMany(l, 'p', now, n);
          const allowed = burst + (rate * (latest - first)) / 1000;
          if (admitted > allowed + 1e-9) return false;
        }
        return true;
      },
    ),
    { numRuns: 500, seed: 6 },
  );
  t.pass('held over 500 random sequences');
});

t.test('property: a limited peer that waits Retry-After is admitted', async (t) => {
  fc.assert(
    fc.property(
      fc.oneof(fc.integer({ min: 1, max: 50 }), fc.constantFrom(0.1, 0.25, 0.5, 1.5, 2.5, 1000 / 3)),
      fc.integer({ min: 1, max: 20 }),
      fc.array(fc.integer({ min: 0, max: 2_000 }), { maxLength: 100 }),
      (rate, burst, gaps) => {
        const l = limiter(rate, burst);
        let now = T0;
        for (const gap of gaps) {
          now += gap;
          const d = l.take('p', now);
          if (!d.ok) {
            if (d.retryAfterSeconds < 1) return false;
            now += d.retryAfterSeconds * 1000;
            if (!l.take('p', now).ok) return false;
          }
        }
        return true;
      },
    ),
    { numRuns: 500, seed: 7 },
  );
  t.pass('held over 500 random sequences');
});
