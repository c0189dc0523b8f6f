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
const H2_CLIENT = join(HERE, 'h2LoadClient.ts');

/** node-h2: h2LoadClient.ts (HTTP/2 with a signature per request); h2load: h2load.ts */
export type Generator = 'node' | 'wrk' | 'ab' | 'h2load' | 'node-h2';

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
  return runClientScript('load client', CLIENT, spec, onStart, onEnd);
}

/** The HTTP/2 load client (h2LoadClient.ts): spec.streams streams per connection, every request signed when spec.sign is set. */
export async function runNodeH2Client(spec: LoadSpec, onStart: () => void, onEnd: () => void): Promise<LoadResult> {
  return runClientScript('h2 load client', H2_CLIENT, spec, onStart, onEnd);
}

/** a load client script speaking the START / END / JSON protocol on stdout, in its own process */
async function runClientScript(
  name: string,
  script: string,
  spec: LoadSpec,
  onStart: () => void,
  onEnd: () => void,
): Promise<LoadResult> {
  const child = startChild(name, process.execPath, [script, JSON.stringify(spec)]);
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
  if (result === null) throw new Error(`${name} exited with ${code} without a result: ${child.output().slice(-2000)}`);
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
