/**
 * What a running tollgate serves at /metrics passes Prometheus's own linter (`promtool check
 * metrics`: a gauge must not end in `_total`, a counter must…), on the admin and the health
 * server, with one thread and with two (the main thread merges the workers' registries), and
 * the process and Node.js metrics carry their usual names (`process_cpu_seconds_total`, not
 * `tollgate_process_cpu_seconds_total`) as stock dashboards expect. The sidecar is a real
 * `bin/tollgate.js run` process that has served, refused and failed handshakes before the scrape.
 * The webhook's /metrics is checked in webhook-server.test.ts.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { RUNTIME_GAUGES_NAMED_AS_COUNTERS } from '../src/telemetry/metrics.ts';
import { PRODUCER } from './helpers/identities.ts';
import { freePort, startTollgate, type Running } from './helpers/process.ts';
import { expositionProblems, parsePrometheusText, sampleValue, type MetricFamily } from './helpers/prometheusText.ts';
import { NEEDS_PROMTOOL, promtoolCheckMetrics } from './helpers/promtool.ts';
import { writeKey } from './helpers/signing.ts';
import { eventually, mtlsClient, startUpstream, world, type Test } from './helpers/world.ts';

const STARTUP_MS = 15_000;
/** a few of prom-client's process and Node.js metrics, under the names stock dashboards query */
const USUAL_RUNTIME_NAMES = [
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'process_start_time_seconds',
  'process_open_fds',
  'nodejs_heap_size_total_bytes',
  'nodejs_eventloop_lag_seconds',
  'nodejs_gc_duration_seconds',
  'nodejs_version_info',
  'nodejs_active_handles',
];

interface RunningSidecar {
  readonly p: Running;
  readonly admin: string;
  readonly health: string;
}

/** A `tollgate run` process with an admin and a health server, after a served request, a refused one and a failed handshake. */
async function sidecarThatServed(t: Test, workers: number): Promise<RunningSidecar> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  await writeKey(join(w.dir, 'keys'), 'k1');
  const app = await startUpstream(t);
  const admin = `127.0.0.1:${await freePort()}`;
  const health = `127.0.0.1:${await freePort()}`;
  const file = join(w.dir, 'tollgate.json');
  await writeFile(
    file,
    JSON.stringify({
      workers,
      admin: { listen: admin },
      health: { listen: health },
      identity: ingest.files,
      keys: { dir: join(w.dir, 'keys') },
      listeners: [
        {
          name: 'ingest',
          mode: 'inbound',
          listen: '127.0.0.1:0',
          target: app.addr,
          allow: { spiffe: [PRODUCER] },
          integrity: { verify: true },
          anomaly: { mode: 'observe' },
        },
        { name: 'open', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } },
      ],
    }),
  );
  const p = startTollgate(t, ['run', '--config', file]);
  const started = (): Record<string, unknown> | undefined => p.logs().find((l) => l.msg === 'tollgate started');
  await eventually(() => started() !== undefined || !p.running(), STARTUP_MS, 'tollgate started');
  if (started() === undefined) throw new Error(`tollgate did not start\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`);
  const [ingestAddr, openAddr] = (started()!.listeners as Array<{ address: string }>).map((l) => l.address);

  const served = await mtlsClient(t, openAddr!, w.ca, producer).request({
    path: '/orders',
    method: 'POST',
    body: 'x'.repeat(100),
  });
  t.equal(served.statusCode, 200, 'a request served');
  await served.body.dump();
  const unsigned = await mtlsClient(t, ingestAddr!, w.ca, producer).request({ path: '/orders', method: 'GET' });
  t.equal(unsigned.statusCode, 401, 'an unsigned request refused');
  await unsigned.body.dump();
  await t.rejects(
    mtlsClient(t, ingestAddr!, w.ca, null)
      .request({ path: '/', method: 'GET' })
      .then((r) => r.body.dump()),
    'no client certificate: refused',
  );
  return { p, admin: `http://${admin}`, health: `http://${health}` };
}

async function scrape(t: Test, url: string): Promise<string> {
  const res = await request(`${url}/metrics`);
  t.equal(res.statusCode, 200, `${url}/metrics answers`);
  return res.body.text();
}

async function passesPromtool(t: Test, text: string, what: string): Promise<void> {
  const verdict = await promtoolCheckMetrics(text);
  t.equal(verdict.code, 0, `${what}: promtool check metrics exits 0`);
  t.equal(verdict.output, '', `${what}: and names no problem`);
}

t.test(
  'promtool check metrics catches a gauge named like a counter (so a pass below means something)',
  { skip: NEEDS_PROMTOOL },
  async (t) => {
    const bad = await promtoolCheckMetrics('# HELP x_active_total x\n# TYPE x_active_total gauge\nx_active_total 1\n');
    t.equal(bad.code, 3, 'exit 3: a lint problem');
    t.match(bad.output, /x_active_total non-counter metrics should not have "_total" suffix/);
    t.equal(
      (await promtoolCheckMetrics('# HELP x_active x\n# TYPE x_active gauge\nx_active 1\n')).code,
      0,
      'control: the same gauge named right passes',
    );
  },
);

t.test(
  "a running sidecar's admin and health /metrics pass promtool check metrics",
  { skip: NEEDS_PROMTOOL },
  async (t) => {
    const sc = await sidecarThatServed(t, 1);
    const admin = await scrape(t, sc.admin);
    t.match(
      admin,
      /^tollgate_requests_total\{listener="open",route="default",status_class="2xx",protocol="(?:http\/1\.1|h2)"\} 1$/m,
      'the scrape has the traffic in it',
    );
    await passesPromtool(t, admin, 'admin');
    await passesPromtool(t, await scrape(t, sc.health), 'health');
  },
);

t.test(
  "with two threads, the merged /metrics keeps the main thread's process metrics whole and passes promtool",
  async (t) => {
    const sc = await sidecarThatServed(t, 2);
    const text = await scrape(t, sc.admin);
    const families = parsePrometheusText(text);
    t.same(expositionProblems(families), [], 'well formed');
    t.equal(
      sampleValue(families, 'tollgate_requests_total', { listener: 'open' }),
      1,
      "the workers' registries are in the merge",
    );
    // prom-client's own aggregator for it is `omit`: merged naively, the start time disappears
    const startTime = sampleValue(families, 'process_start_time_seconds');
    t.ok(Math.abs(startTime - Date.now() / 1000) < 120, `process_start_time_seconds is served (${startTime})`);
    t.ok(sampleValue(families, 'process_cpu_seconds_total') > 0, 'process_cpu_seconds_total too');
    t.ok(
      families.some((f) => f.name === 'nodejs_eventloop_lag_p99_seconds'),
      'and the event loop lag',
    );
    const health = await scrape(t, sc.health);
    t.test('promtool check metrics passes on both servers', { skip: NEEDS_PROMTOOL }, async (t) => {
      await passesPromtool(t, text, 'admin, two threads');
      await passesPromtool(t, health, 'health, two threads');
    });
  },
);

t.test(
  'process and Node.js metrics have their usual names, without the tollgate_ prefix, and no gauge ends in _total',
  async (t) => {
    const sc = await sidecarThatServed(t, 1);
    const families: MetricFamily[] = parsePrometheusText(await scrape(t, sc.admin));
    const names = families.map((f) => f.name);
    for (const name of USUAL_RUNTIME_NAMES) {
      t.ok(names.includes(name), `${name} is served`);
    }
    t.ok(sampleValue(families, 'process_cpu_seconds_total') > 0, 'with real values');
    t.same(
      names.filter((n) => /^tollgate_(process|nodejs)_/.test(n)),
      [],
      'no tollgate_process_ or tollgate_nodejs_ names remain',
    );
    t.same(
      names.filter((n) => !/^(tollgate|process|nodejs)_/.test(n)),
      [],
      'every family is tollgate_, process_ or nodejs_',
    );
    for (const name of RUNTIME_GAUGES_NAMED_AS_COUNTERS)
      t.notOk(names.includes(name), `${name} (a gauge named like a counter) is not served`);
    t.same(
      families.filter((f) => f.type !== 'counter' && f.name.endsWith('_total')).map((f) => f.name),
      [],
      'no gauge or histogram ends in _total',
    );
    t.same(
      families.filter((f) => f.type === 'counter' && !f.name.endsWith('_total')).map((f) => f.name),
      [],
      'every counter ends in _total',
    );
    // the totals they stood for are the sums of the per-type gauges, which stay
    t.ok(sampleValue(families, 'nodejs_active_handles') > 0, 'sum(nodejs_active_handles) counts the open handles');
  },
);
