/**
 * Every series of a closed label set exists at 0 from the first scrape, before any traffic or
 * reload, so that `rate()` and `increase()` see the first event and a dashboard shows 0 rather
 * than "no data": results and reasons from their lists (the upstream reasons from the error
 * module), listener names from the config, a gateway's route names (and `_unrouted`). Judged on
 * the admin /metrics of a fresh sidecar with an inbound HTTP listener that verifies signatures and
 * watches payload sizes, an outbound one, a TCP one and a gateway with two routes.
 */
import t from 'tap';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { UPSTREAM_FAILURE_REASONS } from '../src/core/errors.ts';
import { createMetrics, SIGNATURE_RESULTS } from '../src/telemetry/metrics.ts';
import { HANDSHAKE_FAILURE_REASONS } from '../src/core/handshakeFailureReasons.ts';
import { parsePrometheusText, type MetricFamily } from './helpers/prometheusText.ts';
import { writeKey } from './helpers/signing.ts';
import { startTestSidecar, startUpstream, world } from './helpers/world.ts';

const LISTENERS = ['ingest', 'to-app', 'raw', 'edge'] as const;
const HTTP_LISTENERS = ['ingest', 'to-app', 'edge'] as const;
const PEER = 'spiffe://example.org/x';

/** the values `label` takes in the samples of family `tollgate_${family}` named `tollgate_${sample}` whose labels include `where` */
function labelValues(
  families: readonly MetricFamily[],
  family: string,
  label: string,
  where: Record<string, string> = {},
  sample = family,
): string[] {
  const matches = (labels: Readonly<Record<string, string>>): boolean =>
    Object.entries(where).every(([k, v]) => labels[k] === v);
  const samples = families.find((f) => f.name === `tollgate_${family}`)?.samples ?? [];
  return sorted(
    new Set(
      samples.filter((s) => s.name === `tollgate_${sample}` && matches(s.labels)).map((s) => s.labels[label] ?? ''),
    ),
  );
}

const sorted = (values: Iterable<string>): string[] => [...values].sort();

t.test('before any traffic every series of a closed label set is served at 0', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  await writeKey(join(w.dir, 'keys'), 'k1');
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: ingest.files,
    keys: { dir: 'keys' },
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { any: true },
        integrity: { verify: true },
        anomaly: { mode: 'observe' },
      },
      {
        name: 'to-app',
        mode: 'outbound',
        listen: '127.0.0.1:0',
        target: '127.0.0.1:1',
        serverName: 'localhost',
        verify: { spiffe: [PEER] },
      },
      { name: 'raw', mode: 'inbound', protocol: 'tcp', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } },
      {
        name: 'edge',
        mode: 'gateway',
        listen: '127.0.0.1:0',
        allow: { any: true },
        routes: [
          { name: 'events', match: { pathPrefix: '/v1/events' }, targets: [app.addr], integrity: { verify: true } },
          { name: 'logs', match: { pathPrefix: '/v1/logs' }, targets: [app.addr], anomaly: { mode: 'off' } },
        ],
      },
    ],
  });
  const families = parsePrometheusText(await (await request(`http://127.0.0.1:${sc.admin!.port}/metrics`)).body.text());
  const values = (family: string, label: string, where: Record<string, string> = {}, sample = family): string[] =>
    labelValues(families, family, label, where, sample);
  const served = new Set(families.filter((f) => f.samples.length > 0).map((f) => f.name));

  // every family tollgate declares, save the CRL timestamps (no CRL is configured) and the shared state store's
  // operations (no sharedState is configured: test/shared-state.test.ts has them)
  const declared = createMetrics(new Registry())
    .registry.getMetricsAsArray()
    .map((m) => m.name);
  t.same(
    declared.filter((name) => !served.has(name)),
    [
      'tollgate_crl_next_update_timestamp_seconds',
      'tollgate_shared_state_operations_total',
      'tollgate_shared_state_duration_seconds',
    ],
    'every declared family has samples at start',
  );

  t.same(values('key_ring_reloads_total', 'result'), ['failure', 'success'], 'key ring reloads: success and failure');
  t.same(values('cert_reloads_total', 'result'), ['failure', 'success', 'unchanged'], 'certificate reloads');
  t.same(values('admin_refusals_total', 'reason'), ['admin_forbidden', 'admin_unauthorized'], 'admin refusals');
  t.ok(values('audit_events_total', 'type').length >= 14, 'every audit event type');
  const upstreamReasons = sorted(UPSTREAM_FAILURE_REASONS);
  for (const listener of LISTENERS) {
    t.same(
      values('upstream_errors_total', 'reason', { listener }),
      upstreamReasons,
      `${listener}: every upstream error reason`,
    );
    const failures = values('tls_handshakes_total', 'reason', { listener, result: 'failure' });
    t.same(failures, sorted(HANDSHAKE_FAILURE_REASONS), `${listener}: every handshake failure reason`);
    t.same(
      values('tls_handshakes_total', 'reason', { listener, result: 'success' }),
      [''],
      `${listener}: handshake success`,
    );
    t.same(
      values('connections_dropped_total', 'reason', { listener }),
      ['max_connections'],
      `${listener}: connection drops`,
    );
    const timed = values(
      'tls_handshake_duration_seconds',
      'listener',
      { listener },
      'tls_handshake_duration_seconds_count',
    );
    t.same(timed, [listener], `${listener}: handshake durations`);
  }
  for (const listener of ['ingest', 'raw', 'edge']) {
    t.same(
      values('authz_decisions_total', 'decision', { listener }),
      ['allow', 'deny'],
      `${listener}: authorization decisions`,
    );
  }
  for (const listener of HTTP_LISTENERS) {
    t.same(
      values('requests_total', 'status_class', { listener }),
      ['1xx', '2xx', '3xx', '4xx', '5xx'],
      `${listener}: every status class`,
    );
    t.same(
      values('request_duration_seconds', 'listener', { listener }, 'request_duration_seconds_count'),
      [listener],
      `${listener}: request durations`,
    );
    t.same(
      values('payload_bytes', 'direction', { listener }, 'payload_bytes_count'),
      ['request', 'response'],
      `${listener}: payload sizes both ways`,
    );
    t.same(values('upgrades_total', 'listener', { listener }), [listener], `${listener}: upgrades`);
  }
  t.same(
    values('signature_checks_total', 'result', { listener: 'ingest' }),
    sorted(SIGNATURE_RESULTS),
    'ingest verifies: every signature result',
  );
  t.same(
    values('requests_total', 'route', { listener: 'edge' }),
    ['_unrouted', 'events', 'logs'],
    'edge: each route, and what no route takes',
  );
  t.same(
    values('endpoint_ejections_total', 'route', { listener: 'edge' }),
    ['events', 'logs'],
    'edge: ejections per route',
  );
  t.same(
    values('signature_checks_total', 'result', { listener: 'edge' }),
    sorted(SIGNATURE_RESULTS),
    'edge has a route that verifies: every signature result',
  );
  t.same(
    values('payload_anomalies_total', 'route', { listener: 'edge' }),
    ['events'],
    'edge: anomaly kinds on the route that watches sizes only',
  );
  const kinds = ['too_large', 'too_small', 'volume_bytes', 'volume_requests'];
  t.same(
    values('payload_anomalies_total', 'kind', { listener: 'ingest' }),
    kinds,
    'ingest watches sizes: every anomaly kind',
  );

  const counters = families.filter((f) => f.type === 'counter' && f.name.startsWith('tollgate_'));
  const counted = counters.flatMap((f) =>
    f.samples.filter((s) => s.value !== 0).map((s) => `${s.name}${JSON.stringify(s.labels)}`),
  );
  t.same(counted, ['tollgate_audit_events_total{"type":"start"}'], 'and all of them at 0, save the start event');
});
