import type { Logger } from 'pino';
import type { AnomalyConfig } from '../config/types.ts';
import type { Clock } from '../core/clock.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { SizeWatch, type SizeDecision } from './sizeWatch.ts';
import { VolumeWatch } from './volumeWatch.ts';
import type { RecentAnomalies } from './recentAnomalies.ts';

/**
 * Payload-size and volume anomalies of one inbound listener, as a request-path stage:
 * `judge` before the body goes upstream (block mode refuses there), `accepted` after the
 * upstream accepted the request (learning, volume). Observe mode: every flag is one metric
 * increment, one log line, one audit event and an entry in the recent list. Block mode:
 * the request path refuses with ERR_PAYLOAD_ANOMALY and does the logging and auditing of
 * that refusal itself (still one of each), with `flagged(…, 'blocked')` for the metric and
 * the recent list.
 */
export interface AnomalyStageDeps {
  readonly listener: string;
  readonly config: AnomalyConfig;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  readonly clock: Clock;
  readonly recent: RecentAnomalies;
  /** identities with their own size model and volume watch; further peers get the route's model */
  readonly maxTrackedPeers: number;
}

export interface Flagged {
  readonly kind: string;
  /** the size (or, for volume, the count) that was unusual */
  readonly value: number;
  /** what is typical: the learned size, or the volume baseline */
  readonly expected: number;
}

/** where an observed flag is logged: the connection's logger, asked for only when a line is written (it is made on first use) */
export interface LogsFor {
  readonly log: Logger;
}

const VOLUME_WINDOW_MS = 10_000;
const VOLUME_MIN_WINDOWS = 12;

export class AnomalyStage {
  readonly deps: AnomalyStageDeps;
  readonly block: boolean;
  readonly sizes: SizeWatch;
  readonly volume: VolumeWatch;

  constructor(deps: AnomalyStageDeps) {
    this.deps = deps;
    const c = deps.config;
    this.block = c.mode === 'block';
    this.sizes = new SizeWatch({
      minSamples: c.minSamples,
      threshold: c.threshold,
      maxTrackedPeers: deps.maxTrackedPeers,
    });
    this.volume = new VolumeWatch({
      windowMs: VOLUME_WINDOW_MS,
      minWindows: VOLUME_MIN_WINDOWS,
      threshold: c.threshold,
      maxTrackedPeers: deps.maxTrackedPeers,
    });
  }

  /** Judge a body size; null when normal (or still learning). */
  judge(route: string, peer: string, bytes: number): Flagged | null {
    const d: SizeDecision = this.sizes.judge(route, peer, bytes);
    if (d.verdict === 'normal' || d.verdict === 'learning') return null;
    return { kind: d.verdict, value: bytes, expected: this.sizes.typicalSize(route, peer) };
  }

  /** the largest normal size, for counting a streamed body against it */
  upperBound(route: string, peer: string): number {
    return this.sizes.upperBound(route, peer);
  }

  /** Count and remember one flag; in observe mode also log and audit it (block mode's refusal does that). */
  flagged(route: string, peer: string, f: Flagged, action: 'observed' | 'blocked', conn: LogsFor): void {
    const { listener, metrics, audit, clock, recent } = this.deps;
    metrics.payloadAnomalies.labels(listener, route, f.kind).inc();
    recent.add({
      at: new Date(clock.now()).toISOString(),
      listener,
      route,
      peer,
      kind: f.kind,
      value: f.value,
      expected: f.expected,
      action,
    });
    if (action === 'observed') {
      // the connection's logger already names the peer (a repeated key would make the line invalid for strict JSON readers)
      conn.log.warn({ route, kind: f.kind, value: f.value, expected: f.expected }, 'payload anomaly observed');
      audit.record('anomaly', { listener, route, peer, kind: f.kind, value: f.value, expected: f.expected, action });
    }
  }

  /** The upstream accepted the request: offer its size to the models (each learns only what it judges normal) and count its volume. */
  accepted(route: string, peer: string, bytes: number | null, conn: LogsFor): void {
    if (bytes !== null) this.sizes.learn(route, peer, bytes);
    for (const v of this.volume.record(peer, bytes ?? 0, this.deps.clock.now())) {
      this.flagged(route, peer, { kind: v.kind, value: v.count, expected: v.expected }, 'observed', conn);
    }
  }
}
