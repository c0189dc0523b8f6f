/**
 * The injector's metrics, on the registry the command hands in (never prom-client's global
 * one), served at `GET /metrics` next to `/mutate` as istiod serves its injection counts:
 *
 *   tollgate_webhook_admissions_total{outcome, reason}   every POST /mutate, by what was answered
 *   tollgate_webhook_admission_duration_seconds           from the request's arrival to its answer
 *
 * `outcome` is a closed set: injected (allowed with the sidecar patch), skipped (allowed
 * untouched; reason not_opted_in, already_injected or not_a_pod_create), denied (an opted-in
 * pod that cannot be injected: allowed false), error (no AdmissionReview answered; reason the
 * `error` of the 4xx/5xx body). Every series exists at 0 from the start.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Outcome } from './review.ts';

/** a POST /mutate answered without an AdmissionReview: the `error` field of the body sent */
export type AdmissionFailure = 'unsupported_media_type' | 'too_large' | 'bad_request' | 'bad_review' | 'internal';

/** what one POST /mutate came to: the review's outcome, or why there was none */
export type AdmissionResult = Outcome | AdmissionFailure;

export const ADMISSION_OUTCOMES = ['injected', 'skipped', 'denied', 'error'] as const;
type AdmissionOutcome = (typeof ADMISSION_OUTCOMES)[number];

/** the series each result is counted in; a Record, so a new review outcome cannot go uncounted */
export const ADMISSION_SERIES: Readonly<Record<AdmissionResult, readonly [outcome: AdmissionOutcome, reason: string]>> =
  {
    injected: ['injected', ''],
    not_opted_in: ['skipped', 'not_opted_in'],
    already_injected: ['skipped', 'already_injected'],
    not_a_pod_create: ['skipped', 'not_a_pod_create'],
    denied: ['denied', ''],
    unsupported_media_type: ['error', 'unsupported_media_type'],
    too_large: ['error', 'too_large'],
    bad_request: ['error', 'bad_request'],
    bad_review: ['error', 'bad_review'],
    internal: ['error', 'internal'],
  };

/** the API server waits 10 s by default and 30 s at most; a review is usually well under 10 ms */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface WebhookMetrics {
  readonly registry: Registry;
  /** one POST /mutate answered, `seconds` after it arrived */
  admission(result: AdmissionResult, seconds: number): void;
}

export function createWebhookMetrics(registry: Registry): WebhookMetrics {
  const registers = [registry];
  const admissions = new Counter({
    name: 'tollgate_webhook_admissions_total',
    help: 'POST /mutate requests by outcome (injected, skipped, denied, error) and reason (why skipped, or the error answered)',
    labelNames: ['outcome', 'reason'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'tollgate_webhook_admission_duration_seconds',
    help: 'Time from the arrival of a POST /mutate request to its answer',
    buckets: DURATION_BUCKETS,
    registers,
  });
  // children resolved once; inc(0) makes every series exist from the start
  const children = Object.fromEntries(
    Object.entries(ADMISSION_SERIES).map(([result, [outcome, reason]]) => {
      const child = admissions.labels(outcome, reason);
      child.inc(0);
      return [result, child];
    }),
  ) as Record<AdmissionResult, ReturnType<typeof admissions.labels>>;
  return {
    registry,
    admission(result, seconds) {
      children[result].inc();
      duration.observe(seconds);
    },
  };
}
