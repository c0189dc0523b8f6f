/**
 * Progress of a long run, one line on stderr as each measurement starts:
 *
 *   [12/84] rep 1/2 tollgate-l7 post-16k … 2:31 elapsed, ~14:02 left
 *
 * The time left is the measured pace scaled by the plan: elapsed × (planned ms left / planned ms
 * done). The planned windows alone underestimate (starting targets, signing requests, idle
 * handshakes take time too), and a count of steps alone ignores that a latency window is twice
 * a throughput one; their ratio carries over what the plan misses. Before a step has finished
 * the plan is all there is.
 */
import type { Durations, Scenario } from './scenarios.ts';

export interface Step {
  readonly key: string;
  readonly label: string;
  /** planned duration: what sets its share of the time left */
  readonly plannedMs: number;
}

/** starting a target process and stopping it: not in the windows, but paid once per process */
const TARGET_START_MS = 1_000;
const IDLE_SETTLE_MS = 500;
/** an idle-rss step opens its connections one TLS handshake at a time */
const IDLE_MS_PER_CONNECTION = 1.5;
/** a churn-rss step: full handshakes, 8 at a time, on 2 cores shared with the load client */
const CHURN_MS_PER_HANDSHAKE = 1.5;

/** The planned duration of one measurement; firstAfterStart: a target process starts for it */
export function plannedMs(scenario: Pick<Scenario, 'mode' | 'rate'>, d: Durations, firstAfterStart: boolean): number {
  const fresh = TARGET_START_MS + d.startSettleMs;
  if (scenario.mode === 'idle') return fresh + IDLE_SETTLE_MS + d.idleConnections * IDLE_MS_PER_CONNECTION;
  if (scenario.mode === 'churn') return fresh + d.churnHandshakes * CHURN_MS_PER_HANDSHAKE + d.churnSettleMs;
  const window = d.warmupMs + (scenario.rate !== null ? d.latencyMs : d.durationMs);
  return window + (firstAfterStart ? TARGET_START_MS + d.targetWarmupMs : 0);
}

/** ms left: the pace so far (elapsed per planned ms done) times the planned ms left; the plan itself before any step finished */
export function estimateLeftMs(elapsedMs: number, doneMs: number, leftMs: number): number {
  if (leftMs <= 0) return 0;
  return doneMs > 0 ? (elapsedMs / doneMs) * leftMs : leftMs;
}

/** 0:07, 12:30, 1:02:03 */
export function formatClock(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

export function progressLine(k: number, n: number, label: string, elapsedMs: number, leftMs: number): string {
  return `[${k}/${n}] ${label} … ${formatClock(elapsedMs)} elapsed, ~${formatClock(leftMs)} left`;
}

/**
 * Steps in the planned order; start() writes the line of a step. A step never started because
 * its target failed is skip()ped: it leaves the plan without counting as work done.
 */
export class Progress {
  readonly #steps: ReadonlyMap<string, Step>;
  readonly #total: number;
  readonly #startedAt: number;
  readonly #now: () => number;
  readonly #write: (line: string) => void;
  #position = 0;
  #doneMs = 0;
  #leftMs: number;
  readonly #closed = new Set<string>();

  constructor(steps: readonly Step[], now: () => number, write: (line: string) => void) {
    this.#steps = new Map(steps.map((s) => [s.key, s]));
    this.#total = steps.length;
    this.#leftMs = steps.reduce((a, s) => a + s.plannedMs, 0);
    this.#now = now;
    this.#startedAt = now();
    this.#write = write;
  }

  start(key: string): void {
    const step = this.#steps.get(key);
    if (step === undefined) return;
    this.#position++;
    const elapsed = this.#now() - this.#startedAt;
    this.#write(
      progressLine(
        this.#position,
        this.#total,
        step.label,
        elapsed,
        estimateLeftMs(elapsed, this.#doneMs, this.#leftMs),
      ),
    );
  }

  finish(key: string): void {
    const step = this.#close(key);
    if (step === undefined) return;
    this.#doneMs += step.plannedMs;
    this.#leftMs -= step.plannedMs;
  }

  skip(key: string): void {
    const step = this.#close(key);
    if (step === undefined) return;
    this.#position++;
    this.#leftMs -= step.plannedMs;
  }

  #close(key: string): Step | undefined {
    const step = this.#steps.get(key);
    if (step === undefined || this.#closed.has(key)) return undefined;
    this.#closed.add(key);
    return step;
  }
}
