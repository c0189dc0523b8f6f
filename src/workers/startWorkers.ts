/**
 * What the main thread does for `workers` > 1 at start: one replay cache in shared memory (a
 * nonce is accepted once per instance, whichever thread sees it), and the worker threads on the
 * ports its own listeners bound (port 0 resolved). If they cannot start, neither does the sidecar.
 */
import type { Clock } from '../core/clock.ts';
import { StartupError } from '../core/errors.ts';
import type { Config } from '../config/types.ts';
import { createSharedReplayCache, type SharedReplayCache } from '../integrity/sharedReplayCache.ts';
import type { Listener } from '../proxy/listener.ts';
import { startWorkerPool, type WorkerPool, type WorkerPoolOptions } from './pool.ts';

/** The replay cache every thread shares, when there are threads and a listener verifies signatures; null otherwise. */
export function sharedReplayFor(config: Config, eventLoops: number, clock: Clock): SharedReplayCache | null {
  if (eventLoops < 2 || config.keys.dir === null || !config.listeners.some((l) => l.integrity.verify)) return null;
  const p = config.integrity;
  return createSharedReplayCache({
    ttlMs: (p.maxAgeSeconds + p.skewSeconds) * 1000,
    maxEntries: p.replayCacheEntries,
    clock,
  });
}

/** `eventLoops` - 1 worker threads listening where `bound` (the main thread's listeners, in config order) listen. */
export async function startWorkers(
  eventLoops: number,
  config: Config,
  bound: readonly Listener[],
  opts: Omit<WorkerPoolOptions, 'count' | 'config'>,
): Promise<WorkerPool> {
  const listeners = config.listeners.map((l, i) => ({
    ...l,
    listen: { host: l.listen.host, port: bound[i]!.address().port },
  }));
  const onBoundPorts: Config = { ...config, listeners };
  try {
    return await startWorkerPool({ ...opts, count: eventLoops - 1, config: onBoundPorts });
  } catch (err) {
    const problems = (err as { problems?: readonly string[] }).problems;
    const named = problems !== undefined && problems.length > 0 ? problems : [`workers: ${(err as Error).message}`];
    throw new StartupError('worker threads cannot start', named, false);
  }
}
