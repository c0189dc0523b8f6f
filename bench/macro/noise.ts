/**
 * Reps of one row that disagree. The tables and the chart show the mean of the reps; when two
 * reps of the same (scenario, target) are far apart, something else shared the machine during
 * one of them and the mean describes neither. Such a row is marked "noisy" in latest.md, on
 * the chart and by a warning line at the end of the run, with the figure and the two reps.
 */
import type { Row } from './report.ts';

/**
 * Highest rep over lowest rep above which a row is noisy: throughput (req/s, MiB/s), per
 * proxy-CPU-second and RSS more than 15% apart; p99 more than ×2 apart (tails move more).
 */
export const NOISE_LIMITS = { throughput: 1.15, p99: 2 } as const;

export const NOISE_RULE =
  'reps more than 15% apart in throughput, per proxy-CPU-second or RSS, or more than ×2 apart in p99';

export type NoisyFigure = 'req/s' | 'MiB/s' | 'RSS MiB' | 'per proxy-CPU-s' | 'p99 ms';

export interface Disagreement {
  figure: NoisyFigure;
  low: number;
  high: number;
  /** high / low */
  ratio: number;
  limit: number;
}

const MIB = 1024 * 1024;

function spread(figure: NoisyFigure, xs: ReadonlyArray<number | null>, limit: number, scale = 1): Disagreement | null {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x) && x >= 0).map((x) => x / scale);
  if (v.length < 2) return null;
  const low = Math.min(...v);
  const high = Math.max(...v);
  if (high === 0) return null;
  const ratio = low > 0 ? high / low : Infinity;
  return ratio > limit ? { figure, low, high, ratio, limit } : null;
}

/** The figures of a row whose reps disagree beyond NOISE_LIMITS; empty for a steady row or a single rep. */
export function noiseOf(row: Row, unit: 'req' | 'MiB' | 'bytes'): Disagreement[] {
  const found =
    unit === 'bytes'
      ? [spread('RSS MiB', row.value, NOISE_LIMITS.throughput, MIB)]
      : [
          spread(unit === 'MiB' ? 'MiB/s' : 'req/s', row.value, NOISE_LIMITS.throughput),
          spread('per proxy-CPU-s', row.perProxyCpuSecond, NOISE_LIMITS.throughput),
          spread('p99 ms', row.p99, NOISE_LIMITS.p99),
        ];
  return found.filter((d): d is Disagreement => d !== null);
}

function figureValue(d: Disagreement, v: number): string {
  if (d.figure === 'p99 ms') return v.toFixed(v >= 10 ? 1 : 2);
  if (d.figure === 'RSS MiB') return v.toFixed(1);
  return v >= 100 ? Math.round(v).toLocaleString('en') : v.toFixed(1);
}

const ratioText = (r: number): string => (Number.isFinite(r) ? `×${r.toFixed(2)}` : '×∞');

/** "p99 ms 10.5 vs 40.6 (×3.87 > ×2)" */
export function describeDisagreement(d: Disagreement): string {
  return `${d.figure} ${figureValue(d, d.low)} vs ${figureValue(d, d.high)} (${ratioText(d.ratio)} > ×${d.limit})`;
}

/** The widest disagreement of a row (against its limit), short, for a chart tag: "p99 ×3.87" */
export function shortNoise(ds: readonly Disagreement[]): string {
  const worst = [...ds].sort((a, b) => b.ratio / b.limit - a.ratio / a.limit)[0];
  if (worst === undefined) return '';
  const name = worst.figure === 'per proxy-CPU-s' ? 'per CPU-s' : worst.figure.replace(/ (ms|MiB)$/, '');
  return `${name} ${ratioText(worst.ratio)}`;
}
