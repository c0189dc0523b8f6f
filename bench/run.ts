/**
 * The macro benchmark: direct vs the trivial Node proxies vs tollgate vs HAProxy, on loopback.
 *
 *   npm run bench                  full (2 reps, ~35 min)
 *   npm run bench:quick            quick (2 reps, short windows, ~3 min)
 *   node bench/run.ts [--quick] [--smoke] [--only t1,t2] [--scenarios s1,s2] [--out DIR]
 *
 * --smoke: a few hundred ms per scenario, 1 rep, a few targets, Node fallbacks forced (no
 * nginx, wrk or HAProxy), as CI would run it. Writes latest.json, latest.md and latest.svg to
 * --out (default bench/results). See bench/README.md for what each target and scenario is.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installCleanup, killAllNow, removeOnExit } from './macro/children.ts';
import { prepareFixtures } from './macro/fixtures.ts';
import { setUpStore } from './macro/redis.ts';
import { emptyCell, measure, type Cell, type LoadContext } from './macro/measure.ts';
import { clockTicksPerSecond } from './macro/procStats.ts';
import { plannedMs, Progress, type Step } from './macro/progress.ts';
import { renderMarkdown, summarise, printSummary, type Results } from './macro/report.ts';
import { applies, DURATIONS, SCENARIOS, type Durations, type Scenario } from './macro/scenarios.ts';
import { renderSvg } from './macro/svg.ts';
import {
  ALL_TARGETS,
  IMAGE_ALLOCATOR,
  startTarget,
  TARGET_INFO,
  tollgateRefuses,
  workersConfig,
  type TargetName,
} from './macro/targets.ts';
import { detectTools } from './macro/tools.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SMOKE_TARGETS: readonly TargetName[] = ['direct', 'baseline-l4', 'tollgate-l7', 'tollgate-l7-checks'];

interface Args {
  mode: 'smoke' | 'quick' | 'full';
  only: TargetName[] | null;
  scenarios: string[] | null;
  out: string;
}

function parseArgs(argv: string[]): Args {
  const value = (flag: string): string | null => {
    const i = argv.indexOf(flag);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : null;
  };
  const list = (flag: string): string[] | null =>
    value(flag)
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean) ?? null;
  const only = list('--only');
  const known: readonly string[] = ALL_TARGETS;
  for (const t of only ?? [])
    if (!known.includes(t)) throw new Error(`--only: unknown target ${t} (known: ${known.join(', ')})`);
  const scenarios = list('--scenarios');
  for (const s of scenarios ?? [])
    if (!SCENARIOS.some((x) => x.name === s))
      throw new Error(`--scenarios: unknown scenario ${s} (known: ${SCENARIOS.map((x) => x.name).join(', ')})`);
  const mode = argv.includes('--smoke') ? 'smoke' : argv.includes('--quick') ? 'quick' : 'full';
  return { mode, only: only as TargetName[] | null, scenarios, out: value('--out') ?? join(ROOT, 'bench', 'results') };
}

function machine(): Results['machine'] {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    openssl: process.versions.openssl ?? 'unknown',
    clockTicksPerSecond: clockTicksPerSecond(),
  };
}

function gitRevision(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return null;
  }
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** progress goes to stderr: stdout keeps the results, and a redirected stdout still shows where a long run is */
function progressOut(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** alternate the order of targets between reps, so drift on a shared machine hits all */
function orderOf(targets: readonly TargetName[], rep: number): readonly TargetName[] {
  return rep % 2 === 1 ? targets : [...targets].reverse();
}

const stepKey = (rep: number, target: string, scenario: string): string => `${rep} ${target} ${scenario}`;

/** every measurement the loop in main will make, in its order */
function planSteps(
  targets: readonly TargetName[],
  throughput: readonly Scenario[],
  fresh: readonly Scenario[],
  runsFresh: (s: Scenario, name: TargetName, rep: number) => boolean,
  durations: Durations,
): Step[] {
  const steps: Step[] = [];
  const step = (rep: number, name: string, s: Scenario, first: boolean): Step => ({
    key: stepKey(rep, name, s.name),
    label: `rep ${rep}/${durations.reps} ${name} ${s.name}`,
    plannedMs: plannedMs(s, durations, first),
  });
  for (let rep = 1; rep <= durations.reps; rep++) {
    for (const name of orderOf(targets, rep)) {
      throughput
        .filter((s) => applies(s, TARGET_INFO[name]))
        .forEach((s, i) => steps.push(step(rep, name, s, i === 0)));
      for (const s of fresh) if (runsFresh(s, name, rep)) steps.push(step(rep, name, s, true));
    }
  }
  return steps;
}

async function main(): Promise<number> {
  installCleanup();
  const args = parseArgs(process.argv.slice(2));
  const durations = DURATIONS[args.mode];
  const tools = detectTools(args.mode === 'smoke');
  const notes: string[] = [];
  const startedAt = new Date();
  const t0 = Date.now();
  const workDir = await mkdtemp(join(os.tmpdir(), 'tollgate-bench-'));
  removeOnExit(workDir);
  try {
    log(
      `tollgate macro benchmark (${args.mode}), node ${process.version}, OpenSSL ${process.versions.openssl}, ${os.availableParallelism()} cores`,
    );
    if (args.mode === 'smoke')
      notes.push(
        'smoke mode: Node fallbacks forced (no nginx, wrk or HAProxy), a few hundred ms per scenario, 1 rep; figures are not meaningful',
      );

    const fixtures = await prepareFixtures(workDir, tools);
    const { client, upstream, allocator } = fixtures;
    log(
      `upstream: ${upstream.kind === 'nginx' ? `nginx ${tools.versions.nginx ?? ''} (1 worker)` : 'node:http fallback (nginx not installed)'} on 127.0.0.1:${upstream.port}`,
    );
    if (upstream.kind === 'node') notes.push('upstream: node:http fallback (nginx not installed or smoke mode)');
    const generatorNote = tools.wrk
      ? `wrk ${tools.versions.wrk ?? ''} for plain-HTTP closed loops, the Node load client for mTLS and open loops`
      : 'the Node load client for everything (wrk not installed or smoke mode)';
    log(`load generators: ${generatorNote}`);
    if (!tools.wrk) notes.push('load generator: Node load client only (wrk not installed or smoke mode)');

    const allocatorNote =
      allocator === null
        ? `allocator: glibc malloc (the image preloads ${IMAGE_ALLOCATOR.library}, not installed here: apt-get install libjemalloc2)`
        : `allocator: ${allocator} preloaded with MALLOC_CONF=${IMAGE_ALLOCATOR.env.MALLOC_CONF} for every Node target, as in the image`;
    log(allocatorNote);
    notes.push(allocatorNote);
    let targets: TargetName[] = [...(args.only ?? (args.mode === 'smoke' ? SMOKE_TARGETS : ALL_TARGETS))];
    if (!tools.haproxy && targets.some((t) => t.startsWith('haproxy'))) {
      targets = targets.filter((t) => !t.startsWith('haproxy'));
      const note = 'HAProxy not installed (or smoke mode): the haproxy targets skipped; ratios to HAProxy are n/a';
      notes.push(note);
      log(`note: ${note}`);
    }
    if (targets.includes('tollgate-l7-checks-w2')) {
      const refusal = await tollgateRefuses(await workersConfig(fixtures.ctx));
      if (refusal !== null) {
        targets = targets.filter((t) => t !== 'tollgate-l7-checks-w2');
        const note = `tollgate-l7-checks-w2 skipped: tollgate check refuses "workers": 2 (${refusal.split('\n').slice(0, 3).join(' | ')})`;
        notes.push(note);
        log(`note: ${note}`);
      }
    }
    if (!tools.h2load) {
      // the HTTP/2 targets that do not verify are driven by h2load; tollgate-h2-checks by the Node h2 client
      const skipped = targets.filter((t) => TARGET_INFO[t].http2 && !TARGET_INFO[t].sign);
      if (skipped.length > 0) {
        targets = targets.filter((t) => !skipped.includes(t));
        const note = `h2load not installed (apt-get install nghttp2-client) or smoke mode: ${skipped.join(', ')} skipped; the HTTP/2 rows are n/a`;
        notes.push(note);
        log(`note: ${note}`);
      }
    }
    const store = await setUpStore(targets, fixtures.ctx, workDir);
    targets = store.targets;
    const ctx = store.ctx;
    if (store.note !== null) {
      notes.push(store.note);
      log(`note: ${store.note}`);
    }
    let scenarios: Scenario[] = SCENARIOS.filter((s) =>
      args.scenarios === null ? !s.optIn : args.scenarios.includes(s.name),
    );
    if (!tools.ab && scenarios.some((s) => s.generator === 'ab')) {
      scenarios = scenarios.filter((s) => s.generator !== 'ab');
      const note = 'ab not installed (or smoke mode): get-keepalive-ab skipped';
      notes.push(note);
      log(`note: ${note}`);
    }
    // the HTTP/2 scenarios run on the HTTP/2 targets only, the others on the rest: a scenario no target runs is left out
    const unrun = scenarios.filter((s) => !targets.some((t) => applies(s, TARGET_INFO[t])));
    if (unrun.length > 0) {
      scenarios = scenarios.filter((s) => !unrun.includes(s));
      log(`note: no target of this run runs ${unrun.map((s) => s.name).join(', ')}`);
    }
    const load: LoadContext = {
      ...client,
      durations,
      generator: tools.wrk ? 'wrk' : 'node',
      wrk: tools.wrk,
      ab: tools.ab,
      h2load: tools.h2load,
      workDir,
    };
    log(`targets: ${targets.join(', ')}`);
    log(
      `scenarios: ${scenarios.map((s) => s.name).join(', ')}; ${durations.reps} rep(s), ${durations.warmupMs} ms warm-up (+${durations.targetWarmupMs} ms after a target starts) + ${durations.durationMs} ms per measurement`,
    );

    const cells: Cell[] = [];
    // the memory scenarios (idle-rss, churn-rss) each measure a process started for them alone
    const isFresh = (s: Scenario): boolean => s.mode === 'idle' || s.mode === 'churn';
    const throughput = scenarios.filter((s) => !isFresh(s));
    const fresh = scenarios.filter(isFresh);
    const runsFresh = (s: Scenario, name: TargetName, rep: number): boolean => {
      const [reps, only] =
        s.mode === 'idle' ? [durations.idleReps, durations.idleTargets] : [durations.churnReps, durations.churnTargets];
      return rep <= reps && applies(s, TARGET_INFO[name]) && (only === null || only.includes(name));
    };
    const progress = new Progress(planSteps(targets, throughput, fresh, runsFresh, durations), Date.now, progressOut);
    for (let rep = 1; rep <= durations.reps; rep++) {
      for (const name of orderOf(targets, rep)) {
        const info = TARGET_INFO[name];
        const own = throughput.filter((s) => applies(s, info));
        if (own.length > 0) {
          // one process per (target, rep) for the throughput scenarios; RSS is sampled per window
          let target;
          try {
            target = await startTarget(name, ctx);
          } catch (err) {
            const why = `did not start: ${(err as Error).message.slice(0, 2000)}`;
            log(`  rep ${rep} ${name}: ${why}`);
            for (const s of own) cells.push(emptyCell(name, s.name, rep, why));
            for (const s of own) progress.skip(stepKey(rep, name, s.name));
            target = null;
          }
          if (target !== null) {
            try {
              for (const scenario of own) {
                progress.start(stepKey(rep, name, scenario.name));
                const cell = await measure(scenario, info, target, rep, load, scenario === own[0]).catch((err: Error) =>
                  emptyCell(name, scenario.name, rep, err.message.slice(0, 2000)),
                );
                for (const c of target.children) {
                  if (c.proc.exitCode !== null || c.proc.signalCode !== null) {
                    cell.failure = `${c.name} exited (${c.proc.exitCode ?? c.proc.signalCode}) during ${scenario.name}: ${c.output().slice(-1500)}`;
                  }
                }
                cells.push(cell);
                progress.finish(stepKey(rep, name, scenario.name));
                log(`  rep ${rep} ${name.padEnd(22)} ${scenario.name.padEnd(18)} ${oneLine(cell)}`);
                if (cell.failure !== null && cell.failure.includes('exited')) break;
              }
              // the scenarios not reached after the target exited leave the plan (a no-op for those measured)
              for (const s of own) progress.skip(stepKey(rep, name, s.name));
            } finally {
              await target.stop();
            }
          }
        }
        for (const s of fresh.filter((x) => runsFresh(x, name, rep))) {
          // a fresh process: its RSS at start, with idle connections or after a churn, not after the load scenarios
          progress.start(stepKey(rep, name, s.name));
          try {
            const target = await startTarget(name, ctx);
            try {
              const cell = await measure(s, info, target, rep, load).catch((err: Error) =>
                emptyCell(name, s.name, rep, err.message.slice(0, 2000)),
              );
              cells.push(cell);
              log(`  rep ${rep} ${name.padEnd(22)} ${s.name.padEnd(18)} ${oneLine(cell)}`);
            } finally {
              await target.stop();
            }
          } catch (err) {
            cells.push(emptyCell(name, s.name, rep, `did not start: ${(err as Error).message.slice(0, 2000)}`));
          }
          progress.finish(stepKey(rep, name, s.name));
        }
      }
    }
    await upstream.stop();
    await store.stop();

    const results: Results = {
      version: 1,
      mode: args.mode,
      startedAt: startedAt.toISOString(),
      wallSeconds: (Date.now() - t0) / 1000,
      git: gitRevision(),
      machine: machine(),
      tools: {
        upstream: upstream.kind,
        upstreamVersion: upstream.kind === 'nginx' ? (tools.versions.nginx ?? null) : process.version,
        wrk: tools.versions.wrk ?? null,
        ab: tools.versions.ab ?? null,
        haproxy: tools.versions.haproxy ?? null,
        h2load: tools.versions.h2load ?? null,
        loadClient: 'bench/macro/loadClient.ts',
      },
      durations,
      targets: targets.map((t) => TARGET_INFO[t]),
      scenarios: scenarios.map((s) => ({
        name: s.name,
        description: s.description,
        unit: s.unit,
        bodyBytes: s.bodyBytes,
        connections: s.mode === 'idle' ? durations.idleConnections : s.connections,
        rate: s.rate,
      })),
      notes,
      cells,
      summary: summarise(cells, targets, scenarios, durations.idleConnections, durations.churnHandshakes),
    };
    await mkdir(args.out, { recursive: true });
    await writeFile(join(args.out, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
    await writeFile(join(args.out, 'latest.md'), renderMarkdown(results));
    await writeFile(join(args.out, 'latest.svg'), renderSvg(results));
    printSummary(results, log);
    log(`wrote ${join(args.out, 'latest.json')}, latest.md, latest.svg (${results.wallSeconds.toFixed(0)} s)`);
    const failed = cells.filter((c) => c.failure !== null);
    if (failed.length > 0) log(`${failed.length} measurement(s) failed; see "failure" in latest.json`);
    return 0;
  } finally {
    killAllNow();
    await rm(workDir, { recursive: true, force: true });
  }
}

function oneLine(c: Cell): string {
  if (c.failure !== null) return `FAILED: ${c.failure.split('\n')[0]!.slice(0, 200)}`;
  const errs = c.errors.status + c.errors.reset + c.errors.connect;
  const mib = (b: number | null): string => (b === null ? '-' : `${(b / 1048576).toFixed(1)} MiB`);
  if (c.scenario === 'idle-rss')
    return `RSS ${mib(c.rssBeforeBytes ?? null)} → ${mib(c.rssPeakBytes)} with ${c.idleConnections} idle connections, errors ${errs}`;
  if (c.scenario === 'churn-rss') {
    return `RSS ${mib(c.rssBeforeBytes ?? null)} → ${mib(c.rssAfterLoadBytes ?? null)} after ${c.completed.toLocaleString('en')} full handshakes → ${mib(c.rssPeakBytes)} settled, errors ${errs}`;
  }
  const per =
    c.perProxyCpuSecond === null
      ? ''
      : `, ${Math.round(c.perProxyCpuSecond).toLocaleString('en')}/proxy-CPU-s (CPU ${((c.proxyCpuUtilisation ?? 0) * 100).toFixed(0)}%)`;
  const lat =
    c.latencyMs && Number.isFinite(c.latencyMs.p50)
      ? `, p50 ${c.latencyMs.p50.toFixed(2)} p99 ${c.latencyMs.p99.toFixed(2)} ms`
      : '';
  const resumed = c.scenario === 'handshake-resumed' ? `, resumed ${c.resumed}/${c.connectionsOpened}` : '';
  return `${Math.round(c.requestsPerSecond).toLocaleString('en')} req/s (${c.mibPerSecond.toFixed(1)} MiB/s)${per}${lat}, errors ${errs}${resumed}, RSS ${mib(c.rssPeakBytes)}`;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench: ${err.stack ?? String(err)}\n`);
    killAllNow();
    process.exit(1);
  },
);
