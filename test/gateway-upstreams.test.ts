/**
 * A gateway route's upstream: several endpoints balanced, passive health (consecutive connect
 * failures or 5xx eject an endpoint for a while, every endpoint ejected is 503
 * ERR_NO_HEALTHY_UPSTREAM, an ejected endpoint comes back), retries to another endpoint, one
 * endpoint killed under load with no failed idempotent request after its ejection and the
 * other routes untouched, and mTLS origination with re-signing to a tollgate behind the route.
 */
import t from 'tap';
import http from 'node:http';
import { Resolver } from 'node:dns/promises';
import { request } from 'undici';
import { startDnsServer } from './helpers/dnsServer.ts';
import { freePort } from './helpers/process.ts';
import { INGEST, PRODUCER } from './helpers/identities.ts';
import { signedHeaders, writeKey } from './helpers/signing.ts';
import {
  eventually,
  mtlsClient,
  startTestSidecar,
  startUpstream,
  world,
  type Test,
  type TestIdentity,
  type TestSidecar,
  type Upstream,
  type World,
} from './helpers/world.ts';

const EDGE = 'spiffe://example.org/edge';

async function startGateway(
  t: Test,
  w: World,
  routes: ReadonlyArray<Record<string, unknown>>,
  top: Record<string, unknown> = {},
): Promise<TestSidecar> {
  const edge = await w.identity('edge', { spiffe: [EDGE] });
  return startTestSidecar(t, w.dir, {
    identity: edge.files,
    log: { level: 'debug', access: true },
    ...top,
    listeners: [{ name: 'edge', mode: 'gateway', listen: '127.0.0.1:0', allow: { any: true }, routes }],
  });
}

async function get(
  t: Test,
  sc: TestSidecar,
  w: World,
  who: TestIdentity,
  path: string,
): Promise<{ status: number; error?: string }> {
  const client = mtlsClient(t, sc.addr(), w.ca, who);
  const res = await client.request({ method: 'GET', path });
  await res.body.text();
  return { status: res.statusCode, error: res.headers['x-tollgate-error'] as string | undefined };
}

/** an app answering `name` on every request, counting them */
async function namedApp(t: Test, name: string, status = 200): Promise<Upstream & { count(): number }> {
  let n = 0;
  const app = await startUpstream(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      n += 1;
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': name.length }).end(name);
    });
  });
  return { ...app, count: () => n };
}

t.test('requests spread over the endpoints of a route', async (t) => {
  const w = await world(t);
  const a = await namedApp(t, 'a');
  const b = await namedApp(t, 'b');
  const sc = await startGateway(t, w, [{ name: 'all', match: { pathPrefix: '/' }, targets: [a.addr, b.addr] }]);
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  // concurrent clients: with requests outstanding on one endpoint, the two choices favour the other
  const clients = Array.from({ length: 4 }, () => mtlsClient(t, sc.addr(), w.ca, producer));
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < 25; i += 1) {
        const res = await c.request({ method: 'GET', path: `/x/${i}` });
        await res.body.text();
        t.equal(res.statusCode, 200);
      }
    }),
  );
  t.equal(a.count() + b.count(), 100);
  t.ok(a.count() >= 10 && b.count() >= 10, `both endpoints used (a ${a.count()}, b ${b.count()})`);
});

t.test(
  'an endpoint that refuses connections is ejected, and with none left the route answers 503 until one comes back',
  async (t) => {
    const w = await world(t);
    const port = await freePort();
    const sc = await startGateway(t, w, [
      {
        name: 'only',
        match: { pathPrefix: '/' },
        targets: [`127.0.0.1:${port}`],
        passiveHealth: { consecutiveFailures: 1, ejectSeconds: 0.5, maxEjectSeconds: 1 },
      },
    ]);
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const first = await get(t, sc, w, producer, '/a');
    t.equal(first.status, 502, 'the refused connect fails the request: no other endpoint to try');
    t.equal(first.error, 'ERR_UPSTREAM_UNAVAILABLE');
    t.equal(await sc.metric('tollgate_endpoint_ejections_total', { listener: 'edge', route: 'only' }), 1, 'ejected');
    const second = await get(t, sc, w, producer, '/b');
    t.equal(second.status, 503, 'every endpoint ejected');
    t.equal(second.error, 'ERR_NO_HEALTHY_UPSTREAM');
    t.equal(
      await sc.metric('tollgate_upstream_errors_total', { listener: 'edge', reason: 'upstream_ejected' }),
      1,
      'counted as an upstream error',
    );
    t.ok(
      sc.logs.lines.some((l) => l.msg === 'every endpoint of the route is ejected' && l.route === 'only'),
      'logged with the route',
    );
    // the endpoint comes up; once its ejection is over it gets requests again
    const server = http.createServer((_req, res) => res.end('back'));
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    t.teardown(() => new Promise((r) => server.close(() => r(undefined))));
    await eventually(async () => (await get(t, sc, w, producer, '/c')).status === 200, 5000, 'the endpoint back');
  },
);

t.test('an endpoint answering 5xx in a row is ejected and the route sends to the others', async (t) => {
  const w = await world(t);
  const bad = await namedApp(t, 'bad', 500);
  const good = await namedApp(t, 'good');
  const sc = await startGateway(t, w, [
    {
      name: 'all',
      match: { pathPrefix: '/' },
      targets: [bad.addr, good.addr],
      passiveHealth: { consecutiveFailures: 3, ejectSeconds: 60 },
    },
  ]);
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  let fives = 0;
  for (let i = 0; i < 40; i += 1) if ((await get(t, sc, w, producer, `/r${i}`)).status === 500) fives += 1;
  t.equal(fives, 3, 'the 5xx answers pass through until the third ejects the endpoint');
  t.equal(bad.count(), 3);
  t.equal(await sc.metric('tollgate_endpoint_ejections_total', { listener: 'edge', route: 'all' }), 1);
  const line = sc.logs.lines.find((l) => l.msg === 'endpoint ejected');
  t.equal(line?.endpoint, bad.addr);
  t.equal(line?.cause, 'answered 500');
});

t.test(
  'a connect that fails goes once to another endpoint, whatever the method: nothing of the request was sent',
  async (t) => {
    const w = await world(t);
    const dead = await freePort();
    const good = await namedApp(t, 'good');
    const sc = await startGateway(t, w, [
      {
        name: 'all',
        match: { pathPrefix: '/' },
        targets: [`127.0.0.1:${dead}`, good.addr],
        passiveHealth: { consecutiveFailures: 1000, ejectSeconds: 60 },
      },
    ]);
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    for (let i = 0; i < 20; i += 1) {
      // a new connection each time: the pool to the dead endpoint never keeps one
      const client = mtlsClient(t, sc.addr(), w.ca, producer);
      const res = await client.request({ method: 'POST', path: `/p${i}`, body: 'payload' });
      await res.body.text();
      t.equal(res.statusCode, 200, `POST ${i}`);
    }
    t.equal(good.count(), 20);
    const retried = sc.logs.lines.filter((l) => l.msg === 'access' && l.retried === true);
    t.ok(retried.length > 0, `some went to the dead endpoint first and were retried (${retried.length})`);
    t.ok(
      sc.logs.lines.some((l) => l.msg === 'upstream connect failed: trying another endpoint of the route'),
      'the retry is logged',
    );
  },
);

t.test(
  'one endpoint killed under load: no idempotent request fails after its ejection, and other routes are untouched',
  async (t) => {
    const w = await world(t);
    const a = await namedApp(t, 'a');
    const b = await namedApp(t, 'b');
    const other = await namedApp(t, 'other');
    const sc = await startGateway(t, w, [
      {
        name: 'ingest',
        match: { pathPrefix: '/v1/ingest' },
        targets: [a.addr, b.addr],
        passiveHealth: { consecutiveFailures: 2, ejectSeconds: 60 },
      },
      { name: 'other', match: { pathPrefix: '/v1/other' }, targets: [other.addr] },
    ]);
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const ejected = (): Promise<number> =>
      sc.metric('tollgate_endpoint_ejections_total', { listener: 'edge', route: 'ingest' });
    const results: Array<{ route: string; status: number; afterEjection: boolean }> = [];
    let ejectedAt = false;
    let done = 0;
    const TOTAL = 600;
    const deadline = Date.now() + 20_000;
    const worker = async (route: string): Promise<void> => {
      const client = mtlsClient(t, sc.addr(), w.ca, producer);
      while (done < TOTAL && Date.now() < deadline) {
        done += 1;
        const afterEjection = ejectedAt;
        const res = await client.request({ method: 'GET', path: `/v1/${route}/${done}` }).catch(() => null);
        if (res !== null) await res.body.text();
        results.push({ route, status: res?.statusCode ?? 0, afterEjection });
      }
    };
    const killer = (async () => {
      await eventually(() => done >= 100, 10_000, '100 requests');
      b.server.closeAllConnections();
      b.server.close();
      await eventually(async () => (await ejected()) >= 1, 10_000, 'the ejection');
      ejectedAt = true;
    })();
    await Promise.all([worker('ingest'), worker('ingest'), worker('ingest'), worker('other'), killer]);
    const after = results.filter((r) => r.afterEjection && r.route === 'ingest');
    const failed = results.filter((r) => r.status !== 200);
    t.ok(after.length > 50, `requests after the ejection: ${after.length}`);
    t.same(
      after.filter((r) => r.status !== 200),
      [],
      'no request failed after the ejection',
    );
    t.same(
      results.filter((r) => r.route === 'other' && r.status !== 200),
      [],
      'the other route was untouched',
    );
    t.ok(failed.length <= 2, `at most a response cut as the endpoint died failed (${failed.length})`);
    t.equal(await ejected(), 1, 'ejected once');
  },
);

t.test(
  'a route originates mTLS to a tollgate behind it, checks its identity and re-signs with the gateway key',
  async (t) => {
    const w = await world(t);
    const gatewayKeys = `${w.dir}/gateway-keys`;
    const ingestKeys = `${w.dir}/ingest-keys`;
    const producerKey = await writeKey(gatewayKeys, 'k1');
    const gw = await writeKey(gatewayKeys, 'gw');
    await writeKey(ingestKeys, 'gw', gw.secret);
    const app = await startUpstream(t);
    const ingestId = await w.identity('ingest', { spiffe: [INGEST] });
    const ingest = await startTestSidecar(t, w.dir, {
      identity: ingestId.files,
      keys: { dir: ingestKeys },
      listeners: [
        {
          name: 'ingest',
          mode: 'inbound',
          listen: '127.0.0.1:0',
          target: app.addr,
          allow: { spiffe: [EDGE] },
          integrity: { verify: true },
        },
      ],
    });
    const sc = await startGateway(
      t,
      w,
      [
        {
          name: 'ingest',
          match: { pathPrefix: '/v1/ingest' },
          targets: [ingest.addr()],
          upstreamTls: { serverName: 'localhost', verify: { spiffe: [INGEST] } },
          integrity: { verify: true, sign: true, keyId: 'gw' },
        },
        {
          name: 'impostor',
          match: { pathPrefix: '/v1/impostor' },
          targets: [ingest.addr()],
          upstreamTls: { serverName: 'localhost', verify: { spiffe: ['spiffe://example.org/someone-else'] } },
          integrity: { verify: true },
        },
      ],
      { keys: { dir: gatewayKeys } },
    );
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const client = mtlsClient(t, sc.addr(), w.ca, producer);
    const body = JSON.stringify({ event: 'x' });
    const headers = signedHeaders({
      method: 'POST',
      path: '/v1/ingest/e',
      authority: sc.addr(),
      headers: { 'content-type': 'application/json' },
      body,
      key: producerKey,
    });
    const res = await client.request({ method: 'POST', path: '/v1/ingest/e', headers, body });
    const text = await res.body.text();
    t.equal(res.statusCode, 200, `through both tollgates (${text})`);
    t.equal(app.seen.length, 1);
    t.match(String(app.seen[0]!.headers['signature-input']), /keyid="gw"/, 'the app sees the gateway signature');
    t.notMatch(String(app.seen[0]!.headers['signature-input']), /keyid="k1"/, "the producer's is gone");
    t.equal(app.seen[0]!.headers['x-tollgate-peer'], EDGE, 'the tollgate behind saw the gateway identity');

    const unsigned = await client.request({ method: 'POST', path: '/v1/ingest/e', body });
    await unsigned.body.text();
    t.equal(unsigned.statusCode, 401, 'the gateway verifies before re-signing');
    t.equal(unsigned.headers['x-tollgate-error'], 'ERR_SIG_MISSING');

    const wrongHeaders = signedHeaders({ method: 'GET', path: '/v1/impostor', authority: sc.addr(), key: producerKey });
    const wrong = await client.request({ method: 'GET', path: '/v1/impostor', headers: wrongHeaders });
    await wrong.body.text();
    t.equal(wrong.statusCode, 502, 'a server that is not who the route expects');
    t.equal(wrong.headers['x-tollgate-error'], 'ERR_UPSTREAM_IDENTITY');
    t.equal(app.seen.length, 1, 'nothing more reached the app');
  },
);

t.test(
  "a target's DNS name stands for every address it has, followed as the answer changes (a headless Service)",
  async (t) => {
    const w = await world(t);
    const dns = await startDnsServer(t);
    // two pods of one Service: the same port on two loopback addresses
    const a = await namedApp(t, 'a');
    let bCount = 0;
    const b = http.createServer((req, res) => {
      req.resume();
      bCount += 1;
      res.end('b');
    });
    await new Promise<void>((r) => b.listen(a.port, '127.0.0.2', r));
    t.teardown(() => {
      b.closeAllConnections();
      return new Promise((r) => b.close(() => r(undefined)));
    });
    dns.set('ingest.pipeline.test', [
      { address: '127.0.0.1', ttl: 1 },
      { address: '127.0.0.2', ttl: 1 },
    ]);
    const resolver = new Resolver({ timeout: 500, tries: 1 });
    resolver.setServers([dns.address]);
    const edge = await w.identity('edge', { spiffe: [EDGE] });
    const sc = await startTestSidecar(
      t,
      w.dir,
      {
        admin: { listen: '127.0.0.1:0' },
        identity: edge.files,
        listeners: [
          {
            name: 'edge',
            mode: 'gateway',
            listen: '127.0.0.1:0',
            allow: { any: true },
            routes: [{ name: 'ingest', match: { pathPrefix: '/' }, targets: [`ingest.pipeline.test:${a.port}`] }],
          },
        ],
      },
      { resolverFor: { resolver } },
    );
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const clients = Array.from({ length: 4 }, () => mtlsClient(t, sc.addr(), w.ca, producer));
    const burst = async (n: number): Promise<void> => {
      await Promise.all(
        clients.map(async (c) => {
          for (let i = 0; i < n; i += 1) {
            const res = await c.request({ method: 'GET', path: '/x' });
            await res.body.dump();
            t.equal(res.statusCode, 200);
          }
        }),
      );
    };
    await burst(15);
    t.ok(a.count() > 0 && bCount > 0, `both addresses got requests (a ${a.count()}, b ${bCount})`);
    const routes = (await (await request(`http://127.0.0.1:${sc.admin!.port}/routes`)).body.json()) as {
      listeners: Array<{ routes: Array<{ endpoints: Array<{ address: string; target: string }> }> }>;
    };
    t.same(
      routes.listeners[0]!.routes[0]!.endpoints.map((e) => e.address).sort(),
      [`127.0.0.1:${a.port}`, `127.0.0.2:${a.port}`],
      'one endpoint per address',
    );
    // the pod at 127.0.0.2 goes away: after the TTL, no new request goes there
    dns.set('ingest.pipeline.test', [{ address: '127.0.0.1', ttl: 1 }]);
    await eventually(
      async () => {
        const r = (await (await request(`http://127.0.0.1:${sc.admin!.port}/routes`)).body.json()) as typeof routes;
        return r.listeners[0]!.routes[0]!.endpoints.length === 1;
      },
      10_000,
      'the answer without 127.0.0.2',
    );
    const before = bCount;
    await burst(10);
    t.equal(bCount, before, 'the address that left gets nothing more');
  },
);
