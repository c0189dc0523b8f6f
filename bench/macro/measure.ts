/**
 * One measurement: a scenario's load against a running target, with the proxy's CPU seconds
 * read from /proc at the edges of the measured window and its RSS sampled during it.
 */
import { stopChild } from './children.ts';
import { runAb } from './ab.ts';
import { runH2load } from './h2load.ts';
import { holdIdleConnections, runLoad, runNodeClient, runNodeH2Client, type Generator } from './loadgen.ts';
import type { LoadResult, LoadSpec } from './loadClient.ts';
import { cpuSeconds, memoryBytes, RssSampler } from './procStats.ts';
import { histogramDelta, readHistogram, scrapeMetrics, type Histogram } from './promHistogram.ts';
import { REQUEST_PATHS, type Durations, type Scenario } from './scenarios.ts';
import type { RunningTarget, TargetInfo } from './targets.ts';
import { HOST } from './net.ts';

const MIB = 1024 * 1024;

export interface Cell {
  target: string;
  scenario: string;
  rep: number;
  generator: Generator | null;
  /** the measurement failed: why */
  failure: string | null;
  completed: number;
  errors: LoadResult['errors'];
  statuses: Record<string, number>;
  elapsedMs: number;
  requestsPerSecond: number;
  mibPerSecond: number;
  latencyMs: LoadResult['latencyMs'];
  proxyCpuSeconds: number | null;
  /** requests (or MiB for post-1m) per proxy CPU second */
  perProxyCpuSecond: number | null;
  /** proxy CPU share of one core during the window */
  proxyCpuUtilisation: number | null;
  /** VmRSS of the proxy processes, sampled every 100 ms during the window (peak) */
  rssPeakBytes: number | null;
  /** VmHWM: lifetime peak of the proxy processes so far */
  hwmBytes: number | null;
  connectionsOpened: number;
  resumed: number;
  queued: number;
  /** idle-rss, churn-rss: the proxy's VmRSS at start (a fresh process, settled, no connection yet) */
  rssBeforeBytes?: number | null;
  idleConnections?: number;
  /** churn-rss: VmRSS as the last handshake finished (rssPeakBytes holds it after settling) */
  rssAfterLoadBytes?: number | null;
  /** a target with a shared state store: the store's CPU seconds in the window (not in proxyCpuSeconds) */
  storeCpuSeconds?: number | null;
  /**
   * a target with a shared state store, fixed-rate scenarios: the round trips of the replay checks
   * made in the window (tollgate_shared_state_duration_seconds{operation="replay"}, read before and after)
   */
  replayRoundTrips?: Histogram | null;
}

export interface LoadContext {
  readonly files: { ca: string; cert: string; key: string };
  readonly keyFile: string;
  readonly keyId: string;
  readonly durations: Durations;
  readonly generator: Generator;
  readonly wrk: string | null;
  readonly ab: string | null;
  /** h2load, for the HTTP/2 scenarios of the targets that do not verify signatures */
  readonly h2load: string | null;
  readonly workDir: string;
}

export function emptyCell(target: string, scenario: string, rep: number, failure: string | null): Cell {
  return {
    target,
    scenario,
    rep,
    generator: null,
    failure,
    completed: 0,
    errors: { status: 0, reset: 0, connect: 0 },
    statuses: {},
    elapsedMs: 0,
    requestsPerSecond: 0,
    mibPerSecond: 0,
    latencyMs: null,
    proxyCpuSeconds: null,
    perProxyCpuSecond: null,
    proxyCpuUtilisation: null,
    rssPeakBytes: null,
    hwmBytes: null,
    connectionsOpened: 0,
    resumed: 0,
    queued: 0,
  };
}

function specFor(scenario: Scenario, info: TargetInfo, target: RunningTarget, ctx: LoadContext): LoadSpec {
  const latency = scenario.rate !== null;
  return {
    host: HOST,
    port: target.port,
    tls: info.client === 'mtls' ? { ...ctx.files, servername: 'localhost' } : null,
    // a churn is full handshakes, a new connection per request
    mode: scenario.mode === 'churn' ? 'new' : scenario.mode,
    method: scenario.method,
    path: REQUEST_PATHS[scenario.method],
    bodyBytes: scenario.bodyBytes,
    sign: info.sign ? { keyFile: ctx.keyFile, keyId: ctx.keyId, tag: 'tollgate' } : null,
    connections: scenario.mode === 'idle' ? ctx.durations.idleConnections : scenario.connections,
    warmupMs: ctx.durations.warmupMs,
    durationMs: latency ? ctx.durations.latencyMs : ctx.durations.durationMs,
    maxRequests: 50_000_000,
    rate: scenario.rate,
    ...(scenario.http2 ? { streams: scenario.http2.streams } : {}),
  };
}

/**
 * Who drives a throughput scenario: ab when asked; for HTTP/2, h2load, or the Node h2 client
 * when the target verifies (h2load sends the same header block every time and cannot sign);
 * wrk for plain HTTP when installed; else the Node client.
 */
function generatorOf(scenario: Scenario, info: TargetInfo, spec: LoadSpec, ctx: LoadContext): Generator {
  if (scenario.generator === 'ab') return 'ab';
  if (scenario.http2) return info.sign ? 'node-h2' : 'h2load';
  return ctx.generator === 'wrk' && spec.tls === null && spec.rate === null && ctx.wrk !== null ? 'wrk' : 'node';
}

/** firstAfterStart: the target was just started, so this window gets the longer warm-up */
export async function measure(
  scenario: Scenario,
  info: TargetInfo,
  target: RunningTarget,
  rep: number,
  ctx: LoadContext,
  firstAfterStart = false,
): Promise<Cell> {
  const spec = specFor(scenario, info, target, ctx);
  if (firstAfterStart) spec.warmupMs += ctx.durations.targetWarmupMs;
  if (scenario.mode === 'idle') return measureIdle(scenario, target, rep, spec, ctx.durations);
  if (scenario.mode === 'churn') return measureChurn(scenario, target, rep, spec, ctx.durations);
  const pids = target.pids;
  let cpuBefore: number | null = null;
  let cpuAfter: number | null = null;
  let sampler: RssSampler | null = null;
  let rssPeak: number | null = null;
  const generator = generatorOf(scenario, info, spec, ctx);
  const storePids = target.storePids ?? [];
  const store: { cpu: Array<number | null>; replay: Array<Promise<Histogram | null>> } = { cpu: [], replay: [] };
  // read only at a fixed rate, where the figure is latency: a scrape costs the proxy CPU of its own
  const metricsUrl = scenario.rate !== null ? (target.metricsUrl ?? null) : null;
  const atEdge = (): void => {
    if (storePids.length > 0) store.cpu.push(cpuSeconds(storePids));
    if (metricsUrl !== null) store.replay.push(replayRoundTrips(metricsUrl));
  };
  const onStart = (): void => {
    cpuBefore = pids.length > 0 ? cpuSeconds(pids) : null;
    if (pids.length > 0) sampler = new RssSampler(pids);
    atEdge();
  };
  const onEnd = (): void => {
    cpuAfter = pids.length > 0 ? cpuSeconds(pids) : null;
    rssPeak = (sampler as RssSampler | null)?.stop() ?? null;
    atEdge();
  };
  let result: LoadResult;
  if (generator === 'ab') {
    if (ctx.ab === null) throw new Error('ab is not installed');
    result = await runAb(ctx.ab, spec, ctx.workDir, onStart, onEnd);
  } else if (generator === 'h2load') {
    if (ctx.h2load === null) throw new Error('h2load is not installed');
    result = await runH2load(ctx.h2load, spec, ctx.workDir, onStart, onEnd);
  } else if (generator === 'node-h2') {
    result = await runNodeH2Client(spec, onStart, onEnd);
  } else {
    result = await runLoad(spec, { kind: generator, wrk: ctx.wrk, workDir: ctx.workDir }, onStart, onEnd);
  }
  const seconds = result.elapsedMs / 1000;
  const cpu = cpuBefore !== null && cpuAfter !== null ? cpuAfter - cpuBefore : null;
  const [storeBefore, storeAfter] = store.cpu;
  const [replayBefore, replayAfter] = await Promise.all(store.replay);
  const storeFigures =
    storePids.length === 0
      ? {}
      : {
          storeCpuSeconds: storeBefore != null && storeAfter != null ? storeAfter - storeBefore : null,
          ...(metricsUrl === null
            ? {}
            : { replayRoundTrips: replayBefore && replayAfter ? histogramDelta(replayBefore, replayAfter) : null }),
        };
  const mib = result.requestBytes / MIB;
  const amount = scenario.unit === 'MiB' ? mib : result.completed;
  return {
    ...emptyCell(target.name, scenario.name, rep, null),
    generator,
    completed: result.completed,
    errors: result.errors,
    statuses: result.statuses,
    elapsedMs: result.elapsedMs,
    requestsPerSecond: result.completed / seconds,
    mibPerSecond: mib / seconds,
    latencyMs: result.latencyMs,
    proxyCpuSeconds: cpu,
    perProxyCpuSecond: cpu !== null && cpu > 0 ? amount / cpu : null,
    proxyCpuUtilisation: cpu !== null ? cpu / seconds : null,
    rssPeakBytes: rssPeak,
    hwmBytes: pids.length > 0 ? memoryBytes(pids, 'VmHWM') : null,
    connectionsOpened: result.connectionsOpened,
    resumed: result.resumed,
    queued: result.queued,
    ...storeFigures,
  };
}

/** the replay checks' round-trip histogram on a target's /metrics, or null when it cannot be read */
async function replayRoundTrips(metricsUrl: string): Promise<Histogram | null> {
  const text = await scrapeMetrics(metricsUrl);
  return text === null ? null : readHistogram(text, 'tollgate_shared_state_duration_seconds', { operation: 'replay' });
}

const SETTLE_MS = 500;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** RSS at start: the target was just started for this measurement; it settles first (workers up, start-up garbage gone) */
async function rssAtStart(target: RunningTarget, d: Durations): Promise<number | null> {
  await sleep(d.startSettleMs);
  return memoryBytes(target.pids, 'VmRSS');
}

async function measureIdle(
  scenario: Scenario,
  target: RunningTarget,
  rep: number,
  spec: LoadSpec,
  d: Durations,
): Promise<Cell> {
  const before = await rssAtStart(target, d);
  const held = await holdIdleConnections({ ...spec, durationMs: 120_000 }, 60_000);
  try {
    await sleep(SETTLE_MS);
    const rss = memoryBytes(target.pids, 'VmRSS');
    return {
      ...emptyCell(target.name, scenario.name, rep, null),
      generator: 'node',
      completed: spec.connections,
      errors: held.errors,
      rssPeakBytes: rss,
      hwmBytes: memoryBytes(target.pids, 'VmHWM'),
      rssBeforeBytes: before,
      idleConnections: spec.connections,
      connectionsOpened: spec.connections,
    };
  } finally {
    await stopChild(held.child, 1_000);
  }
}

/** the churn's time bound: a stalled target ends the measurement, never the run */
const CHURN_LIMIT_MS = 300_000;

/**
 * Memory that does not come back: RSS at start, then `churnHandshakes` full mTLS handshakes (a
 * GET on a new connection each, `connections` at a time), then RSS once it has had
 * `churnSettleMs` to settle. What the process keeps of 20,000 connections that are all gone.
 */
async function measureChurn(
  scenario: Scenario,
  target: RunningTarget,
  rep: number,
  spec: LoadSpec,
  d: Durations,
): Promise<Cell> {
  const before = await rssAtStart(target, d);
  const churn: LoadSpec = {
    ...spec,
    mode: 'new',
    warmupMs: 0,
    durationMs: CHURN_LIMIT_MS,
    maxRequests: d.churnHandshakes,
  };
  const result = await runNodeClient(
    churn,
    () => {},
    () => {},
  );
  const afterLoad = memoryBytes(target.pids, 'VmRSS');
  await sleep(d.churnSettleMs);
  return {
    ...emptyCell(target.name, scenario.name, rep, null),
    generator: 'node',
    completed: result.completed,
    errors: result.errors,
    statuses: result.statuses,
    elapsedMs: result.elapsedMs,
    requestsPerSecond: result.completed / (result.elapsedMs / 1000),
    rssPeakBytes: memoryBytes(target.pids, 'VmRSS'),
    hwmBytes: memoryBytes(target.pids, 'VmHWM'),
    rssBeforeBytes: before,
    rssAfterLoadBytes: afterLoad,
    connectionsOpened: result.connectionsOpened,
    resumed: result.resumed,
  };
}
