/**
 * ApacheBench as a C load generator for the GET keep-alive mTLS ceiling cross-check
 * (`ab -k -E client.pem`): one process, C connections, closed loop. Its report is parsed into a
 * LoadResult (ab reports whole-millisecond percentiles; no p99.9). ab speaks HTTP/1.0 with
 * `Connection: Keep-Alive`, so a proxy that does not keep HTTP/1.0 connections alive shows
 * here as handshakes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startChild, stopChild } from './children.ts';
import type { LoadResult, LoadSpec } from './loadClient.ts';

export function parseAb(out: string, spec: LoadSpec): LoadResult {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const completed = num(/Complete requests:\s+(\d+)/);
  if (!Number.isFinite(completed)) throw new Error(`could not read ab's report:\n${out.slice(-2000)}`);
  const failed = num(/Failed requests:\s+(\d+)/) || 0;
  const non2xx = num(/Non-2xx responses:\s+(\d+)/) || 0;
  const seconds = num(/Time taken for tests:\s+([\d.]+) seconds/);
  const pct = (p: string): number => num(new RegExp(`^\\s+${p}%\\s+(\\d+)`, 'm'));
  return {
    completed,
    errors: { status: non2xx, reset: failed, connect: 0 },
    statuses: non2xx > 0 ? { 'non-2xx': non2xx } : {},
    elapsedMs: seconds * 1000,
    requestBytes: 0,
    latencyMs: {
      p50: pct('50'),
      p90: pct('90'),
      p99: pct('99'),
      p999: NaN,
      max: pct('100'),
      mean: num(/Time per request:\s+([\d.]+) \[ms\] \(mean\)/),
    },
    connectionsOpened: spec.connections,
    resumed: 0,
    queued: 0,
  };
}

async function runAbOnce(ab: string, spec: LoadSpec, pem: string, durationMs: number): Promise<string> {
  const seconds = Math.max(1, Math.round(durationMs / 1000));
  const args = [
    '-q',
    '-k',
    '-c',
    String(spec.connections),
    '-t',
    String(seconds),
    '-n',
    '100000000',
    '-s',
    '10',
    '-E',
    pem,
    `https://${spec.host}:${spec.port}${spec.path}`,
  ];
  const child = startChild('ab', ab, args);
  const timer = setTimeout(() => void stopChild(child, 500), durationMs + 15_000);
  await child.exited;
  clearTimeout(timer);
  return child.output();
}

/** ab takes whole seconds: durations are rounded to at least 1 s. */
export async function runAb(
  ab: string,
  spec: LoadSpec,
  workDir: string,
  onStart: () => void,
  onEnd: () => void,
): Promise<LoadResult> {
  if (spec.tls === null) throw new Error('the ab cross-check is for mTLS targets');
  const pem = join(workDir, 'ab-client.pem');
  await writeFile(pem, `${await readFile(spec.tls.cert, 'utf8')}\n${await readFile(spec.tls.key, 'utf8')}`, {
    mode: 0o600,
  });
  if (spec.warmupMs > 0) await runAbOnce(ab, spec, pem, spec.warmupMs);
  onStart();
  const out = await runAbOnce(ab, spec, pem, spec.durationMs);
  onEnd();
  return parseAb(out, spec);
}
