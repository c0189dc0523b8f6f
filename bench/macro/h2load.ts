/**
 * h2load (Debian's nghttp2-client) as the load generator of the HTTP/2 scenarios: one thread,
 * `connections` connections with `streams` streams in flight on each, a closed loop bounded by
 * its own warm-up and duration (-D, --warm-up-time). h2load has no client certificate option,
 * so for an mTLS target it connects (--connect-to) to h2Relay.ts, which opens the mTLS
 * connections (ALPN h2) for it; the URI keeps the target's authority and `:scheme` is https, as
 * an HTTP/2 client of the target would send them. Its report is parsed into a LoadResult
 * (h2load gives min / max / mean latency, no percentiles).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startChild, stopChild, type Child } from './children.ts';
import type { RelayReport, RelaySpec } from './h2Relay.ts';
import type { LoadResult, LoadSpec } from './loadClient.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const RELAY = join(HERE, 'h2Relay.ts');

function toMs(value: string, unit: string): number {
  const v = Number(value);
  if (unit === 'us') return v / 1000;
  if (unit === 'ms') return v;
  if (unit === 's') return v * 1000;
  return NaN;
}

/** h2load's report after a timing-based run (-D): counts cover the main duration only */
export function parseH2load(out: string, spec: LoadSpec): LoadResult {
  const req =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      out,
    );
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const rate = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out);
  if (!req || !codes || !rate) throw new Error(`could not read h2load's report:\n${out.slice(-3000)}`);
  const [done, failed, errored, timeout] = [req[3], req[5], req[6], req[7]].map(Number) as [
    number,
    number,
    number,
    number,
  ];
  const [c3, c4, c5] = [codes[2], codes[3], codes[4]].map(Number) as [number, number, number];
  const perSecond = Number(rate[1]);
  // "failed" holds the 4xx / 5xx answers and the streams that got no answer (errored, timeout)
  const unanswered = Math.max(errored + timeout, failed - c4 - c5);
  const lat = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  const statuses: Record<string, number> = {};
  if (c3 > 0) statuses['3xx'] = c3;
  if (c4 > 0) statuses['4xx'] = c4;
  if (c5 > 0) statuses['5xx'] = c5;
  return {
    completed: done,
    errors: { status: c3 + c4 + c5, reset: unanswered, connect: 0 },
    statuses,
    // the main duration h2load counted over: its req/s is done / that duration
    elapsedMs: perSecond > 0 ? (done / perSecond) * 1000 : spec.durationMs,
    requestBytes: done * spec.bodyBytes,
    latencyMs: {
      p50: NaN,
      p90: NaN,
      p99: NaN,
      p999: NaN,
      max: lat ? toMs(lat[3]!, lat[4]!) : NaN,
      mean: lat ? toMs(lat[5]!, lat[6]!) : NaN,
    },
    connectionsOpened: spec.connections,
    resumed: 0,
    queued: 0,
  };
}

interface Relay {
  child: Child;
  port: number;
  /** closes its stdin; resolves with what it opened and refused */
  stop(): Promise<RelayReport | null>;
}

async function startRelay(spec: LoadSpec, limitMs: number): Promise<Relay> {
  if (spec.tls === null) throw new Error('the relay is for mTLS targets');
  const relaySpec: RelaySpec = { host: spec.host, port: spec.port, ...spec.tls, limitMs };
  const child = startChild('h2 relay', process.execPath, [RELAY, JSON.stringify(relaySpec)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines = createInterface({ input: child.proc.stdout! });
  let report: RelayReport | null = null;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`h2 relay not ready: ${child.output().slice(-1000)}`)), 10_000);
    lines.on('line', (line) => {
      if (line.startsWith('READY ')) {
        clearTimeout(timer);
        resolve(Number(line.slice(6)));
      } else if (line.startsWith('{')) report = JSON.parse(line) as RelayReport;
    });
    void child.exited.then((code) => reject(new Error(`h2 relay exited with ${code}: ${child.output().slice(-1000)}`)));
  }).catch(async (err: unknown) => {
    await stopChild(child, 500);
    throw err;
  });
  return {
    child,
    port,
    stop: async () => {
      child.proc.stdin?.end();
      const timer = setTimeout(() => void stopChild(child, 500), 5_000);
      await child.exited;
      clearTimeout(timer);
      return report;
    },
  };
}

/**
 * One h2load run against `spec` (spec.streams streams per connection); onStart / onEnd fire when
 * h2load says its main duration started and ended, so the caller reads the proxy's CPU there.
 */
export async function runH2load(
  h2load: string,
  spec: LoadSpec,
  workDir: string,
  onStart: () => void,
  onEnd: () => void,
): Promise<LoadResult> {
  const limitMs = spec.warmupMs + spec.durationMs + 40_000;
  const relay = spec.tls === null ? null : await startRelay(spec, limitMs);
  try {
    const args = [
      '-t',
      '1',
      '-c',
      String(spec.connections),
      '-m',
      String(spec.streams ?? 1),
      '-D',
      `${spec.durationMs}ms`,
      '--warm-up-time',
      `${Math.max(1, spec.warmupMs)}ms`,
      '-H',
      'user-agent: tollgate-bench',
    ];
    if (spec.bodyBytes > 0) {
      const file = join(workDir, `h2load-body-${spec.bodyBytes}`);
      await writeFile(file, Buffer.alloc(spec.bodyBytes, 'x'));
      args.push('-d', file, '-H', 'content-type: application/octet-stream');
    }
    if (relay !== null) args.push('--connect-to', `${spec.host}:${relay.port}`, '-H', ':scheme: https');
    args.push(`http://${spec.host}:${spec.port}${spec.path}`);
    const child = startChild('h2load', h2load, args);
    const lines = createInterface({ input: child.proc.stdout! });
    lines.on('line', (line) => {
      if (line.startsWith('Main benchmark duration is started')) onStart();
      else if (line.startsWith('Main benchmark duration is over')) onEnd();
    });
    const timer = setTimeout(() => void stopChild(child, 500), limitMs);
    const code = await child.exited;
    clearTimeout(timer);
    const relayReport = relay === null ? null : await relay.stop();
    if (relayReport !== null && relayReport.opened === 0)
      throw new Error(
        `no h2 connection to the target: ${relayReport.refused} refused (${relayReport.firstRefusal ?? '?'})`,
      );
    if (code !== 0) throw new Error(`h2load exited with ${code}: ${child.output().slice(-2000)}`);
    const result = parseH2load(child.output(), spec);
    return relayReport === null
      ? result
      : {
          ...result,
          connectionsOpened: relayReport.opened,
          errors: { ...result.errors, connect: relayReport.refused },
        };
  } finally {
    if (relay !== null && relay.child.proc.exitCode === null) await stopChild(relay.child, 500);
  }
}
