import { GOAWAY_REASONS } from '../core/goawayReasons.ts';
import type { Config, RouteConfig } from '../config/types.ts';
import { DEFAULT_ROUTE, UNROUTED_ROUTE } from '../core/routeLabels.ts';
import { ERRORS, UPSTREAM_FAILURE_REASONS } from '../core/errors.ts';
import type { AuditEventType } from './audit.ts';
import { HANDSHAKE_FAILURE_REASONS } from '../core/handshakeFailureReasons.ts';
import { CONNECTION_DROP_REASONS, SIGNATURE_RESULTS, type Metrics } from './metrics.ts';

/**
 * Series that exist from the start at 0, so every documented metric (README.md, "Metrics and admin") shows in the first
 * scrape and `rate()`/`increase()` see the first event (a counter that appears at 1 has no
 * increase to show). Only closed label sets: listener names from the config, reasons and
 * results from their lists. The build-info gauge is set here too.
 */
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
/** tollgate_upstream_errors_total's reasons: what failed upstream (a name that does not resolve, refused, reset, …), a closed set in the error module */
const UPSTREAM_REASONS: readonly string[] = UPSTREAM_FAILURE_REASONS;
const PAYLOAD_DIRECTIONS = ['request', 'response'] as const;
const ANOMALY_KINDS = ['too_large', 'too_small', 'volume_requests', 'volume_bytes'] as const;
/** tollgate_shared_state_operations_total's results per operation */
const SHARED_STATE_RESULTS = [
  ['replay', ['fresh', 'replayed', 'unavailable', 'degraded']],
  ['rate', ['allowed', 'limited', 'unavailable', 'degraded']],
] as const;
const CERT_RELOAD_RESULTS = ['success', 'unchanged', 'failure'] as const;
const KEY_RING_RELOAD_RESULTS = ['success', 'failure'] as const;
const ADMIN_REFUSAL_REASONS = [ERRORS.ERR_ADMIN_FORBIDDEN.reason, ERRORS.ERR_ADMIN_UNAUTHORIZED.reason] as const;
const AUDIT_TYPES = [
  'start',
  'stop',
  'drain',
  'handshake_failure',
  'connection_dropped',
  'authz_deny',
  'upstream_identity',
  'request_refused',
  'signature_failure',
  'replay',
  'anomaly',
  'reload',
  'config_reload',
  'key_ring_change',
  'shared_state',
] as const satisfies readonly AuditEventType[];
/** a compile error when an audit event type is added to audit.ts but not to the list above */
const _EVERY_AUDIT_TYPE_LISTED: [Exclude<AuditEventType, (typeof AUDIT_TYPES)[number]>] extends [never] ? true : never =
  true;

function routeSeries(r: RouteConfig): { name: string; verify: boolean; anomaly: boolean } {
  return { name: r.name, verify: r.integrity.verify, anomaly: r.anomaly.mode !== 'off' };
}

export function initialiseSeries(metrics: Metrics, config: Config, version: string): void {
  metrics.buildInfo.labels(version, process.versions.node, process.versions.openssl).set(1);
  for (const r of CERT_RELOAD_RESULTS) metrics.certReloads.labels(r).inc(0);
  // also without keys.dir: the family is documented, and a dashboard's rate() needs a series to read
  for (const r of KEY_RING_RELOAD_RESULTS) metrics.keyRingReloads.labels(r).inc(0);
  for (const t of AUDIT_TYPES) metrics.auditEvents.labels(t).inc(0);
  for (const r of ADMIN_REFUSAL_REASONS) metrics.adminRefusals.labels(r).inc(0);
  if (config.sharedState !== null) {
    for (const [operation, results] of SHARED_STATE_RESULTS) {
      for (const result of results) metrics.sharedStateOperations.labels(operation, result).inc(0);
      metrics.sharedStateDuration.zero({ operation });
    }
  }
  for (const l of config.listeners) {
    const name = l.name;
    metrics.handshakes.labels(name, 'success', '').inc(0);
    for (const reason of HANDSHAKE_FAILURE_REASONS) metrics.handshakes.labels(name, 'failure', reason).inc(0);
    metrics.handshakeDuration.zero({ listener: name });
    metrics.connectionsActive.labels(name).inc(0);
    for (const r of CONNECTION_DROP_REASONS) metrics.connectionsDropped.labels(name, r).inc(0);
    for (const r of UPSTREAM_REASONS) metrics.upstreamErrors.labels(name, r).inc(0);
    if (l.mode !== 'outbound') {
      metrics.authzDecisions.labels(name, 'allow').inc(0);
      metrics.authzDecisions.labels(name, 'deny').inc(0);
    }
    if (l.protocol !== 'http') continue;
    metrics.upgrades.labels(name).inc(0);
    if (l.http2) for (const r of GOAWAY_REASONS) metrics.http2Goaways.labels(name, r).inc(0);
    // a gateway's routes, and what it refuses before a route is chosen; one route elsewhere
    const routes =
      l.mode === 'gateway'
        ? [{ name: UNROUTED_ROUTE, verify: false, anomaly: false }, ...l.routes.map(routeSeries)]
        : [
            {
              name: DEFAULT_ROUTE,
              verify: l.mode === 'inbound' && l.integrity.verify,
              anomaly: l.mode === 'inbound' && l.anomaly.mode !== 'off',
            },
          ];
    for (const route of routes) {
      for (const c of STATUS_CLASSES) {
        metrics.requests.labels(name, route.name, c, 'http/1.1').inc(0);
        if (l.http2) metrics.requests.labels(name, route.name, c, 'h2').inc(0);
      }
      metrics.requestDuration.zero({ listener: name, route: route.name });
      for (const d of PAYLOAD_DIRECTIONS)
        metrics.payloadBytes.zero({ listener: name, route: route.name, direction: d });
      if (route.anomaly)
        for (const kind of ANOMALY_KINDS) metrics.payloadAnomalies.labels(name, route.name, kind).inc(0);
      if (l.mode === 'gateway' && route.name !== UNROUTED_ROUTE)
        metrics.endpointEjections.labels(name, route.name).inc(0);
    }
    if (routes.some((r) => r.verify)) for (const r of SIGNATURE_RESULTS) metrics.signatureChecks.labels(name, r).inc(0);
  }
}
