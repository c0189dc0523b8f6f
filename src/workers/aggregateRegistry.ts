/**
 * What /metrics serves with `workers` > 1: the main thread's registry and every worker's,
 * merged by prom-client's AggregatorRegistry.aggregate. Counters and histograms are summed;
 * gauges that describe the instance rather than a thread carry their own `aggregator`
 * (telemetry/metrics.ts: expiry timestamps by min, the shared replay cache by max, build info
 * first). Process-wide default metrics (process_*, nodejs_*) are only collected by the main
 * thread: summed over threads they would be counted once per thread.
 */
import { AggregatorRegistry, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

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
    return AggregatorRegistry.aggregate([own, ...others]).getMetricsAsJSON();
  }

  override async metrics(): Promise<string> {
    const others = await this.others();
    if (others.length === 0) return this.own.metrics();
    const own = await this.own.getMetricsAsJSON();
    return AggregatorRegistry.aggregate([own, ...others]).metrics();
  }
}
