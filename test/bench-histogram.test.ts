/**
 * How the benchmark reads the replay checks' round trips from a target's /metrics
 * (bench/macro/promHistogram.ts): the series of one label out of prom-client's own text, what a
 * window added between two readings, and the p99 as histogram_quantile would give it.
 */
import t from 'tap';
import { Histogram as PromHistogram, Registry } from 'prom-client';
import { histogramDelta, histogramQuantile, readHistogram, shareAtMost } from '../bench/macro/promHistogram.ts';

const NAME = 'tollgate_shared_state_duration_seconds';
const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01];

function registry(): { registry: Registry; histogram: PromHistogram<'operation'> } {
  const registry = new Registry();
  const histogram = new PromHistogram({
    name: NAME,
    help: 'round trip',
    labelNames: ['operation'] as const,
    buckets: BUCKETS,
    registers: [registry],
  });
  return { registry, histogram };
}

t.test('only the series of the label asked for is read, with its buckets in order and +Inf last', async (t) => {
  const { registry: r, histogram } = registry();
  for (let i = 0; i < 3; i++) histogram.labels('replay').observe(0.0003);
  for (let i = 0; i < 5; i++) histogram.labels('rate').observe(0.02);
  const h = readHistogram(await r.metrics(), NAME, { operation: 'replay' });
  t.ok(h !== null, 'found');
  t.equal(h!.count, 3);
  t.same(
    h!.buckets.map((b) => b.le),
    [...BUCKETS, Infinity],
  );
  t.equal(h!.buckets.at(-1)!.count, 3, 'the rate series, all above 10 ms, is not mixed in');
  t.equal(readHistogram(await r.metrics(), NAME, { operation: 'claim' }), null, 'a label with no series reads as null');
});

t.test('a window is what was observed between its two readings, not since the process started', async (t) => {
  const { registry: r, histogram } = registry();
  // before the window: slow checks (a start-up, another scenario)
  for (let i = 0; i < 100; i++) histogram.labels('replay').observe(0.008);
  const before = readHistogram(await r.metrics(), NAME, { operation: 'replay' })!;
  for (let i = 0; i < 1000; i++) histogram.labels('replay').observe(0.0002);
  const after = readHistogram(await r.metrics(), NAME, { operation: 'replay' })!;
  const window = histogramDelta(before, after);
  t.equal(window.count, 1000);
  t.equal(shareAtMost(window, 0.001), 1, 'every check of the window took ≤ 1 ms');
  t.ok(histogramQuantile(window, 0.99)! <= 0.00025, 'its p99 lies in the 100–250 µs bucket');
  t.ok(histogramQuantile(after, 0.99)! > 0.005, 'while the whole life of the process says otherwise');
});

t.test('the p99 is interpolated within its bucket and passes 1 ms exactly when 99% took ≤ 1 ms', async (t) => {
  const { registry: r, histogram } = registry();
  for (let i = 0; i < 980; i++) histogram.labels('replay').observe(0.0004);
  for (let i = 0; i < 20; i++) histogram.labels('replay').observe(0.002);
  const h = readHistogram(await r.metrics(), NAME, { operation: 'replay' })!;
  t.equal(shareAtMost(h, 0.001), 0.98, '98% took ≤ 1 ms');
  // rank 990: 10 of the 20 in the 1–2.5 ms bucket, half way through it
  t.ok(Math.abs(histogramQuantile(h, 0.99)! - 0.00175) < 1e-9, `p99 ${histogramQuantile(h, 0.99)}`);
  t.equal(shareAtMost(h, 0.0015), null, 'a bound that is not a bucket bound has no exact share');
  t.equal(histogramQuantile(histogramDelta(h, h), 0.99), null, 'no observation, no quantile');
});
