import type { Logger } from 'pino';
import type { LimitsConfig, ListenerConfig } from '../config/types.ts';
import type { Clock } from '../core/clock.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { AnomalyStage } from '../anomaly/anomalyStage.ts';
import { RecentAnomalies } from '../anomaly/recentAnomalies.ts';
import { PeerRateLimiter } from '../limits/tokenBucket.ts';

/**
 * A listener's per-request limits, built once from its config: the per-peer rate limiter
 * (none when `requestsPerSecond` is 0) and the anomaly stage (inbound HTTP only; none when
 * `anomaly.mode` is off).
 */
const MAX_RATE_LIMITED_PEERS = 10_000;

export function rateLimiterFor(limits: LimitsConfig): PeerRateLimiter | null {
  const { requestsPerSecond, burst } = limits;
  return requestsPerSecond > 0
    ? new PeerRateLimiter({ requestsPerSecond, burst, maxPeers: MAX_RATE_LIMITED_PEERS })
    : null;
}

export function anomalyStageFor(deps: {
  readonly config: ListenerConfig;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  readonly clock: Clock;
  readonly log: Logger;
  readonly recentAnomalies?: RecentAnomalies;
}): AnomalyStage | null {
  const c = deps.config;
  if (c.anomaly.mode === 'off' || c.protocol !== 'http') return null;
  return new AnomalyStage({
    listener: c.name,
    config: c.anomaly,
    metrics: deps.metrics,
    audit: deps.audit,
    clock: deps.clock,
    recent: deps.recentAnomalies ?? new RecentAnomalies(),
    maxTrackedPeers: c.anomaly.maxTrackedPeers,
  });
}
