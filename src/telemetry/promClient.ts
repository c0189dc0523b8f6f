import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

/**
 * prom-client as the sidecar loads it: each part from its own file (the webhook, a process and a
 * layer of its own, imports prom-client whole). Its index also loads the
 * Pushgateway (node:http, node:https, node:zlib) and, through the default metrics' CPU counter,
 * @opentelemetry/api (51 modules, for trace exemplars tollgate does not use): 65 of the 292
 * modules a `tollgate run` thread loaded and 1–2 MiB of RSS, for nothing it serves. prom-client
 * has no `exports` map, so these paths are its published files; test/module-loading.test.ts
 * fails if the index or OpenTelemetry is loaded again, and the promtool test checks the metrics.
 */
const require = createRequire(import.meta.url);

export const Registry = require('prom-client/lib/registry') as typeof PromClient.Registry;
export type Registry = PromClient.Registry;
export const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
export const Histogram = require('prom-client/lib/histogram') as typeof PromClient.Histogram;
export type Histogram<T extends string = string> = PromClient.Histogram<T>;

/** the main thread's merge of its workers' registries (prom-client's cluster aggregation) */
export function aggregatorRegistry(): typeof PromClient.AggregatorRegistry {
  return require('prom-client/lib/cluster') as typeof PromClient.AggregatorRegistry;
}

type RuntimeMetric = (registry: PromClient.Registry, config: { eventLoopMonitoringPrecision: number }) => void;

/** prom-client's default metrics, each from its own module, but for the CPU counters (see processCpuCounters) */
const RUNTIME_METRICS = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
] as const;

/**
 * The standard process and Node.js metrics under their usual names (`process_cpu_seconds_total`,
 * `nodejs_heap_size_total_bytes`…), as prom-client's `collectDefaultMetrics` registers them. The
 * three CPU counters are tollgate's own, with prom-client's names and help, because prom-client's
 * module for them requires @opentelemetry/api.
 */
export function registerRuntimeMetrics(registry: PromClient.Registry): void {
  const config = { eventLoopMonitoringPrecision: 10 };
  for (const name of RUNTIME_METRICS) (require(`prom-client/lib/metrics/${name}`) as RuntimeMetric)(registry, config);
  processCpuCounters(registry);
}

/** process_cpu_user_seconds_total, process_cpu_system_seconds_total and their sum, read from process.cpuUsage() at each scrape */
function processCpuCounters(registry: PromClient.Registry): void {
  const registers = [registry];
  let last = process.cpuUsage();
  const system = new Counter({
    name: 'process_cpu_system_seconds_total',
    help: 'Total system CPU time spent in seconds.',
    registers,
  });
  const total = new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registers,
  });
  new Counter({
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    registers,
    // one collect sets all three, as prom-client's does
    collect() {
      const now = process.cpuUsage();
      const user = (now.user - last.user) / 1e6;
      const sys = (now.system - last.system) / 1e6;
      last = now;
      this.inc(user);
      system.inc(sys);
      total.inc(user + sys);
    },
  });
}
