/**
 * Handshake telemetry: every failed handshake, on both sides, lands in /handshakes/recent
 * with its reason (and in tollgate_tls_handshakes_total), refused peers show as authz_deny,
 * a handshake-cap flood is one aggregated entry, and outbound handshakes are counted and
 * timed like inbound ones.
 */
import t from 'tap';
import https from 'node:https';
import net from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { PRODUCER } from './helpers/identities.ts';
import { hoursAgo, makeCa } from './helpers/pki.ts';
import {
  captureLogs,
  eventually,
  mtlsClient,
  plainClient,
  startTestSidecar,
  startUpstream,
  world,
  type Test,
  type TestIdentity,
  type TestSidecar,
  type World,
} from './helpers/world.ts';
import type { HandshakeRecord } from '../src/telemetry/recentHandshakes.ts';
import { RecentHandshakes } from '../src/telemetry/recentHandshakes.ts';
import { Registry } from 'prom-client';
import { buildAdminApp } from '../src/admin/app.ts';

const WAREHOUSE = 'spiffe://example.org/warehouse';
const WAIT_MS = 10_000;
const DROPS = Number(process.env.DROPS ?? 5);

interface Recent {
  capacity: number;
  total: number;
  entries: HandshakeRecord[];
}

async function recent(sc: TestSidecar): Promise<Recent> {
  const res = await request(`http://127.0.0.1:${sc.admin!.port}/handshakes/recent`);
  return (await res.body.json()) as Recent;
}

async function waitForEntries(sc: TestSidecar, n: number): Promise<HandshakeRecord[]> {
  let entries: HandshakeRecord[] = [];
  await eventually(
    async () => (entries = (await recent(sc)).entries).length >= n,
    WAIT_MS,
    `${n} entries in /handshakes/recent`,
  );
  return entries;
}

async function inbound(t: Test, limits: Record<string, unknown> = {}): Promise<{ w: World; sc: TestSidecar }> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: ingest.files,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: [PRODUCER] },
        limits,
      },
    ],
  });
  return { w, sc };
}

// More reasons (EKU, revoked, TLS 1.1, non-PFS cipher, timeout) are in handshake-reasons.test.ts.
const INBOUND_FAILURES: Array<{
  name: string;
  client: (w: World) => Promise<TestIdentity | null>;
  reason: string;
  code: string;
}> = [
  {
    name: 'no client certificate',
    client: () => Promise.resolve(null),
    reason: 'no_client_cert',
    code: 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE',
  },
  {
    name: 'an expired client certificate',
    client: (w) => w.identity('expired', { spiffe: [PRODUCER], notBefore: hoursAgo(48), notAfter: hoursAgo(24) }),
    reason: 'cert_expired',
    code: 'CERT_HAS_EXPIRED',
  },
  {
    name: 'a client certificate from an unknown CA',
    client: async (w) => w.identity('foreign', { spiffe: [PRODUCER] }, await makeCa({ cn: 'another CA' })),
    reason: 'unknown_ca',
    code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  },
];

for (const c of INBOUND_FAILURES) {
  t.test(`inbound: ${c.name} shows in /handshakes/recent as ${c.reason} and in the metric`, async (t) => {
    const { w, sc } = await inbound(t);
    const id = await c.client(w);
    await t.rejects(
      mtlsClient(t, sc.addr(), w.ca, id)
        .request({ path: '/', method: 'GET' })
        .then((r) => r.body.dump()),
    );
    const [entry] = await waitForEntries(sc, 1);
    t.match(entry, {
      listener: 'ingest',
      side: 'server',
      kind: 'handshake_failure',
      reason: c.reason,
      remote: /^127\.0\.0\.1:\d+$/,
      count: 1,
    });
    t.equal(entry?.code, c.code, 'the error or verification code is kept');
    t.ok(Date.parse(entry!.at) > 0, 'with a time');
    // Node destroys the socket of a client whose certificate fails verification before it
    // reports the failure, so the presented certificate (and the version) cannot be read then
    t.equal(entry?.peer, null, 'no peer: none was sent, or Node had already discarded it');
    t.equal(entry?.tlsVersion, null, 'no TLS version');
    t.equal(
      await sc.metric('tollgate_tls_handshakes_total', { listener: 'ingest', result: 'failure', reason: c.reason }),
      1,
    );
    const text = await (await request(`http://127.0.0.1:${sc.admin!.port}/metrics`)).body.text();
    t.notMatch(text, /spiffe:\/\/example\.org\/producer/, 'peer identities stay out of metric labels');
  });
}

t.test(
  'inbound: a valid certificate that is not allowed shows as a reason-less authz_deny entry with the peer',
  async (t) => {
    const { w, sc } = await inbound(t);
    const stranger = await w.identity('stranger', { spiffe: ['spiffe://example.org/stranger'] });
    const res = await mtlsClient(t, sc.addr(), w.ca, stranger).request({ path: '/', method: 'GET' });
    t.equal(res.statusCode, 403);
    await res.body.dump();
    const [entry] = await waitForEntries(sc, 1);
    t.match(entry, {
      listener: 'ingest',
      side: 'server',
      kind: 'authz_deny',
      reason: null,
      code: 'ERR_PEER_NOT_ALLOWED',
      peer: { spiffe: 'spiffe://example.org/stranger' },
      tlsVersion: /^TLSv1\.[23]$/,
    });
    t.equal(
      await sc.metric('tollgate_tls_handshakes_total', { result: 'failure' }),
      0,
      'not a handshake failure in the metric',
    );
  },
);

t.test('inbound: connections dropped by the handshake cap are one aggregated entry, not one per socket', async (t) => {
  const { sc } = await inbound(t, { maxConcurrentHandshakes: 1 });
  const i = sc.addr().lastIndexOf(':');
  const port = Number(sc.addr().slice(i + 1));
  // it holds the only slot: it has started a ClientHello (a silent one would be closed to make
  // room), from another address (so the cap refuses, not the per-address limit)
  const holder = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
  holder.on('error', () => undefined);
  await once(holder, 'connect');
  holder.write(Buffer.from([0x16]));
  t.teardown(() => holder.destroy());
  const dropped: net.Socket[] = [];
  for (let k = 0; k < DROPS; k++) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    dropped.push(s);
  }
  t.teardown(() => dropped.forEach((s) => s.destroy()));
  await eventually(
    async () =>
      (await sc.metric('tollgate_tls_handshakes_total', { result: 'failure', reason: 'handshake_cap' })) === DROPS,
    WAIT_MS,
    'drops counted',
  );
  const r = await recent(sc);
  t.equal(r.entries.length, 1, 'one entry');
  t.match(r.entries[0], {
    listener: 'ingest',
    side: 'server',
    reason: 'handshake_cap',
    code: 'HANDSHAKE_CAP',
    count: 5,
  });
  t.equal(r.total, 5, 'the total counts each drop');
});

/** A bare mTLS HTTPS server presenting `id`. */
async function httpsApp(t: Test, w: World, id: TestIdentity): Promise<string> {
  const server = https.createServer(
    { cert: id.certPem, key: id.keyPem, ca: w.ca.certPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function outbound(t: Test, extra: Record<string, unknown>): Promise<TestSidecar> {
  const w = await world(t);
  const warehouse = await w.identity('warehouse', { spiffe: [WAREHOUSE] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const target = await httpsApp(t, w, warehouse);
  return startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: producer.files,
    listeners: [{ name: 'to-warehouse', mode: 'outbound', listen: '127.0.0.1:0', target, ...extra }],
  });
}

async function send(t: Test, sc: TestSidecar): Promise<number> {
  const res = await plainClient(t, sc.addr()).request({ path: '/orders', method: 'GET' });
  await res.body.dump();
  return res.statusCode;
}

t.test('outbound: a successful handshake is counted and timed for the outbound listener', async (t) => {
  const sc = await outbound(t, { serverName: 'localhost', verify: { spiffe: [WAREHOUSE] } });
  t.equal(await send(t, sc), 200);
  t.equal(await sc.metric('tollgate_tls_handshakes_total', { listener: 'to-warehouse', result: 'success' }), 1);
  const text = await (await request(`http://127.0.0.1:${sc.admin!.port}/metrics`)).body.text();
  t.match(text, /tollgate_tls_handshake_duration_seconds_count\{listener="to-warehouse"\} 1/);
  t.same((await recent(sc)).entries, [], 'nothing failed');
});

const OUTBOUND_FAILURES: Array<{ name: string; extra: Record<string, unknown>; detail: RegExp }> = [
  {
    name: 'a server name the certificate does not hold',
    extra: { serverName: 'not-the-warehouse', verify: { spiffe: [WAREHOUSE] } },
    detail: /not-the-warehouse/,
  },
  {
    name: 'an SPKI pin that does not match',
    extra: { serverName: 'localhost', verify: { spkiPins: ['sha256/' + Buffer.alloc(32, 7).toString('base64')] } },
    detail: /pin/i,
  },
  {
    name: 'a SPIFFE ID that does not match',
    extra: { serverName: 'localhost', verify: { spiffe: ['spiffe://example.org/elsewhere'] } },
    detail: /spiffe/i,
  },
];

for (const c of OUTBOUND_FAILURES) {
  t.test(`outbound: ${c.name} shows with side client and reason bad_certificate`, async (t) => {
    const sc = await outbound(t, c.extra);
    t.equal(await send(t, sc), 502);
    const [entry] = await waitForEntries(sc, 1);
    t.match(entry, {
      listener: 'to-warehouse',
      side: 'client',
      kind: 'handshake_failure',
      reason: 'bad_certificate',
      code: 'ERR_UPSTREAM_IDENTITY',
      remote: /^127\.0\.0\.1:\d+$/,
      detail: c.detail,
    });
    t.equal(entry?.peer?.spiffe, WAREHOUSE, 'who answered is kept');
    t.equal(
      await sc.metric('tollgate_tls_handshakes_total', {
        listener: 'to-warehouse',
        result: 'failure',
        reason: 'bad_certificate',
      }),
      1,
    );
    t.equal(await sc.metric('tollgate_tls_handshakes_total', { listener: 'to-warehouse', result: 'success' }), 0);
  });
}

t.test(
  'outbound: a server certificate from an unknown CA is unknown_ca; a refused TCP connect is no handshake at all',
  async (t) => {
    const w = await world(t);
    const foreign = await w.identity('foreign', { spiffe: [WAREHOUSE] }, await makeCa({ cn: 'another CA' }));
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const target = await httpsApp(t, w, foreign);
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const sc = await startTestSidecar(t, w.dir, {
      admin: { listen: '127.0.0.1:0' },
      identity: producer.files,
      listeners: [
        {
          name: 'to-foreign',
          mode: 'outbound',
          listen: '127.0.0.1:0',
          target,
          serverName: 'localhost',
          verify: { spiffe: [WAREHOUSE] },
        },
        {
          name: 'to-nowhere',
          mode: 'outbound',
          listen: '127.0.0.1:0',
          target: `127.0.0.1:${deadPort}`,
          serverName: 'localhost',
          verify: { spiffe: [WAREHOUSE] },
        },
      ],
    });
    t.equal(await send(t, sc), 502);
    const [entry] = await waitForEntries(sc, 1);
    t.match(entry, { listener: 'to-foreign', side: 'client', reason: 'unknown_ca' });
    const res = await plainClient(t, sc.addr(1)).request({ path: '/', method: 'GET' });
    t.equal(res.statusCode, 502);
    await res.body.dump();
    t.equal(
      await sc.metric('tollgate_tls_handshakes_total', { listener: 'to-nowhere', result: 'failure' }),
      0,
      'refused before TLS: an upstream error, not a handshake failure',
    );
    t.equal((await recent(sc)).entries.length, 1);
  },
);

t.test('the ring keeps the newest entries, oldest first, and folds aggregated events', (t) => {
  const ring = new RecentHandshakes(3);
  const base = {
    listener: 'l',
    side: 'server',
    kind: 'handshake_failure',
    reason: 'other',
    remote: null,
    peer: null,
    tlsVersion: null,
    code: null,
    detail: null,
  } as const;
  for (let i = 0; i < 5; i++) ring.add({ ...base, at: new Date(i * 1000).toISOString() });
  t.same(
    ring.list().map((e) => e.at),
    [2, 3, 4].map((i) => new Date(i * 1000).toISOString()),
  );
  const agg = ring.add({ ...base, at: new Date(9000).toISOString() });
  ring.bump(agg, new Date(9500).toISOString());
  t.match(ring.list().at(-1), { count: 2, lastAt: new Date(9500).toISOString() });
  t.equal(ring.count, 7);
  t.end();
});

/* ------------------------------------------------------------ filters on /handshakes/recent */

/** An admin app (in-process, for inject()) answering /handshakes/recent from `ring`. */
function adminOver(t: Test, ring: RecentHandshakes): ReturnType<typeof buildAdminApp> {
  const app = buildAdminApp({
    log: captureLogs().logger,
    registry: new Registry(),
    readiness: { ready: () => true, reasons: () => [] },
    token: null,
    view: {
      status: () => ({}),
      reload: () => Promise.resolve({ ok: true, problems: [], changed: false, ignored: null }),
      handshakes: () => ({ capacity: ring.capacity, total: ring.count, entries: ring.list() }),
    },
  });
  t.teardown(() => app.close());
  return app;
}

async function injectJson(
  app: ReturnType<typeof buildAdminApp>,
  url: string,
): Promise<{
  status: number;
  body: {
    entries?: HandshakeRecord[];
    total?: number;
    capacity?: number;
    error?: string;
    message?: string;
    problems?: string[];
  };
}> {
  const res = await app.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json() };
}

t.test(
  '/handshakes/recent filters by ?reason=, ?listener= and ?limit= (newest kept, oldest first), through inject()',
  async (t) => {
    const ring = new RecentHandshakes(8);
    const base = {
      side: 'server',
      kind: 'handshake_failure',
      remote: null,
      peer: null,
      tlsVersion: null,
      code: null,
      detail: null,
    } as const;
    const rows = [
      ['a', 'timeout'],
      ['b', 'timeout'],
      ['a', 'unknown_ca'],
      ['a', 'timeout'],
      ['b', 'unknown_ca'],
    ] as const;
    rows.forEach(([listener, reason], i) =>
      ring.add({ ...base, listener, reason, at: new Date(i * 1000).toISOString() }),
    );
    ring.add({ ...base, kind: 'authz_deny', listener: 'a', reason: null, at: new Date(9000).toISOString() });
    const app = adminOver(t, ring);
    const at = (entries: HandshakeRecord[] | undefined): number[] =>
      (entries ?? []).map((e) => Date.parse(e.at) / 1000);

    const all = await injectJson(app, '/handshakes/recent');
    t.equal(all.status, 200);
    t.same(at(all.body.entries), [0, 1, 2, 3, 4, 9], 'no filter: everything, oldest first');
    t.same(at((await injectJson(app, '/handshakes/recent?reason=timeout')).body.entries), [0, 1, 3]);
    t.same(
      at((await injectJson(app, '/handshakes/recent?listener=a')).body.entries),
      [0, 2, 3, 9],
      'a listener filter keeps its authz_deny entries',
    );
    t.same(
      at((await injectJson(app, '/handshakes/recent?listener=a&reason=timeout')).body.entries),
      [0, 3],
      'filters combine',
    );
    t.same(
      at((await injectJson(app, '/handshakes/recent?limit=2')).body.entries),
      [4, 9],
      'limit keeps the newest, oldest first',
    );
    t.same(
      at((await injectJson(app, '/handshakes/recent?reason=unknown_ca&limit=1')).body.entries),
      [4],
      'the limit applies after the filters',
    );
    t.same(
      at((await injectJson(app, '/handshakes/recent?limit=8')).body.entries),
      [0, 1, 2, 3, 4, 9],
      'a limit up to the capacity is fine',
    );
    t.same(
      (await injectJson(app, '/handshakes/recent?listener=nowhere')).body.entries,
      [],
      'a listener with no entries: empty',
    );
    t.match(
      (await injectJson(app, '/handshakes/recent?reason=timeout')).body,
      { capacity: 8, total: 6 },
      "capacity and total are the ring's, unfiltered",
    );

    const BAD: Array<[string, RegExp]> = [
      ['?bogus=1', /^bogus: unknown parameter \(known: reason, listener, limit\)$/],
      ['?reason=expired', /^reason: expected one of no_client_cert, .*, other$/],
      ['?reason=', /^reason: /],
      ['?reason=timeout&reason=unknown_ca', /^reason: given more than once$/],
      ['?listener=', /^listener: expected a listener name/],
      ['?listener=Not%20A%20Name', /^listener: expected a listener name/],
      ['?limit=0', /^limit: expected a whole number from 1 to 8$/],
      ['?limit=9', /^limit: expected a whole number from 1 to 8$/],
      ['?limit=2.5', /^limit: /],
      ['?limit=-1', /^limit: /],
      ['?limit=1e1', /^limit: /],
      ['?limit=', /^limit: /],
    ];
    for (const [query, problem] of BAD) {
      const r = await injectJson(app, `/handshakes/recent${query}`);
      t.equal(r.status, 400, `${query}: 400`);
      t.equal(r.body.error, 'ERR_BAD_REQUEST', `${query}: says why`);
      t.equal(r.body.problems?.length, 1, `${query}: one problem`);
      t.match(r.body.problems?.[0], problem, `${query}: ${r.body.message}`);
    }
    const several = await injectJson(app, '/handshakes/recent?limit=x&reason=y&z=1');
    t.equal(several.status, 400);
    t.same(
      several.body.problems?.map((p) => p.split(':')[0]),
      ['z', 'reason', 'limit'],
      'every problem at once, each naming its parameter',
    );
    t.equal(several.body.message, several.body.problems?.join('; '));
  },
);

t.test('/handshakes/recent filters over real HTTP on a sidecar with failures on two listeners', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] });
  const app = await startUpstream(t);
  const inboundListener = (name: string): Record<string, unknown> => ({
    name,
    mode: 'inbound',
    listen: '127.0.0.1:0',
    target: app.addr,
    allow: { spiffe: [PRODUCER] },
    limits: { handshakeTimeoutSeconds: 0.3 },
  });
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: ingest.files,
    listeners: [inboundListener('ingest'), inboundListener('billing')],
  });
  const admin = `http://127.0.0.1:${sc.admin!.port}`;
  const noCert = async (i: number): Promise<void> => {
    await t.rejects(
      mtlsClient(t, sc.addr(i), w.ca, null)
        .request({ path: '/', method: 'GET' })
        .then((r) => r.body.dump()),
    );
  };
  const silent = async (i: number): Promise<void> => {
    const s = net.connect({ host: '127.0.0.1', port: sc.listeners[i]!.address().port });
    s.on('error', () => undefined);
    t.teardown(() => s.destroy());
    await once(s, 'close', { signal: AbortSignal.timeout(WAIT_MS) });
  };
  await noCert(0);
  await waitForEntries(sc, 1);
  await silent(1);
  await waitForEntries(sc, 2);
  await noCert(1);
  await waitForEntries(sc, 3);

  const get = async (
    query: string,
  ): Promise<{ status: number; body: { entries?: HandshakeRecord[]; problems?: string[] } }> => {
    const res = await request(`${admin}/handshakes/recent${query}`);
    return {
      status: res.statusCode,
      body: (await res.body.json()) as { entries?: HandshakeRecord[]; problems?: string[] },
    };
  };
  const pairs = (entries: HandshakeRecord[] | undefined): string[] =>
    (entries ?? []).map((e) => `${e.listener}/${e.reason}`);
  t.same(pairs((await get('')).body.entries), ['ingest/no_client_cert', 'billing/timeout', 'billing/no_client_cert']);
  t.same(pairs((await get('?reason=no_client_cert')).body.entries), [
    'ingest/no_client_cert',
    'billing/no_client_cert',
  ]);
  t.same(pairs((await get('?listener=billing')).body.entries), ['billing/timeout', 'billing/no_client_cert']);
  t.same(pairs((await get('?listener=billing&reason=timeout')).body.entries), ['billing/timeout']);
  t.same(pairs((await get('?limit=1')).body.entries), ['billing/no_client_cert']);
  const bad = await get('?reason=nope&limit=1000');
  t.equal(bad.status, 400);
  t.equal(bad.body.problems?.length, 2, 'both problems named');
});
