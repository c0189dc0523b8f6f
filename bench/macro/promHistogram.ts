/**
 * A Prometheus histogram read from a target's /metrics text, the difference of two readings
 * (what one measured window added), and its quantiles as Prometheus' histogram_quantile gives
 * them: linear within the bucket the rank falls in.
 */

export interface Histogram {
  /** cumulative counts by upper bound (seconds), ascending, +Inf last */
  readonly buckets: ReadonlyArray<{ readonly le: number; readonly count: number }>;
  readonly count: number;
  readonly sum: number;
}

/** the labels of a series line, `{a="x",b="y"}` */
function labelsOf(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]));
}

/**
 * The series `name` whose labels include `match` (other labels, e.g. le, aside); null when the
 * text has no bucket of it.
 */
export function readHistogram(text: string, name: string, match: Readonly<Record<string, string>>): Histogram | null {
  const buckets: Array<{ le: number; count: number }> = [];
  let count = 0;
  let sum = 0;
  const wanted = (labels: Record<string, string>): boolean => Object.entries(match).every(([k, v]) => labels[k] === v);
  for (const line of text.split('\n')) {
    const m = /^(\w+)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m === null || !m[1]!.startsWith(name)) continue;
    const labels = labelsOf(m[2] ?? '');
    if (!wanted(labels)) continue;
    const value = Number(m[3]);
    if (m[1] === `${name}_bucket` && labels.le !== undefined)
      buckets.push({ le: labels.le === '+Inf' ? Infinity : Number(labels.le), count: value });
    else if (m[1] === `${name}_count`) count = value;
    else if (m[1] === `${name}_sum`) sum = value;
  }
  if (buckets.length === 0) return null;
  buckets.sort((a, b) => a.le - b.le);
  return { buckets, count, sum };
}

/** after − before: the observations made between the two readings (same buckets) */
export function histogramDelta(before: Histogram, after: Histogram): Histogram {
  return {
    buckets: after.buckets.map((b, i) => ({ le: b.le, count: b.count - (before.buckets[i]?.count ?? 0) })),
    count: after.count - before.count,
    sum: after.sum - before.sum,
  };
}

/** the q-quantile in the histogram's unit, interpolated within its bucket; null without observations */
export function histogramQuantile(h: Histogram, q: number): number | null {
  const total = h.buckets.at(-1)?.count ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const b of h.buckets) {
    if (b.count >= rank) {
      // beyond the last finite bound nothing is known but that bound
      if (!Number.isFinite(b.le)) return lower;
      const inBucket = b.count - below;
      return inBucket <= 0 ? b.le : lower + (b.le - lower) * ((rank - below) / inBucket);
    }
    lower = b.le;
    below = b.count;
  }
  return lower;
}

/** the share of observations at or under `le`, when `le` is one of the bucket bounds; null otherwise */
export function shareAtMost(h: Histogram, le: number): number | null {
  const total = h.buckets.at(-1)?.count ?? 0;
  const b = h.buckets.find((x) => x.le === le);
  return b === undefined || total <= 0 ? null : b.count / total;
}

/** GET a /metrics page (a bound of a few seconds); null when it does not answer 200 */
export async function scrapeMetrics(url: string, timeoutMs = 5_000): Promise<string | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok ? await res.text() : null;
  } catch {
    return null;
  }
}
