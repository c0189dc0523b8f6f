/**
 * Per-peer rate limits: one token bucket per peer identity (rate tokens per second, at most
 * `burst` banked). Buckets are kept for at most `maxPeers` identities; when that many are
 * held, buckets that have refilled completely are dropped first — a full bucket is exactly
 * what a new one would be, so nothing is forgotten by dropping it. If every bucket is in use,
 * new identities share one overflow bucket: the limit still holds, fail closed.
 */
export interface RateLimitOptions {
  readonly requestsPerSecond: number;
  readonly burst: number;
  readonly maxPeers: number;
}

export type RateDecision = { readonly ok: true } | { readonly ok: false; readonly retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  /** ms timestamp of the last refill */
  at: number;
}

const OK: RateDecision = Object.freeze({ ok: true });

export class PeerRateLimiter {
  readonly options: RateLimitOptions;
  private readonly buckets = new Map<string, Bucket>();
  /** shared by identities that arrive while every bucket is in use; not one of the `maxPeers` */
  private overflow: Bucket | null = null;
  /** sweeps for refilled buckets run at most once a second, so a flood of new identities cannot make every request a full scan */
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(options: RateLimitOptions) {
    this.options = options;
  }

  /** identities with a bucket of their own (at most `maxPeers`; the overflow bucket is not one) */
  get trackedPeers(): number {
    return this.buckets.size;
  }

  /** Take one token for `peer` at time `now` (ms). */
  take(peer: string, now: number): RateDecision {
    const bucket = this.bucketFor(peer, now);
    const { requestsPerSecond: rate, burst } = this.options;
    const elapsed = Math.max(0, now - bucket.at) / 1000;
    bucket.tokens = Math.min(burst, bucket.tokens + elapsed * rate);
    bucket.at = Math.max(bucket.at, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return OK;
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / rate)) };
  }

  private bucketFor(peer: string, now: number): Bucket {
    const existing = this.buckets.get(peer);
    if (existing !== undefined) return existing;
    if (this.buckets.size >= this.options.maxPeers) this.dropRefilled(now);
    if (this.buckets.size >= this.options.maxPeers) return (this.overflow ??= { tokens: this.options.burst, at: now });
    const bucket = { tokens: this.options.burst, at: now };
    this.buckets.set(peer, bucket);
    return bucket;
  }

  private dropRefilled(now: number): void {
    if (now - this.lastSweep < 1000) return;
    this.lastSweep = now;
    const { requestsPerSecond: rate, burst } = this.options;
    for (const [peer, b] of this.buckets) {
      if (b.tokens + (Math.max(0, now - b.at) / 1000) * rate >= burst) this.buckets.delete(peer);
    }
  }
}
