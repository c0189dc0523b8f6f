import type { Registry } from 'prom-client';

/**
 * A counter and a histogram for the metrics counted on every request (requests, duration,
 * payload sizes, signature checks). Their series are made once, when the request path binds
 * them with `labels(...)`, and a count or an observation then updates the series' own numbers.
 *
 * prom-client's labelled child does more per call: it rebuilds the label hash string, validates
 * the labels, looks the series up in an object keyed by that string, and, for a histogram, makes
 * a label/value pair and looks the bucket up by its bound as a property name. That is ~1.3 µs for
 * a request's one count and three observations, against 0.03 µs here (bench/metrics-cost.ts).
 *
 * They register with prom-client's Registry like its own metrics, and `get()` returns the same
 * shape (values, metric names, label order, `aggregator`), so /metrics, the workers' aggregate
 * and `promtool check metrics` see no difference; test/bound-series.test.ts holds each against
 * prom-client's own for the same counts.
 */

type LabelSet = Readonly<Record<string, string>>;

/** what prom-client's `get()` gives the Registry: the metric and one value per line of its exposition */
export interface MetricSnapshot {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
  readonly aggregator: 'sum';
}

interface Registers {
  readonly registers: readonly Registry[];
}

/** One counter series, bound once: `inc` adds to its value. */
export class CounterSeries {
  value = 0;
  readonly labels: LabelSet;

  constructor(labels: LabelSet) {
    this.labels = labels;
  }

  inc(by = 1): void {
    // as prom-client's: a counter never goes down, and only by a finite amount
    if (!(by >= 0 && by !== Infinity)) throw new TypeError(`a counter increases by a finite amount ≥ 0, not ${by}`);
    this.value += by;
  }
}

/** One histogram series, bound once: `observe` counts a value in the first bucket whose bound it does not exceed. */
export class HistogramSeries {
  readonly labels: LabelSet;
  /** per bucket, not cumulative; a value above every bound is only in `count` (the +Inf bucket) */
  readonly inBucket: Float64Array;
  sum = 0;
  count = 0;
  private readonly bounds: Float64Array;

  constructor(labels: LabelSet, bounds: Float64Array) {
    this.labels = labels;
    this.bounds = bounds;
    this.inBucket = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`a histogram observes finite numbers, not ${value}`);
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) this.inBucket[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** The series of a metric by their label values, made on first use and kept. */
abstract class BoundMetric<T extends string, S extends CounterSeries | HistogramSeries> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly T[];
  readonly aggregator = 'sum' as const;
  protected readonly series = new Map<string, S>();

  constructor(config: { name: string; help: string; labelNames: readonly T[] } & Registers) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames;
    // the Registry asks a metric only for its name, help, type, get() and reset()
    for (const r of config.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** the series of these label values, in `labelNames` order (made on first use; bind it once, not per event) */
  labels(...values: string[]): S {
    if (values.length !== this.labelNames.length)
      throw new Error(`${this.name} has labels ${this.labelNames.join(', ')}: ${values.length} values given`);
    const key = JSON.stringify(values);
    let s = this.series.get(key);
    if (s === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i]!));
      s = this.make(Object.freeze(labels));
      this.series.set(key, s);
    }
    return s;
  }

  /** the series of these labels exists (at zero until counted), so a scrape shows it before the first event */
  zero(labels: Readonly<Record<T, string>>): void {
    this.labels(...this.labelNames.map((n) => labels[n]));
  }

  /** every series back to zero; the series stay, so the children bound to them keep counting */
  abstract reset(): void;
  protected abstract make(labels: LabelSet): S;
}

export class BoundCounter<T extends string = string> extends BoundMetric<T, CounterSeries> {
  readonly type = 'counter' as const;

  get(): Promise<MetricSnapshot> {
    const values = [...this.series.values()].map((s) => ({ value: s.value, labels: { ...s.labels } }));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  reset(): void {
    for (const s of this.series.values()) s.value = 0;
  }

  protected make(labels: LabelSet): CounterSeries {
    return new CounterSeries(labels);
  }
}

export class BoundHistogram<T extends string = string> extends BoundMetric<T, HistogramSeries> {
  readonly type = 'histogram' as const;
  private readonly bounds: Float64Array;

  constructor(
    config: { name: string; help: string; labelNames: readonly T[]; buckets: readonly number[] } & Registers,
  ) {
    // checked before super() registers the metric: a bad table leaves nothing registered
    const sorted = [...config.buckets].sort((a, b) => a - b);
    if (sorted.some((b, i) => !Number.isFinite(b) || b === sorted[i - 1]))
      throw new Error(`${config.name}: buckets must be distinct finite numbers`);
    super(config);
    this.bounds = Float64Array.from(sorted);
  }

  /** as prom-client's: per series, the cumulative buckets (`le`), then +Inf, `_sum` and `_count` */
  get(): Promise<MetricSnapshot> {
    const bucket = `${this.name}_bucket`;
    const values: MetricSnapshot['values'] = [];
    for (const s of this.series.values()) {
      let below = 0;
      this.bounds.forEach((le, i) => {
        below += s.inBucket[i]!;
        values.push({ labels: { le, ...s.labels }, value: below, metricName: bucket });
      });
      values.push(
        { labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket },
        { labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` },
        { labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` },
      );
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  reset(): void {
    for (const s of this.series.values()) {
      s.inBucket.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }

  protected make(labels: LabelSet): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }
}
