/**
 * `workers`: N event loops (the main thread + N-1 worker threads) on the same ports with
 * reusePort. One instance still: a nonce is accepted once whichever thread gets it, /metrics
 * sums counters over threads without doubling per-instance gauges, session tickets resume on
 * any thread, reloads reach every thread, SIGTERM drains them all.
 */
import t from 'tap';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { validateConfig } from '../src/config/validate.ts';
import { configView } from '../src/admin/configView.ts';
import { cgroupCpuLimit, describeWorkers, resolveWorkers } from '../src/workers/cpuQuota.ts';
import { startWorkerPool, type WorkerPoolOptions } from '../src/workers/pool.ts';
import { keyRingFromEntries } from '../src/integrity/keyRing.ts';
import { RecentHandshakes } from '../src/telemetry/recentHandshakes.ts';
import { RecentAnomalies } from '../src/anomaly/recentAnomalies.ts';
import pino from 'pino';
import { makeLeaf, writeIdentityDir, type Teardownable } from './helpers/pki.ts';
import { exitWithin, startTollgate } from './helpers/process.ts';
import { expositionProblems, parsePrometheusText, sampleValue, type MetricFamily } from './helpers/prometheusText.ts';
import { writeKey, signedHeaders } from './helpers/signing.ts';
import {
  eventually,
  mtlsClient,
  startTestSidecar,
  startUpstream,
  world,
  type TestIdentity,
  type TestSidecar,
  type World,
} from './helpers/world.ts';
import { PRODUCER } from './helpers/identities.ts';

const NO_WATCH = { watchDebounceMs: 3_600_000 };

/* ------------------------------------------------------------------ config */

t.test('workers: an integer from 1 to 64 or "auto"; anything else is named by its path', async (t) => {
  const base = {
    identity: { certFile: 'c', keyFile: 'k', caFile: 'a' },
    listeners: [{ name: 'in', mode: 'inbound', listen: '127.0.0.1:0', target: '127.0.0.1:8080', allow: { any: true } }],
  };
  const check = (workers: unknown) => validateConfig({ ...base, workers }, { baseDir: '/', source: null });
  const dflt = validateConfig(base, { baseDir: '/', source: null });
  t.ok(dflt.ok && dflt.config.workers === 1, 'default 1');
  for (const good of [1, 2, 64, 'auto']) {
    const r = check(good);
    t.ok(r.ok && r.config.workers === good, `${JSON.stringify(good)} accepted`);
  }
  for (const bad of [0, 65, -1, 1.5, '2', 'many', null, true]) {
    const r = check(bad);
    t.notOk(r.ok, `${JSON.stringify(bad)} refused`);
    if (!r.ok) t.match(r.problems, [{ path: 'workers', message: /integer from 1 to 64, or "auto"/ }]);
  }
  const r = check('auto');
  if (r.ok) t.match(configView(r.config), { workers: 'auto' }, '/config shows it');
});

t.test('"auto" follows the cgroup CPU quota, rounded up, else the CPUs available', async (t) => {
  const files = (m: Record<string, string>) => (p: string) => m[p] ?? null;
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), null, 'v2 without a quota');
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' })), 1.5, 'v2 quota');
  t.equal(
    cgroupCpuLimit(
      files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '200000\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' }),
    ),
    2,
    'v1 quota',
  );
  t.equal(
    cgroupCpuLimit(
      files({
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      }),
    ),
    null,
    'v1 without a quota',
  );
  t.equal(cgroupCpuLimit(files({})), null, 'no cgroup files');
  t.equal(resolveWorkers('auto', files({ '/sys/fs/cgroup/cpu.max': '150000 100000' }), 8), 2, '1.5 CPUs: 2 loops');
  t.equal(
    resolveWorkers('auto', files({ '/sys/fs/cgroup/cpu.max': '800000 100000' }), 4),
    4,
    'never more than the CPUs there are',
  );
  t.equal(resolveWorkers('auto', files({ '/sys/fs/cgroup/cpu.max': '50000 100000' }), 4), 1, 'half a CPU: 1');
  t.equal(resolveWorkers('auto', files({}), 128), 64, 'at most 64');
  t.equal(describeWorkers(3, files({}), 8), 'workers 3 event loops');
  t.equal(
    describeWorkers('auto', files({ '/sys/fs/cgroup/cpu.max': '150000 100000' }), 8),
    'workers 2 event loops ("auto": cgroup CPU quota 1.5 of 8 CPUs)',
  );
  t.equal(describeWorkers('auto', files({}), 1), 'workers 1 event loop ("auto": no cgroup CPU quota, 1 CPU available)');
  t.equal(resolveWorkers(3, files({}), 1), 3, 'a number is taken as given');
});

/* ------------------------------------------------------------------ the pool, with stand-in worker scripts */

function poolOptions(script: string, onFailure: (p: string) => void): WorkerPoolOptions {
  const r = validateConfig(
    {
      identity: { certFile: 'c', keyFile: 'k', caFile: 'a' },
      listeners: [
        { name: 'in', mode: 'inbound', listen: '127.0.0.1:0', target: '127.0.0.1:8080', allow: { any: true } },
      ],
    },
    { baseDir: '/', source: null },
  );
  if (!r.ok) throw new Error('bad test config');
  return {
    count: 1,
    config: r.config,
    material: {
      certPem: Buffer.from('c'),
      keyPem: Buffer.from('k'),
      caPem: Buffer.from('a'),
      crls: [],
      revoked: new Set<string>(),
    },
    keys: keyRingFromEntries([]),
    ticketKeys: Buffer.alloc(48),
    replay: null,
    log: pino({ level: 'silent' }),
    audit: { record: () => undefined, flush: () => Promise.resolve() },
    recentHandshakes: new RecentHandshakes(),
    recentAnomalies: new RecentAnomalies(),
    onFailure,
    entry: new URL(`data:text/javascript,${encodeURIComponent(script)}`),
  };
}

t.test('a worker thread that dies is reported (the instance fails closed) and stops holding up drain', async (t) => {
  const failures: string[] = [];
  const pool = await startWorkerPool(
    poolOptions(
      `import { parentPort } from 'node:worker_threads';
       parentPort.on('message', (m) => { if (m.type === 'status') process.exit(3); });
       parentPort.postMessage({ type: 'ready' });`,
      (p) => failures.push(p),
    ),
  );
  t.same(await pool.status(), [[]], 'a request to a thread that dies gets its fallback');
  await eventually(() => failures.length === 1, 5_000, 'failure reported');
  t.match(failures[0], /worker 1 exited unexpectedly \(code 3\)/);
  // a dead thread that were waited for would hold drain until its deadline, an hour away: that it
  // resolves at all (within the test's timeout) shows it is not waited for, with no clock to read
  t.equal(
    await pool.drain('inbound', Date.now() + 3_600_000),
    false,
    'a dead thread does not drain cleanly, and is not waited for',
  );
  await pool.stop();
  t.equal(failures.length, 1);
});

t.test('a worker thread that cannot bind fails the start with its problems', async (t) => {
  const failures: string[] = [];
  await t.rejects(
    startWorkerPool(
      poolOptions(
        `import { parentPort } from 'node:worker_threads';
         parentPort.postMessage({ type: 'failed', message: 'listener in cannot listen', problems: ['listeners[0].listen: 127.0.0.1:1: EACCES (worker 1)'] });`,
        (p) => failures.push(p),
      ),
    ),
    { message: 'listener in cannot listen', problems: ['listeners[0].listen: 127.0.0.1:1: EACCES (worker 1)'] },
  );
  t.same(failures, [], 'a start that fails is not also a runtime failure');
});

/* ------------------------------------------------------------------ in-process, two threads */

interface Setup {
  w: World;
  ingest: TestIdentity;
  producer: TestIdentity;
  sc: TestSidecar;
  app: Awaited<ReturnType<typeof startUpstream>>;
  key: Awaited<ReturnType<typeof writeKey>>;
  admin: string;
  port: number;
}

async function twoThreads(t: Teardownable): Promise<Setup> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const key = await writeKey(join(w.dir, 'keys'), 'k1');
  const app = await startUpstream(t);
  const sc = await startTestSidecar(
    t,
    w.dir,
    {
      workers: 2,
      admin: { listen: '127.0.0.1:0' },
      identity: ingest.files,
      keys: { dir: 'keys' },
      listeners: [
        {
          name: 'ingest',
          mode: 'inbound',
          listen: '127.0.0.1:0',
          target: app.addr,
          allow: { spiffe: [PRODUCER] },
          integrity: { verify: true },
        },
      ],
    },
    { identityTiming: NO_WATCH },
  );
  return {
    w,
    ingest,
    producer,
    sc,
    app,
    key,
    admin: `http://127.0.0.1:${sc.admin!.port}`,
    port: sc.listeners[0]!.address().port,
  };
}

async function scrape(s: Setup): Promise<MetricFamily[]> {
  const res = await request(`${s.admin}/metrics`);
  return parsePrometheusText(await res.body.text());
}

interface Connection {
  readonly reused: boolean;
  readonly serial: string;
  readonly session: Buffer | null;
  readonly status: string;
}

/** One fresh mTLS connection sending one request (Connection: close); the ticket it got, if any. */
function connectOnce(
  s: Setup,
  opts: {
    session?: Buffer | null;
    headers?: Record<string, string>;
    method?: string;
    path?: string;
    body?: string;
  } = {},
): Promise<Connection> {
  return new Promise((resolve, reject) => {
    let session: Buffer | null = null;
    let data = '';
    let reused = false;
    let serial = '';
    const socket = tls.connect({
      host: '127.0.0.1',
      port: s.port,
      servername: 'localhost',
      ca: s.w.ca.certPem,
      cert: s.producer.certPem,
      key: s.producer.keyPem,
      ...(opts.session ? { session: opts.session } : {}),
    });
    socket.on('session', (b: Buffer) => (session = b));
    socket.once('secureConnect', () => {
      reused = socket.isSessionReused();
      serial = socket.getPeerX509Certificate()?.serialNumber ?? '';
      const body = opts.body ?? '';
      const headers = {
        host: `localhost:${s.port}`,
        connection: 'close',
        'content-length': String(Buffer.byteLength(body)),
        ...opts.headers,
      };
      socket.write(
        `${opts.method ?? 'GET'} ${opts.path ?? '/'} HTTP/1.1\r\n${Object.entries(headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('')}\r\n${body}`,
      );
    });
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (data += c));
    socket.once('error', reject);
    socket.once('close', () => resolve({ reused, serial, session, status: data.slice(9, 12) }));
  });
}

t.test('two threads share the port, replay protection stays exact, and /metrics adds them up', async (t) => {
  const s = await twoThreads(t);
  t.equal(s.sc.workers, 2);
  const n = 40;
  const body = '{"a":1}';
  const headers = signedHeaders({
    method: 'POST',
    path: '/events',
    authority: `localhost:${s.port}`,
    body,
    headers: { 'content-type': 'application/json' },
    key: s.key,
  });
  // the same signed request over n fresh connections: the kernel spreads them over both threads
  const results: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = await connectOnce(s, { method: 'POST', path: '/events', headers, body });
    results.push(c.status);
  }
  t.equal(results.filter((r) => r === '200').length, 1, 'accepted exactly once');
  t.equal(
    results.filter((r) => r === '401').length,
    n - 1,
    'refused as a replay on every other connection, whichever thread took it',
  );
  t.equal(s.app.seen.length, 1, 'the app saw it once');

  const mainOnly = await s.sc.metric('tollgate_tls_handshakes_total', { result: 'success' });
  const families = await scrape(s);
  t.same(expositionProblems(families), [], 'the merged exposition is well formed');
  const all = sampleValue(families, 'tollgate_tls_handshakes_total', { result: 'success' });
  t.equal(all, n, 'handshakes summed over threads');
  t.ok(mainOnly > 0 && mainOnly < n, `both threads accepted connections (main thread ${mainOnly} of ${n})`);
  t.equal(
    sampleValue(families, 'tollgate_requests_total', { listener: 'ingest' }),
    n,
    'requests summed: as many as were sent',
  );
  t.equal(sampleValue(families, 'tollgate_signature_checks_total', { result: 'ok' }), 1);
  t.equal(sampleValue(families, 'tollgate_signature_checks_total', { result: 'replayed' }), n - 1);
  t.equal(sampleValue(families, 'tollgate_replay_cache_entries'), 1, 'one shared cache, counted once');
  const notAfter = new X509Certificate(s.ingest.certPem).validToDate.getTime() / 1000;
  t.equal(
    sampleValue(families, 'tollgate_cert_expiration_timestamp_seconds', { cert: 'identity' }),
    notAfter,
    'the expiry gauge is not doubled',
  );
  t.equal(sampleValue(families, 'tollgate_build_info'), 1, 'build info is 1, not one per thread');
  t.equal(sampleValue(families, 'tollgate_key_ring_keys'), 1);
  t.equal(
    sampleValue(families, 'tollgate_audit_events_total', { type: 'replay' }),
    n - 1,
    "every thread's audit events reach the one audit sink",
  );
  const refusedBy = new Set(s.sc.logs.lines.filter((l) => l.code === 'ERR_SIG_REPLAYED').map((l) => l.worker ?? 0));
  t.same([...refusedBy].sort(), [0, 1], 'log lines from both threads (worker 1 is tagged) reach the one logger');
  const recent = await request(`${s.admin}/handshakes/recent`);
  t.equal(recent.statusCode, 200);
  await recent.body.dump();

  t.equal(await s.sc.shutdown(), true, 'drains every thread cleanly');
  await t.rejects(connectOnce(s), { code: 'ECONNREFUSED' }, 'no thread listens any more');
});

t.test('/status counts the open connections of every thread', async (t) => {
  const s = await twoThreads(t);
  // idle keep-alive connections, each past its handshake and one request, spread by the kernel
  const n = 12;
  const sockets = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<tls.TLSSocket>((resolve, reject) => {
          const socket = tls.connect({
            host: '127.0.0.1',
            port: s.port,
            servername: 'localhost',
            ca: s.w.ca.certPem,
            cert: s.producer.certPem,
            key: s.producer.keyPem,
          });
          socket.once('secureConnect', () => socket.write(`GET / HTTP/1.1\r\nhost: localhost:${s.port}\r\n\r\n`));
          socket.once('data', () => resolve(socket));
          socket.once('error', reject);
        }),
    ),
  );
  t.teardown(() => sockets.forEach((c) => c.destroy()));
  const mainOnly = await s.sc.metric('tollgate_tls_handshakes_total', { result: 'success' });
  t.ok(mainOnly < n, `some connections are on the worker thread (main thread ${mainOnly} of ${n})`);
  const status = (await (await request(`${s.admin}/status`)).body.json()) as {
    workers: number;
    listeners: Array<{ name: string; connections: number }>;
  };
  t.equal(status.workers, 2);
  t.equal(status.listeners[0]!.connections, n, 'every open connection counted, whichever thread holds it');
});

t.test('a session ticket from one thread resumes on the other', async (t) => {
  const s = await twoThreads(t);
  const first = await connectOnce(s);
  t.equal(first.reused, false);
  t.ok(first.session !== null, 'a ticket was issued');
  // the newest ticket each time (a resumed TLS 1.3 connection may or may not get a new one)
  let session = first.session;
  let reused = 0;
  const n = 30;
  for (let i = 0; i < n; i++) {
    const c = await connectOnce(s, { session });
    session = c.session ?? session;
    if (c.reused) reused++;
  }
  const mainOnly = await s.sc.metric('tollgate_tls_handshakes_total', { result: 'success' });
  t.ok(mainOnly > 0 && mainOnly < n + 1, `connections landed on both threads (main thread ${mainOnly} of ${n + 1})`);
  t.equal(reused, n, 'every connection resumed, whichever thread issued its ticket');
});

t.test('a reload reaches every thread: all new handshakes present the new certificate', async (t) => {
  const s = await twoThreads(t);
  const before = (await connectOnce(s)).serial;
  const next = await makeLeaf(s.w.ca, { cn: 'ingest-2', dns: ['localhost'] });
  await writeIdentityDir(join(s.w.dir, 'ingest'), next, s.w.ca);
  const res = await request(`${s.admin}/reload`, { method: 'POST' });
  t.equal(res.statusCode, 200, await res.body.text());
  const serials = new Set<string>();
  for (let i = 0; i < 30; i++) serials.add((await connectOnce(s)).serial);
  t.same([...serials], [new X509Certificate(next.certPem).serialNumber], 'only the new certificate, on every thread');
  t.not(before, [...serials][0]);

  // a key added to keys.dir and reloaded verifies on every thread
  const k2 = await writeKey(join(s.w.dir, 'keys'), 'k2');
  const again = await request(`${s.admin}/reload`, { method: 'POST' });
  t.equal(again.statusCode, 200, await again.body.text());
  const statuses: string[] = [];
  for (let i = 0; i < 20; i++) {
    const headers = signedHeaders({ method: 'GET', path: '/k2', authority: `localhost:${s.port}`, key: k2 });
    statuses.push((await connectOnce(s, { path: '/k2', headers })).status);
  }
  t.same(new Set(statuses), new Set(['200']), 'signed with the new key: accepted on every thread');
  const mainOnly = await s.sc.metric('tollgate_signature_checks_total', { result: 'ok' });
  t.ok(mainOnly > 0 && mainOnly < 20, `checked on both threads (main thread ${mainOnly} of 20)`);
});

/* ------------------------------------------------------------------ a real process */

t.test('tollgate check accepts workers and names a bad value by its path', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const write = async (name: string, workers: unknown): Promise<string> => {
    const file = join(w.dir, name);
    await writeFile(
      file,
      JSON.stringify({
        workers,
        identity: ingest.files,
        listeners: [
          { name: 'in', mode: 'inbound', listen: '127.0.0.1:0', target: '127.0.0.1:8080', allow: { any: true } },
        ],
      }),
    );
    return file;
  };
  const good = await exitWithin(startTollgate(t, ['check', '--config', await write('good.json', 'auto')]), 15_000);
  t.equal(good.code, 0, good.stderr);
  t.match(
    good.stdout,
    /^ {2}workers [1-9][0-9]* event loops? \("auto": /m,
    'check prints what "auto" resolves to here',
  );
  const bad = await exitWithin(startTollgate(t, ['check', '--config', await write('bad.json', 0)]), 15_000);
  t.equal(bad.code, 2);
  t.match(bad.stdout + bad.stderr, /workers: expected an integer from 1 to 64, or "auto"/);
});

t.test('bin/tollgate.js with workers: 2 serves, reloads on SIGHUP, and exits 0 on SIGTERM', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const app = await startUpstream(t);
  const file = join(w.dir, 'tollgate.json');
  await writeFile(
    file,
    JSON.stringify({
      workers: 2,
      admin: { listen: '127.0.0.1:0' },
      identity: ingest.files,
      listeners: [
        { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
      ],
    }),
  );
  const p = startTollgate(t, ['run', '--config', file]);
  const started = (): Record<string, unknown> | undefined => p.logs().find((l) => l.msg === 'tollgate started');
  await eventually(() => started() !== undefined || !p.running(), 15_000, 'tollgate started');
  const line = started();
  if (line === undefined) throw new Error(`tollgate did not start: ${p.stderr()} ${p.stdout()}`);
  t.equal(line.workers, 2);
  t.ok(p.logs().some((l) => l.msg === 'worker threads listening' && l.workers === 2));
  const address = (line.listeners as Array<{ address: string }>)[0]!.address;
  const client = mtlsClient(t, address, w.ca, producer);
  for (let i = 0; i < 5; i++) {
    const res = await client.request({ path: '/', method: 'GET' });
    t.equal(res.statusCode, 200);
    await res.body.dump();
  }
  p.kill('SIGHUP');
  await eventually(
    () => p.logs().some((l) => l.msg === 'certificates reloaded' && l.trigger === 'sighup'),
    10_000,
    'reload logged',
  );
  await client.close();
  p.kill('SIGTERM');
  const done = await exitWithin(p, 15_000);
  t.equal(done.code, 0, done.stderr);
});
