/**
 * What payload sizes are normal for one stream of requests (a peer on a route), learned
 * online in log space — payload sizes are heavy-tailed, their logarithms are not.
 *
 * Learning: the first `minSamples` sizes are kept (8 bytes each) and summarised robustly —
 * median and MAD, so outliers among them cannot stretch the model — then released. After
 * that the centre and spread follow the traffic with an exponentially weighted mean and
 * variance (weight 1/minSamples), fed only with sizes judged normal: what the model flags
 * never teaches it. O(1) per request, a few numbers per model.
 *
 * Judging: z = (ln(1 + bytes) - centre) / spread. Above `threshold` is too_large, below
 * -threshold too_small. The spread has a floor (10% in size) so a stream of identical sizes
 * does not flag every byte of difference.
 */
export type SizeVerdict = 'learning' | 'normal' | 'too_large' | 'too_small';

export interface SizeJudgement {
  readonly verdict: SizeVerdict;
  /** distance from the centre in spreads (0 while learning) */
  readonly z: number;
}

/** the smallest spread in log units: ln(1.1) */
export const MIN_SPREAD = Math.log(1.1);
/** MAD → standard deviation for normal data */
const MAD_TO_SD = 1.4826;

export class SizeModel {
  readonly minSamples: number;
  readonly threshold: number;
  private samples: Float64Array | null;
  private count = 0;
  private centre = 0;
  private variance = 0;

  constructor(minSamples: number, threshold: number) {
    this.minSamples = minSamples;
    this.threshold = threshold;
    this.samples = new Float64Array(minSamples);
  }

  get learned(): boolean {
    return this.samples === null;
  }

  /** observations taken so far (stops counting at minSamples once learned) */
  get observed(): number {
    return this.count;
  }

  judge(bytes: number): SizeJudgement {
    if (this.samples !== null) return LEARNING;
    const z = (logSize(bytes) - this.centre) / this.spread();
    if (z > this.threshold) return { verdict: 'too_large', z };
    if (z < -this.threshold) return { verdict: 'too_small', z };
    return { verdict: 'normal', z };
  }

  /** the typical size learned (the centre, back in bytes); NaN while learning */
  typicalSize(): number {
    return this.samples !== null ? Number.NaN : Math.round(Math.expm1(this.centre));
  }

  /** the largest size still judged normal (for counting a streamed body against it) */
  upperBound(): number {
    if (this.samples !== null) return Infinity;
    return Math.floor(Math.exp(this.centre + this.threshold * this.spread())) - 1;
  }

  /** Learn from one accepted request; callers pass only sizes judged 'learning' or 'normal'. */
  learn(bytes: number): void {
    const x = logSize(bytes);
    const samples = this.samples;
    if (samples !== null) {
      samples[this.count++] = x;
      if (this.count === this.minSamples) this.summarise(samples);
      return;
    }
    const alpha = 1 / this.minSamples;
    const d = x - this.centre;
    this.centre += alpha * d;
    this.variance = (1 - alpha) * (this.variance + alpha * d * d);
  }

  private spread(): number {
    return Math.max(Math.sqrt(this.variance), MIN_SPREAD);
  }

  private summarise(samples: Float64Array): void {
    const sorted = Float64Array.from(samples).sort();
    const median = middle(sorted);
    for (let i = 0; i < sorted.length; i++) sorted[i] = Math.abs(sorted[i]! - median);
    sorted.sort();
    const sd = MAD_TO_SD * middle(sorted);
    this.centre = median;
    this.variance = sd * sd;
    this.samples = null;
  }
}

const LEARNING: SizeJudgement = Object.freeze({ verdict: 'learning', z: 0 });

function logSize(bytes: number): number {
  return Math.log1p(bytes);
}

function middle(sorted: Float64Array): number {
  const n = sorted.length;
  const h = n >> 1;
  return n % 2 === 1 ? sorted[h]! : (sorted[h - 1]! + sorted[h]!) / 2;
}
