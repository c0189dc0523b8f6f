/**
 * A gateway listener in front of three apps, with two producers and a stranger: requests go to
 * the first route that matches (path prefix on whole segments, methods), a route's allow-list
 * narrows the listener's, a route's limits are its own, an ambiguous path is refused before
 * routing, what matches no route is 404, and every refusal is counted, logged and audited with
 * the route it concerns.
 */
import t from 'tap';
import { request } from 'undici';
import type { AuditSink } from '../src/telemetry/audit.ts';
import { PRODUCER } from './helpers/identities.ts';
import { rawConnect } from './helpers/rawClient.ts';
import {
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

const ANALYTICS = 'spiffe://example.org/analytics';
const STRANGER = 'spiffe://example.org/stranger';

interface Gateway {
  readonly w: World;
  readonly sc: TestSidecar;
  readonly apps: { events: Upstream; logs: Upstream; metrics: Upstream };
  readonly producer: TestIdentity;
  readonly analytics: TestIdentity;
  readonly stranger: TestIdentity;
  readonly audit: Array<{ type: string; fields: Record<string, unknown> }>;
}

async function gateway(t: Test): Promise<Gateway> {
  const w = await world(t);
  // the names the tests send as Host (undici checks the certificate against the Host it sends)
  const edge = await w.identity('edge', {
    spiffe: ['spiffe://example.org/edge'],
    dns: ['localhost', 'a.example.org', 'example.org', 'a.example.com'],
  });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const analytics = await w.identity('analytics', { spiffe: [ANALYTICS] });
  const stranger = await w.identity('stranger', { spiffe: [STRANGER] });
  const apps = { events: await startUpstream(t), logs: await startUpstream(t), metrics: await startUpstream(t) };
  const audit: Gateway['audit'] = [];
  const sink: AuditSink = {
    record: (type, fields) => void audit.push({ type, fields: { ...fields } }),
    flush: async () => undefined,
  };
  const sc = await startTestSidecar(
    t,
    w.dir,
    {
      identity: edge.files,
      listeners: [
        {
          name: 'edge',
          mode: 'gateway',
          listen: '127.0.0.1:0',
          allow: { spiffe: [PRODUCER, ANALYTICS] },
          routes: [
            {
              name: 'events',
              match: { pathPrefix: '/v1/events', methods: ['POST'] },
              allow: { spiffe: [PRODUCER] },
              targets: [apps.events.addr],
              limits: { maxBodyBytes: 1024 },
            },
            {
              name: 'logs',
              match: { pathPrefix: '/v1/logs' },
              targets: [apps.logs.addr],
              limits: { requestsPerSecond: 0.001, burst: 3 },
            },
            {
              name: 'metrics',
              match: { pathPrefix: '/v1/metrics', host: '*.example.org' },
              targets: [apps.metrics.addr],
            },
          ],
        },
      ],
    },
    { audit: sink },
  );
  return { w, sc, apps, producer, analytics, stranger, audit };
}

async function send(
  t: Test,
  g: Gateway,
  who: TestIdentity,
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; error: string | undefined; text: string }> {
  const client = mtlsClient(t, g.sc.addr(), g.w.ca, who);
  const res = await client.request({ method, path, body, headers });
  const text = await res.body.text();
  return { status: res.statusCode, error: res.headers['x-tollgate-error'] as string | undefined, text };
}

t.test('a request goes to the first route whose path prefix (on whole segments) and methods match', async (t) => {
  const g = await gateway(t);
  const posted = await send(t, g, g.producer, 'POST', '/v1/events/batch?x=1', 'hello');
  t.equal(posted.status, 200);
  t.equal(g.apps.events.seen.length, 1, 'the events app got it');
  t.equal(g.apps.events.seen[0]!.url, '/v1/events/batch?x=1', 'the target is forwarded as sent');
  t.equal(g.apps.events.seen[0]!.headers['x-tollgate-peer'], PRODUCER, 'with the verified peer');
  t.equal((await send(t, g, g.analytics, 'GET', '/v1/logs')).status, 200);
  t.equal((await send(t, g, g.analytics, 'GET', '/v1/logs/')).status, 200);
  t.equal(g.apps.logs.seen.length, 2, 'the logs app got both');
  t.equal(
    (await send(t, g, g.producer, 'GET', '/v1/metrics/q', undefined, { host: 'a.example.org' })).status,
    200,
    'a host under *.example.org',
  );
  t.equal(g.apps.metrics.seen.length, 1);

  for (const [method, path, host] of [
    ['POST', '/v1/eventsx', undefined],
    ['GET', '/v1/events', undefined],
    ['POST', '/v2/events', undefined],
    ['GET', '/v1/metrics/q', 'example.org'],
    ['GET', '/v1/metrics/q', 'a.example.com'],
  ] as const) {
    const r = await send(t, g, g.producer, method, path, undefined, host === undefined ? {} : { host });
    t.equal(r.status, 404, `${method} ${path} ${host ?? ''}: 404`);
    t.equal(r.error, 'ERR_NO_ROUTE');
  }
  t.equal(g.apps.events.seen.length + g.apps.logs.seen.length + g.apps.metrics.seen.length, 4, 'no app saw a 404');
  t.equal(await g.sc.metric('tollgate_requests_total', { listener: 'edge', route: 'events', status_class: '2xx' }), 1);
  t.equal(await g.sc.metric('tollgate_requests_total', { listener: 'edge', route: 'logs', status_class: '2xx' }), 2);
  t.equal(
    await g.sc.metric('tollgate_requests_total', { listener: 'edge', route: '_unrouted', status_class: '4xx' }),
    5,
    'what no route took is counted under _unrouted',
  );
  const refusals = g.sc.logs.lines.filter((l) => l.msg === 'request refused' && l.code === 'ERR_NO_ROUTE');
  t.equal(refusals.length, 5, 'one log line per 404');
  t.equal(refusals[0]!.route, '_unrouted');
  t.equal(g.audit.filter((e) => e.type === 'request_refused' && e.fields.code === 'ERR_NO_ROUTE').length, 5);
});

t.test(
  'a peer the listener allows but a route does not is refused on that route only, with the route named',
  async (t) => {
    const g = await gateway(t);
    const client = mtlsClient(t, g.sc.addr(), g.w.ca, g.analytics);
    const refused = await client.request({ method: 'POST', path: '/v1/events', body: 'x' });
    await refused.body.text();
    t.equal(refused.statusCode, 403);
    t.equal(refused.headers['x-tollgate-error'], 'ERR_PEER_NOT_ALLOWED');
    t.equal(g.apps.events.seen.length, 0, 'the events app saw nothing');
    // the same connection carries on to a route the peer may use
    const allowed = await client.request({ method: 'GET', path: '/v1/logs' });
    await allowed.body.text();
    t.equal(allowed.statusCode, 200, 'the connection stays usable for other routes');
    const line = g.sc.logs.lines.find((l) => l.msg === 'request refused' && l.code === 'ERR_PEER_NOT_ALLOWED');
    t.ok(line, 'one log line');
    t.equal(line?.route, 'events');
    const events = g.audit.filter((e) => e.type === 'request_refused' && e.fields.code === 'ERR_PEER_NOT_ALLOWED');
    t.equal(events.length, 1, 'one audit event');
    t.equal(events[0]?.fields.route, 'events');
    t.equal(events[0]?.fields.peer, ANALYTICS);
    t.equal(
      await g.sc.metric('tollgate_requests_total', { listener: 'edge', route: 'events', status_class: '4xx' }),
      1,
    );

    // a peer the listener refuses is refused at its handshake, as on an inbound listener
    const stranger = await send(t, g, g.stranger, 'GET', '/v1/logs');
    t.equal(stranger.status, 403);
    t.equal(g.audit.filter((e) => e.type === 'authz_deny').length, 1, 'audited once, at the handshake');
  },
);

t.test('a path that is not canonical origin-form is refused before routing with ERR_BAD_PATH', async (t) => {
  const g = await gateway(t);
  const targets = [
    '/v1/logs/..',
    '/v1/events/../logs',
    '/v1/%2e%2e/logs',
    '/v1/logs/%2E',
    '/v1//logs',
    '//v1/logs',
    '/v1/logs%2Fx',
    '/v1/logs%5cx',
    '/v1/logs/%00',
    '/v1/logs/%zz',
    '/v1/..;x/logs',
    '*',
    'http://localhost/v1/logs',
    'http://elsewhere.example/v1/logs',
  ];
  for (const target of targets) {
    const method = target === '*' ? 'OPTIONS' : 'GET';
    const conn = await rawConnect(g.sc.addr(), { w: g.w, producer: g.producer }, 5000);
    conn.socket.write(`${method} ${target} HTTP/1.1\r\nhost: localhost\r\n\r\n`);
    await conn.until(() => conn.received().includes('\r\n\r\n'));
    const answer = conn.received().toString('latin1');
    conn.socket.destroy();
    t.match(answer, /^HTTP\/1\.1 400 /, `${target}: 400`);
    t.match(answer, /x-tollgate-error: ERR_BAD_PATH/i, `${target}: ERR_BAD_PATH`);
  }
  t.equal(g.apps.logs.seen.length + g.apps.events.seen.length, 0, 'no app saw any of them');
  t.equal(g.sc.logs.lines.filter((l) => l.code === 'ERR_BAD_PATH').length, targets.length, 'one log line each');
  t.equal(g.audit.filter((e) => e.fields.code === 'ERR_BAD_PATH').length, targets.length, 'one audit event each');
  // an unreserved character percent-encoded is the same path: it routes as its decoded form
  const encoded = await send(t, g, g.producer, 'GET', '/v1/%6Cogs/x');
  t.equal(encoded.status, 200);
  t.equal(g.apps.logs.seen[0]?.url, '/v1/%6Cogs/x', 'the target is forwarded as sent');
});

t.test("a route's limits are its own: body size on one, the rate on another", async (t) => {
  const g = await gateway(t);
  const big = await send(t, g, g.producer, 'POST', '/v1/events', 'x'.repeat(2000));
  t.equal(big.status, 413, 'over the events route maxBodyBytes');
  t.equal(big.error, 'ERR_PAYLOAD_TOO_LARGE');
  t.equal(
    (await send(t, g, g.producer, 'POST', '/v1/logs', 'x'.repeat(2000))).status,
    200,
    'the logs route has the listener limit',
  );
  t.equal((await send(t, g, g.producer, 'GET', '/v1/logs')).status, 200);
  t.equal((await send(t, g, g.producer, 'GET', '/v1/logs')).status, 200, 'the burst of 3 is spent');
  const limited = await send(t, g, g.producer, 'GET', '/v1/logs');
  t.equal(limited.status, 429);
  t.equal(limited.error, 'ERR_RATE_LIMITED');
  t.equal((await send(t, g, g.producer, 'POST', '/v1/events', 'ok')).status, 200, 'another route has no rate limit');
});

t.test('GET /routes shows each route, its match and its endpoints with their health', async (t) => {
  const w = await world(t);
  const edge = await w.identity('edge');
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: edge.files,
    listeners: [
      {
        name: 'edge',
        mode: 'gateway',
        listen: '127.0.0.1:0',
        allow: { any: true },
        routes: [{ name: 'all', match: { pathPrefix: '/' }, targets: [app.addr, `localhost:${app.port}`] }],
      },
    ],
  });
  const res = await request(`http://127.0.0.1:${sc.admin!.port}/routes`);
  t.equal(res.statusCode, 200);
  const body = (await res.body.json()) as {
    threads: number;
    listeners: Array<{
      listener: string;
      routes: Array<Record<string, unknown> & { endpoints: Array<Record<string, unknown>> }>;
    }>;
  };
  t.equal(body.threads, 1);
  t.equal(body.listeners[0]?.listener, 'edge');
  const route = body.listeners[0]!.routes[0]!;
  t.equal(route.name, 'all');
  t.same(route.match, { pathPrefix: '/', host: null, methods: null });
  const addresses = route.endpoints.map((e) => e.address);
  t.ok(addresses.includes(app.addr), 'the literal target is an endpoint');
  t.ok(
    route.endpoints.every((e) => e.healthy === true && e.ejections === 0),
    'all healthy',
  );
  t.ok(Array.isArray(route.targets), 'with each target as resolved');
});

t.test('with worker threads every thread routes, and GET /routes merges their endpoints', async (t) => {
  const w = await world(t);
  const edge = await w.identity('edge');
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: edge.files,
    workers: 2,
    listeners: [
      {
        name: 'edge',
        mode: 'gateway',
        listen: '127.0.0.1:0',
        allow: { spiffe: [PRODUCER] },
        routes: [{ name: 'ingest', match: { pathPrefix: '/v1/ingest' }, targets: [app.addr] }],
      },
    ],
  });
  for (let i = 0; i < 20; i += 1) {
    // a new connection each time, so the kernel spreads them over both threads
    const client = mtlsClient(t, sc.addr(), w.ca, producer);
    const res = await client.request({ method: 'GET', path: `/v1/ingest/${i}` });
    await res.body.dump();
    await client.close();
    t.equal(res.statusCode, 200, `request ${i}`);
  }
  t.equal(app.seen.length, 20);
  const body = (await (await request(`http://127.0.0.1:${sc.admin!.port}/routes`)).body.json()) as {
    threads: number;
    listeners: Array<{ routes: Array<{ name: string; endpoints: Array<Record<string, unknown>> }> }>;
  };
  t.equal(body.threads, 2, 'both threads answered');
  t.match(body.listeners[0]!.routes[0]!.endpoints[0], { address: app.addr, healthy: true, ejectedOnThreads: 0 });
});
