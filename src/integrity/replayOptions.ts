import type { Clock } from '../core/clock.ts';

/** What both replay caches (replayCache.ts in one thread, sharedReplayCache.ts across workers) are created with. */
export interface ReplayCacheOptions {
  /** how long an entry must be remembered: maxAge + skew of the signature profile, in ms */
  readonly ttlMs: number;
  /** the most live entries held; when reached, new nonces get 'full' (nothing live is ever evicted) */
  readonly maxEntries: number;
  readonly clock: Clock;
  /** number of time buckets the ttl is split into (default 16) */
  readonly buckets?: number;
}

/** more buckets only makes every lookup slower */
const MAX_BUCKETS = 1024;
const DEFAULT_BUCKETS = 16;
/** ~35 years; keeps every bucket deadline an exact integer */
const MAX_TTL_MS = 2 ** 40;

export interface CheckedReplayOptions {
  readonly ttlMs: number;
  readonly maxEntries: number;
  readonly buckets: number;
}

/**
 * The options both replay caches take, checked the same way: each a whole number from 1 to
 * its bound (`maxEntriesLimit` is the cache's own), buckets 16 unless given. Throws RangeError
 * naming the cache and the option.
 */
export function checkedReplayOptions(
  cache: string,
  options: ReplayCacheOptions,
  maxEntriesLimit: number,
): CheckedReplayOptions {
  return {
    ttlMs: positiveInteger(cache, 'ttlMs', options.ttlMs, MAX_TTL_MS),
    maxEntries: positiveInteger(cache, 'maxEntries', options.maxEntries, maxEntriesLimit),
    buckets: positiveInteger(cache, 'buckets', options.buckets ?? DEFAULT_BUCKETS, MAX_BUCKETS),
  };
}

function positiveInteger(cache: string, name: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${cache}: ${name} must be an integer from 1 to ${max}, got ${String(value)}`);
  }
  return value;
}
