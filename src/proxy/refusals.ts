import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import {
  ERRORS,
  REFUSAL_BODIES,
  UPSTREAM_FAILURES,
  type ErrorCode,
  type UpstreamFailureReason,
} from '../core/errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditEventType, AuditSink } from '../telemetry/audit.ts';
import { REASON_PHRASES } from '../http1/fields.ts';

/**
 * Every refusal of a listener goes through here, whoever decided it (a stage of the request
 * path, the parser, a body check, the upstream side, or a TCP listener's upstream dial), so
 * each one is answered, logged, counted and audited the same way, once:
 *
 * - the answer: the status from the error table, `x-tollgate-error`, a small JSON body that
 *   names the code and nothing secret (no body for HEAD), `connection: close` when asked;
 *   on a TCP listener, the connection is closed (there is no one to answer);
 * - one log line `request refused` (a peer the handshake already refused is not logged again
 *   per request: its handshake was); an upstream failure's line says what failed instead
 *   (its name does not resolve, refused, reset, no route, timed out), with the metric's reason;
 * - one metric: signature and digest refusals in tollgate_signature_checks_total, upstream
 *   failures in tollgate_upstream_errors_total; every HTTP refusal also in
 *   tollgate_requests_total by status class when its answer is written (the request path's
 *   record, as for any response);
 * - one audit event, its type by code (replay, signature_failure, anomaly, upstream_identity,
 *   request_refused). An upstream that is down or slow, or a shared state store that cannot be
 *   reached, is operational, not a security decision: logged and counted, not audited per
 *   request (the store's outage is audited once, when it begins and when it ends).
 */

/** What a refusal is about, for the log line and the audit event. */
export interface RefusalSubject {
  readonly log: Logger;
  /** the `route` label of the path that refused (`default` outside a gateway; `_unrouted` before a gateway chose one) */
  readonly route: string;
  readonly peer: string | null;
  readonly method: string | null;
  readonly path: string | null;
  readonly keyId: string | null;
}

/** Codes counted under tollgate_signature_checks_total (by their reason) rather than as plain refusals. */
const SIGNATURE_CODES: ReadonlySet<ErrorCode> = new Set([
  'ERR_SIG_MISSING',
  'ERR_SIG_MALFORMED',
  'ERR_SIG_COVERAGE',
  'ERR_SIG_UNKNOWN_KEY',
  'ERR_SIG_INVALID',
  'ERR_SIG_EXPIRED',
  'ERR_SIG_REPLAYED',
  'ERR_DIGEST_MISSING',
  'ERR_DIGEST_MISMATCH',
  'ERR_REPLAY_CACHE_FULL',
]);

/** Upstream failures: tollgate_upstream_errors_total, by reason. */
const UPSTREAM_CODES: ReadonlySet<ErrorCode> = new Set([
  'ERR_UPSTREAM_UNAVAILABLE',
  'ERR_UPSTREAM_TIMEOUT',
  'ERR_UPSTREAM_IDENTITY',
  'ERR_UPSTREAM_PROTOCOL',
  'ERR_NO_HEALTHY_UPSTREAM',
]);

/** The bytes of a refusal answer (head and body), as one latin1 string. */
export function refusalAnswer(code: ErrorCode, close: boolean, extraFields: string, withBody: boolean): string {
  const status = ERRORS[code].status;
  const body = REFUSAL_BODIES[code];
  return (
    `HTTP/1.1 ${status} ${REASON_PHRASES[status] ?? 'Error'}\r\n` +
    `content-type: application/json\r\ncontent-length: ${body.length}\r\nx-tollgate-error: ${code}\r\n${extraFields}` +
    (close ? 'connection: close\r\n\r\n' : '\r\n') +
    (withBody ? body.toString('latin1') : '')
  );
}

export interface RefusalDeps {
  readonly listener: string;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
}

/** a counter's series for one label set, bound once (prom-client's child or a BoundCounter's series) */
type CounterChild = { inc(): void };

export class Refusals {
  readonly deps: RefusalDeps;
  readonly signatureChecks = new Map<string, CounterChild>();
  readonly upstreamErrors = new Map<string, CounterChild>();

  constructor(deps: RefusalDeps) {
    this.deps = deps;
  }

  /** Log, count and audit one refusal (the caller writes the answer with `refusalAnswer`, or closes a TCP connection). */
  account(
    code: ErrorCode,
    subject: RefusalSubject,
    detail: Readonly<Record<string, unknown>> | null,
    upstream?: UpstreamFailureReason,
  ): void {
    if (SIGNATURE_CODES.has(code)) this.countSignature(ERRORS[code].reason);
    else if (UPSTREAM_CODES.has(code)) {
      // an upstream failure says which (a name that does not resolve, refused, reset, no route, timed out) in the metric and the log line
      const reason = upstream ?? (ERRORS[code].reason as UpstreamFailureReason);
      this.count(this.upstreamErrors, this.deps.metrics.upstreamErrors, reason);
      subject.log.warn(
        {
          code,
          reason,
          route: subject.route,
          method: subject.method,
          path: subject.path,
          keyId: subject.keyId ?? undefined,
          ...detail,
        },
        UPSTREAM_FAILURES[reason].message,
      );
    }
    // a peer refused at its handshake was logged and audited there, once per connection (that refusal carries no
    // detail); one a gateway route refuses is logged and audited here, with the route
    if (code === 'ERR_PEER_NOT_ALLOWED' && detail === null) return;
    if (!UPSTREAM_CODES.has(code))
      subject.log.warn(
        {
          code,
          route: subject.route,
          method: subject.method,
          path: subject.path,
          keyId: subject.keyId ?? undefined,
          ...detail,
        },
        'request refused',
      );
    const type = auditTypeOf(code);
    if (type === null) return;
    if (type === 'upstream_identity') {
      // who answered was not who we meant to reach: the event is the listener's, with the reason (the log line has the code)
      this.deps.audit.record(type, {
        listener: this.deps.listener,
        route: subject.route,
        reason: detail?.err ?? null,
        method: subject.method,
        path: subject.path,
      });
      return;
    }
    this.deps.audit.record(type, {
      listener: this.deps.listener,
      route: subject.route,
      code,
      peer: subject.peer,
      keyId: subject.keyId,
      method: subject.method,
      path: subject.path,
      ...detail,
    });
  }

  /** A TCP listener's connection refused (its upstream could not be had): accounted, then closed. */
  connection(
    socket: Socket,
    code: ErrorCode,
    subject: RefusalSubject,
    detail: Readonly<Record<string, unknown>>,
    upstream?: UpstreamFailureReason,
  ): void {
    this.account(code, subject, detail, upstream);
    socket.destroy();
  }

  countSignature(result: string): void {
    this.count(this.signatureChecks, this.deps.metrics.signatureChecks, result);
  }

  private count(
    cache: Map<string, CounterChild>,
    counter: { labels(listener: string, label: string): CounterChild },
    label: string,
  ): void {
    let child = cache.get(label);
    if (child === undefined) {
      child = counter.labels(this.deps.listener, label);
      cache.set(label, child);
    }
    child.inc();
  }
}

function auditTypeOf(code: ErrorCode): AuditEventType | null {
  if (code === 'ERR_SIG_REPLAYED') return 'replay';
  if (SIGNATURE_CODES.has(code)) return 'signature_failure';
  if (code === 'ERR_PAYLOAD_ANOMALY') return 'anomaly';
  if (code === 'ERR_UPSTREAM_IDENTITY') return 'upstream_identity';
  // an upstream that is down or slow is operational; a malformed response is refused input
  if (code === 'ERR_UPSTREAM_UNAVAILABLE' || code === 'ERR_UPSTREAM_TIMEOUT' || code === 'ERR_NO_HEALTHY_UPSTREAM')
    return null;
  // so is a shared state store that cannot be reached: its outage is audited once (shared_state), not per request
  if (code === 'ERR_SHARED_STATE_UNAVAILABLE') return null;
  return 'request_refused';
}
