/**
 * Volume anomalies per peer identity: requests and bytes per time window, against what the
 * peer's previous windows looked like. Each peer keeps its current window's counts and an
 * exponentially weighted mean and variance of its past windows (in square-root space, where
 * counts are closer to normal). Once `minWindows` windows have been seen, a window whose
 * running count passes mean + threshold spreads is flagged — once per window and kind — while
 * it happens, not after. Observe only: volume never refuses a request (rate limits do that).
 *
 * Bounded: at most `maxTrackedPeers` identities; further peers are not watched for volume.
 * Idle gaps count as empty windows, so a quiet peer's baseline falls rather than freezes.
 */
export type VolumeKind = 'volume_requests' | 'volume_bytes';

export interface VolumeWatchOptions {
  readonly windowMs: number;
  readonly minWindows: number;
  readonly threshold: number;
  readonly maxTrackedPeers: number;
}

export interface VolumeFlag {
  readonly kind: VolumeKind;
  readonly count: number;
  readonly expected: number;
}

class Series {
  mean = 0;
  variance = 0;
  windows = 0;
  current = 0;
  flagged = false;

  /** Close the current window, then `idle` empty ones — in O(1), however long the silence. */
  close(alpha: number, idle: number): void {
    const x = Math.sqrt(this.current);
    if (this.windows === 0) this.mean = x;
    else {
      const d = x - this.mean;
      this.mean += alpha * d;
      this.variance = (1 - alpha) * (this.variance + alpha * d * d);
    }
    if (idle > 0) {
      // k empty windows in closed form, q = 1 - alpha: mean·q^k, q^k·(variance + mean²·(1 - q^k))
      const qk = (1 - alpha) ** idle;
      this.variance = qk * (this.variance + this.mean * this.mean * (1 - qk));
      this.mean *= qk;
    }
    this.windows += 1 + idle;
    this.current = 0;
    this.flagged = false;
  }

  /** the count above which the current window is unusual */
  bound(threshold: number): number {
    // spread floor of 1 in sqrt space: a perfectly steady peer may still vary a little
    const limit = this.mean + threshold * Math.max(Math.sqrt(this.variance), 1);
    return limit * limit;
  }
}

interface PeerVolume {
  window: number;
  readonly requests: Series;
  readonly bytes: Series;
}

export class VolumeWatch {
  readonly options: VolumeWatchOptions;
  private readonly peers = new Map<string, PeerVolume>();
  private readonly alpha: number;

  constructor(options: VolumeWatchOptions) {
    this.options = options;
    this.alpha = 2 / (options.minWindows + 1);
  }

  /** Count one accepted request of `bytes` from `peer` at `now` (ms); returns what became unusual with it. */
  record(peer: string, bytes: number, now: number): readonly VolumeFlag[] {
    const window = Math.floor(now / this.options.windowMs);
    let v = this.peers.get(peer);
    if (v === undefined) {
      if (this.peers.size >= this.options.maxTrackedPeers) return NONE;
      v = { window, requests: new Series(), bytes: new Series() };
      this.peers.set(peer, v);
    }
    if (window > v.window) {
      const idle = window - v.window - 1;
      v.requests.close(this.alpha, idle);
      v.bytes.close(this.alpha, idle);
      v.window = window;
    }
    v.requests.current += 1;
    v.bytes.current += bytes;
    let flags: readonly VolumeFlag[] = NONE;
    for (const [kind, s] of [
      ['volume_requests', v.requests],
      ['volume_bytes', v.bytes],
    ] as const) {
      if (s.flagged || s.windows < this.options.minWindows) continue;
      const bound = s.bound(this.options.threshold);
      if (s.current > bound) {
        s.flagged = true;
        flags = [...flags, { kind, count: s.current, expected: Math.round(s.mean * s.mean) }];
      }
    }
    return flags;
  }
}

const NONE: readonly VolumeFlag[] = Object.freeze([]);
