/**
 * Runs one load: the Node load client (loadClient.ts) in its own process, or wrk for plain
 * HTTP when installed and asked for. onStart / onEnd fire at the edges of the measured window
 * (after the warm-up), so the caller can read the proxy's CPU counters there.
 */
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { startChild, stopChild, type Child } from './children.ts';
import type { LoadResult, LoadSpec } from './loadClient.ts';
import { runWrk } from './wrk.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const CLIENT = join(HERE, 'loadClient.ts');

export type Generator = 'node' | 'wrk' | 'ab';

export async function runLoad(
  spec: LoadSpec,
  generator: { kind: Generator; wrk: string | null; workDir: string },
  onStart: () => void,
  onEnd: () => void,
): Promise<LoadResult> {
  if (
    generator.kind === 'wrk' &&
    generator.wrk !== null &&
    spec.tls === null &&
    spec.rate === null &&
    spec.mode === 'keepalive' &&
    spec.sign === null
  ) {
    return runWrk(generator.wrk, spec, generator.workDir, onStart, onEnd);
  }
  return runNodeClient(spec, onStart, onEnd);
}

export async function runNodeClient(spec: LoadSpec, onStart: () => void, onEnd: () => void): Promise<LoadResult> {
  const child = startChild('load client', process.execPath, [CLIENT, JSON.stringify(spec)]);
  let result: LoadResult | null = null;
  const lines = createInterface({ input: child.proc.stdout! });
  lines.on('line', (line) => {
    if (line === 'START') onStart();
    else if (line === 'END') onEnd();
    else if (line.startsWith('{')) result = JSON.parse(line) as LoadResult;
  });
  const timer = setTimeout(() => void stopChild(child, 500), spec.warmupMs + spec.durationMs + 40_000);
  const code = await child.exited;
  clearTimeout(timer);
  if (result === null)
    throw new Error(`load client exited with ${code} without a result: ${child.output().slice(-2000)}`);
  return result;
}

/** Opens `spec.connections` keep-alive connections (one request each) and holds them until released. */
export async function holdIdleConnections(
  spec: LoadSpec,
  timeoutMs: number,
): Promise<{ child: Child; errors: LoadResult['errors'] }> {
  const child = startChild('idle client', process.execPath, [CLIENT, JSON.stringify({ ...spec, mode: 'idle' })], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines = createInterface({ input: child.proc.stdout! });
  const ready = new Promise<LoadResult['errors']>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`idle connections not open within ${timeoutMs} ms: ${child.output().slice(-1000)}`)),
      timeoutMs,
    );
    lines.on('line', (line) => {
      if (!line.startsWith('READY ')) return;
      clearTimeout(timer);
      resolve((JSON.parse(line.slice(6)) as { errors: LoadResult['errors'] }).errors);
    });
    void child.exited.then((code) =>
      reject(new Error(`idle client exited with ${code}: ${child.output().slice(-1000)}`)),
    );
  });
  try {
    return { child, errors: await ready };
  } catch (err) {
    await stopChild(child, 500);
    throw err;
  }
}
