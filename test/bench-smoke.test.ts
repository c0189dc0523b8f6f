/**
 * The macro benchmark in smoke mode, as CI runs it: `node bench/run.ts --quick --smoke --out
 * TMP` spawned as a real process (Node fallbacks forced: node:http upstream, the Node load
 * client, no HAProxy), a few hundred ms per scenario. It exits 0 and writes latest.json (the
 * expected shape, every measured cell without failure), latest.md (tables) and latest.svg.
 * No figure is judged: speed is never asserted in tests.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LIMIT_MS = 90_000;

interface SmokeRun {
  code: number | null;
  output: string;
  /** stderr alone: the progress lines */
  stderr: string;
}

function runBench(out: string, extra: readonly string[] = []): Promise<SmokeRun> {
  return new Promise((resolve, reject) => {
    // without tap's loader and coverage hooks: the benchmark's processes run as they would in CI
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    delete env.NODE_V8_COVERAGE;
    const child = spawn(
      process.execPath,
      [join(ROOT, 'bench', 'run.ts'), '--quick', '--smoke', '--out', out, ...extra],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
      stderr += c.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGINT'); // the benchmark stops its own children on SIGINT
      reject(new Error(`bench smoke run did not finish within ${LIMIT_MS} ms:\n${output}`));
    }, LIMIT_MS);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output, stderr });
    });
  });
}

t.test('the benchmark in smoke mode writes its JSON, markdown and SVG results', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'tollgate-bench-smoke-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const run = await runBench(out);
  t.equal(run.code, 0, 'exits 0', { output: run.output.slice(-6000) });
  // progress on stderr, one line as each measurement starts, counted up to the planned total
  const progress = [...run.stderr.matchAll(/^\[(\d+)\/(\d+)\] rep 1\/1 \S+ \S+ … \d+:\d\d elapsed, ~\d+:\d\d left$/gm)];
  t.ok(progress.length > 1, 'a progress line per measurement', { stderr: run.stderr.slice(-3000) });
  t.same(
    progress.map((m) => Number(m[1])),
    progress.map((_, i) => i + 1),
    'counted 1, 2, 3, … in order',
  );
  t.ok(
    progress.every((m) => Number(m[2]) === progress.length),
    'the planned total is the number of measurements made',
  );

  const results = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as {
    mode: string;
    machine: { node: string; openssl: string };
    tools: { upstream: string; haproxy: string | null; wrk: string | null };
    scenarios: Array<{ name: string }>;
    targets: Array<{ name: string }>;
    cells: Array<{
      target: string;
      scenario: string;
      rep: number;
      failure: string | null;
      completed: number;
      proxyCpuSeconds: number | null;
    }>;
    summary: {
      scenarios: Record<string, unknown[]>;
      checks: Array<{
        name: string;
        measured: number | null;
        pass: boolean | null;
        baseline: { target: string; measured: number | null; pass: boolean | null; detail: string };
      }>;
    };
  };
  t.equal(results.mode, 'smoke');
  t.equal(results.tools.upstream, 'node', 'smoke mode uses the node:http upstream');
  t.equal(results.tools.haproxy, null, 'smoke mode runs without HAProxy');
  t.equal(results.tools.wrk, null, 'smoke mode runs without wrk');
  t.equal(results.machine.node, process.version);
  t.same(
    results.scenarios.map((s) => s.name),
    [
      'get-keepalive',
      'post-16k',
      'post-1m',
      'handshake-full',
      'handshake-resumed',
      'latency-1000rps',
      'idle-rss',
      'churn-rss',
    ],
  );
  t.ok(
    results.targets.some((x) => x.name === 'direct'),
    'the direct path is always measured',
  );
  t.ok(
    results.targets.some((x) => x.name.startsWith('tollgate')),
    'tollgate is measured',
  );
  t.ok(results.cells.length > 0, 'cells were measured');
  t.equal(progress.length, results.cells.length, 'one progress line per measured cell');
  t.same(
    results.cells.filter((c) => c.failure !== null).map((c) => `${c.target}/${c.scenario}: ${c.failure}`),
    [],
    'no measurement failed',
  );
  for (const c of results.cells.filter((x) => x.scenario !== 'idle-rss'))
    t.ok(c.completed > 0, `${c.target}/${c.scenario} completed requests`);
  t.ok(
    results.cells
      .filter((c) => c.target.startsWith('tollgate') && c.scenario === 'get-keepalive')
      .every((c) => c.proxyCpuSeconds !== null),
    'proxy CPU read from /proc',
  );
  t.ok(results.summary.checks.length > 0, 'the issue targets are listed');
  t.ok(
    results.summary.checks
      .filter((c) => c.name.includes('HAProxy') || c.name.startsWith('L'))
      .every((c) => c.pass === null || typeof c.pass === 'boolean'),
    'checks are pass, fail or n/a',
  );
  // the trivial Node baseline of the layer is held to the same target, from the same run
  const l4Rss = results.summary.checks.find(
    (c) => c.name === 'RSS with idle keep-alive mTLS connections (tollgate-l4)',
  );
  t.equal(l4Rss?.baseline.target, 'baseline-l4');
  t.ok(typeof l4Rss?.baseline.measured === 'number' && l4Rss.baseline.measured > 0, 'the baseline RSS is measured');
  // the rows of issue 15 are ratios to raw-l7, baseline-l7 or tollgate-l7: their reference is a path without tollgate's
  // request path; the end-to-end rows' is the same chain without checks (tollgate-e2e-pass)
  const references = ['baseline-l4', 'baseline-l7', 'baseline-h2', 'raw-l7', 'raw-l7-checks', 'tollgate-e2e-pass'];
  // a row without one says why ("none: …"): the worker row, the gateway and shared-state rows
  const unreferenced = results.summary.checks.filter(
    (c) =>
      !references.includes(c.baseline.target) && !(c.baseline.target === '-' && c.baseline.detail.startsWith('none:')),
  );
  t.same(
    unreferenced.map((c) => `${c.name}: ${c.baseline.target}`),
    [],
    'every target names its baseline or instrument',
  );
  const issue15 = [
    'L7 without checks vs the raw-l7 instrument, GET keep-alive',
    'L7 without checks vs the raw-l7 instrument, POST 16 KiB',
    'L7 with all checks vs baseline-l7, GET keep-alive',
    'L7 with all checks vs baseline-l7, POST 16 KiB',
    'POST 1 MiB, L7 with all checks vs without',
    'end to end (outbound signs → inbound verifies), GET keep-alive',
    'end to end (outbound signs → inbound verifies), POST 16 KiB',
    'full mTLS handshakes (L7) vs baseline-l7',
    'p99 added latency at 1,000 req/s (L7 with all checks)',
    'L7 with all checks, GET keep-alive',
  ];
  for (const name of issue15)
    t.ok(
      results.summary.checks.some((c) => c.name === name),
      `the targets table holds "${name}"`,
    );
  // issue 17: memory at start, with idle connections, per worker thread, after a churn of full handshakes
  const memory = results.summary.checks.filter((c) =>
    /^RSS (at start|with \d+ idle|of each extra worker|after \d+ churned)/.test(c.name),
  );
  t.equal(memory.length, 4, `the four memory rows: ${memory.map((c) => c.name).join('; ')}`);
  const start = memory.find((c) => c.name.startsWith('RSS at start'));
  t.ok(typeof start?.measured === 'number' && start.measured > 0, 'RSS at start is measured (MiB)');
  t.equal(start?.baseline.target, 'baseline-l4', 'beside the trivial TLS server at start');
  t.ok(
    typeof start?.baseline.measured === 'number' && start.baseline.measured > 0,
    "the trivial TLS server's RSS at start is measured",
  );
  const churn = memory.find((c) => c.name.startsWith('RSS after'));
  t.ok(
    typeof churn?.measured === 'number' && churn.measured > 0,
    'the churn is measured: settled RSS over RSS at start',
  );
  t.ok(
    results.cells.some((c) => c.scenario === 'churn-rss' && c.target === 'tollgate-l7-checks' && c.completed > 0),
    'tollgate churned handshakes',
  );
  // smoke mode measures tollgate-l7-checks but not baseline-l7: a ratio to a target not measured is n/a, never a guess
  const vsBaseline = results.summary.checks.find((c) => c.name === 'L7 with all checks vs baseline-l7, GET keep-alive');
  t.equal(vsBaseline?.pass, null, 'a ratio to a target that was not measured is n/a');

  const md = await readFile(join(out, 'latest.md'), 'utf8');
  t.match(md, /^# tollgate macro benchmark/m);
  t.match(md, /^\| target \|/m, 'a markdown table');
  t.match(md, /^\|---/m);
  t.match(
    md,
    /\| trivial Node baseline \| baseline result \|/,
    'the targets table shows the baseline against each target',
  );
  const svg = await readFile(join(out, 'latest.svg'), 'utf8');
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.match(svg, /<\/svg>\s*$/);
  t.match(svg, /<rect /);
});

t.test(
  'the exploratory hand-written HTTP path forwards every request, parsing by hand or by llhttp, and with checks verifies every signed one',
  async (t) => {
    const out = await mkdtemp(join(tmpdir(), 'tollgate-bench-raw-'));
    t.teardown(() => rm(out, { recursive: true, force: true }));
    const run = await runBench(out, [
      '--only',
      'direct,raw-l7,raw-l7-llhttp,raw-l7-checks',
      '--scenarios',
      'get-keepalive,post-16k',
    ]);
    t.equal(run.code, 0, run.output);
    const results = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as {
      cells: Array<{
        target: string;
        scenario: string;
        failure: string | null;
        completed: number;
        errors: Record<string, number>;
      }>;
    };
    for (const target of ['raw-l7', 'raw-l7-llhttp', 'raw-l7-checks']) {
      for (const scenario of ['get-keepalive', 'post-16k']) {
        const c = results.cells.find((x) => x.target === target && x.scenario === scenario);
        t.ok(
          c !== undefined && c.failure === null && c.completed > 0,
          `${target}/${scenario} measured (${c?.failure ?? ''})`,
        );
        // a refused signature (401), a failed digest or a broken framing shows up as an error here
        t.same(c?.errors, { status: 0, reset: 0, connect: 0 }, `${target}/${scenario}: every response a 2xx`);
      }
    }
  },
);
