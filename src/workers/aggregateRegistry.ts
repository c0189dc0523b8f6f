/**
 * What /metrics serves with `workers` > 1: the main thread's registry and every worker's,
 * merged by prom-client's AggregatorRegistry.aggregate. Counters and histograms are summed;
 * gauges that describe the instance rather than a thread carry their own `aggregator`
 * (telemetry/metrics.ts: expiry timestamps by min, the shared replay cache by max, build info
 * first). Process-wide default metrics (process_*, nodejs_*) are only collected by the main
 * thread: summed over threads they would be counted once per thread. A family only the main
 * thread has is served as it is, whatever its own aggregator says: prom-client gives
 * process_start_time_seconds `omit`, which would drop it from the merge.
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { aggregatorRegistry, Registry } from '../telemetry/promClient.ts';

export type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>;

export class AggregateRegistry extends Registry {
  private readonly own: Registry;
  private readonly others: () => Promise<readonly MetricsJson[]>;

  constructor(own: Registry, others: () => Promise<readonly MetricsJson[]>) {
    super();
    this.own = own;
    this.others = others;
  }

  override async getMetricsAsJSON(): Promise<MetricsJson> {
    const [own, others] = await Promise.all([this.own.getMetricsAsJSON(), this.others()]);
    if (others.length === 0) return own;
    return merged(own, others).getMetricsAsJSON();
  }

  override async metrics(): Promise<string> {
    const others = await this.others();
    if (others.length === 0) return this.own.metrics();
    return merged(await this.own.getMetricsAsJSON(), others).metrics();
  }
}

/** One registry of every thread's families, in the main thread's order; the main thread's own families kept as they are. */
function merged(own: MetricsJson, others: readonly MetricsJson[]): Registry {
  const shared = new Set(others.flatMap((metrics) => metrics.map((m) => m.name)));
  const ownOnlyAsIs = own.map((m) => (shared.has(m.name) ? m : { ...m, aggregator: 'first' as const }));
  return aggregatorRegistry().aggregate([ownOnlyAsIs, ...others]);
}
