/**
 * The request path's counter and histogram (src/telemetry/boundSeries.ts) against prom-client's
 * own, as the oracle: the same counts and observations give the same /metrics text, the same
 * JSON, and the same aggregate over two threads' registries. Values sit on bucket bounds, between
 * them, below the first and above the last.
 */
import t from 'tap';
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { BoundCounter, BoundHistogram } from '../src/telemetry/boundSeries.ts';

const BUCKETS = [0, 64, 256, 1024, 4096];
const OBSERVED = [0, 1, 64, 65, 255.5, 256, 1024, 4095, 4096, 4097, 1e9, 0.25];

/** the same counts into prom-client's metrics on `theirs` and ours on `mine` */
function countBoth(theirs: Registry, mine: Registry, scale: number): void {
  const counter = { name: 'x_requests_total', help: 'requests', labelNames: ['listener', 'class'] as const };
  const histogram = {
    name: 'x_payload_bytes',
    help: 'sizes',
    labelNames: ['listener', 'direction'] as const,
    buckets: BUCKETS,
  };
  const pc = new Counter({ ...counter, registers: [theirs] });
  const ph = new Histogram({ ...histogram, registers: [theirs] });
  const bc = new BoundCounter({ ...counter, registers: [mine] });
  const bh = new BoundHistogram({ ...histogram, registers: [mine] });
  pc.labels('in', '2xx').inc(0);
  bc.labels('in', '2xx').inc(0);
  pc.labels('in', '5xx').inc(0);
  bc.labels('in', '5xx').inc(0);
  ph.zero({ listener: 'in', direction: 'response' });
  bh.zero({ listener: 'in', direction: 'response' });
  const theirs2xx = pc.labels('in', '2xx');
  const mine2xx = bc.labels('in', '2xx');
  const theirsRequest = ph.labels('in', 'request');
  const mineRequest = bh.labels('in', 'request');
  for (let i = 0; i < 3 * scale; i++) {
    theirs2xx.inc();
    mine2xx.inc();
  }
  pc.labels('out', '4xx').inc(2.5);
  bc.labels('out', '4xx').inc(2.5);
  for (const v of OBSERVED) {
    theirsRequest.observe(v * scale);
    mineRequest.observe(v * scale);
  }
  ph.labels('out', 'request').observe(17);
  bh.labels('out', 'request').observe(17);
}

t.test('the same counts give the same /metrics text and JSON as prom-client', async (t) => {
  const theirs = new Registry();
  const mine = new Registry();
  countBoth(theirs, mine, 1);
  const text = await mine.metrics();
  t.equal(text, await theirs.metrics());
  t.match(text, /^x_payload_bytes_bucket\{le="64",listener="in",direction="request"\} 4$/m, 'cumulative, le first');
  t.match(text, /^x_payload_bytes_bucket\{le="\+Inf",listener="in",direction="request"\} 12$/m);
  t.match(text, /^x_payload_bytes_count\{listener="in",direction="response"\} 0$/m, 'a zeroed series is served');
  t.match(text, /^x_requests_total\{listener="in",class="2xx"\} 3$/m);
  // prom-client's values also carry `exemplar: null` (exemplars are off): no line of the text comes from it
  const withoutExemplars = JSON.parse(
    JSON.stringify(await theirs.getMetricsAsJSON(), (k, v: unknown) => (k === 'exemplar' ? undefined : v)),
  );
  t.strictSame(await mine.getMetricsAsJSON(), withoutExemplars);
});

t.test("two threads' registries aggregate as prom-client's do", async (t) => {
  const [theirs1, theirs2, mine1, mine2] = [new Registry(), new Registry(), new Registry(), new Registry()];
  countBoth(theirs1, mine1, 1);
  countBoth(theirs2, mine2, 3);
  const theirs = AggregatorRegistry.aggregate([await theirs1.getMetricsAsJSON(), await theirs2.getMetricsAsJSON()]);
  const mine = AggregatorRegistry.aggregate([await mine1.getMetricsAsJSON(), await mine2.getMetricsAsJSON()]);
  const text = await mine.metrics();
  t.equal(text, await theirs.metrics());
  t.match(text, /^x_requests_total\{listener="in",class="2xx"\} 12$/m, '3 + 9');
});

t.test('a bound series is the same object for the same labels, and reset keeps it counting', async (t) => {
  const registry = new Registry();
  const c = new BoundCounter({ name: 'y_total', help: 'y', labelNames: ['a'], registers: [registry] });
  const h = new BoundHistogram({
    name: 'y_seconds',
    help: 'y',
    labelNames: ['a'],
    buckets: [1],
    registers: [registry],
  });
  const bound = c.labels('p');
  t.equal(c.labels('p'), bound);
  bound.inc(4);
  h.labels('p').observe(2);
  registry.resetMetrics();
  bound.inc();
  const text = await registry.metrics();
  t.match(text, /^y_total\{a="p"\} 1$/m);
  t.match(text, /^y_seconds_count\{a="p"\} 0$/m);
});

t.test('what prom-client refuses is refused', (t) => {
  const registry = new Registry();
  const c = new BoundCounter({ name: 'z_total', help: 'z', labelNames: ['a', 'b'], registers: [registry] });
  const h = new BoundHistogram({
    name: 'z_seconds',
    help: 'z',
    labelNames: [],
    buckets: [1, 2],
    registers: [registry],
  });
  t.throws(() => c.labels('only-one'), /z_total has labels a, b: 1 values given/);
  t.throws(() => c.labels('p', 'q').inc(-1), TypeError, 'a counter never goes down');
  t.throws(() => c.labels('p', 'q').inc(Number.NaN), TypeError);
  t.throws(() => c.labels('p', 'q').inc(Infinity), TypeError);
  t.throws(() => h.labels().observe(Number.NaN), TypeError);
  t.throws(() => h.labels().observe(-Infinity), TypeError);
  t.throws(
    () => new BoundHistogram({ name: 'w', help: 'w', labelNames: [], buckets: [1, 1], registers: [registry] }),
    /distinct finite/,
  );
  t.equal(registry.getSingleMetric('w'), undefined, 'a histogram refused for its buckets is not registered');
  t.throws(
    () => new BoundCounter({ name: 'z_total', help: 'again', labelNames: [], registers: [registry] }),
    /already been registered/,
    'one name per registry, as for any metric',
  );
  t.end();
});
