import t from 'tap';
import { SizeModel, type SizeVerdict } from '../src/anomaly/sizeModel.ts';
import { SizeWatch } from '../src/anomaly/sizeWatch.ts';
import { gauss, mulberry32 } from './helpers/random.ts';

// The defaults of `anomaly` (src/config/defaults.ts): learn from 200 sizes, flag beyond 4 spreads.
const MIN_SAMPLES = 200;
const THRESHOLD = 4;
const MEDIAN = 2048;
const SIGMA = 0.35;

/** a log-normal body size in whole bytes */
function logNormal(rng: () => number, median = MEDIAN, sigma = SIGMA): number {
  return Math.round(median * Math.exp(sigma * gauss(rng)));
}

const flagged = (v: SizeVerdict): boolean => v === 'too_large' || v === 'too_small';

/** What the proxy does per accepted request: judge, then learn only what was not flagged. */
function handle(model: SizeModel, bytes: number): SizeVerdict {
  const { verdict } = model.judge(bytes);
  if (!flagged(verdict)) model.learn(bytes);
  return verdict;
}

function learnedModel(rng: () => number): SizeModel {
  const model = new SizeModel(MIN_SAMPLES, THRESHOLD);
  for (let i = 0; i < MIN_SAMPLES; i++) handle(model, logNormal(rng));
  return model;
}

const pct = (n: number, of: number): string => `${((100 * n) / of).toFixed(2)}%`;

t.test('the model is learning for exactly minSamples observations, then judges', async (t) => {
  const rng = mulberry32(1);
  const model = new SizeModel(MIN_SAMPLES, THRESHOLD);
  for (let i = 0; i < MIN_SAMPLES; i++) {
    t.equal(model.learned, false);
    const j = model.judge(i % 2 === 0 ? 1 : 10_000_000);
    if (j.verdict !== 'learning' || j.z !== 0) t.fail(`observation ${i} was judged ${j.verdict}`);
    model.learn(logNormal(rng));
  }
  t.equal(model.observed, MIN_SAMPLES);
  t.equal(model.learned, true, 'learned after the minSamples-th size');
  t.equal(model.judge(MEDIAN).verdict, 'normal');
  t.equal(model.judge(MEDIAN * 100).verdict, 'too_large');
  t.equal(model.judge(3).verdict, 'too_small');
});

t.test('an upper bound is infinite while learning', async (t) => {
  const model = new SizeModel(MIN_SAMPLES, THRESHOLD);
  t.equal(model.upperBound(), Infinity);
  model.learn(MEDIAN);
  t.equal(model.upperBound(), Infinity);
});

t.test('clean log-normal traffic is flagged at most 0.5% of the time', async (t) => {
  const rng = mulberry32(20240601);
  const model = learnedModel(rng);
  const n = 20_000;
  let large = 0;
  let small = 0;
  for (let i = 0; i < n; i++) {
    const v = handle(model, logNormal(rng));
    if (v === 'too_large') large++;
    else if (v === 'too_small') small++;
  }
  t.comment(
    `clean (σ=${SIGMA}, median ${MEDIAN} B): ${large + small}/${n} flagged = ${pct(large + small, n)} (${large} too_large, ${small} too_small)`,
  );
  t.ok(large + small <= n * 0.005, `false-positive rate ${pct(large + small, n)} ≤ 0.5%`);
});

t.test(
  'outliers of 10× and 100× the median and tiny bodies are caught ≥ 99% of the time; 2× and 5× reported',
  async (t) => {
    // One run per magnitude: 100,000 clean sizes with 1,000 outliers (1%) mixed in at random
    // places. Every request goes through judge-then-learn, so outliers that pass as normal (most
    // 2× ones) are learned, as they would be in the proxy. Outliers of k× are literally k times the
    // median (the wording, jittered by ±1%); alongside, judged by the same model without
    // being learned, k times a clean draw (a body k times what this stream happens to send).
    const kinds = [
      ['2×', 2],
      ['5×', 5],
      ['10×', 10],
      ['100×', 100],
      ['tiny', 0],
    ] as const;
    const clean = 100_000;
    const outliers = 1000;
    for (const [kind, factor] of kinds) {
      const rng = mulberry32(7);
      const model = learnedModel(rng);
      const expected: SizeVerdict = factor === 0 ? 'too_small' : 'too_large';
      let caught = 0;
      let caughtDraw = 0;
      let cleanFlagged = 0;
      let left = outliers;
      for (let i = clean + outliers; i > 0; i--) {
        if (rng() * i >= left) {
          if (flagged(handle(model, logNormal(rng)))) cleanFlagged++;
          continue;
        }
        left--;
        if (factor === 0) {
          if (handle(model, 1 + Math.floor(rng() * 10)) === expected) caught++; // 1..10 bytes
          continue;
        }
        if (model.judge(Math.round(factor * logNormal(rng))).verdict === expected) caughtDraw++;
        if (handle(model, Math.round(MEDIAN * factor * (0.99 + 0.02 * rng()))) === expected) caught++;
      }
      const what = factor === 0 ? '1-10 B' : `${kind} the median`;
      t.comment(
        `recall ${kind.padEnd(4)} (${what}): ${pct(caught, outliers)}` +
          (factor === 0 ? '' : `; ${kind} a clean draw: ${pct(caughtDraw, outliers)}`) +
          `; clean sizes in this run flagged ${pct(cleanFlagged, clean)}`,
      );
      t.ok(cleanFlagged <= clean * 0.005, `${kind}: false positives among the clean sizes stay ≤ 0.5%`);
      if (factor === 0 || factor >= 10)
        t.ok(caught >= outliers * 0.99, `${kind}: recall ${pct(caught, outliers)} ≥ 99%`);
      if (factor >= 100)
        t.ok(caughtDraw >= outliers * 0.99, `${kind} a clean draw: recall ${pct(caughtDraw, outliers)} ≥ 99%`);
    }
  },
);

t.test('outliers among the learning samples do not spoil the model (median and MAD)', async (t) => {
  const rng = mulberry32(99);
  const spoiled = new SizeModel(MIN_SAMPLES, THRESHOLD);
  const clean = new SizeModel(MIN_SAMPLES, THRESHOLD);
  for (let i = 0; i < MIN_SAMPLES; i++) {
    const size = logNormal(rng);
    clean.learn(size);
    // 5% of the learning samples are 100× outliers
    spoiled.learn(i % 20 === 7 ? size * 100 : size);
  }
  const ratio = spoiled.upperBound() / clean.upperBound();
  t.comment(`upper bound learned with 5% 100× outliers / without: ${ratio.toFixed(3)}`);
  t.ok(ratio > 0.8 && ratio < 1.25, 'the bound moves little');
  t.equal(spoiled.judge(MEDIAN * 10).verdict, 'too_large', '10× the median is still too large');
  t.equal(
    spoiled.judge(MEDIAN * 100).verdict,
    'too_large',
    'the kind of outlier it saw while learning is still too large',
  );
  t.equal(spoiled.judge(5).verdict, 'too_small');
  let fp = 0;
  const n = 5000;
  for (let i = 0; i < n; i++) if (flagged(handle(spoiled, logNormal(rng)))) fp++;
  t.ok(fp <= n * 0.005, `clean traffic afterwards is flagged ${pct(fp, n)} ≤ 0.5%`);
});

t.test('the model does not learn from what it flags', async (t) => {
  const rng = mulberry32(5);
  const model = learnedModel(rng);
  const before = model.judge(MEDIAN * 100);
  const bound = model.upperBound();
  t.equal(before.verdict, 'too_large');
  let flags = 0;
  for (let i = 0; i < 1000; i++) if (handle(model, MEDIAN * 100) === 'too_large') flags++;
  t.equal(flags, 1000, 'every one of 1000 100× sizes is flagged');
  const after = model.judge(MEDIAN * 100);
  t.equal(after.verdict, 'too_large', '100× is still too large after 1000 of them');
  t.equal(after.z, before.z, 'and exactly as far out');
  t.equal(model.upperBound(), bound, 'the bound has not moved');
});

t.test('a slow drift (1% growth per 100 requests) is followed without flags once settled', async (t) => {
  const settle = 2000;
  const n = 20_000; // ends 1.01^200 ≈ 7.3× above the start
  const median = (i: number): number => MEDIAN * 1.01 ** (i / 100);

  t.test('noise-free sizes: no flag at all', async (t) => {
    const model = new SizeModel(MIN_SAMPLES, THRESHOLD);
    let flags = 0;
    for (let i = 0; i < n; i++) if (flagged(handle(model, Math.round(median(i))))) flags++;
    t.equal(flags, 0);
    t.equal(model.judge(Math.round(median(n))).verdict, 'normal', 'the grown size is normal');
    t.equal(model.judge(MEDIAN).verdict, 'too_small', 'the starting size is now unusual');
  });

  t.test('log-normal sizes around the drifting median: the clean false-positive rate', async (t) => {
    const rng = mulberry32(11);
    const model = new SizeModel(MIN_SAMPLES, THRESHOLD);
    let flags = 0;
    for (let i = 0; i < n; i++) {
      const v = handle(model, logNormal(rng, median(i)));
      if (i >= settle && flagged(v)) flags++;
    }
    t.comment(`drift: ${flags}/${n - settle} flagged after settling = ${pct(flags, n - settle)}`);
    t.ok(flags <= (n - settle) * 0.005, 'no more flags than on stationary clean traffic');
    t.equal(model.judge(Math.round(median(n))).verdict, 'normal', 'the grown median is normal');
    t.equal(model.judge(MEDIAN).verdict, 'too_small', 'the starting median is now unusual');
    t.equal(model.judge(Math.round(median(n) * 10)).verdict, 'too_large', '10× the grown median is still too large');
  });
});

t.test('a constant-size stream flags 2× but not ±5% (spread floor)', async (t) => {
  const model = new SizeModel(MIN_SAMPLES, THRESHOLD);
  let flags = 0;
  for (let i = 0; i < MIN_SAMPLES * 3; i++) if (flagged(handle(model, 1000))) flags++;
  t.equal(flags, 0, 'the stream itself is never flagged');
  t.equal(model.judge(1000).verdict, 'normal');
  t.equal(model.judge(1050).verdict, 'normal', '+5%');
  t.equal(model.judge(950).verdict, 'normal', '-5%');
  t.equal(model.judge(2000).verdict, 'too_large', '2×');
  t.equal(model.judge(500).verdict, 'too_small', '½×');
});

t.test('upperBound() agrees with judge(): the bound is normal, one byte more is too large', async (t) => {
  const cases: [string, (i: number, rng: () => number) => number][] = [
    ['log-normal', (_i, rng) => logNormal(rng)],
    ['constant', () => 1000],
    ['tiny bodies', (_i, rng) => Math.floor(rng() * 4)],
    ['large bodies', (_i, rng) => logNormal(rng, 50 * 1024 * 1024, 1)],
  ];
  for (const [name, draw] of cases) {
    const rng = mulberry32(name.length);
    const model = new SizeModel(MIN_SAMPLES, THRESHOLD);
    for (let i = 0; i < 3000; i++) {
      handle(model, draw(i, rng));
      if (!model.learned) continue;
      const bound = model.upperBound();
      const atBound = model.judge(bound).verdict;
      const beyond = model.judge(bound + 1).verdict;
      if (atBound !== 'normal' || beyond !== 'too_large') {
        t.fail(`${name}, after ${i + 1}: bound ${bound} is ${atBound}, bound + 1 is ${beyond}`);
        break;
      }
    }
    t.pass(`${name}: bound and judge agree throughout`);
  }
});

t.test('SizeWatch', async (t) => {
  const options = { minSamples: MIN_SAMPLES, threshold: THRESHOLD, maxTrackedPeers: 3 };

  t.test("a peer is judged by the route's model until its own has learned, then by its own", async (t) => {
    const rng = mulberry32(21);
    const watch = new SizeWatch(options);
    for (let i = 0; i < MIN_SAMPLES; i++) {
      t.equal(watch.judge('/a', 'p1', MEDIAN).by, 'route');
      watch.learn('/a', 'p1', logNormal(rng));
    }
    // the route learned from the same MIN_SAMPLES sizes: both have learned now
    const d = watch.judge('/a', 'p1', MEDIAN);
    t.equal(d.by, 'peer');
    t.equal(d.verdict, 'normal');
    t.equal(watch.judge('/a', 'p2', MEDIAN * 100).by, 'route', 'a new peer is judged by the route');
    t.equal(watch.judge('/a', 'p2', MEDIAN * 100).verdict, 'too_large', 'and is judged, not waved through');
    for (let i = 0; i < MIN_SAMPLES - 1; i++) watch.learn('/a', 'p2', logNormal(rng));
    t.equal(watch.judge('/a', 'p2', MEDIAN).by, 'route', 'one short of minSamples: still the route');
    watch.learn('/a', 'p2', logNormal(rng));
    t.equal(watch.judge('/a', 'p2', MEDIAN).by, 'peer');
    t.equal(watch.judge('/b', 'p1', MEDIAN).verdict, 'learning', 'another route has a model of its own');
    t.equal(watch.upperBound('/b', 'p1'), Infinity, 'with no bound while learning');
  });

  t.test('no more than maxTrackedPeers peer models; peers beyond the cap are judged by the route', async (t) => {
    const rng = mulberry32(22);
    const watch = new SizeWatch(options);
    const peers = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6'];
    for (let i = 0; i < MIN_SAMPLES * 2; i++) {
      for (const p of peers) {
        const size = logNormal(rng);
        const d = watch.judge('/a', p, size);
        if (!flagged(d.verdict)) watch.learn('/a', p, size);
        if (watch.trackedPeers > options.maxTrackedPeers) t.fail(`tracking ${watch.trackedPeers} peers`);
      }
    }
    t.equal(watch.trackedPeers, options.maxTrackedPeers);
    t.same(
      peers.map((p) => watch.judge('/a', p, MEDIAN).by),
      ['peer', 'peer', 'peer', 'route', 'route', 'route', 'route'],
      'the first three peers have models; the rest fall back to the route',
    );
    t.equal(watch.judge('/a', 'p6', MEDIAN * 100).verdict, 'too_large', 'an untracked peer is still judged');
    t.equal(watch.upperBound('/a', 'p6'), watch.upperBound('/a', 'p5'), 'untracked peers share the route bound');
    t.not(watch.upperBound('/a', 'p0'), watch.upperBound('/a', 'p6'), 'a tracked peer has its own bound');
  });

  t.test(
    'a peer sending only large bodies, on a route whose other peers send small ones, is judged by its own model once learned',
    async (t) => {
      const rng = mulberry32(23);
      const watch = new SizeWatch({ ...options, maxTrackedPeers: 100 });
      const BIG = 200 * MEDIAN;
      const small = ['s1', 's2', 's3'];
      // the small peers teach the route first
      for (let i = 0; i < MIN_SAMPLES; i++) for (const p of small) watch.learn('/up', p, logNormal(rng));
      const routeBound = watch.upperBound('/up', 'big');
      t.ok(routeBound < BIG / 10, 'the route has learned small sizes');

      // observe mode: every accepted request is offered to learn(); what a model flags does not
      // teach that model, so the route keeps its small sizes and the big peer's own model learns
      let flaggedByRoute = 0;
      for (let i = 0; i < MIN_SAMPLES; i++) {
        const size = logNormal(rng, BIG);
        const d = watch.judge('/up', 'big', size);
        t.equal(d.by, 'route');
        if (d.verdict === 'too_large') flaggedByRoute++;
        watch.learn('/up', 'big', size);
        for (const p of small) watch.learn('/up', p, logNormal(rng));
      }
      t.equal(flaggedByRoute, MIN_SAMPLES, "while learning, the big peer's bodies are flagged by the route");
      const routeAfter = watch.upperBound('/up', 'nobody');
      t.ok(
        routeAfter < routeBound * 1.25 && routeAfter > routeBound * 0.8,
        `the route model did not learn them (bound ${routeBound} → ${routeAfter})`,
      );
      t.equal(watch.judge('/up', 'nobody', BIG).verdict, 'too_large');

      const d = watch.judge('/up', 'big', BIG);
      t.equal(d.by, 'peer');
      t.equal(d.verdict, 'normal', 'its own size is normal for it');
      t.equal(watch.judge('/up', 'big', MEDIAN).verdict, 'too_small', "the route's usual size is too small for it");
      t.equal(watch.judge('/up', 'big', BIG * 100).verdict, 'too_large');
      t.equal(watch.judge('/up', 's1', BIG).verdict, 'too_large', 'a small peer sending a big body is still flagged');
      t.equal(watch.judge('/up', 'new', BIG).verdict, 'too_large', 'and so is a new peer');
    },
  );
});
