/**
 * The admin API over a real admin server: /status, /certs, /config, /handshakes/recent,
 * /anomalies/recent, /audit/head, POST /drain and POST /shutdown (GET on them is 405), the
 * bearer token on every route, and every metric of the first documented set present from the first scrape.
 */
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { spkiPin } from '../src/core/spkiPin.ts';
import { buildAdminApp, type AdminView } from '../src/admin/app.ts';
import { PRODUCER } from './helpers/identities.ts';
import {
  captureLogs,
  eventually,
  mtlsClient,
  startTestSidecar,
  startUpstream,
  world,
  type Test,
  type TestSidecar,
  type World,
} from './helpers/world.ts';

const WAIT_MS = 10_000;

interface Setup {
  readonly w: World;
  readonly sc: TestSidecar;
  readonly base: string;
  readonly producer: { certPem: string; keyPem: string };
}

async function setup(
  t: Test,
  opts: {
    admin?: Record<string, unknown>;
    listener?: Record<string, unknown>;
    handler?: Parameters<typeof startUpstream>[1];
    requestShutdown?: () => void;
  } = {},
): Promise<Setup> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const app = await startUpstream(t, opts.handler);
  const sc = await startTestSidecar(
    t,
    w.dir,
    {
      admin: { listen: '127.0.0.1:0', ...opts.admin },
      identity: ingest.files,
      listeners: [
        {
          name: 'ingest',
          mode: 'inbound',
          listen: '127.0.0.1:0',
          target: app.addr,
          allow: { spiffe: [PRODUCER] },
          ...opts.listener,
        },
      ],
    },
    opts.requestShutdown === undefined ? {} : { requestShutdown: opts.requestShutdown },
  );
  return { w, sc, base: `http://127.0.0.1:${sc.admin!.port}`, producer };
}

async function getJson(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url, { headers });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

t.test(
  '/status reports listeners, identity, certificate validity, last reload, uptime, version and draining',
  async (t) => {
    const s = await setup(t);
    const { status, body } = await getJson(`${s.base}/status`);
    t.equal(status, 200);
    t.match(body, {
      version: /^\d+\.\d+\.\d+/,
      node: process.versions.node,
      openssl: process.versions.openssl,
      uptimeSeconds: Number,
      startedAt: String,
      ready: true,
      draining: false,
      identity: { subject: /CN=ingest/, spkiPin: /^sha256\//, notAfter: String },
      certificate: { notBefore: String, notAfter: String, daysLeft: Number, valid: true },
      lastReload: null,
      listeners: [
        {
          name: 'ingest',
          mode: 'inbound',
          protocol: 'http',
          address: /^127\.0\.0\.1:\d+$/,
          accepting: true,
          connections: 0,
        },
      ],
    });
    await s.sc.reload('api');
    t.match(
      (await getJson(`${s.base}/status`)).body,
      { lastReload: { ok: true, trigger: 'api', changed: false } },
      'the last reload shows',
    );
  },
);

t.test(
  '/certs lists the identity certificate and every CA with subject, SANs, serial, validity, days left, pin and issuer',
  async (t) => {
    const s = await setup(t);
    const { status, body } = await getJson(`${s.base}/certs`);
    t.equal(status, 200);
    const certs = body.certificates as Array<Record<string, unknown>>;
    t.same(
      certs.map((c) => [c.name, c.role]),
      [
        ['identity', 'identity'],
        ['ca', 'ca'],
      ],
    );
    const [leaf, ca] = certs;
    t.match(leaf, {
      subject: /CN=ingest/,
      issuer: /CN=tollgate test CA/,
      serial: /^[0-9A-F]+$/,
      notBefore: String,
      notAfter: String,
      expired: false,
      isCA: false,
      spkiPin: spkiPin(s.w.ca.certPem) === leaf?.spkiPin ? 'never' : /^sha256\//,
    });
    t.ok(Number(leaf?.daysLeft) > 0.9 && Number(leaf?.daysLeft) <= 1, `about a day left (${String(leaf?.daysLeft)})`);
    const sans = (leaf?.sans as Array<{ type: string; value: string }>).map((x) => `${x.type}:${x.value}`).sort();
    t.same(sans, ['DNS:localhost', 'IP Address:127.0.0.1', 'URI:spiffe://example.org/ingest'], 'every SAN');
    t.match(ca, { subject: /CN=tollgate test CA/, isCA: true, spkiPin: spkiPin(s.w.ca.certPem) });
    t.match(body.files, { certFile: /tls\.crt$/, caFile: /ca\.crt$/ });
    t.notMatch(JSON.stringify(body), /PRIVATE KEY/, 'no key material');
  },
);

t.test('/config is the effective config with addresses as host:port and secrets only as file paths', async (t) => {
  const w = await world(t);
  await writeFile(`${w.dir}/admin.token`, 'sekrit-token-value\n', { mode: 0o600 });
  const s = await setup(t, { admin: { tokenFile: `${w.dir}/admin.token` } });
  const auth = { authorization: 'Bearer sekrit-token-value' };
  const { status, body } = await getJson(`${s.base}/config`, auth);
  t.equal(status, 200);
  t.match(body, {
    admin: { listen: '127.0.0.1:0', tokenFile: /admin\.token$/ },
    identity: { certFile: /tls\.crt$/, keyFile: /tls\.key$/ },
    listeners: [{ name: 'ingest', listen: '127.0.0.1:0', allow: { spiffe: [PRODUCER] } }],
  });
  t.notMatch(JSON.stringify(body), /sekrit-token-value/, 'the token value never shows');
  t.notMatch(JSON.stringify(body), /PRIVATE KEY/);
});

t.test('/audit/head answers 404 without an audit log; the seam answers the head when one is wired', async (t) => {
  const s = await setup(t);
  const res = await getJson(`${s.base}/audit/head`);
  t.equal(res.status, 404);
  t.same(res.body, { error: 'ERR_ADMIN_NOT_FOUND', message: 'no audit log configured' });

  const view: AdminView = {
    status: () => ({}),
    reload: () => Promise.resolve({ ok: true, problems: [], changed: false, ignored: null }),
    auditHead: () => ({ seq: 42, hash: 'ab'.repeat(32), file: '/var/log/audit.log' }),
  };
  const app = buildAdminApp({
    log: captureLogs().logger,
    registry: new Registry(),
    token: null,
    readiness: { ready: () => true, reasons: () => [] },
    view,
  });
  t.teardown(() => app.close());
  const head = await app.inject({ method: 'GET', url: '/audit/head' });
  t.equal(head.statusCode, 200);
  t.same(head.json(), { seq: 42, hash: 'ab'.repeat(32), file: '/var/log/audit.log' });
  for (const url of ['/certs', '/config', '/handshakes/recent', '/anomalies/recent']) {
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 404, `${url} without its view part is 404`);
  }
  for (const method of ['GET', 'PUT', 'DELETE'] as const) {
    for (const url of ['/drain', '/shutdown', '/reload']) {
      const r = await app.inject({ method, url });
      t.equal(r.statusCode, 405, `${method} ${url}`);
      t.equal(r.headers.allow, 'POST');
    }
  }
});

t.test('/handshakes/recent and /anomalies/recent answer from the shared rings', async (t) => {
  const s = await setup(t, { listener: { anomaly: { mode: 'observe', minSamples: 5 } } });
  t.same((await getJson(`${s.base}/handshakes/recent`)).body, { capacity: 256, total: 0, entries: [] });
  t.same((await getJson(`${s.base}/anomalies/recent`)).body, { total: 0, entries: [] });
  const client = mtlsClient(t, s.sc.addr(), s.w.ca, s.producer);
  const post = async (size: number): Promise<number> => {
    const res = await client.request({
      path: '/events',
      method: 'POST',
      body: Buffer.alloc(size, 'a'),
      headers: { 'content-type': 'application/octet-stream' },
    });
    await res.body.dump();
    return res.statusCode;
  };
  for (let i = 0; i < 10; i++) t.equal(await post(900 + i * 20), 200);
  t.equal(await post(100_000), 200, 'observe mode passes the anomaly on');
  let body: Record<string, unknown> = {};
  await eventually(
    async () => ((body = (await getJson(`${s.base}/anomalies/recent`)).body).total as number) >= 1,
    WAIT_MS,
    'the anomaly listed',
  );
  t.match((body.entries as unknown[])[0], {
    listener: 'ingest',
    route: 'default',
    peer: PRODUCER,
    kind: 'too_large',
    value: 100_000,
    action: 'observed',
  });
});

t.test(
  'POST /drain: readiness 503, new connections refused, the in-flight request completes; repeating it is harmless; GET is 405',
  async (t) => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((r) => (release = r));
    let arrived = false;
    const s = await setup(t, {
      handler: (req, res) => {
        arrived = true;
        req.resume();
        void released.then(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('finished'));
      },
    });
    const addr = s.sc.addr();
    const inFlight = mtlsClient(t, addr, s.w.ca, s.producer).request({ path: '/slow', method: 'GET' });
    await eventually(() => arrived, WAIT_MS, 'the request to reach the app');

    const get = await request(`${s.base}/drain`);
    t.equal(get.statusCode, 405);
    t.equal(get.headers.allow, 'POST');
    await get.body.dump();
    t.equal((await getJson(`${s.base}/readyz`)).status, 200, 'GET changed nothing');

    const first = await request(`${s.base}/drain`, { method: 'POST' });
    t.equal(first.statusCode, 202);
    t.match(await first.body.json(), {
      started: true,
      draining: true,
      ready: false,
      deadline: String,
      listeners: [{ name: 'ingest', accepting: false, connections: 1 }],
    });
    const ready = await getJson(`${s.base}/readyz`);
    t.equal(ready.status, 503);
    t.match(ready.body, { ready: false, reasons: ['draining'] });
    t.match((await getJson(`${s.base}/status`)).body, { draining: true, ready: false });

    t.match(
      (await getJson(`${s.base}/status`)).body,
      { listeners: [{ address: addr, accepting: false }] },
      'the drained listener keeps its address in /status',
    );
    const probe = net.connect({ host: '127.0.0.1', port: Number(addr.slice(addr.lastIndexOf(':') + 1)) });
    const [err] = (await once(probe, 'error')) as [NodeJS.ErrnoException];
    t.equal(err.code, 'ECONNREFUSED', 'a new connection is refused');

    const second = await request(`${s.base}/drain`, { method: 'POST' });
    t.equal(second.statusCode, 202);
    t.match(await second.body.json(), { started: false, draining: true });

    release();
    const res = await inFlight;
    t.equal(res.statusCode, 200, 'the in-flight request completes');
    t.equal(await res.body.text(), 'finished');
    t.equal(await s.sc.drain(), true, 'nothing in flight was cut');
    t.equal((await getJson(`${s.base}/livez`)).status, 200, 'the admin server stays up while drained');
  },
);

t.test('POST /shutdown answers 202, drains and calls the process shutdown callback once; GET is 405', async (t) => {
  let calls = 0;
  const s = await setup(t, { requestShutdown: () => void calls++ });
  const get = await request(`${s.base}/shutdown`);
  t.equal(get.statusCode, 405);
  await get.body.dump();
  t.equal(calls, 0);
  const res = await request(`${s.base}/shutdown`, { method: 'POST' });
  t.equal(res.statusCode, 202);
  t.match(await res.body.json(), { shuttingDown: true, draining: true, ready: false });
  await eventually(() => calls === 1, WAIT_MS, 'the callback to be called');
  const again = await request(`${s.base}/shutdown`, { method: 'POST' });
  t.equal(again.statusCode, 202);
  await again.body.dump();
  await new Promise((r) => setImmediate(r));
  t.equal(calls, 1, 'called once only');
  t.equal(s.sc.ready(), false);
});

t.test('every admin route needs the bearer token when one is configured', async (t) => {
  const w = await world(t);
  await writeFile(`${w.dir}/admin.token`, 'correct-horse\n', { mode: 0o600 });
  const s = await setup(t, { admin: { tokenFile: `${w.dir}/admin.token` } });
  for (const [method, url] of [
    ['GET', '/status'],
    ['GET', '/certs'],
    ['GET', '/config'],
    ['GET', '/handshakes/recent'],
    ['GET', '/anomalies/recent'],
    ['GET', '/audit/head'],
    ['GET', '/metrics'],
    ['POST', '/drain'],
    ['POST', '/shutdown'],
  ] as const) {
    const res = await request(`${s.base}${url}`, { method });
    t.equal(res.statusCode, 401, `${method} ${url} without the token`);
    await res.body.dump();
  }
  t.equal(s.sc.ready(), true, 'nothing was drained');
  const ok = await request(`${s.base}/certs`, { headers: { authorization: 'Bearer correct-horse' } });
  t.equal(ok.statusCode, 200);
  await ok.body.dump();
});

/** the first documented set of metrics (docs/reference.md, "Metrics"): names that never change */
const INTERFACE_METRICS = [
  'tollgate_tls_handshakes_total',
  'tollgate_tls_handshake_duration_seconds',
  'tollgate_cert_expiration_timestamp_seconds',
  'tollgate_cert_reloads_total',
  'tollgate_connections_active',
  'tollgate_authz_decisions_total',
  'tollgate_requests_total',
  'tollgate_request_duration_seconds',
  'tollgate_signature_checks_total',
  'tollgate_replay_cache_entries',
  'tollgate_payload_bytes',
  'tollgate_payload_anomalies_total',
  'tollgate_upstream_errors_total',
  'tollgate_audit_events_total',
];

t.test(
  'a fresh sidecar exposes every metric of the first documented set with samples, and tollgate_build_info',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest');
    await writeFile(`${w.dir}/k1`, Buffer.alloc(32, 1).toString('base64'), { mode: 0o600 });
    const app = await startUpstream(t);
    const sc = await startTestSidecar(t, w.dir, {
      admin: { listen: '127.0.0.1:0' },
      identity: ingest.files,
      keys: { dir: '.' },
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
          verify: { spiffe: ['spiffe://example.org/x'] },
        },
      ],
    });
    const text = await (await request(`http://127.0.0.1:${sc.admin!.port}/metrics`)).body.text();
    for (const name of INTERFACE_METRICS) {
      t.match(text, new RegExp(`^${name}(_bucket|_count|_sum)?(\\{[^}]*\\})? `, 'm'), `${name} has a sample`);
    }
    t.match(text, /tollgate_tls_handshakes_total\{listener="ingest",result="failure",reason="unknown_ca"\} 0/);
    t.match(text, /tollgate_tls_handshakes_total\{listener="to-app",result="success",reason=""\} 0/);
    t.match(text, /tollgate_signature_checks_total\{listener="ingest",result="invalid"\} 0/);
    const v = process.versions;
    t.match(
      text,
      new RegExp(
        `tollgate_build_info\\{version="\\d+\\.\\d+\\.\\d+[^"]*",node="${v.node.replace(/\./g, '\\.')}",openssl="${v.openssl.replace(/[.+]/g, '\\$&')}"\\} 1`,
      ),
    );
  },
);
