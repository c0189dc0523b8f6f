/**
 * wrk as the load generator for plain-HTTP targets (direct, tollgate-e2e): closed loop, one
 * thread, C connections, a Lua script for POST bodies. Its report is parsed into a LoadResult
 * (wrk reports p50/p75/p90/p99; no p99.9).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startChild, stopChild } from './children.ts';
import type { LoadResult, LoadSpec } from './loadClient.ts';

function toMs(value: string, unit: string): number {
  const v = Number(value);
  if (unit === 'us') return v / 1000;
  if (unit === 'ms') return v;
  if (unit === 's') return v * 1000;
  if (unit === 'm') return v * 60_000;
  return NaN;
}

export function parseWrk(out: string, spec: LoadSpec, elapsedMs: number): LoadResult {
  const reqs = /(\d+) requests in ([\d.]+)(\w+),/.exec(out);
  if (!reqs) throw new Error(`could not read wrk's report:\n${out}`);
  const completed = Number(reqs[1]);
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const latMean = /Latency\s+([\d.]+)(us|ms|s|m)\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const wrkElapsed = toMs(reqs[2]!, reqs[3]!);
  return {
    completed,
    errors: {
      status: non2xx,
      reset: sock ? Number(sock[2]) + Number(sock[3]) + Number(sock[4]) : 0,
      connect: sock ? Number(sock[1]) : 0,
    },
    statuses: non2xx > 0 ? { 'non-2xx': non2xx } : {},
    elapsedMs: Number.isFinite(wrkElapsed) ? wrkElapsed : elapsedMs,
    requestBytes: completed * spec.bodyBytes,
    latencyMs: {
      p50: pct('50'),
      p90: pct('90'),
      p99: pct('99'),
      p999: NaN,
      max: latMean ? toMs(latMean[3]!, latMean[4]!) : NaN,
      mean: latMean ? toMs(latMean[1]!, latMean[2]!) : NaN,
    },
    connectionsOpened: spec.connections,
    resumed: 0,
    queued: 0,
  };
}

async function runWrkOnce(
  wrk: string,
  spec: LoadSpec,
  script: string | null,
  durationMs: number,
): Promise<{ out: string; elapsedMs: number }> {
  const seconds = Math.max(1, Math.round(durationMs / 1000));
  const args = [
    '-t1',
    `-c${spec.connections}`,
    `-d${seconds}s`,
    '--latency',
    '--timeout',
    '10s',
    ...(script ? ['-s', script] : []),
    `http://${spec.host}:${spec.port}${spec.path}`,
  ];
  const started = Date.now();
  const child = startChild('wrk', wrk, args);
  const timer = setTimeout(() => void stopChild(child, 500), durationMs + 15_000);
  const code = await child.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`wrk exited with ${code}: ${child.output()}`);
  return { out: child.output(), elapsedMs: Date.now() - started };
}

/** wrk takes whole seconds: durations are rounded to at least 1 s. */
export async function runWrk(
  wrk: string,
  spec: LoadSpec,
  workDir: string,
  onStart: () => void,
  onEnd: () => void,
): Promise<LoadResult> {
  let script: string | null = null;
  if (spec.method === 'POST') {
    script = join(workDir, `wrk-post-${spec.bodyBytes}.lua`);
    await writeFile(
      script,
      `wrk.method = "POST"\nwrk.body = string.rep("x", ${spec.bodyBytes})\nwrk.headers["Content-Type"] = "application/octet-stream"\n`,
    );
  }
  if (spec.warmupMs > 0) await runWrkOnce(wrk, spec, script, spec.warmupMs);
  onStart();
  const { out, elapsedMs } = await runWrkOnce(wrk, spec, script, spec.durationMs);
  onEnd();
  return parseWrk(out, spec, elapsedMs);
}
