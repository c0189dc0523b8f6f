/**
 * A gateway listener's config: what validates (the interface's example, defaults inherited by
 * each route), what is refused with its path (a route shadowed by an earlier one, a prefix that
 * is not canonical, a limit that belongs to the connection, re-signing without verifying…), and
 * the route table reloaded without a restart: validated whole and swapped, a request in flight
 * finishing on the old table, unchanged routes keeping their endpoints' health, a bad file
 * changing nothing.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { validateConfig } from '../src/config/validate.ts';
import { reloadPlan } from '../src/config/reloadPlan.ts';
import type { Config, ConfigProblem } from '../src/config/types.ts';
import { freePort } from './helpers/process.ts';
import { PRODUCER } from './helpers/identities.ts';
import { eventually, heldUpstream, mtlsClient, startTestSidecar, startUpstream, world } from './helpers/world.ts';

const BASE = {
  identity: { certFile: 'tls.crt', keyFile: 'tls.key', caFile: 'ca.crt' },
  keys: { dir: 'keys' },
};

/**
 * The gateway the interface was specified with: the listener and the first route of the README's
 * "Gateway" example, without the listener's integrity and limits.
 */
const INTERFACE_GATEWAY = {
  name: 'edge',
  mode: 'gateway',
  protocol: 'http',
  listen: '0.0.0.0:15443',
  allow: { spiffe: ['spiffe://example.org/*'] },
  routes: [
    {
      name: 'events',
      match: { pathPrefix: '/v1/events', host: null, methods: ['POST'] },
      allow: { spiffe: ['spiffe://example.org/producer'] },
      targets: ['events.pipeline.svc.cluster.local:8080'],
      upstreamTls: null,
      integrity: { verify: true },
      limits: { maxBodyBytes: 1048576 },
      anomaly: { mode: 'observe' },
    },
  ],
};

function validate(listener: Record<string, unknown>): { config: Config | null; problems: readonly ConfigProblem[] } {
  const r = validateConfig({ ...BASE, listeners: [listener] }, { baseDir: '/etc/tollgate', source: null });
  return r.ok ? { config: r.config, problems: [] } : { config: null, problems: r.problems };
}

function route(over: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'r', match: { pathPrefix: '/v1/r' }, targets: ['10.0.0.1:8080'], ...over };
}

function gatewayWith(routes: unknown[], over: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'edge', mode: 'gateway', listen: '0.0.0.0:15443', allow: { any: true }, routes, ...over };
}

t.test("the interface's gateway example validates, and each route inherits what it does not set", async (t) => {
  const { config, problems } = validate(INTERFACE_GATEWAY);
  t.same(problems, []);
  const l = config!.listeners[0]!;
  t.equal(l.mode, 'gateway');
  const r = l.routes[0]!;
  t.same(r.match, { pathPrefix: '/v1/events', host: null, methods: ['POST'] });
  t.same(r.targets, [{ host: 'events.pipeline.svc.cluster.local', port: 8080 }]);
  t.equal(r.limits.maxBodyBytes, 1048576, 'its own body limit');
  t.equal(r.limits.headersTimeoutSeconds, l.limits.headersTimeoutSeconds, "the listener's other limits");
  t.same(r.integrity, { verify: true, sign: false, keyId: null });
  t.same(r.passiveHealth, { consecutiveFailures: 3, ejectSeconds: 5, maxEjectSeconds: 300 });
  t.equal(r.dnsRefreshSeconds, 30);

  const inherited = validate(gatewayWith([route()], { integrity: { verify: true }, limits: { requestsPerSecond: 5 } }));
  t.same(inherited.problems, []);
  const ir = inherited.config!.listeners[0]!.routes[0]!;
  t.equal(ir.integrity.verify, true, "verify defaults to the listener's");
  t.equal(ir.limits.requestsPerSecond, 5, "the rate defaults to the listener's");
  t.equal(ir.limits.burst, 5);
});

t.test('what a gateway config may not say is refused, each problem named by its path', async (t) => {
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['no routes', gatewayWith([]), 'listeners[0].routes', /at least one route/],
    ['a tcp gateway', gatewayWith([route()], { protocol: 'tcp' }), 'listeners[0].protocol', /expected "http"/],
    [
      'a target on the listener',
      gatewayWith([route()], { target: '127.0.0.1:1' }),
      'listeners[0].target',
      /routes\[\]\.targets/,
    ],
    ['a route without targets', gatewayWith([route({ targets: [] })]), 'listeners[0].routes[0].targets', /non-empty/],
    [
      'a target without a port',
      gatewayWith([route({ targets: ['x.example'] })]),
      'listeners[0].routes[0].targets[0]',
      /PORT/,
    ],
    [
      'a prefix with a trailing /',
      gatewayWith([route({ match: { pathPrefix: '/v1/' } })]),
      'listeners[0].routes[0].match.pathPrefix',
      /trailing/,
    ],
    [
      'a prefix with a dot segment',
      gatewayWith([route({ match: { pathPrefix: '/v1/../x' } })]),
      'listeners[0].routes[0].match.pathPrefix',
      /dot segments/,
    ],
    [
      'a prefix with an encoded /',
      gatewayWith([route({ match: { pathPrefix: '/v1%2Fx' } })]),
      'listeners[0].routes[0].match.pathPrefix',
      /unreserved/,
    ],
    [
      'a lowercase method',
      gatewayWith([route({ match: { pathPrefix: '/a', methods: ['post'] } })]),
      'listeners[0].routes[0].match.methods[0]',
      /did you mean POST/,
    ],
    [
      'CONNECT',
      gatewayWith([route({ match: { pathPrefix: '/a', methods: ['CONNECT'] } })]),
      'listeners[0].routes[0].match.methods[0]',
      /never proxied/,
    ],
    [
      'a host with a port',
      gatewayWith([route({ match: { pathPrefix: '/a', host: 'a.example:80' } })]),
      'listeners[0].routes[0].match.host',
      /without a port/,
    ],
    [
      'two routes of one name',
      gatewayWith([route(), route({ match: { pathPrefix: '/b' } })]),
      'listeners[0].routes[1].name',
      /already the name/,
    ],
    ['a name that is not a label', gatewayWith([route({ name: '_x' })]), 'listeners[0].routes[0].name', /metric label/],
    [
      'a route after a catch-all',
      gatewayWith([route({ name: 'all', match: { pathPrefix: '/' } }), route()]),
      'listeners[0].routes[1].match',
      /never chosen: listeners\[0\]\.routes\[0\]/,
    ],
    [
      'a prefix after a shorter one of the same segments',
      gatewayWith([
        route({ name: 'v1', match: { pathPrefix: '/v1' } }),
        route({ match: { pathPrefix: '/v1/events/x' } }),
      ]),
      'listeners[0].routes[1].match',
      /never chosen: listeners\[0\]\.routes\[0\]/,
    ],
    [
      'a host under an earlier wildcard with fewer methods',
      gatewayWith([
        route({ name: 'w', match: { pathPrefix: '/a', host: '*.example.org', methods: ['GET', 'POST'] } }),
        route({ match: { pathPrefix: '/a/b', host: 'x.example.org', methods: ['POST'] } }),
      ]),
      'listeners[0].routes[1].match',
      /never chosen/,
    ],
    [
      'the same match twice',
      gatewayWith([route({ name: 'a' }), route({ name: 'b' })]),
      'listeners[0].routes[1].match',
      /never chosen/,
    ],
    [
      'a connection limit on a route',
      gatewayWith([route({ limits: { maxConnections: 5 } })]),
      'listeners[0].routes[0].limits.maxConnections',
      /set it on the gateway listener/,
    ],
    [
      'sign without verify',
      gatewayWith([route({ integrity: { verify: false, sign: true, keyId: 'k1' } })]),
      'listeners[0].routes[0].integrity.sign',
      /needs verify: true/,
    ],
    [
      'sign without a key',
      gatewayWith([route({ integrity: { verify: true, sign: true } })]),
      'listeners[0].routes[0].integrity.keyId',
      /required when sign/,
    ],
    [
      'sign on the listener',
      gatewayWith([route()], { integrity: { sign: true } }),
      'listeners[0].integrity.sign',
      /per route/,
    ],
    [
      'an unknown route key',
      gatewayWith([route({ target: 'x:1' })]),
      'listeners[0].routes[0].target',
      /did you mean targets/,
    ],
    [
      'an eject time above its maximum',
      gatewayWith([route({ passiveHealth: { ejectSeconds: 10, maxEjectSeconds: 5 } })]),
      'listeners[0].routes[0].passiveHealth.maxEjectSeconds',
      /at least ejectSeconds/,
    ],
  ];
  for (const [what, listener, path, message] of cases) {
    const { problems } = validate(listener);
    const p = problems.find((x) => x.path === path);
    t.ok(p, `${what}: a problem at ${path} (got ${JSON.stringify(problems)})`);
    t.match(p?.message ?? '', message, `${what}: ${p?.message}`);
  }
  // not shadowed: a longer prefix first, a sibling segment, a narrower host or method set first
  for (const routes of [
    [route({ name: 'long', match: { pathPrefix: '/v1/events' } }), route({ match: { pathPrefix: '/v1' } })],
    [route({ name: 'a', match: { pathPrefix: '/v1/eventsx' } }), route({ match: { pathPrefix: '/v1/events' } })],
    [route({ name: 'h', match: { pathPrefix: '/', host: 'a.example.org' } }), route({ match: { pathPrefix: '/' } })],
    [
      route({ name: 'm', match: { pathPrefix: '/', methods: ['GET'] } }),
      route({ match: { pathPrefix: '/x', methods: ['GET', 'POST'] } }),
    ],
  ])
    t.same(validate(gatewayWith(routes)).problems, [], `reachable: ${JSON.stringify(routes.map((r) => r.match))}`);
  const noKeys = validateConfig(
    { identity: BASE.identity, listeners: [gatewayWith([route({ integrity: { verify: true } })])] },
    { baseDir: '/etc', source: null },
  );
  t.ok(
    !noKeys.ok &&
      noKeys.problems.some((p) => p.path === 'listeners[0].routes[0].integrity.verify' && /keys\.dir/.test(p.message)),
    'verify needs keys.dir',
  );
});

t.test('a change of routes reloads live; turning signatures on where nothing used keys needs a restart', async (t) => {
  const parse = (routes: unknown[]): Config =>
    (
      validateConfig({ ...BASE, listeners: [gatewayWith(routes)] }, { baseDir: '/etc', source: null }) as {
        config: Config;
      }
    ).config;
  const a = parse([route()]);
  const b = parse([route(), route({ name: 's', match: { pathPrefix: '/s' } })]);
  t.same(reloadPlan(a, b), { changed: ['listeners[0].routes'], restartRequired: [] });
  const c = parse([route({ integrity: { verify: true } })]);
  t.same(reloadPlan(a, c).restartRequired, ['keys (no listener or route signed or verified before)']);
});

t.test(
  'the route table reloads: new requests take the new table, one in flight finishes on the old, health is kept',
  async (t) => {
    const w = await world(t);
    const edge = await w.identity('edge');
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const held = await heldUpstream(t);
    const logs = await startUpstream(t);
    const dead = await freePort();
    const file = join(w.dir, 'gateway.json');
    const raw = (routes: unknown[]): Record<string, unknown> => ({
      admin: { listen: '127.0.0.1:0' },
      identity: edge.files,
      listeners: [{ name: 'edge', mode: 'gateway', listen: '127.0.0.1:0', allow: { spiffe: [PRODUCER] }, routes }],
    });
    const sticky = {
      name: 'sticky',
      match: { pathPrefix: '/sticky' },
      targets: [`127.0.0.1:${dead}`],
      passiveHealth: { consecutiveFailures: 1, ejectSeconds: 600 },
    };
    const first = [{ name: 'held', match: { pathPrefix: '/held' }, targets: [held.addr] }, sticky];
    await writeFile(file, JSON.stringify(raw(first)));
    const sc = await startTestSidecar(t, w.dir, raw(first), {}, file);
    const admin = `http://127.0.0.1:${sc.admin!.port}`;
    const reload = async (): Promise<{ status: number; body: Record<string, unknown> }> => {
      const res = await request(`${admin}/reload`, { method: 'POST' });
      return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
    };
    const get = async (path: string): Promise<number> => {
      const client = mtlsClient(t, sc.addr(), w.ca, producer);
      const res = await client.request({ method: 'GET', path });
      await res.body.dump();
      await client.close();
      return res.statusCode;
    };
    t.equal(await get('/sticky'), 502, 'the sticky route endpoint fails once and is ejected');
    t.equal(await get('/logs'), 404, 'no logs route yet');
    const client = mtlsClient(t, sc.addr(), w.ca, producer);
    const inFlight = client.request({ method: 'GET', path: '/held/1' });
    await eventually(() => held.received() === 1, 5000, 'the held request at its app');

    // the held route goes away, a logs route comes; sticky stays as it was
    await writeFile(
      file,
      JSON.stringify(raw([sticky, { name: 'logs', match: { pathPrefix: '/logs' }, targets: [logs.addr] }])),
    );
    const r = await reload();
    t.equal(r.status, 200);
    t.match(r.body, { ok: true, config: { changed: ['listeners[0].routes'], restartRequired: [] } });
    t.equal(await get('/logs'), 200, 'the new route serves');
    t.equal(await get('/held/2'), 404, 'the removed route is gone for new requests');
    held.release();
    const res = await inFlight;
    await res.body.dump();
    t.equal(res.statusCode, 200, 'the request in flight finished on the old table');
    t.equal(await get('/sticky'), 503, 'the unchanged route kept its ejected endpoint');
    const routes = (await (await request(`${admin}/routes`)).body.json()) as {
      listeners: Array<{ routes: Array<{ name: string; endpoints: Array<{ healthy: boolean; ejections: number }> }> }>;
    };
    t.same(
      routes.listeners[0]!.routes.map((x) => x.name),
      ['sticky', 'logs'],
      '/routes shows the new table',
    );
    t.match(routes.listeners[0]!.routes[0]!.endpoints[0], { healthy: false, ejections: 1 });

    // a bad file changes nothing, and says so
    await writeFile(file, JSON.stringify(raw([{ name: 'logs', match: { pathPrefix: 'logs' }, targets: [logs.addr] }])));
    const bad = await reload();
    t.equal(bad.status, 500, 'refused');
    t.match(bad.body, { ok: false, changed: false, problems: [/routes\[0\]\.match\.pathPrefix/] });
    t.equal(await get('/logs'), 200, 'the table in use is unchanged');
    t.ok(
      sc.logs.lines.some((l) => l.msg === 'configuration reload refused; nothing changed'),
      'logged',
    );
    t.ok(
      sc.logs.lines.some((l) => l.msg === 'audit config_reload' && l.ok === false),
      'audited',
    );
    // what POST /reload read is not reloaded again by the file watch
    await new Promise((r) => setTimeout(r, 1200));
    t.equal(
      sc.logs.lines.filter((l) => l.msg === 'configuration reload refused; nothing changed').length,
      1,
      'the bad file was refused once',
    );

    // a change of the file alone reloads it
    await writeFile(
      file,
      JSON.stringify(raw([{ name: 'renamed', match: { pathPrefix: '/logs' }, targets: [logs.addr] }])),
    );
    await eventually(
      () => sc.logs.lines.some((l) => l.msg === 'configuration reloaded' && l.trigger === 'watch'),
      10_000,
      'the watched file to reload',
    );
    t.equal(await get('/logs'), 200, 'served by the renamed route');
    t.equal(await get('/sticky'), 404, 'the removed route is gone');
    t.equal(
      await sc.metric('tollgate_requests_total', { listener: 'edge', route: 'renamed', status_class: '2xx' }),
      1,
      'counted under the new name',
    );
  },
);
