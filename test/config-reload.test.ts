/**
 * A config reload (POST /reload, SIGHUP) re-reads the config file the sidecar started from,
 * validates it whole, and swaps its live settings as one snapshot: each live setting takes
 * effect (an allow-list narrowed refuses the peer on new connections while an open one
 * finishes, a rate limit applies, a body limit applies, the log level changes), reaching every
 * worker thread. A change that needs a restart, or a file with problems, changes nothing at
 * all and says why. (The signing key switch under load is test/scenarios/signing-key-rotation.test.ts.)
 */
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { exitWithin, freePort, startTollgate } from './helpers/process.ts';
import type http from 'node:http';
import { echo, pipeline, summary } from './helpers/pipeline.ts';
import { INGEST, PRODUCER } from './helpers/identities.ts';
import {
  eventually,
  heldUpstream,
  mtlsClient,
  startTestSidecar,
  startUpstream,
  world,
  type Test,
  type TestSidecar,
  type World,
} from './helpers/world.ts';

const OTHER = 'spiffe://example.org/someone-else';
const WAIT_MS = 15_000;

interface Setup {
  readonly w: World;
  readonly sc: TestSidecar;
  readonly file: string;
  readonly producer: { certPem: string; keyPem: string };
  /** write the config file with this listener section (merged over the first one) and the top-level extras */
  write(listener: Record<string, unknown>, top?: Record<string, unknown>): Promise<void>;
  /** POST /reload on the admin API */
  reload(): Promise<{ status: number; body: Record<string, unknown> }>;
  /** one request on a new mTLS connection: status and x-tollgate-error */
  fresh(path?: string, body?: Buffer): Promise<{ status: number; error: string | undefined }>;
}

async function setup(
  t: Test,
  listener: Record<string, unknown> = {},
  top: Record<string, unknown> = {},
  upstream?: string,
): Promise<Setup> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const target = upstream ?? (await startUpstream(t)).addr;
  const file = join(w.dir, 'tollgate.json');
  const raw = (l: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> => ({
    admin: { listen: '127.0.0.1:0' },
    identity: ingest.files,
    ...extra,
    listeners: [
      { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target, allow: { spiffe: [PRODUCER] }, ...l },
    ],
  });
  await writeFile(file, JSON.stringify(raw(listener, top)));
  const sc = await startTestSidecar(t, w.dir, raw(listener, top), {}, file);
  const admin = `http://127.0.0.1:${sc.admin!.port}`;
  return {
    w,
    sc,
    file,
    producer,
    write: (l, extra = top) => writeFile(file, JSON.stringify(raw({ ...listener, ...l }, extra))),
    async reload() {
      const res = await request(`${admin}/reload`, { method: 'POST' });
      return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
    },
    async fresh(path = '/x', body) {
      const client = mtlsClient(t, sc.addr(), w.ca, producer);
      const res = await client.request({
        path,
        method: body === undefined ? 'GET' : 'POST',
        ...(body === undefined ? {} : { body }),
      });
      await res.body.dump();
      await client.close();
      const error = res.headers['x-tollgate-error'];
      return { status: res.statusCode, error: typeof error === 'string' ? error : undefined };
    },
  };
}

t.test(
  'an allow-list narrowed by a reload refuses the peer on new connections; a request in flight finishes',
  async (t) => {
    const app = await heldUpstream(t);
    const s = await setup(t, {}, {}, app.addr);
    const open = mtlsClient(t, s.sc.addr(), s.w.ca, s.producer);
    const inFlight = open.request({ path: '/held', method: 'GET' });
    await eventually(() => app.received() === 1, WAIT_MS, 'the request to reach the app');

    await s.write({ allow: { spiffe: [OTHER] } });
    const r = await s.reload();
    t.equal(r.status, 200, 'the reload is accepted');
    t.match(
      r.body,
      { ok: true, changed: true, config: { changed: ['listeners[0].allow.spiffe'], restartRequired: [] } },
      'it says what changed',
    );
    t.match(
      s.sc.logs.lines.find((l) => l.msg === 'configuration reloaded'),
      { trigger: 'admin', changed: ['listeners[0].allow.spiffe'] },
      'one log line',
    );
    t.equal(s.sc.logs.lines.filter((l) => l.msg === 'audit config_reload').length, 1, 'one audit event');
    t.match(
      s.sc.logs.lines.find((l) => l.msg === 'audit config_reload'),
      { ok: true, changed: ['listeners[0].allow.spiffe'], restartRequired: [] },
    );

    app.release();
    const res = await inFlight;
    t.equal(res.statusCode, 200, 'the request in flight finished on the old snapshot');
    await res.body.dump();
    t.same(
      await s.fresh(),
      { status: 403, error: 'ERR_PEER_NOT_ALLOWED' },
      'a new connection of the same peer is refused',
    );
    const inUse = (await (await request(`http://127.0.0.1:${s.sc.admin!.port}/config`)).body.json()) as object;
    t.match(inUse, { listeners: [{ allow: { spiffe: [OTHER] } }] }, '/config shows the config in use');

    await s.write({});
    t.equal((await s.reload()).status, 200);
    t.same(await s.fresh(), { status: 200, error: undefined }, 'and widened again, it is let in');
  },
);

t.test('a rate limit and a body limit set by a reload apply to the next requests', async (t) => {
  const s = await setup(t);
  for (let i = 0; i < 5; i++) t.equal((await s.fresh()).status, 200, `request ${i + 1} before: no rate limit`);
  await s.write({ limits: { requestsPerSecond: 1, burst: 2, maxBodyBytes: 1000 } });
  const r = await s.reload();
  t.match(r.body, { ok: true, changed: true });
  const limits = [
    'listeners[0].limits.burst',
    'listeners[0].limits.maxBodyBytes',
    'listeners[0].limits.requestsPerSecond',
  ];
  t.same([...(r.body.config as { changed: string[] }).changed].sort(), limits, 'the changed limits named');
  t.same(
    await s.fresh('/x', Buffer.alloc(1001, 'a')),
    { status: 413, error: 'ERR_PAYLOAD_TOO_LARGE' },
    'a body over the new limit is refused',
  );
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await s.fresh()).status);
  t.ok(statuses.includes(429), `the new rate limit refuses (statuses: ${statuses.join(', ')})`);
  t.ok((await s.sc.metric('tollgate_requests_total', { status_class: '4xx' })) >= 2);
});

t.test('a header limit and an anomaly section set by a reload apply', async (t) => {
  const s = await setup(t);
  const client = mtlsClient(t, s.sc.addr(), s.w.ca, s.producer);
  const send = async (headers: Record<string, string>, body?: Buffer): Promise<{ status: number; error: unknown }> => {
    const res = await client.request({
      path: '/x',
      method: body === undefined ? 'GET' : 'POST',
      headers,
      ...(body === undefined ? {} : { body }),
    });
    await res.body.dump();
    return { status: res.statusCode, error: res.headers['x-tollgate-error'] };
  };
  t.equal((await send({ 'x-big': 'a'.repeat(3000) })).status, 200, 'a 3 kB header passes the default limit');
  for (let i = 0; i < 3; i++)
    t.equal((await send({}, Buffer.alloc(100_000, 'a'))).status, 200, 'large bodies pass with anomaly off');
  await s.write({ limits: { maxHeaderBytes: 2048 }, anomaly: { mode: 'block', minSamples: 5 } });
  const r = await s.reload();
  const named = ['listeners[0].anomaly.minSamples', 'listeners[0].anomaly.mode', 'listeners[0].limits.maxHeaderBytes'];
  t.same([...(r.body.config as { changed: string[] }).changed].sort(), named, 'the changed settings named');
  t.same(await s.fresh('/x'), { status: 200, error: undefined });
  const fresh = mtlsClient(t, s.sc.addr(), s.w.ca, s.producer);
  const big = await fresh.request({ path: '/x', method: 'GET', headers: { 'x-big': 'a'.repeat(3000) } });
  await big.body.dump();
  t.equal(big.statusCode, 431, 'the same header on a new connection is over the new limit');
  for (let i = 0; i < 6; i++)
    t.equal((await s.fresh('/x', Buffer.alloc(1000 + i, 'b'))).status, 200, `learning (${i + 1})`);
  t.same(
    await s.fresh('/x', Buffer.alloc(100_000, 'a')),
    { status: 422, error: 'ERR_PAYLOAD_ANOMALY' },
    'block mode now refuses an outlier',
  );
});

t.test(
  "an outbound's verify narrowed by a reload refuses the server on new upstream connections, resumed or not",
  async (t) => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((r) => (release = r));
    let held = 0;
    // /hold is answered once released, so the connection it came on stays busy meanwhile
    const app: http.RequestListener = (req, res) => {
      if (req.url !== '/hold') return echo(req, res);
      held += 1;
      req.resume();
      void released.then(() => res.writeHead(200).end('released'));
    };
    const pl = await pipeline(t, { sign: false, app });
    // one connection to the inbound: pooled, and its TLS session kept for resumption
    t.equal((await pl.producer.request({ path: '/first' })).status, 200);
    await pl.outbound.rewriteConfig((raw) => {
      (raw.listeners as Array<Record<string, unknown>>)[0]!.verify = { spiffe: [OTHER] };
    });
    const r = await pl.outbound.reload();
    t.match(r, { status: 200, body: { ok: true, config: { changed: ['listeners[0].verify.spiffe'] } } });
    // the pooled connection (verified before, left open) carries a held request; the next request needs a new
    // connection, which must not resume the old session (Node does not check the server's identity on a resumed one)
    const onOpen = pl.producer.request({ path: '/hold' });
    await eventually(() => held === 1, WAIT_MS, 'the held request to reach the app');
    const fresh = await pl.producer.load({ count: 1, concurrency: 1, maxMs: WAIT_MS, method: 'GET', path: '/new' });
    t.same(
      [fresh.byStatus, fresh.byCode],
      [{ 502: 1 }, { ERR_UPSTREAM_IDENTITY: 1 }],
      `a new upstream connection is refused (${summary(fresh)})`,
    );
    release();
    t.equal((await onOpen).status, 200, 'the request on the connection verified before finishes');
    t.equal(pl.app.requests(), 2, 'the refused request never reached the app');
    await pl.outbound.rewriteConfig((raw) => {
      (raw.listeners as Array<Record<string, unknown>>)[0]!.verify = { spiffe: [INGEST] };
    });
    t.match(await pl.outbound.reload(), { status: 200, body: { ok: true } });
    const ok = await pl.producer.request({ path: '/x' });
    t.equal(ok.status, 200, 'widened again, the next connection is accepted');
    t.equal(pl.app.requests(), 3);
  },
);

/** resolves when the socket closes; rejects after `ms` (the settings before the reload would keep it open for minutes) */
function closedWithin(socket: net.Socket, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

t.test('header and idle timeouts and the drain timeout set by a reload apply', async (t) => {
  // before: 300 s for a head, 120 s idle: far longer than this test waits
  const s = await setup(t, { limits: { headersTimeoutSeconds: 300 } });
  await s.write({ limits: { headersTimeoutSeconds: 1 } });
  t.match((await s.reload()).body, { ok: true });
  const open = (): tls.TLSSocket => {
    const port = Number(s.sc.addr().split(':')[1]);
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca: s.w.ca.certPem,
      cert: s.producer.certPem,
      key: s.producer.keyPem,
      servername: 'localhost',
    });
    t.teardown(() => socket.destroy());
    return socket;
  };
  // a head that never ends: cut with 408 by the new 1 s headers timeout (the default is longer than this test waits)
  const slow = open();
  await once(slow, 'secureConnect');
  slow.write('GET /x HTTP/1.1\r\nhost: localhost\r\nx-slow: ');
  let answer = '';
  slow.on('data', (c: Buffer) => (answer += c.toString()));
  await closedWithin(slow, WAIT_MS, 'the slow head');
  t.match(answer, /^HTTP\/1\.1 408 /, `the slow head is answered 408 (${answer.split('\r\n')[0]})`);
  // a keep-alive connection with nothing to do: closed by the new 1 s idle timeout
  await s.write({ limits: { headersTimeoutSeconds: 1, idleTimeoutSeconds: 1 } }, { drainTimeoutSeconds: 120 });
  t.match((await s.reload()).body, { ok: true });
  const idle = open();
  await once(idle, 'secureConnect');
  idle.write('GET /x HTTP/1.1\r\nhost: localhost\r\n\r\n');
  idle.resume();
  await closedWithin(idle, WAIT_MS, 'the idle connection');
  t.pass('the idle keep-alive connection is closed');
  const drain = (await (
    await request(`http://127.0.0.1:${s.sc.admin!.port}/drain`, { method: 'POST' })
  ).body.json()) as { deadline: string };
  t.ok(Date.parse(drain.deadline) - Date.now() > 100_000, `the drain deadline uses the new 120 s (${drain.deadline})`);
});

t.test(
  'a body data rate set by a reload applies to the next request: a trickled body gets 408 ERR_BODY_TIMEOUT',
  async (t) => {
    // before: 300 s between body bytes, longer than this test waits
    const s = await setup(t, { limits: { bodyTimeoutSeconds: 300, minBodyBytesPerSecond: 0 } });
    await s.write({ limits: { bodyTimeoutSeconds: 1, minBodyBytesPerSecond: 0 } });
    const r = await s.reload();
    t.match(r.body, { ok: true, changed: true });
    t.same(
      (r.body.config as { changed: string[] }).changed,
      ['listeners[0].limits.bodyTimeoutSeconds'],
      'the changed limit named',
    );
    const port = Number(s.sc.addr().split(':')[1]);
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca: s.w.ca.certPem,
      cert: s.producer.certPem,
      key: s.producer.keyPem,
      servername: 'localhost',
    });
    t.teardown(() => socket.destroy());
    await once(socket, 'secureConnect');
    // a declared body of 100 bytes of which 1 arrives: the new 1 s gap limit cuts it
    socket.write('POST /x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\na');
    let answer = '';
    socket.on('data', (c: Buffer) => (answer += c.toString()));
    await closedWithin(socket, WAIT_MS, 'the trickled body');
    t.match(answer, /^HTTP\/1\.1 408 /, `the trickled body is answered 408 (${answer.split('\r\n')[0]})`);
    t.match(answer, /x-tollgate-error: ERR_BODY_TIMEOUT/i, 'with its code');
  },
);

t.test('the log level changes with a reload', async (t) => {
  const s = await setup(t, {}, { log: { level: 'info' } });
  s.sc.log.level = 'info'; // the test harness logger starts at debug; the sidecar's root logger is what the reload sets
  t.equal((await s.fresh()).status, 200);
  const authorized = (): number => s.sc.logs.lines.filter((l) => l.msg === 'connection authorized').length;
  t.equal(authorized(), 0, 'no debug line at info');
  await s.write({}, { log: { level: 'debug' } });
  t.match((await s.reload()).body, { ok: true, config: { changed: ['log.level'] } });
  t.equal((await s.fresh()).status, 200);
  t.equal(authorized(), 1, 'the next connection logs its debug line');
});

t.test('a change that needs a restart is refused whole: nothing changes, the restart is named', async (t) => {
  const s = await setup(t);
  const port = await freePort();
  await s.write({ listen: `127.0.0.1:${port}`, allow: { spiffe: [OTHER] } }, { workers: 2 });
  const r = await s.reload();
  t.equal(r.status, 500);
  t.match(r.body, { error: 'ERR_ADMIN_FAILED', ok: false, changed: false, config: { changed: [] } });
  t.same(
    [...(r.body.config as { restartRequired: string[] }).restartRequired].sort(),
    ['listeners[0].listen', 'workers'],
    'both named as needing a restart',
  );
  t.ok(
    (r.body.problems as string[]).some((p) =>
      /^workers: changed, and cannot change while running: restart to apply it/.test(p),
    ),
    'the restart message',
  );
  t.ok((r.body.problems as string[]).some((p) => /^listeners\[0\]\.listen: changed, .*restart/.test(p)));
  t.same(await s.fresh(), { status: 200, error: undefined }, 'the allow-list in the same file was not applied');
  const probe = net.connect({ host: '127.0.0.1', port });
  const [err] = (await new Promise((resolve) => probe.once('error', (e) => resolve([e])))) as [NodeJS.ErrnoException];
  t.equal(err.code, 'ECONNREFUSED', 'nothing listens on the new address');
  t.match(
    s.sc.logs.lines.find((l) => l.msg === 'configuration reload refused; nothing changed'),
    { level: 50, restartRequired: Array },
    'one error line',
  );
  t.match(
    s.sc.logs.lines.find((l) => l.msg === 'audit config_reload'),
    { ok: false, restartRequired: Array, problems: Array },
    'audited',
  );

  for (const [what, listener, top, path] of [
    ['the protocol', { protocol: 'tcp' }, {}, 'listeners[0].protocol'],
    ['the target', { target: '127.0.0.1:1' }, {}, 'listeners[0].target'],
    ['a listener added', {}, { extra: true }, 'listeners'],
    [
      'maxConnections (it sizes the upstream pool)',
      { limits: { maxConnections: 7 } },
      {},
      'listeners[0].limits.maxConnections',
    ],
    ['the admin address', {}, { admin: { listen: '127.0.0.1:1' } }, 'admin.listen'],
  ] as const) {
    if ('extra' in top) {
      const raw = JSON.parse(await import('node:fs/promises').then((f) => f.readFile(s.file, 'utf8'))) as {
        listeners: unknown[];
      };
      raw.listeners.push({
        name: 'second',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: '127.0.0.1:9',
        allow: { any: true },
      });
      await writeFile(s.file, JSON.stringify(raw));
    } else await s.write(listener, top);
    const again = await s.reload();
    t.equal(again.status, 500, `${what}: refused`);
    t.match(again.body, { config: { restartRequired: [path] } }, `${what}: names ${path}`);
  }
  t.same(await s.fresh(), { status: 200, error: undefined }, 'still the config it started with');
});

t.test('an invalid file changes nothing and lists every problem with its path', async (t) => {
  const s = await setup(t);
  await s.write({
    allow: { spiffe: ['not a spiffe id'] },
    limits: { maxBodyBytes: -1, requestsPerSecond: 1, burst: 1 },
  });
  const r = await s.reload();
  t.equal(r.status, 500);
  t.equal(r.body.error, 'ERR_ADMIN_FAILED');
  const problems = r.body.problems as string[];
  t.ok(
    problems.some((p) => p.startsWith('listeners[0].allow.spiffe')),
    `the allow problem (${problems.join('; ')})`,
  );
  t.ok(
    problems.some((p) => p.startsWith('listeners[0].limits.maxBodyBytes')),
    'and the limit problem',
  );
  for (let i = 0; i < 4; i++)
    t.equal((await s.fresh()).status, 200, 'the valid rate limit in the same file was not applied');

  await writeFile(s.file, '{ "listeners": [');
  const broken = await s.reload();
  t.equal(broken.status, 500);
  t.match(broken.body.problems, [/^config: invalid JSON/]);
  t.equal(s.sc.logs.lines.filter((l) => l.msg === 'configuration reloaded').length, 0, 'no reload applied');
});

t.test('SIGHUP reloads the config of a real process on every worker thread', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const app = await startUpstream(t);
  const port = await freePort();
  const file = join(w.dir, 'tollgate.json');
  const config = (allow: string, level: string): string =>
    JSON.stringify({
      admin: { listen: '127.0.0.1:0' },
      workers: 2,
      log: { level },
      identity: ingest.files,
      listeners: [
        { name: 'ingest', mode: 'inbound', listen: `127.0.0.1:${port}`, target: app.addr, allow: { spiffe: [allow] } },
      ],
    });
  await writeFile(file, config(PRODUCER, 'info'));
  const p = startTollgate(t, ['run', '--config', file]);
  await eventually(
    () => p.logs().some((l) => l.msg === 'tollgate started') || !p.running(),
    WAIT_MS,
    'tollgate started',
  );
  t.ok(p.running(), `started (${p.stderr()})`);
  await eventually(() => p.logs().some((l) => l.msg === 'worker threads listening'), WAIT_MS, 'the worker thread');

  // twenty new connections: the kernel spreads them over both threads (all on one: 2^-20)
  const twenty = async (): Promise<number[]> => {
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const client = mtlsClient(t, `127.0.0.1:${port}`, w.ca, producer);
      const res = await client.request({ path: '/x', method: 'GET' });
      statuses.push(res.statusCode);
      await res.body.dump();
      await client.close();
    }
    return statuses;
  };
  t.same([...new Set(await twenty())], [200], 'allowed on every thread before');

  const reloaded = (): Array<Record<string, unknown>> => p.logs().filter((l) => l.msg === 'configuration reloaded');
  await writeFile(file, config(OTHER, 'debug'));
  p.kill('SIGHUP');
  await eventually(() => reloaded().length === 1, WAIT_MS, 'the reload');
  t.match(reloaded()[0], { trigger: 'sighup' });
  t.same([...(reloaded()[0]!.changed as string[])].sort(), ['listeners[0].allow.spiffe', 'log.level']);
  // the worker applies its message between two events of its loop: poll until it has
  await eventually(async () => (await twenty()).every((s) => s === 403), WAIT_MS, 'every thread to refuse');
  t.same([...new Set(await twenty())], [403], 'refused on every thread after');

  await writeFile(file, config(PRODUCER, 'debug'));
  p.kill('SIGHUP');
  await eventually(() => reloaded().length === 2, WAIT_MS, 'the second reload');
  await eventually(async () => (await twenty()).every((s) => s === 200), WAIT_MS, 'every thread to allow again');
  const authorized = p.logs().filter((l) => l.msg === 'connection authorized');
  t.ok(
    authorized.some((l) => l.worker === 1),
    'the worker thread logs at debug now',
  );
  t.ok(
    authorized.some((l) => l.worker === undefined),
    'and so does the main thread',
  );

  // a change that needs a restart, by SIGHUP: refused, logged, the process keeps running
  await writeFile(file, config(OTHER, 'debug').replace('"workers":2', '"workers":3'));
  p.kill('SIGHUP');
  await eventually(
    () => p.logs().some((l) => l.msg === 'configuration reload refused; nothing changed'),
    WAIT_MS,
    'the refusal',
  );
  t.match(
    p.logs().find((l) => l.msg === 'configuration reload refused; nothing changed'),
    { restartRequired: ['workers'] },
  );
  t.same([...new Set(await twenty())], [200], 'the allow-list in that file was not applied');
  p.kill('SIGTERM');
  t.equal((await exitWithin(p, WAIT_MS)).code, 0);
});
