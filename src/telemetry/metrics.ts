import { Counter, Gauge, Histogram, registerRuntimeMetrics, type Registry } from './promClient.ts';
import { BoundCounter, BoundHistogram } from './boundSeries.ts';

/**
 * Every tollgate metric, its type and label set, in one place (README.md's "Metrics and admin" lists them).
 * With `workers` > 1 each thread has its own registry and the main thread serves their
 * aggregate (src/workers/aggregateRegistry.ts): counters and histograms are summed, and the
 * gauges that describe the instance rather than a thread say how they combine (`aggregator`:
 * expiry timestamps by min, flags and the shared replay cache by max, build info first).
 * Created on the registry main hands in, never on prom-client's global registry.
 * Label values come only from closed sets: listener and route names from config,
 * reasons from the error table or the handshake-reason list (core/handshakeFailureReasons.ts).
 */

/**
 * Why a connection was refused at accept, before any TLS: `max_connections` (the listener
 * already had limits.maxConnections open; Node closes it unseen). Connections the handshake
 * cap refuses are handshake failures (reason handshake_cap), not counted here again.
 */
export const CONNECTION_DROP_REASONS = ['max_connections'] as const;

/**
 * The documented results (README.md, "Metrics and admin"), with the two refusals of the
 * integrity path that have no other slot: digest_missing and replay_cache_full.
 */
export const SIGNATURE_RESULTS = [
  'ok',
  'missing',
  'malformed',
  'coverage',
  'unknown_key',
  'invalid',
  'expired',
  'replayed',
  'digest_mismatch',
  'digest_missing',
  'replay_cache_full',
] as const;

export interface Metrics {
  readonly registry: Registry;
  readonly handshakes: Counter<'listener' | 'result' | 'reason'>;
  readonly handshakeDuration: Histogram<'listener'>;
  readonly certExpiration: Gauge<'cert'>;
  readonly certReloads: Counter<'result'>;
  readonly crlNextUpdate: Gauge<'crl'>;
  readonly crlStale: Gauge<string>;
  readonly connectionsActive: Gauge<'listener'>;
  readonly connectionsDropped: Counter<'listener' | 'reason'>;
  readonly authzDecisions: Counter<'listener' | 'decision'>;
  readonly requests: BoundCounter<'listener' | 'route' | 'status_class' | 'protocol'>;
  readonly requestDuration: BoundHistogram<'listener' | 'route'>;
  readonly signatureChecks: BoundCounter<'listener' | 'result'>;
  readonly replayCacheEntries: Gauge<string>;
  readonly keyRingReloads: Counter<'result'>;
  readonly keyRingKeys: Gauge<string>;
  readonly payloadBytes: BoundHistogram<'listener' | 'route' | 'direction'>;
  readonly payloadAnomalies: Counter<'listener' | 'route' | 'kind'>;
  readonly upstreamErrors: Counter<'listener' | 'reason'>;
  /** HTTP connections that became tunnels after an accepted Upgrade (WebSocket), by listener */
  readonly upgrades: Counter<'listener'>;
  /** shared state (Redis/Valkey): each check by operation (replay, rate) and result */
  readonly sharedStateOperations: Counter<'operation' | 'result'>;
  readonly sharedStateDuration: Histogram<'operation'>;
  /** 1 while the store answers, 0 while it does not */
  readonly sharedStateUp: Gauge<string>;
  /** a gateway route's endpoints taken out by passive health */
  readonly endpointEjections: Counter<'listener' | 'route'>;
  /** HTTP/2 connections tollgate sent GOAWAY, by reason (a flood, a protocol error, idle, drain) */
  readonly http2Goaways: Counter<'listener' | 'reason'>;
  readonly auditEvents: Counter<'type'>;
  readonly auditDropped: Counter;
  /** admin and health requests refused by the request guard, by reason (admin_forbidden, admin_unauthorized) */
  readonly adminRefusals: Counter<'reason'>;
  /** 1, labelled with what is running: tollgate's version, Node's and OpenSSL's */
  readonly buildInfo: Gauge<'version' | 'node' | 'openssl'>;
  /** where tollgate_replay_cache_entries reads its value at scrape time (entries expire between inserts) */
  readReplayCacheEntriesFrom(source: () => number): void;
}

export function createMetrics(registry: Registry): Metrics {
  const registers = [registry];
  let replayEntries: () => number = () => 0;
  return Object.freeze({
    readReplayCacheEntriesFrom(source: () => number) {
      replayEntries = source;
    },
    registry,
    handshakes: new Counter({
      name: 'tollgate_tls_handshakes_total',
      help: 'TLS handshakes by listener, result and failure reason',
      labelNames: ['listener', 'result', 'reason'] as const,
      registers,
    }),
    handshakeDuration: new Histogram({
      name: 'tollgate_tls_handshake_duration_seconds',
      help: 'Time from TCP accept (or connect) to a completed TLS handshake',
      labelNames: ['listener'] as const,
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    certExpiration: new Gauge({
      name: 'tollgate_cert_expiration_timestamp_seconds',
      help: 'notAfter of each loaded certificate, as a Unix timestamp',
      labelNames: ['cert'] as const,
      aggregator: 'min',
      registers,
    }),
    certReloads: new Counter({
      name: 'tollgate_cert_reloads_total',
      help: 'Certificate reloads by result: success (a new identity is in use), unchanged (a reload asked for by SIGHUP, admin or API found nothing new; a watched directory event that changes nothing is not a reload), failure (the old identity stays)',
      labelNames: ['result'] as const,
      registers,
    }),
    crlNextUpdate: new Gauge({
      name: 'tollgate_crl_next_update_timestamp_seconds',
      help: 'nextUpdate of each loaded CRL (crl, crl_1, ... in file order), as a Unix timestamp',
      labelNames: ['crl'] as const,
      aggregator: 'min',
      registers,
    }),
    crlStale: new Gauge({
      name: 'tollgate_crl_stale',
      help: '1 while a loaded CRL is past its nextUpdate, else 0',
      aggregator: 'max',
      registers,
    }),
    connectionsActive: new Gauge({
      name: 'tollgate_connections_active',
      help: 'Open downstream connections per listener',
      labelNames: ['listener'] as const,
      registers,
    }),
    connectionsDropped: new Counter({
      name: 'tollgate_connections_dropped_total',
      help: 'Connections closed at accept before any TLS, by reason (max_connections: the listener was at limits.maxConnections)',
      labelNames: ['listener', 'reason'] as const,
      registers,
    }),
    authzDecisions: new Counter({
      name: 'tollgate_authz_decisions_total',
      help: 'Peer authorization decisions',
      labelNames: ['listener', 'decision'] as const,
      registers,
    }),
    requests: new BoundCounter({
      name: 'tollgate_requests_total',
      help: 'HTTP requests by listener, route, status class and the protocol they came over (http/1.1, h2)',
      labelNames: ['listener', 'route', 'status_class', 'protocol'] as const,
      registers,
    }),
    requestDuration: new BoundHistogram({
      name: 'tollgate_request_duration_seconds',
      help: 'Time from request headers to the end of the response',
      labelNames: ['listener', 'route'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    signatureChecks: new BoundCounter({
      name: 'tollgate_signature_checks_total',
      help: 'HTTP message signature checks by result',
      labelNames: ['listener', 'result'] as const,
      registers,
    }),
    replayCacheEntries: new Gauge({
      name: 'tollgate_replay_cache_entries',
      help: 'Live (keyid, nonce) entries in the replay cache',
      // with workers, one cache shared by every thread: each reports the same count (or 0)
      aggregator: 'max',
      registers,
      collect() {
        this.set(replayEntries());
      },
    }),
    keyRingReloads: new Counter({
      name: 'tollgate_key_ring_reloads_total',
      help: 'Key ring reloads by result (success, failure)',
      labelNames: ['result'] as const,
      registers,
    }),
    keyRingKeys: new Gauge({
      name: 'tollgate_key_ring_keys',
      help: 'HMAC keys currently loaded from keys.dir',
      aggregator: 'max',
      registers,
    }),
    payloadBytes: new BoundHistogram({
      name: 'tollgate_payload_bytes',
      help: 'Request and response body sizes',
      labelNames: ['listener', 'route', 'direction'] as const,
      buckets: [0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216],
      registers,
    }),
    payloadAnomalies: new Counter({
      name: 'tollgate_payload_anomalies_total',
      help: 'Payload size anomalies by kind',
      labelNames: ['listener', 'route', 'kind'] as const,
      registers,
    }),
    upstreamErrors: new Counter({
      name: 'tollgate_upstream_errors_total',
      help: 'Upstream failures by listener and reason',
      labelNames: ['listener', 'reason'] as const,
      registers,
    }),
    upgrades: new Counter({
      name: 'tollgate_upgrades_total',
      help: 'HTTP connections upgraded to a tunnel (101 Switching Protocols), by listener',
      labelNames: ['listener'] as const,
      registers,
    }),
    sharedStateOperations: new Counter({
      name: 'tollgate_shared_state_operations_total',
      help: 'Checks against the shared state store by operation (replay, rate) and result (fresh, replayed, allowed, limited, unavailable; degraded: unavailable and answered from this process)',
      labelNames: ['operation', 'result'] as const,
      registers,
    }),
    sharedStateDuration: new Histogram({
      name: 'tollgate_shared_state_duration_seconds',
      help: 'Round trip of one shared state check (answered ones)',
      labelNames: ['operation'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers,
    }),
    sharedStateUp: new Gauge({
      name: 'tollgate_shared_state_up',
      help: '1 while the shared state store answers, 0 while it does not or none is configured (with workers: the lowest of the threads)',
      aggregator: 'min',
      registers,
    }),
    endpointEjections: new Counter({
      name: 'tollgate_endpoint_ejections_total',
      help: 'Endpoints of a gateway route taken out by passive health (consecutive connect failures, resets or 5xx)',
      labelNames: ['listener', 'route'] as const,
      registers,
    }),
    http2Goaways: new Counter({
      name: 'tollgate_http2_goaways_total',
      help: 'HTTP/2 connections tollgate sent GOAWAY, by reason (rapid_reset, ping_flood, settings_flood, flood, protocol_error, idle, drain)',
      labelNames: ['listener', 'reason'] as const,
      registers,
    }),
    auditEvents: new Counter({
      name: 'tollgate_audit_events_total',
      help: 'Audit events written, by type',
      labelNames: ['type'] as const,
      registers,
    }),
    auditDropped: new Counter({
      name: 'tollgate_audit_dropped_total',
      help: 'Audit events dropped because the audit log could not keep up (the count is also written into the chain)',
      registers,
    }),
    adminRefusals: new Counter({
      name: 'tollgate_admin_refusals_total',
      help: 'Admin and health requests refused before any route ran: a browser request or a foreign Host (admin_forbidden), a missing or wrong token (admin_unauthorized)',
      labelNames: ['reason'] as const,
      registers,
    }),
    buildInfo: new Gauge({
      name: 'tollgate_build_info',
      help: 'Always 1; the labels say which tollgate, Node.js and OpenSSL versions are running',
      labelNames: ['version', 'node', 'openssl'] as const,
      aggregator: 'first',
      registers,
    }),
  });
}

/**
 * prom-client's gauges that end in `_total`, a suffix Prometheus keeps for counters (`promtool
 * check metrics` fails on them). Each is the sum of a per-type gauge that stays, so nothing is
 * lost: `sum without (type) (nodejs_active_handles)`.
 */
export const RUNTIME_GAUGES_NAMED_AS_COUNTERS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const;

/**
 * The standard process and Node.js metrics (`process_cpu_seconds_total`, `nodejs_heap_size_total_bytes`…)
 * under their usual names, without the `tollgate_` prefix, as stock dashboards and alerts expect;
 * the gauges named as counters are left out. Process-wide: registered once per process (with
 * `workers` > 1, by the main thread only).
 */
export function collectRuntimeMetrics(registry: Registry): void {
  registerRuntimeMetrics(registry);
  for (const name of RUNTIME_GAUGES_NAMED_AS_COUNTERS) registry.removeSingleMetric(name);
}

/** '2xx' for 204 etc.; a closed set of five values. */
export function statusClass(status: number): '1xx' | '2xx' | '3xx' | '4xx' | '5xx' {
  if (status < 200) return '1xx';
  if (status < 300) return '2xx';
  if (status < 400) return '3xx';
  if (status < 500) return '4xx';
  return '5xx';
}
