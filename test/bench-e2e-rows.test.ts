/**
 * Issue 15's end-to-end rows, computed by the benchmark's report from synthetic cells (no load
 * is generated): tollgate-e2e is held to 2× the figure from before the core, and the reference
 * column holds tollgate-e2e-pass, the same chain with no checks, against that same figure. When
 * the chain without checks misses the figure too, the reference column says so.
 */
import t from 'tap';
import { emptyCell, type Cell } from '../bench/macro/measure.ts';
import { E2E_BEFORE_CORE, summarise } from '../bench/macro/report.ts';
import { SCENARIOS } from '../bench/macro/scenarios.ts';

function cell(target: string, scenario: string, rep: number, perCpu: number): Cell {
  return {
    ...emptyCell(target, scenario, rep, null),
    completed: 10_000,
    elapsedMs: 4_000,
    requestsPerSecond: perCpu * 0.9,
    latencyMs: { p50: 1, p90: 1.5, p99: 2, p999: 3, max: 4, mean: 1.1 },
    proxyCpuSeconds: 4_000 / perCpu,
    perProxyCpuSecond: perCpu,
    proxyCpuUtilisation: 0.9,
  };
}

const scenarios = SCENARIOS.filter((s) => s.name === 'get-keepalive' || s.name === 'post-16k');
const getBefore = E2E_BEFORE_CORE['get-keepalive'];
const postBefore = E2E_BEFORE_CORE['post-16k'];

function e2eRows(cells: Cell[]) {
  const sum = summarise(cells, ['tollgate-e2e', 'tollgate-e2e-pass'], scenarios, 1_000);
  const rows = sum.checks.filter((c) => c.target === 'tollgate-e2e');
  return {
    get: rows.find((c) => c.scenario === 'get-keepalive')!,
    post: rows.find((c) => c.scenario === 'post-16k')!,
  };
}

t.test('the chain without checks is the reference of each end-to-end row, against the same figure', async (t) => {
  const { get, post } = e2eRows([
    // GET: the checked chain 1.5× the figure, the chain without checks 2.1×
    cell('tollgate-e2e', 'get-keepalive', 1, getBefore * 1.4),
    cell('tollgate-e2e', 'get-keepalive', 2, getBefore * 1.6),
    cell('tollgate-e2e-pass', 'get-keepalive', 1, getBefore * 2.0),
    cell('tollgate-e2e-pass', 'get-keepalive', 2, getBefore * 2.2),
    // POST: the chain without checks misses the figure too (1.9×)
    cell('tollgate-e2e', 'post-16k', 1, postBefore * 1.5),
    cell('tollgate-e2e', 'post-16k', 2, postBefore * 1.5),
    cell('tollgate-e2e-pass', 'post-16k', 1, postBefore * 1.9),
    cell('tollgate-e2e-pass', 'post-16k', 2, postBefore * 1.9),
  ]);
  t.ok(get && post, 'both end-to-end rows are in the table');
  t.equal(get.measured!.toFixed(2), '1.50');
  t.equal(get.pass, false);
  t.equal(get.baseline.target, 'tollgate-e2e-pass');
  t.equal(get.baseline.measured!.toFixed(2), '2.10');
  t.equal(get.baseline.pass, true, 'with its checks free the chain reaches 2×: the row is not ruled out');
  t.match(get.baseline.detail, /^2\.10× \(per rep: 2\.00, 2\.20; .* per proxy-CPU-second\), the chain with no checks$/);
  t.equal(post.baseline.measured!.toFixed(2), '1.90');
  t.equal(post.baseline.pass, false, 'the chain without checks misses 2×: no checked chain can make it');
});

t.test('without tollgate-e2e-pass in the run the reference is n/a, never a guess', async (t) => {
  const sum = summarise(
    [
      cell('tollgate-e2e', 'get-keepalive', 1, getBefore * 2.5),
      cell('tollgate-e2e', 'get-keepalive', 2, getBefore * 2.5),
    ],
    ['tollgate-e2e'],
    scenarios,
    1_000,
  );
  const get = sum.checks.find((c) => c.target === 'tollgate-e2e' && c.scenario === 'get-keepalive')!;
  t.equal(get.pass, true);
  t.equal(get.baseline.measured, null);
  t.equal(get.baseline.pass, null);
  t.equal(get.baseline.detail, 'n/a: tollgate-e2e-pass not measured');
});
