/** An `anomaly` section: a listener's (from the defaults) or a gateway route's (from its listener's). */
import { DEFAULT_ANOMALY } from './defaults.ts';
import type { AnomalyConfig } from './types.ts';
import { oneOf, positiveInteger, positiveNumber, read, section, type Ctx } from './validateReaders.ts';

export function validateAnomaly(
  ctx: Ctx,
  value: unknown,
  path: string,
  base: AnomalyConfig = DEFAULT_ANOMALY,
): AnomalyConfig {
  const o = section(ctx, value, path, ['mode', 'minSamples', 'threshold', 'maxTrackedPeers']);
  return {
    mode: read(ctx, o, path, 'mode', oneOf(['off', 'observe', 'block'] as const), base.mode),
    minSamples: read(ctx, o, path, 'minSamples', positiveInteger, base.minSamples),
    threshold: read(ctx, o, path, 'threshold', positiveNumber, base.threshold),
    maxTrackedPeers: read(ctx, o, path, 'maxTrackedPeers', positiveInteger, base.maxTrackedPeers),
  };
}
