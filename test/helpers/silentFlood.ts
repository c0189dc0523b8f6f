/**
 * A flood of silent TCP connections (connect, send nothing) kept up: each connection the server
 * closes is opened again after a random 1 to 3 s, until stopped or out of budget. It runs in a
 * child process of its own, as an attacker would, so the test's clients are not slowed by it.
 *
 *   const flood = await silentFlood(t, { host, port, sources: [{ localAddress: '127.0.0.1', count: 1000 }], maxConnects: 4000, maxMs: 20_000 });
 *   await eventually(() => flood.stats().connects >= 1000, …);
 *   const end = await flood.stop();   // { connects, closedByServer, open }
 *
 * Run directly (`node silentFlood.ts JSON`), it is that child: it reports its counts to the
 * parent over IPC every 100 ms and stops when told or when the parent goes away.
 */
import { fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Teardownable } from './pki.ts';

export interface FloodOptions {
  readonly host: string;
  readonly port: number;
  readonly sources: ReadonlyArray<{ readonly localAddress: string; readonly count: number }>;
  /** connects in all, the first ones included */
  readonly maxConnects: number;
  /** no new connects after this long */
  readonly maxMs: number;
}

export interface FloodStats {
  /** sockets connected so far (ever) */
  connects: number;
  /** sockets the server closed */
  closedByServer: number;
  /** open now */
  open: number;
}

export interface Flood {
  /** the last counts the child reported */
  stats(): FloodStats;
  /** close every socket and end the child; the final counts */
  stop(): Promise<FloodStats>;
}

export async function silentFlood(t: Teardownable, opts: FloodOptions): Promise<Flood> {
  const child = fork(fileURLToPath(import.meta.url), [JSON.stringify(opts)], {
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let last: FloodStats = { connects: 0, closedByServer: 0, open: 0 };
  let final: Promise<FloodStats> | null = null;
  child.on('message', (m: FloodStats) => (last = m));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = (): Promise<FloodStats> => {
    final ??= (async () => {
      if (child.connected) child.send('stop');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      return last;
    })();
    return final;
  };
  t.teardown(stop);
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('error', reject);
  });
  return { stats: () => last, stop };
}

/* ------------------------------------------------------------------------- the child */

function runChild(opts: FloodOptions): void {
  const live = new Set<net.Socket>();
  const pending = new Set<NodeJS.Timeout>();
  const started = Date.now();
  const stats: FloodStats = { connects: 0, closedByServer: 0, open: 0 };
  let stopped = false;
  const open = (localAddress: string): void => {
    if (stopped || stats.connects >= opts.maxConnects || Date.now() - started > opts.maxMs) return;
    stats.connects++;
    const s = net.connect({ host: opts.host, port: opts.port, localAddress });
    live.add(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      live.delete(s);
      if (stopped) return;
      stats.closedByServer++;
      const timer = setTimeout(
        () => {
          pending.delete(timer);
          open(localAddress);
        },
        1_000 + Math.floor(Math.random() * 2_000),
      );
      pending.add(timer);
    });
  };
  const report = (): void => {
    stats.open = live.size;
    if (process.connected) process.send!(stats);
  };
  const stop = (): void => {
    stopped = true;
    clearInterval(ticker);
    for (const timer of pending) clearTimeout(timer);
    report();
    for (const s of live) s.destroy();
    process.disconnect?.();
  };
  for (const { localAddress, count } of opts.sources) for (let i = 0; i < count; i++) open(localAddress);
  const ticker = setInterval(report, 100);
  report();
  process.on('message', (m) => m === 'stop' && stop());
  process.on('disconnect', () => {
    if (!stopped) stop();
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.send !== undefined)
  runChild(JSON.parse(process.argv[2]!) as FloodOptions);
