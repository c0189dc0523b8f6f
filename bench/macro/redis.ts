/**
 * The shared state store of tollgate-l7-checks-redis: Debian's redis-server on a loopback port,
 * started once per run (every rep of the target uses it) and stopped at the end, nothing
 * persisted. Its CPU is read apart from the proxy's: the rows are per proxy-CPU-second, as for
 * every target, and the store's share is reported beside them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startChild, stopChild, type Child } from './children.ts';
import { freePort, HOST, waitForPort } from './net.ts';
import type { TargetContext, TargetName } from './targets.ts';
import { deadCheck } from './upstream.ts';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** The targets that need the store (tollgate's sharedState pointing at it). */
export const STORE_TARGETS: readonly TargetName[] = ['tollgate-l7-checks-redis'];

export interface BenchRedis {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  readonly pid: number;
  readonly version: string;
  readonly child: Child;
  stop(): Promise<void>;
}

export async function startRedisServer(workDir: string): Promise<BenchRedis> {
  const port = await freePort();
  const dir = join(workDir, 'redis');
  await mkdir(dir, { recursive: true });
  // as the tests start it: loopback only, no snapshot, no append-only file
  const args = ['--bind', HOST, '--port', String(port), '--dir', dir, '--save', '', '--appendonly', 'no'];
  const child = startChild('redis-server', REDIS_SERVER, [...args, '--protected-mode', 'no', '--loglevel', 'warning']);
  try {
    await waitForPort(port, 10_000, deadCheck(child));
  } catch (err) {
    await stopChild(child, 1_000);
    throw err;
  }
  const version = /v=(\S+)/.exec(spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' }).stdout ?? '')?.[1];
  return {
    url: `redis://${HOST}:${port}`,
    pid: child.pid,
    version: version ?? 'unknown',
    child,
    stop: () => stopChild(child),
  };
}

export interface StoreSetup {
  /** the targets left to measure (the store's targets dropped when it could not start) */
  readonly targets: TargetName[];
  /** the context, with the store's URL and pid when it runs */
  readonly ctx: TargetContext;
  /** for the run's notes: the store started, or why its targets were skipped; null when no target needs it */
  readonly note: string | null;
  stop(): Promise<void>;
}

/**
 * Starts redis-server once when a target needs it; without /usr/bin/redis-server (or when it
 * does not start) those targets are skipped with a note, as HAProxy's are.
 */
export async function setUpStore(
  targets: readonly TargetName[],
  ctx: TargetContext,
  workDir: string,
): Promise<StoreSetup> {
  const needs = targets.filter((t) => STORE_TARGETS.includes(t));
  const none = { targets: [...targets], ctx, note: null, stop: async () => {} };
  if (needs.length === 0) return none;
  const skip = (why: string): StoreSetup => ({
    ...none,
    targets: targets.filter((t) => !STORE_TARGETS.includes(t)),
    note: `${needs.join(', ')} skipped: ${why}; the shared-state rows are n/a`,
  });
  if (!existsSync(REDIS_SERVER)) return skip(`${REDIS_SERVER} is not installed (apt-get install redis-server)`);
  let redis: BenchRedis;
  try {
    redis = await startRedisServer(workDir);
  } catch (err) {
    return skip(`redis-server did not start (${(err as Error).message.slice(0, 300)})`);
  }
  return {
    targets: [...targets],
    ctx: { ...ctx, store: { url: redis.url, pid: redis.pid } },
    note: `shared state: redis-server ${redis.version} on ${redis.url} (one for the run, nothing persisted) for ${needs.join(', ')}; its CPU is not in the per proxy-CPU-second figures, it is given beside the rows`,
    stop: () => redis.stop(),
  };
}
