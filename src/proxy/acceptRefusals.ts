import type { Server } from 'node:net';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { LimitsConfig } from '../config/types.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { formatRemote, type RecentHandshakes } from '../telemetry/recentHandshakes.ts';
import { RefusalWindow } from './refusalWindow.ts';

/**
 * Every way a listener refuses a connection before TLS, each counted, logged, audited and kept
 * in /handshakes/recent the same way (per 10 s window, see refusalWindow.ts), each with its code:
 *
 * | code                  | metric                                              | what happened |
 * |---|---|---|
 * | HANDSHAKE_CAP         | tls_handshakes_total{reason="handshake_cap"}        | refused: maxConcurrentHandshakes in progress, all of them speaking |
 * | HANDSHAKE_CAP_SOURCE  | tls_handshakes_total{reason="handshake_cap"}        | refused: maxHandshakesPerSource in progress from its address, all speaking |
 * | HANDSHAKE_CAP_EVICTED | tls_handshakes_total{reason="handshake_cap"}        | closed: silent (no ClientHello byte), the oldest, to make room |
 * | CLIENT_HELLO_TIMEOUT  | tls_handshakes_total{reason="timeout"}              | closed: no ClientHello byte within clientHelloTimeoutSeconds |
 * | MAX_CONNECTIONS       | connections_dropped_total{reason="max_connections"} | closed by Node at accept: maxConnections open |
 * | CLOSED_BEFORE_CLIENT_HELLO | tls_handshakes_total{reason="other"}           | the client left without sending a byte (not a refusal; as many in a flood) |
 */
/** Where a listener's refusal windows report. */
export interface RefusalSinks {
  readonly listener: string;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly audit: AuditSink;
  readonly recent: RecentHandshakes;
  readonly clock: Clock;
}

export interface AcceptRefusalDeps extends RefusalSinks {
  readonly limits: LimitsConfig;
  /** handshakes in progress now, for the log lines */
  readonly inProgress: () => number;
}

export interface AcceptRefusals {
  readonly cap: RefusalWindow;
  readonly sourceCap: RefusalWindow;
  readonly evicted: RefusalWindow;
  readonly clientHello: RefusalWindow;
  readonly maxConnections: RefusalWindow;
  readonly closedSilent: RefusalWindow;
}

export function acceptRefusals(deps: AcceptRefusalDeps): AcceptRefusals {
  const { listener, metrics, limits } = deps;
  const common = windowSinks(deps);
  const capFailure = metrics.handshakes.labels(listener, 'failure', 'handshake_cap');
  const timeoutFailure = metrics.handshakes.labels(listener, 'failure', 'timeout');
  const otherFailure = metrics.handshakes.labels(listener, 'failure', 'other');
  const cap = {
    ...common,
    kind: 'handshake_failure',
    reason: 'handshake_cap',
    auditType: 'handshake_failure',
    count: () => capFailure.inc(),
  } as const;
  const inProgress = (): Record<string, unknown> => ({
    inProgress: deps.inProgress(),
    max: limits.maxConcurrentHandshakes,
  });
  return {
    cap: new RefusalWindow({
      ...cap,
      code: 'HANDSHAKE_CAP',
      message: 'connections dropped at accept: too many TLS handshakes in progress',
      detail: `dropped at accept: ${limits.maxConcurrentHandshakes} TLS handshakes already in progress, none of them silent`,
      logFields: inProgress,
    }),
    sourceCap: new RefusalWindow({
      ...cap,
      code: 'HANDSHAKE_CAP_SOURCE',
      message: 'connections dropped at accept: too many TLS handshakes in progress from one address',
      detail: `dropped at accept: ${limits.maxHandshakesPerSource} TLS handshakes from this address already in progress, none of them silent`,
      logFields: () => ({ maxPerSource: limits.maxHandshakesPerSource }),
    }),
    evicted: new RefusalWindow({
      ...cap,
      code: 'HANDSHAKE_CAP_EVICTED',
      message: 'silent connections closed to make room for new TLS handshakes',
      detail: 'closed: it had sent no ClientHello byte and was the oldest such while the handshake limit was reached',
      logFields: inProgress,
    }),
    clientHello: new RefusalWindow({
      ...common,
      kind: 'handshake_failure',
      reason: 'timeout',
      auditType: 'handshake_failure',
      count: () => timeoutFailure.inc(),
      code: 'CLIENT_HELLO_TIMEOUT',
      message: 'connections closed: no TLS ClientHello in time',
      detail: `closed: no ClientHello byte within ${limits.clientHelloTimeoutSeconds} s`,
      logFields: () => ({ timeoutSeconds: limits.clientHelloTimeoutSeconds }),
    }),
    maxConnections: maxConnectionsWindow({ ...common, metrics, maxConnections: limits.maxConnections }),
    closedSilent: new RefusalWindow({
      ...common,
      kind: 'handshake_failure',
      reason: 'other',
      auditType: 'handshake_failure',
      count: () => otherFailure.inc(),
      code: 'CLOSED_BEFORE_CLIENT_HELLO',
      message: 'connections closed by the client before sending a TLS ClientHello',
      detail: 'the client closed the connection without sending a byte',
    }),
  };
}

export interface MaxConnectionsDeps extends RefusalSinks {
  readonly maxConnections: number;
}

/** Connections Node closes at accept because the listener has maxConnections open (any listener, TLS or not). */
export function maxConnectionsWindow(deps: MaxConnectionsDeps): RefusalWindow {
  const dropped = deps.metrics.connectionsDropped.labels(deps.listener, 'max_connections');
  return new RefusalWindow({
    ...windowSinks(deps),
    kind: 'connection_dropped',
    reason: null,
    auditType: 'connection_dropped',
    count: () => dropped.inc(),
    code: 'MAX_CONNECTIONS',
    message: 'connections dropped at accept: maxConnections open',
    detail: `dropped at accept: ${deps.maxConnections} connections already open (limits.maxConnections)`,
    logFields: () => ({ max: deps.maxConnections }),
  });
}

/** What a RefusalWindow is given of the sinks (it counts through its own metric child). */
function windowSinks(deps: RefusalSinks): Pick<RefusalSinks, 'listener' | 'log' | 'audit' | 'recent' | 'clock'> {
  return { listener: deps.listener, log: deps.log, audit: deps.audit, recent: deps.recent, clock: deps.clock };
}

/**
 * Node closes a connection beyond `server.maxConnections` itself, before any 'connection'
 * event, and says so only with 'drop' (with the addresses, when it could read them).
 */
export function watchMaxConnectionDrops(server: Server, window: RefusalWindow): void {
  server.on('drop', (data?: { remoteAddress?: string; remotePort?: number }) => {
    window.record(formatRemote(data?.remoteAddress, data?.remotePort));
  });
}
