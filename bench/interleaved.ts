/**
 * Pairs of targets compared with their windows interleaved. On a shared machine the two reps of
 * `npm run bench` drift by more than the 5% a row may ask about (each rep starts its targets one
 * after the other). Here every target is started once and kept running, and short windows
 * alternate between them (A B C D, then D C B A, …), so drift falls on all of them alike; each
 * pair is reported as the mean of its per-round ratios with the standard error of that mean.
 *
 *   node bench/interleaved.ts --targets tollgate-l7,tollgate-gw50,tollgate-l7-checks,tollgate-gw50-checks
 *        [--scenarios get-keepalive@2000,post-16k@1500] [--rounds 20] [--window-ms 2500]
 *
 * Targets pair up in the order given: the second of each pair over the first, per
 * proxy-CPU-second. `SCENARIO@RATE` runs the scenario open loop at RATE req/s, so every target
 * does the same work and the figure is what that work costs it; a bare scenario name runs as in
 * the macro run (closed loop). Needs dist/ (`npm run build`), like the macro run.
 *
 * A target with a shared state store (tollgate-l7-checks-redis) gets the run's one redis-server
 * (macro/redis.ts); each of its windows also shows redis-server's CPU and, at a fixed rate, the
 * p99 of its replay checks' round trips, read from its /metrics at the window's edges.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { installCleanup, killAllNow, removeOnExit } from './macro/children.ts';
import { prepareFixtures } from './macro/fixtures.ts';
import { measure, type Cell, type LoadContext } from './macro/measure.ts';
import { histogramQuantile, shareAtMost } from './macro/promHistogram.ts';
import { setUpStore } from './macro/redis.ts';
import { DURATIONS, SCENARIOS, type Durations, type Scenario } from './macro/scenarios.ts';
import { ALL_TARGETS, startTarget, TARGET_INFO, type RunningTarget, type TargetName } from './macro/targets.ts';
import { detectTools } from './macro/tools.ts';
import { DEFAULT_INTEGRITY } from '../src/config/defaults.ts';

interface Args {
  targets: TargetName[];
  scenarios: Scenario[];
  rounds: number;
  windowMs: number;
}

/**
 * Each target process here verifies every signed request of every round of every scenario,
 * minutes of load, where the default replay cache (DEFAULT_INTEGRITY.replayCacheEntries) is sized
 * for ~3,000 verified requests a second over maxAge + skew: past it every signed request would be
 * refused with 503 ERR_REPLAY_CACHE_FULL. Room for 40,000 a second (more than a bench target
 * reaches on 2 cores) over the run's load, or over a nonce's lifetime when that is shorter.
 */
function replayEntriesFor(args: Args, durations: Durations): number {
  const { replayCacheEntries, maxAgeSeconds, skewSeconds } = DEFAULT_INTEGRITY;
  const perScenarioMs = durations.targetWarmupMs + args.rounds * (durations.warmupMs + args.windowMs);
  const loadSeconds = Math.min(maxAgeSeconds + skewSeconds, (args.scenarios.length * perScenarioMs) / 1000);
  return Math.max(replayCacheEntries, Math.ceil(40_000 * loadSeconds));
}

/** what a window's errors were: statuses seen, resets, failed connects */
function errorKinds(cell: Cell): string {
  const statuses = Object.entries(cell.statuses).map(([status, n]) => `${n} × ${status}`);
  if (cell.errors.reset > 0) statuses.push(`${cell.errors.reset} reset`);
  if (cell.errors.connect > 0) statuses.push(`${cell.errors.connect} connect failed`);
  return statuses.join(', ');
}

function parseArgs(argv: string[]): Args {
  const value = (flag: string): string | null => {
    const i = argv.indexOf(flag);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : null;
  };
  const list = (flag: string, fallback: string): string[] =>
    (value(flag) ?? fallback)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  const targets = list('--targets', '');
  const known: readonly string[] = ALL_TARGETS;
  for (const t of targets)
    if (!known.includes(t)) throw new Error(`--targets: unknown target ${t} (known: ${known.join(', ')})`);
  if (targets.length < 2 || targets.length % 2 !== 0)
    throw new Error('--targets: pairs of targets (reference, compared)');
  const scenarios = list('--scenarios', 'get-keepalive@2000,post-16k@1500').map(scenarioOf);
  const rounds = Number(value('--rounds') ?? 20);
  const windowMs = Number(value('--window-ms') ?? 2_500);
  if (!Number.isInteger(rounds) || rounds < 2) throw new Error('--rounds: an integer ≥ 2');
  if (!Number.isFinite(windowMs) || windowMs < 100) throw new Error('--window-ms: at least 100');
  return { targets: targets as TargetName[], scenarios, rounds, windowMs };
}

/** "post-16k@1500": post-16k open loop at 1,500 req/s; "post-16k": as the macro run has it */
function scenarioOf(text: string): Scenario {
  const [name, rate] = text.split('@');
  const s = SCENARIOS.find(
    (x) => x.name === name && (x.mode === 'keepalive' || x.mode === 'new' || x.mode === 'resume'),
  );
  if (s === undefined) throw new Error(`--scenarios: unknown or not a throughput scenario: ${name}`);
  if (rate === undefined) return s;
  const r = Number(rate);
  if (!Number.isFinite(r) || r <= 0) throw new Error(`--scenarios: ${text}: the rate after "@" is requests per second`);
  return { ...s, rate: r };
}

const label = (s: Scenario): string => (s.rate === null ? s.name : `${s.name}@${s.rate}`);

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** mean ± standard error of the mean, with the values */
function describe(ratios: readonly number[]): string {
  const ok = ratios.filter(Number.isFinite);
  if (ok.length < 2) return 'n/a (fewer than two rounds measured)';
  const m = mean(ok);
  const se = Math.sqrt(ok.reduce((a, x) => a + (x - m) ** 2, 0) / (ok.length - 1) / ok.length);
  return `${m.toFixed(3)} ± ${se.toFixed(3)} (n ${ok.length}; per round ${ok.map((x) => x.toFixed(2)).join(' ')})`;
}

async function measureScenario(
  s: Scenario,
  running: readonly RunningTarget[],
  args: Args,
  load: LoadContext,
): Promise<Map<TargetName, number[]>> {
  const perCpu = new Map<TargetName, number[]>(running.map((t) => [t.name, []]));
  for (let round = 1; round <= args.rounds; round++) {
    const order = round % 2 === 1 ? running : [...running].reverse();
    for (const target of order) {
      const cell = await measure(s, TARGET_INFO[target.name], target, round, load, round === 1);
      const errors = cell.errors.status + cell.errors.reset + cell.errors.connect;
      // a window with errors or a failure measured something else: it counts as missing
      const ok = cell.failure === null && errors === 0 && cell.perProxyCpuSecond !== null;
      perCpu.get(target.name)!.push(ok ? cell.perProxyCpuSecond! : NaN);
      const what = ok
        ? `${Math.round(cell.perProxyCpuSecond!).toLocaleString('en')}/proxy-CPU-s (CPU ${((cell.proxyCpuUtilisation ?? 0) * 100).toFixed(0)}%)${storeText(cell)}`
        : `not counted: ${cell.failure ?? `${errors} errors (${errorKinds(cell)})`}`;
      process.stderr.write(`${label(s)} round ${round}/${args.rounds} ${target.name}: ${what}\n`);
    }
  }
  return perCpu;
}

/** a target with a shared state store: the store's CPU, and at a fixed rate the replay round trips' p99 */
function storeText(cell: Cell): string {
  const parts: string[] = [];
  if (cell.storeCpuSeconds != null && cell.elapsedMs > 0)
    parts.push(`redis-server CPU ${((cell.storeCpuSeconds / (cell.elapsedMs / 1000)) * 100).toFixed(0)}%`);
  const h = cell.replayRoundTrips;
  if (h) {
    const p99 = histogramQuantile(h, 0.99);
    const share = shareAtMost(h, 0.001);
    const within = share === null ? '' : `, ${(share * 100).toFixed(2)}% ≤ 1 ms`;
    parts.push(`replay round trip p99 ${p99 === null ? '-' : (p99 * 1000).toFixed(3)} ms over ${h.count}${within}`);
  }
  return parts.length === 0 ? '' : `; ${parts.join('; ')}`;
}

async function main(): Promise<void> {
  installCleanup();
  const args = parseArgs(process.argv.slice(2));
  const workDir = await mkdtemp(join(os.tmpdir(), 'tollgate-interleaved-'));
  removeOnExit(workDir);
  const running: RunningTarget[] = [];
  try {
    const tools = detectTools(false);
    const fixtures = await prepareFixtures(workDir, tools);
    const { client, upstream } = fixtures;
    const durations = { ...DURATIONS.full, durationMs: args.windowMs, latencyMs: args.windowMs, warmupMs: 500 };
    const load: LoadContext = { ...client, durations, generator: 'node', wrk: null, ab: null, h2load: null, workDir };
    const machine = `node ${process.version}, ${os.availableParallelism()} cores`;
    const plan = `${args.rounds} rounds of ${args.windowMs} ms windows (500 ms warm-up each)`;
    process.stdout.write(`interleaved: ${plan}; upstream ${upstream.kind}; ${machine}\n`);
    const store = await setUpStore(args.targets, fixtures.ctx, workDir);
    // a pair without one of its targets means nothing
    if (store.targets.length !== args.targets.length) throw new Error(store.note ?? 'a target needs the store');
    if (store.note !== null) process.stdout.write(`${store.note}\n`);
    const ctx = { ...store.ctx, replayCacheEntries: replayEntriesFor(args, durations) };
    process.stdout.write(
      `tollgate targets and raw-l7-checks: integrity.replayCacheEntries ${ctx.replayCacheEntries.toLocaleString('en')}\n`,
    );
    for (const name of args.targets) running.push(await startTarget(name, ctx));
    for (const s of args.scenarios) {
      const perCpu = await measureScenario(s, running, args, load);
      process.stdout.write(`== ${label(s)} (per proxy-CPU-second, round by round)\n`);
      for (const [name, values] of perCpu)
        process.stdout.write(
          `  ${name.padEnd(22)} ${values.map((v) => (Number.isFinite(v) ? Math.round(v) : '-')).join(' ')}\n`,
        );
      for (let i = 0; i < args.targets.length; i += 2) {
        const [reference, compared] = [args.targets[i]!, args.targets[i + 1]!];
        const a = perCpu.get(compared)!;
        const b = perCpu.get(reference)!;
        process.stdout.write(`  ${compared} / ${reference}: ${describe(a.map((v, k) => v / b[k]!))}\n`);
      }
    }
    await Promise.all(running.map((t) => t.stop()));
    await upstream.stop();
    await store.stop();
  } finally {
    killAllNow();
    await rm(workDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`interleaved: ${err.stack ?? String(err)}\n`);
    killAllNow();
    process.exit(1);
  },
);
