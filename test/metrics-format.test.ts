/**
 * The metrics tollgate serves are valid Prometheus text exposition (format 0.0.4), judged by
 * the strict parser in helpers/prometheusText.ts: first the parser itself (it accepts the
 * format's own example and refuses each kind of malformed input, so a pass below means
 * something), then the admin and the health /metrics of a running sidecar that has served
 * requests and refused handshakes: every line parses, every family has HELP and TYPE, no
 * series appears twice, histogram buckets rise to a +Inf bucket equal to _count, and the
 * first documented set of metrics (docs/reference.md, "Metrics") have their documented types.
 */
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { Counter, Histogram, Registry } from 'prom-client';
import { request } from 'undici';
import { PRODUCER } from './helpers/identities.ts';
import { eventually, mtlsClient, startTestSidecar, startUpstream, world, type Test } from './helpers/world.ts';
import {
  expositionProblems,
  parsePrometheusText,
  PrometheusTextError,
  sampleValue,
  type MetricFamily,
} from './helpers/prometheusText.ts';

const WAIT_MS = 10_000;

/* ------------------------------------------------------------------ the parser */

// the example of the exposition format documentation, trimmed of its summary's float noise
const SPEC_EXAMPLE = `# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
`;

t.test('the parser reads the format documentation example exactly', (t) => {
  const families = parsePrometheusText(SPEC_EXAMPLE);
  t.same(
    families.map((f) => [f.name, f.type, f.samples.length]),
    [
      ['http_requests_total', 'counter', 2],
      ['msdos_file_access_time_seconds', null, 1],
      ['metric_without_timestamp_and_labels', null, 1],
      ['something_weird', null, 1],
      ['http_request_duration_seconds', 'histogram', 8],
      ['rpc_duration_seconds', 'summary', 5],
    ],
  );
  t.equal(families[0]!.help, 'The total number of HTTP requests.');
  t.same(families[0]!.samples[1], {
    name: 'http_requests_total',
    labels: { method: 'post', code: '400' },
    value: 3,
    timestamp: 1395066363000,
    line: 4,
  });
  t.same(
    families[1]!.samples[0]!.labels,
    { path: 'C:\\DIR\\FILE.TXT', error: 'Cannot find file:\n"FILE.TXT"' },
    'label value escapes undone',
  );
  t.equal(families[3]!.samples[0]!.value, Infinity);
  t.equal(families[3]!.samples[0]!.timestamp, -3982045);
  t.equal(sampleValue(families, 'http_request_duration_seconds_bucket', { le: '0.5' }), 129389);
  t.same(
    expositionProblems(families),
    [
      'msdos_file_access_time_seconds: no HELP',
      'msdos_file_access_time_seconds: no TYPE',
      'metric_without_timestamp_and_labels: no HELP',
      'metric_without_timestamp_and_labels: no TYPE',
      'something_weird: no HELP',
      'something_weird: no TYPE',
    ],
    'the families without HELP and TYPE are named, nothing else',
  );
  t.end();
});

t.test('the parser reads values as Go ParseFloat does', (t) => {
  const values = parsePrometheusText(
    '# TYPE a gauge\na{k="1"} NaN\na{k="2"} Nan\na{k="3"} -Inf\na{k="4"} +inf\na{k="5"} 1e-3\na{k="6"} .5\na{k="7"} 0x1p-2\na{k="8"} -0\n',
  )[0]!.samples.map((s) => s.value);
  t.ok(Number.isNaN(values[0]) && Number.isNaN(values[1]), 'NaN in any case');
  t.same(values.slice(2), [-Infinity, Infinity, 0.001, 0.5, 0.25, -0]);
  t.end();
});

const MALFORMED: Array<[string, string, RegExp]> = [
  ['no newline at the end', '# TYPE a counter\na 1', /last line does not end in a newline/],
  ['a bad metric name', '# TYPE a counter\n1a 1\n', /invalid metric name/],
  ['a bad label name', 'a{1b="x"} 1\n', /invalid label name/],
  ['a reserved label name', 'a{__name__="x"} 1\n', /reserved label name/],
  ['a duplicate label', 'a{b="x",b="y"} 1\n', /duplicate label b/],
  ['an unquoted label value', 'a{b=x} 1\n', /quoted value/],
  ['an unterminated label value', 'a{b="x} 1\n', /unterminated value/],
  ['an unknown escape in a label value', 'a{b="x\\t"} 1\n', /invalid escape \\t/],
  ['a missing comma between labels', 'a{b="x" c="y"} 1\n', /expected , or }/],
  ['no value', 'a{b="x"}\n', /expected a blank before the value|no value/],
  ['a value that is not a float', 'a 1,5\n', /invalid value/],
  ['a signed NaN', 'a -NaN\n', /invalid value/],
  ['a fractional timestamp', 'a 1 1.5\n', /invalid timestamp/],
  ['text after the timestamp', 'a 1 2 3\n', /text after the timestamp/],
  ['an unknown type', '# TYPE a countr\n', /unknown type/],
  ['a second TYPE', '# TYPE a counter\n# TYPE a counter\n', /second TYPE/],
  ['a second HELP', '# HELP a x\n# HELP a y\n', /second HELP/],
  ['TYPE after the samples', 'a 1\n# TYPE a counter\n', /TYPE for a after its samples/],
  ['an unknown escape in HELP', '# HELP a x\\ty\n', /invalid escape/],
  ['a family split in two groups', '# TYPE a counter\na 1\n# TYPE b counter\nb 1\na{x="y"} 2\n', /not one group/],
  ['a carriage return', '# TYPE a counter\r\na 1\r\n', /carriage return/],
];

t.test('the parser refuses malformed text, naming the line', (t) => {
  for (const [what, text, message] of MALFORMED) {
    let error: unknown = null;
    try {
      parsePrometheusText(text);
    } catch (err) {
      error = err;
    }
    t.ok(error instanceof PrometheusTextError, `${what}: refused`);
    t.match((error as Error | null)?.message, message, `${what}: ${(error as Error | null)?.message}`);
    t.match((error as Error | null)?.message, /^line \d+: /, `${what}: the line is named`);
  }
  t.end();
});

const BAD_EXPOSITIONS: Array<[string, string, RegExp]> = [
  ['no HELP', '# TYPE a counter\na 1\n', /a: no HELP/],
  ['no TYPE', '# HELP a x\na 1\n', /a: no TYPE/],
  [
    'a duplicate series (labels in another order)',
    '# HELP a x\n# TYPE a counter\na{b="1",c="2"} 1\na{c="2",b="1"} 1\n',
    /duplicate series a\{b="1",c="2"\}/,
  ],
  ['a negative counter', '# HELP a x\n# TYPE a counter\na -1\n', /counter a\{\} is -1/],
  [
    'falling bucket counts',
    '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 5\nh_bucket{le="2"} 4\nh_bucket{le="+Inf"} 5\nh_sum 1\nh_count 5\n',
    /bucket counts fall/,
  ],
  [
    'bucket bounds out of order',
    '# HELP h x\n# TYPE h histogram\nh_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    /bounds not rising/,
  ],
  [
    'no +Inf bucket',
    '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    /no le="\+Inf" bucket/,
  ],
  [
    '+Inf bucket not equal to _count',
    '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    /\+Inf bucket 2 != _count 3/,
  ],
  [
    'a bucket without le',
    '# HELP h x\n# TYPE h histogram\nh_bucket 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    /without le/,
  ],
  ['no _count', '# HELP h x\n# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\n', /no _count/],
  [
    'a histogram sample of another name',
    '# HELP h x\n# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\nh 1\n',
    /h in histogram h/,
  ],
];

t.test('the exposition checks name each kind of problem', (t) => {
  for (const [what, text, problem] of BAD_EXPOSITIONS) {
    const problems = expositionProblems(parsePrometheusText(text));
    t.equal(problems.length, 1, `${what}: one problem (${problems.join('; ')})`);
    t.match(problems[0], problem, what);
  }
  t.same(
    expositionProblems(
      parsePrometheusText(
        '# HELP h x\n# TYPE h histogram\nh_bucket{l="a",le="1"} 1\nh_bucket{l="a",le="+Inf"} 1\nh_sum{l="a"} 0.5\nh_count{l="a"} 1\nh_bucket{l="b",le="1"} 0\nh_bucket{l="b",le="+Inf"} 2\nh_sum{l="b"} 4\nh_count{l="b"} 2\n',
      ),
    ),
    [],
    'control: a well-formed histogram with two label sets has none',
  );
  t.end();
});

t.test('prom-client escapes label values and HELP text so that they read back unchanged', async (t) => {
  const registry = new Registry();
  const nasty = ['back\\slash', 'dq"uote', 'new\nline', 'all \\" \n\\n of them', 'ünïcödé {}=,'];
  const c = new Counter({
    name: 'escape_test_total',
    help: 'help with \\ and\nnewline',
    labelNames: ['v'] as const,
    registers: [registry],
  });
  nasty.forEach((v, i) => c.labels(v).inc(i + 1));
  const h = new Histogram({
    name: 'escape_test_seconds',
    help: 'h',
    labelNames: ['v'] as const,
    buckets: [0.1, 1],
    registers: [registry],
  });
  h.labels('q"\\\n').observe(0.5);
  const families = parsePrometheusText(await registry.metrics());
  t.same(expositionProblems(families), []);
  t.equal(families[0]!.help, 'help with \\ and\nnewline');
  t.same(
    families[0]!.samples.map((s) => [s.labels.v, s.value]),
    nasty.map((v, i) => [v, i + 1]),
  );
  t.equal(sampleValue(families, 'escape_test_seconds_count', { v: 'q"\\\n' }), 1);
});

/* ------------------------------------------------------------------ a running sidecar */

/** The first documented set of metrics and their types (docs/reference.md, "Metrics"). */
const INTERFACE_METRICS: Readonly<Record<string, MetricFamily['type']>> = {
  tollgate_tls_handshakes_total: 'counter',
  tollgate_tls_handshake_duration_seconds: 'histogram',
  tollgate_cert_expiration_timestamp_seconds: 'gauge',
  tollgate_cert_reloads_total: 'counter',
  tollgate_connections_active: 'gauge',
  tollgate_authz_decisions_total: 'counter',
  tollgate_requests_total: 'counter',
  tollgate_request_duration_seconds: 'histogram',
  tollgate_signature_checks_total: 'counter',
  tollgate_replay_cache_entries: 'gauge',
  tollgate_payload_bytes: 'histogram',
  tollgate_payload_anomalies_total: 'counter',
  tollgate_upstream_errors_total: 'counter',
  tollgate_audit_events_total: 'counter',
};

async function scrape(t: Test, url: string): Promise<MetricFamily[]> {
  const res = await request(url);
  t.equal(res.statusCode, 200, `${url} answers`);
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/, 'as text format 0.0.4');
  const text = await res.body.text();
  let families: MetricFamily[] = [];
  t.doesNotThrow(() => (families = parsePrometheusText(text)), 'every line parses');
  t.same(
    expositionProblems(families),
    [],
    'every family has HELP and TYPE, no duplicate series, histograms well formed',
  );
  return families;
}

t.test(
  'admin and health /metrics of a sidecar that served traffic and refused handshakes are valid exposition text',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] });
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const stranger = await w.identity('stranger', { spiffe: ['spiffe://example.org/stranger'] });
    const app = await startUpstream(t);
    const sc = await startTestSidecar(t, w.dir, {
      admin: { listen: '127.0.0.1:0' },
      health: { listen: '127.0.0.1:0' },
      identity: ingest.files,
      listeners: [
        {
          name: 'ingest',
          mode: 'inbound',
          listen: '127.0.0.1:0',
          target: app.addr,
          allow: { spiffe: [PRODUCER] },
          limits: { handshakeTimeoutSeconds: 0.3 },
        },
      ],
    });

    // traffic: requests with and without bodies, a refused peer, failed handshakes
    const client = mtlsClient(t, sc.addr(), w.ca, producer);
    for (const body of [undefined, 'x'.repeat(10), 'y'.repeat(5000)]) {
      const res = await client.request({ path: '/orders', method: body === undefined ? 'GET' : 'POST', body });
      t.equal(res.statusCode, 200);
      await res.body.dump();
    }
    const refused = await mtlsClient(t, sc.addr(), w.ca, stranger).request({ path: '/', method: 'GET' });
    t.equal(refused.statusCode, 403);
    await refused.body.dump();
    await t.rejects(
      mtlsClient(t, sc.addr(), w.ca, null)
        .request({ path: '/', method: 'GET' })
        .then((r) => r.body.dump()),
      'no client certificate: refused',
    );
    const silent = net.connect({ host: '127.0.0.1', port: sc.listeners[0]!.address().port });
    silent.on('error', () => undefined);
    t.teardown(() => silent.destroy());
    await once(silent, 'close', { signal: AbortSignal.timeout(WAIT_MS) });
    await eventually(
      async () => (await sc.metric('tollgate_tls_handshakes_total', { result: 'failure' })) === 2,
      WAIT_MS,
      'both handshake failures counted',
    );

    const admin = await scrape(t, `http://127.0.0.1:${sc.admin!.port}/metrics`);
    const health = await scrape(t, `http://127.0.0.1:${sc.health!.port}/metrics`);
    t.same(
      health.map((f) => f.name),
      admin.map((f) => f.name),
      'the health server serves the same families as the admin server',
    );

    const byName = new Map(admin.map((f) => [f.name, f]));
    for (const [name, type] of Object.entries(INTERFACE_METRICS))
      t.equal(byName.get(name)?.type, type, `${name} is a ${type}`);
    const unprefixed = admin.map((f) => f.name).filter((n) => !/^(tollgate|process|nodejs)_/.test(n));
    t.same(unprefixed, [], "tollgate's own families have the tollgate_ prefix, the runtime ones their usual names");

    // the values say what happened, so the parser read the real samples
    t.equal(
      sampleValue(admin, 'tollgate_tls_handshakes_total', {
        listener: 'ingest',
        result: 'failure',
        reason: 'no_client_cert',
      }),
      1,
    );
    t.equal(
      sampleValue(admin, 'tollgate_tls_handshakes_total', { listener: 'ingest', result: 'failure', reason: 'timeout' }),
      1,
    );
    t.equal(sampleValue(admin, 'tollgate_tls_handshakes_total', { listener: 'ingest', result: 'success' }), 2);
    t.equal(sampleValue(admin, 'tollgate_tls_handshake_duration_seconds_count', { listener: 'ingest' }), 2);
    t.equal(sampleValue(admin, 'tollgate_authz_decisions_total', { listener: 'ingest', decision: 'deny' }), 1);
    t.equal(sampleValue(admin, 'tollgate_requests_total', { listener: 'ingest', status_class: '2xx' }), 3);
    t.equal(
      sampleValue(admin, 'tollgate_request_duration_seconds_count', { listener: 'ingest' }) >= 3,
      true,
      'request durations observed',
    );
    t.ok(sampleValue(admin, 'tollgate_payload_bytes_count', { listener: 'ingest' }) >= 2, 'payload sizes observed');
    t.ok(sampleValue(admin, 'tollgate_payload_bytes_sum', { listener: 'ingest' }) >= 5010, 'payload bytes summed');
    const seen = byName.get('tollgate_tls_handshakes_total')!.samples.map((s) => s.labels.reason);
    t.ok(
      seen.every((r) =>
        [
          '',
          'no_client_cert',
          'unknown_ca',
          'cert_expired',
          'cert_revoked',
          'bad_certificate',
          'protocol_version',
          'no_shared_cipher',
          'timeout',
          'handshake_cap',
          'other',
        ].includes(r ?? ''),
      ),
      `documented handshake failure reasons only (${[...new Set(seen)].join(', ')})`,
    );
  },
);
