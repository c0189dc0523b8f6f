/**
 * Two gateway replicas and one real Redis (redis-server, started here): a signed request is
 * accepted once per deployment (the copy sent to the other replica is ERR_SIG_REPLAYED, and of
 * 20 copies spread over both exactly one gets through); a peer's rate limit holds across the
 * replicas; with Redis gone, `refuse` answers 503 ERR_SHARED_STATE_UNAVAILABLE and recovers by
 * itself when Redis is back, while `local` keeps serving on each replica's own state and says so
 * in metrics and audit; TLS to Redis with a client certificate.
 */
import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exitWithin, startTollgate } from './helpers/process.ts';
import type { AuditSink } from '../src/telemetry/audit.ts';
import { PRODUCER } from './helpers/identities.ts';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Redis } from 'ioredis';
import { DEFAULT_SHARED_STATE } from '../src/config/defaults.ts';
import type { SharedStateConfig } from '../src/config/types.ts';
import { systemClock } from '../src/core/clock.ts';
import { MAX_BATCH } from '../src/sharedState/claimBatch.ts';
import { openSharedStore, type ClaimVerdict, type SharedStore } from '../src/sharedState/sharedStore.ts';
import { createMetrics, type Metrics } from '../src/telemetry/metrics.ts';
import { redisMissing, startRedis, type TestRedis } from './helpers/redisServer.ts';
import { signedHeaders, writeKey, type TestKey } from './helpers/signing.ts';
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

const missing = redisMissing();
if (missing !== null) t.plan(0, missing);

interface Replicas {
  readonly w: World;
  readonly a: TestSidecar;
  readonly b: TestSidecar;
  readonly app: Upstream;
  readonly key: TestKey;
  readonly producer: TestIdentity;
  readonly audit: Array<{ type: string; fields: Record<string, unknown> }>;
}

async function replicas(
  t: Test,
  sharedState: Record<string, unknown>,
  route: Record<string, unknown> = {},
  w?: World,
): Promise<Replicas> {
  const world_ = w ?? (await world(t));
  const edge = await world_.identity('edge');
  const producer = await world_.identity('producer', { spiffe: [PRODUCER] });
  const key = await writeKey(join(world_.dir, 'keys'), 'k1');
  const app = await startUpstream(t);
  const audit: Replicas['audit'] = [];
  const sink: AuditSink = {
    record: (type, fields) => void audit.push({ type, fields: { ...fields } }),
    flush: async () => undefined,
  };
  const raw = {
    identity: edge.files,
    keys: { dir: 'keys' },
    sharedState: { timeoutMs: 500, ...sharedState },
    listeners: [
      {
        name: 'edge',
        mode: 'gateway',
        listen: '127.0.0.1:0',
        allow: { spiffe: [PRODUCER] },
        integrity: { verify: true },
        routes: [{ name: 'ingest', match: { pathPrefix: '/v1/ingest' }, targets: [app.addr], ...route }],
      },
    ],
  };
  const a = await startTestSidecar(t, world_.dir, raw, { audit: sink });
  const b = await startTestSidecar(t, world_.dir, raw, { audit: sink });
  return { w: world_, a, b, app, key, producer, audit };
}

async function send(
  t: Test,
  r: Replicas,
  to: TestSidecar,
  headers: Record<string, string>,
  body = 'event',
): Promise<{ status: number; error: string | undefined }> {
  const client = mtlsClient(t, to.addr(), r.w.ca, r.producer);
  const res = await client.request({ method: 'POST', path: '/v1/ingest', headers, body });
  await res.body.dump();
  await client.close();
  return { status: res.statusCode, error: res.headers['x-tollgate-error'] as string | undefined };
}

/** headers signed for whichever replica gets them (the Host is the same name for both) */
function signed(r: Replicas, body = 'event'): Record<string, string> {
  return signedHeaders({ method: 'POST', path: '/v1/ingest', authority: 'localhost', body, key: r.key });
}

async function up(sc: TestSidecar): Promise<void> {
  await eventually(async () => (await sc.metric('tollgate_shared_state_up')) === 1, 10_000, 'the store connected');
}

t.test(
  'a request accepted by one replica is a replay at the other, and of 20 copies exactly one gets through',
  async (t) => {
    const redis = await startRedis(t);
    const r = await replicas(t, { url: redis.url });
    await up(r.a);
    await up(r.b);
    const headers = signed(r);
    t.same(await send(t, r, r.a, headers), { status: 200, error: undefined }, 'accepted by A');
    t.same(await send(t, r, r.b, headers), { status: 401, error: 'ERR_SIG_REPLAYED' }, 'replayed at B');
    t.same(await send(t, r, r.a, headers), { status: 401, error: 'ERR_SIG_REPLAYED' }, 'and at A (its own cache)');
    t.equal(r.app.seen.length, 1);
    t.ok(
      r.b.logs.lines.some(
        (l) => l.code === 'ERR_SIG_REPLAYED' && l.detail === 'nonce already accepted by this deployment',
      ),
      'B says the deployment saw it',
    );
    t.equal(r.audit.filter((e) => e.type === 'replay').length, 2, 'each replay audited');
    t.equal(await r.b.metric('tollgate_shared_state_operations_total', { operation: 'replay', result: 'replayed' }), 1);

    const copies = signed(r, 'copy');
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => send(t, r, i % 2 === 0 ? r.a : r.b, copies, 'copy')),
    );
    t.equal(results.filter((x) => x.status === 200).length, 1, 'exactly one copy accepted');
    t.equal(results.filter((x) => x.error === 'ERR_SIG_REPLAYED').length, 19, 'the other 19 are replays');
    t.equal(r.app.seen.length, 2);
    // the store holds a keyed fingerprint, never the nonce
    const nonce = /nonce="([^"]+)"/.exec(copies['signature-input']!)![1]!;
    t.notOk(
      r.a.logs.lines.some((l) => JSON.stringify(l).includes(nonce)),
      'the nonce is in no log line',
    );
  },
);

t.test("a peer's rate limit holds across both replicas", async (t) => {
  const redis = await startRedis(t);
  const r = await replicas(t, { url: redis.url }, { limits: { requestsPerSecond: 0.01, burst: 6 } });
  await up(r.a);
  await up(r.b);
  const statuses: number[] = [];
  for (let i = 0; i < 16; i += 1) statuses.push((await send(t, r, i % 2 === 0 ? r.a : r.b, signed(r))).status);
  t.equal(statuses.filter((s) => s === 200).length, 6, `one bucket of 6 for both (${statuses.join(' ')})`);
  t.equal(statuses.filter((s) => s === 429).length, 10);
  t.ok((await r.a.metric('tollgate_shared_state_operations_total', { operation: 'rate', result: 'limited' })) > 0);
});

t.test('with Redis gone, onUnavailable refuse answers 503 and recovers by itself when Redis is back', async (t) => {
  const redis = await startRedis(t);
  const r = await replicas(t, { url: redis.url, onUnavailable: 'refuse' });
  await up(r.a);
  t.equal((await send(t, r, r.a, signed(r))).status, 200);
  await redis.stop();
  await eventually(async () => (await send(t, r, r.a, signed(r))).status === 503, 10_000, 'a 503 once Redis is gone');
  const refused = await send(t, r, r.a, signed(r));
  t.same(refused, { status: 503, error: 'ERR_SHARED_STATE_UNAVAILABLE' });
  t.equal(await r.a.metric('tollgate_shared_state_up'), 0, 'the gauge says so');
  t.equal(
    r.audit.filter((e) => e.type === 'shared_state' && e.fields.state === 'unavailable').length,
    2,
    'the outage is audited once by each replica, not per refused request',
  );
  t.equal(r.audit.filter((e) => e.fields.code === 'ERR_SHARED_STATE_UNAVAILABLE').length, 0);
  t.ok(
    r.a.logs.lines.some((l) => l.msg === 'request refused' && l.code === 'ERR_SHARED_STATE_UNAVAILABLE'),
    'each refusal has its log line',
  );
  const seenBefore = r.app.seen.length;
  await redis.start();
  await eventually(async () => (await send(t, r, r.a, signed(r))).status === 200, 15_000, 'serving again');
  t.ok(
    r.audit.some((e) => e.type === 'shared_state' && e.fields.state === 'available'),
    'the recovery is audited',
  );
  t.equal(r.app.seen.length, seenBefore + 1, 'nothing reached the app while refusing');
  // and it is shared again: a copy to B is a replay
  const headers = signed(r);
  t.equal((await send(t, r, r.a, headers)).status, 200);
  await up(r.b);
  t.equal((await send(t, r, r.b, headers)).error, 'ERR_SIG_REPLAYED');
});

t.test(
  'with Redis gone, onUnavailable local keeps serving on each replica, counted and audited as a degradation',
  async (t) => {
    const redis = await startRedis(t);
    const r = await replicas(t, { url: redis.url, onUnavailable: 'local' });
    await up(r.a);
    await up(r.b);
    const before = signed(r);
    t.equal((await send(t, r, r.a, before)).status, 200);
    await redis.stop();
    await eventually(async () => (await r.a.metric('tollgate_shared_state_up')) === 0, 10_000, 'the store seen gone');
    const during = signed(r);
    t.equal((await send(t, r, r.a, during)).status, 200, 'served from local state');
    t.equal((await send(t, r, r.a, during)).error, 'ERR_SIG_REPLAYED', "the replica's own cache still holds");
    t.ok(
      (await r.a.metric('tollgate_shared_state_operations_total', { operation: 'replay', result: 'degraded' })) > 0,
      'counted as degraded',
    );
    t.ok(
      r.audit.some((e) => e.type === 'shared_state' && e.fields.onUnavailable === 'local'),
      'audited',
    );
    t.ok(
      r.a.logs.lines.some((l) => /answering from this process/.test(String(l.msg))),
      'logged',
    );
    await redis.start();
    await up(r.a);
    await up(r.b);
    // shared again once it is back (a Redis without persistence forgot what it held: see the README)
    const after = signed(r);
    t.equal((await send(t, r, r.a, after)).status, 200);
    t.equal((await send(t, r, r.b, after)).error, 'ERR_SIG_REPLAYED', 'accepted once across replicas again');
  },
);

t.test('a Redis Cluster holds the shared state as a single server does', async (t) => {
  const redis = await startRedis(t, { cluster: true });
  const r = await replicas(
    t,
    { url: redis.url, topology: 'cluster' },
    { limits: { requestsPerSecond: 0.01, burst: 3 } },
  );
  await up(r.a);
  await up(r.b);
  const headers = signed(r);
  t.equal((await send(t, r, r.a, headers)).status, 200);
  t.equal((await send(t, r, r.b, headers)).error, 'ERR_SIG_REPLAYED', 'replay shared through the cluster');
  t.equal((await send(t, r, r.b, signed(r))).status, 200);
  t.equal(
    (await send(t, r, r.a, signed(r))).error,
    'ERR_RATE_LIMITED',
    'and one bucket of 3 (the replay took a token too)',
  );
});

t.test('TLS to Redis with a client certificate', async (t) => {
  const w = await world(t);
  const server = await w.identity('redis');
  const redis: TestRedis = await startRedis(t, {
    tls: { certFile: server.files.certFile, keyFile: server.files.keyFile, caFile: server.files.caFile },
  });
  const client = await w.identity('redis-client');
  const r = await replicas(
    t,
    {
      url: redis.url,
      caFile: server.files.caFile,
      certFile: client.files.certFile,
      keyFile: client.files.keyFile,
    },
    {},
    w,
  );
  await up(r.a);
  const headers = signed(r);
  t.equal((await send(t, r, r.a, headers)).status, 200);
  await up(r.b);
  t.equal((await send(t, r, r.b, headers)).error, 'ERR_SIG_REPLAYED', 'shared over TLS');
});

t.test(
  'tollgate check reaches the store as a replica would: a CA that does not sign the server is refused',
  async (t) => {
    const w = await world(t);
    const server = await w.identity('redis');
    const redis = await startRedis(t, {
      tls: { certFile: server.files.certFile, keyFile: server.files.keyFile, caFile: server.files.caFile },
    });
    const client = await w.identity('redis-client');
    const other = await world(t);
    const stranger = await other.identity('stranger');
    const edge = await w.identity('edge');
    const configFor = async (name: string, caFile: string): Promise<string> => {
      const file = join(w.dir, `${name}.json`);
      await writeFile(
        file,
        JSON.stringify({
          identity: edge.files,
          sharedState: { url: redis.url, caFile, certFile: client.files.certFile, keyFile: client.files.keyFile },
          listeners: [
            {
              name: 'edge',
              mode: 'gateway',
              listen: '127.0.0.1:0',
              allow: { any: true },
              routes: [{ name: 'r', match: { pathPrefix: '/' }, targets: ['127.0.0.1:9'] }],
            },
          ],
        }),
      );
      return file;
    };
    const good = await exitWithin(
      startTollgate(t, ['check', '--config', await configFor('good', server.files.caFile)]),
      20_000,
    );
    t.equal(good.code, 0, good.stdout + good.stderr);
    t.match(good.stdout, /shared state rediss:\/\/localhost:\d+ answers/);
    const bad = await exitWithin(
      startTollgate(t, ['check', '--config', await configFor('bad', stranger.files.caFile)]),
      20_000,
    );
    t.equal(bad.code, 2, 'a usage error: the configuration cannot work');
    t.match(bad.stderr + bad.stdout, /sharedState\.url: rediss:\/\/localhost:\d+ cannot be used: .*certificate/i);
  },
);

t.test('with worker threads every thread uses the store', async (t) => {
  const redis = await startRedis(t);
  const w = await world(t);
  const edge = await w.identity('edge');
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const key = await writeKey(join(w.dir, 'keys'), 'k1');
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    identity: edge.files,
    keys: { dir: 'keys' },
    workers: 2,
    sharedState: { url: redis.url },
    listeners: [
      {
        name: 'edge',
        mode: 'gateway',
        listen: '127.0.0.1:0',
        allow: { spiffe: [PRODUCER] },
        integrity: { verify: true },
        routes: [{ name: 'ingest', match: { pathPrefix: '/v1/ingest' }, targets: [app.addr] }],
      },
    ],
  });
  const r = { w, a: sc, b: sc, app, key, producer, audit: [] } as Replicas;
  await up(sc);
  for (let i = 0; i < 12; i += 1) t.equal((await send(t, r, sc, signed(r))).status, 200, `request ${i}`);
  const headers = signed(r);
  const copies = await Promise.all(Array.from({ length: 8 }, () => send(t, r, sc, headers)));
  t.equal(copies.filter((c) => c.status === 200).length, 1, 'of 8 copies over both threads, one accepted');
});

/**
 * Pairs of copies (one signed request sent to both replicas at once) while Redis is stopped and
 * started under them: every answer is 200, a replay or (refuse) 503; no pair is accepted twice
 * while Redis is up, nor at all with refuse.
 */
for (const mode of ['refuse', 'local'] as const) {
  t.test(`Redis stopped and started under load (${mode}): no request accepted twice while it is up`, async (t) => {
    const redis = await startRedis(t);
    const r = await replicas(t, { url: redis.url, onUnavailable: mode, timeoutMs: 200 });
    await up(r.a);
    await up(r.b);
    let redisUp = true;
    const pairs: Array<{ a: number; b: number; whileUp: boolean }> = [];
    const load = (async () => {
      const deadline = Date.now() + 20_000;
      for (let i = 0; i < 150 && Date.now() < deadline; i += 1) {
        const upBefore = redisUp;
        const headers = signed(r);
        const [a, b] = await Promise.all([send(t, r, r.a, headers), send(t, r, r.b, headers)]);
        pairs.push({ a: a.status, b: b.status, whileUp: upBefore && redisUp });
      }
    })();
    await eventually(() => pairs.length >= 30, 15_000, '30 pairs');
    redisUp = false;
    await redis.stop();
    await eventually(() => pairs.length >= 70, 15_000, '70 pairs');
    await redis.start();
    await up(r.a);
    await up(r.b);
    redisUp = true;
    await load;
    const statuses = new Set(pairs.flatMap((p) => [p.a, p.b]));
    t.same(
      [...statuses].filter((s) => ![200, 401, 503].includes(s)),
      [],
      `only 200, replays and 503 (${[...statuses].join(', ')})`,
    );
    t.same(
      pairs.filter((p) => p.whileUp && p.a === 200 && p.b === 200),
      [],
      'no pair accepted twice while Redis was up',
    );
    if (mode === 'refuse') {
      t.same(
        pairs.filter((p) => p.a === 200 && p.b === 200),
        [],
        'nor during the outage',
      );
      t.ok(
        pairs.some((p) => p.a === 503 || p.b === 503),
        'refused while Redis was down',
      );
    } else {
      t.same(
        pairs.filter((p) => p.a === 503 || p.b === 503),
        [],
        'local never refuses for the store',
      );
    }
    t.ok(
      pairs.slice(-10).every((p) => (p.a === 200) !== (p.b === 200)),
      'after it is back, exactly one of each pair again',
    );
  });
}

t.test('a renewed client certificate is used without a restart', async (t) => {
  const w = await world(t);
  const next = await world(t);
  const server = await w.identity('redis');
  // the server admits client certificates of the CA in this file: the old one's first, the new one's after
  const clientCa = join(w.dir, 'redis-client-ca.pem');
  await writeFile(clientCa, w.ca.certPem);
  const redis = await startRedis(t, {
    tls: { certFile: server.files.certFile, keyFile: server.files.keyFile, caFile: clientCa },
  });
  const oldClient = await w.identity('redis-client');
  const dir = join(w.dir, 'redis-client-files');
  await mkdir(dir);
  await writeFile(join(dir, 'tls.crt'), oldClient.certPem);
  await writeFile(join(dir, 'tls.key'), oldClient.keyPem, { mode: 0o600 });
  const r = await replicas(
    t,
    {
      url: redis.url,
      caFile: server.files.caFile,
      certFile: join(dir, 'tls.crt'),
      keyFile: join(dir, 'tls.key'),
    },
    {},
    w,
  );
  await up(r.a);
  t.equal((await send(t, r, r.a, signed(r))).status, 200);
  // the server now admits only the new CA's clients: the old certificate cannot reconnect
  await redis.stop();
  await writeFile(clientCa, next.ca.certPem);
  await redis.start();
  await eventually(
    async () => (await send(t, r, r.a, signed(r))).status === 503,
    10_000,
    'refused with the old certificate',
  );
  // the renewal lands in the watched directory
  const renewed = await next.identity('redis-client');
  await writeFile(join(dir, 'tls.key'), renewed.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'tls.crt'), renewed.certPem);
  await eventually(
    async () => (await send(t, r, r.a, signed(r))).status === 200,
    15_000,
    'served with the new certificate',
  );
  t.ok(
    r.a.logs.lines.some((l) => l.msg === 'shared state TLS files renewed: new connections use them'),
    'the renewal is logged',
  );
});

/* ------------------------------------------------------------------ the store itself, without a proxy */

interface OpenStore {
  readonly store: SharedStore;
  readonly metrics: Metrics;
}

async function openStore(t: Test, settings: Partial<SharedStateConfig> & { url: string }): Promise<OpenStore> {
  const metrics = createMetrics(new Registry());
  const store = await openSharedStore(
    {
      ...DEFAULT_SHARED_STATE,
      caFile: null,
      certFile: null,
      keyFile: null,
      passwordFile: null,
      unsafePlaintext: false,
      ...settings,
    },
    {
      log: pino({ level: 'silent' }),
      metrics,
      audit: { record: () => undefined, flush: async () => undefined },
      clock: systemClock,
    },
  );
  t.teardown(() => store.close());
  await eventually(() => store.available(), 10_000, 'the store connected');
  return { store, metrics };
}

function claim(store: SharedStore, fingerprint: string): Promise<ClaimVerdict> {
  return new Promise((done) => store.claim(fingerprint, 60_000, done));
}

/** how many commands the server ran (a script's SETs are counted apart, as SET) */
async function commandsRun(admin: Redis, name: string): Promise<number> {
  const info = await admin.info('commandstats');
  return Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
}

async function metricValue(metrics: Metrics, result: string): Promise<number> {
  const values = (await metrics.sharedStateOperations.get()).values;
  return values.find((v) => v.labels.operation === 'replay' && v.labels.result === result)?.value ?? 0;
}

for (const topology of ['standalone', 'cluster'] as const) {
  t.test(
    `${topology}: of claims made in one turn, a fingerprint twice in it and once at another replica is fresh once`,
    async (t) => {
      const redis = await startRedis(t, { cluster: topology === 'cluster' });
      const a = await openStore(t, { url: redis.url, topology });
      const b = await openStore(t, { url: redis.url, topology });
      const admin = new Redis(redis.url, { lazyConnect: true });
      t.teardown(() => admin.disconnect());
      await admin.connect();
      const scriptsBefore = (await commandsRun(admin, 'eval')) + (await commandsRun(admin, 'evalsha'));
      const setsBefore = await commandsRun(admin, 'set');
      // all in one turn: three claims of one fingerprint (two here, one at the other replica) and five others
      const [dup1, dup2, dupB, ...others] = await Promise.all([
        claim(a.store, 'fp-dup'),
        claim(a.store, 'fp-dup'),
        claim(b.store, 'fp-dup'),
        ...['fp-1', 'fp-2', 'fp-3', 'fp-4', 'fp-5'].map((fp) => claim(a.store, fp)),
      ]);
      t.same(
        [dup1, dup2, dupB].filter((v) => v === 'fresh'),
        ['fresh'],
        `one fresh of three (${dup1} ${dup2} ${dupB})`,
      );
      t.same([dup1, dup2, dupB].filter((v) => v === 'replayed').length, 2, 'the others are replays');
      t.same(others, ['fresh', 'fresh', 'fresh', 'fresh', 'fresh'], 'each other fingerprint fresh');
      t.equal((await commandsRun(admin, 'set')) - setsBefore, 8, 'one SET per claim');
      const scripts = (await commandsRun(admin, 'eval')) + (await commandsRun(admin, 'evalsha')) - scriptsBefore;
      if (topology === 'standalone') t.equal(scripts, 2, 'one script per replica for the whole turn');
      else t.equal(scripts, 0, 'a cluster keeps one SET per claim (the keys are in different slots)');
      t.equal(await claim(a.store, 'fp-dup'), 'replayed', 'and later turns see it held');
      t.equal((await metricValue(a.metrics, 'fresh')) + (await metricValue(b.metrics, 'fresh')), 6, 'fresh counted');
      t.equal((await metricValue(a.metrics, 'replayed')) + (await metricValue(b.metrics, 'replayed')), 3);
      const durations = (await a.metrics.sharedStateDuration.get()).values.find(
        (v) => v.metricName === 'tollgate_shared_state_duration_seconds_count' && v.labels.operation === 'replay',
      );
      t.equal(durations?.value, 8, 'a round trip observed for each claim answered');
    },
  );
}

t.test(`more claims in one turn than one command takes: several commands, every claim answered`, async (t) => {
  const redis = await startRedis(t);
  const { store } = await openStore(t, { url: redis.url });
  const admin = new Redis(redis.url, { lazyConnect: true });
  t.teardown(() => admin.disconnect());
  await admin.connect();
  const before = (await commandsRun(admin, 'eval')) + (await commandsRun(admin, 'evalsha'));
  const n = MAX_BATCH + 44;
  const verdicts = await Promise.all(Array.from({ length: n }, (_, i) => claim(store, `fp-${i % (n - 1)}`)));
  t.equal(verdicts.filter((v) => v === 'fresh').length, n - 1, 'each distinct fingerprint fresh once');
  t.equal(verdicts[n - 1], 'replayed', 'the one repeated in the second command is a replay');
  t.equal((await commandsRun(admin, 'eval')) + (await commandsRun(admin, 'evalsha')) - before, 2, 'two commands');
  const keys = await admin.keys('*');
  t.equal(keys.length, n - 1, 'one key per distinct fingerprint');
  t.ok(
    keys.every((k) => k.startsWith('tollgate:replay:fp-')),
    'every key of a batch carries the key prefix',
  );
});

t.test(
  'a batch with no answer within timeoutMs is unavailable for each of its claims, then the store is back',
  async (t) => {
    const redis = await startRedis(t);
    const { store, metrics } = await openStore(t, { url: redis.url, timeoutMs: 100 });
    t.equal(await claim(store, 'fp-warm'), 'fresh');
    const admin = new Redis(redis.url, { lazyConnect: true });
    t.teardown(() => admin.disconnect());
    await admin.connect();
    // the server holds every client's commands for a while: the batch's answer comes after the timeout
    await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
    const verdicts = await Promise.all(['fp-a', 'fp-b', 'fp-c'].map((fp) => claim(store, fp)));
    t.same(verdicts, ['unavailable', 'unavailable', 'unavailable']);
    t.equal(await metricValue(metrics, 'unavailable'), 3, 'each claim counted unavailable');
    t.equal(store.available(), false, 'the store is seen unavailable');
    await eventually(async () => (await claim(store, `fp-${Date.now()}`)) === 'fresh', 10_000, 'answers again');
    t.equal(store.available(), true);
  },
);
