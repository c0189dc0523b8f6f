/**
 * The access log (`log.access`): one JSON line per request with `msg: "access"`, as Envoy and
 * HAProxy users expect — listener, route, peer, method, path, status, bytes in and out,
 * duration, upstream time and the ERR_ code — over real mTLS on loopback. Credential-like query
 * values never reach it; with the switch off there is no line; a reload flips it.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { join } from 'node:path';
import {
  world,
  startUpstream,
  startTestSidecar,
  mtlsClient,
  eventually,
  type Test,
  type TestSidecar,
} from './helpers/world.ts';
import { PRODUCER } from './helpers/identities.ts';
import { redactedQuery, targetForLog } from '../src/telemetry/accessLog.ts';
import { reloadPlan } from '../src/config/reloadPlan.ts';
import { validateConfig } from '../src/config/validate.ts';
import type { Config } from '../src/config/types.ts';

const WAIT_MS = 10_000;

interface Setup {
  readonly sc: TestSidecar;
  request(
    path: string,
    opts?: { method?: string; body?: Buffer },
  ): Promise<{ status: number; error: string | undefined }>;
  access(): Array<Record<string, unknown>>;
}

async function setup(
  t: Test,
  log: Record<string, unknown>,
  listener: Record<string, unknown> = {},
): Promise<Setup & { write(log: Record<string, unknown>): Promise<void> }> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const app = await startUpstream(t);
  const file = join(w.dir, 'tollgate.json');
  const raw = (l: Record<string, unknown>): Record<string, unknown> => ({
    admin: { listen: null },
    identity: ingest.files,
    log: l,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: [PRODUCER] },
        ...listener,
      },
    ],
  });
  await writeFile(file, JSON.stringify(raw(log)));
  const sc = await startTestSidecar(t, w.dir, raw(log), {}, file);
  const client = mtlsClient(t, sc.addr(), w.ca, producer);
  return {
    sc,
    async request(path, opts = {}) {
      const method = opts.method ?? (opts.body === undefined ? 'GET' : 'POST');
      const res = await client.request({
        path,
        method,
        ...(opts.body === undefined ? {} : { body: opts.body }),
        headersTimeout: WAIT_MS,
        bodyTimeout: WAIT_MS,
      });
      await res.body.dump();
      const error = res.headers['x-tollgate-error'];
      return { status: res.statusCode, error: typeof error === 'string' ? error : undefined };
    },
    access: () => sc.logs.lines.filter((l) => l.msg === 'access'),
    write: (l) => writeFile(file, JSON.stringify(raw(l))),
  };
}

t.test('a forwarded request gets one access line with who, what, the status, the sizes and the times', async (t) => {
  const s = await setup(t, { access: true });
  const body = Buffer.alloc(1234, 'a');
  t.equal((await s.request('/v1/events', { body })).status, 200);
  await eventually(() => s.access().length === 1, WAIT_MS);
  const [line] = s.access();
  t.match(line, {
    level: 30,
    listener: 'ingest',
    peer: PRODUCER,
    remote: '127.0.0.1',
    route: 'default',
    method: 'POST',
    path: '/v1/events',
    query: null,
    status: 200,
    code: null,
    end: 'complete',
    bytesIn: 1234,
    keyId: null,
    retried: false,
  });
  t.ok((line!.bytesOut as number) > 0, 'the response body is counted');
  t.type(line!.durationMs, 'number');
  t.type(line!.upstreamMs, 'number', 'the time until the app answered');
  t.ok((line!.upstreamMs as number) <= (line!.durationMs as number), 'the upstream time is part of the whole');
  t.type(line!.conn, 'number', 'the connection it came on');
});

t.test('a refused request gets its access line with the code, and its refusal line names the path', async (t) => {
  const s = await setup(t, { access: true }, { limits: { maxBodyBytes: 100 } });
  const r = await s.request('/v1/big?batch=7', { body: Buffer.alloc(500, 'b') });
  t.equal(r.status, 413);
  t.equal(r.error, 'ERR_PAYLOAD_TOO_LARGE');
  await eventually(() => s.access().length === 1, WAIT_MS);
  t.match(s.access()[0], {
    method: 'POST',
    path: '/v1/big',
    query: 'batch=7',
    status: 413,
    code: 'ERR_PAYLOAD_TOO_LARGE',
    end: 'refused',
    upstreamMs: null,
  });
  t.ok((s.access()[0]!.bytesOut as number) > 0, 'the refusal body is counted');
  t.match(
    s.sc.logs.lines.find((l) => l.msg === 'request refused'),
    { code: 'ERR_PAYLOAD_TOO_LARGE', method: 'POST', path: '/v1/big' },
    'the refusal line carries the path too',
  );
});

t.test('credential-like query values are replaced in the access line; the others stay', async (t) => {
  const s = await setup(t, { access: true });
  t.equal((await s.request('/v1/q?page=2&access_token=abc123&API-KEY=k9&X-Amz-Signature=ff&mode=fast')).status, 200);
  await eventually(() => s.access().length === 1, WAIT_MS);
  const line = s.access()[0]!;
  t.equal(line.query, 'page=2&access_token=[REDACTED]&API-KEY=[REDACTED]&X-Amz-Signature=[REDACTED]&mode=fast');
  const text = JSON.stringify(s.sc.logs.lines);
  for (const secret of ['abc123', 'k9', 'ff&']) t.notOk(text.includes(secret), `${secret} is in no log line`);
});

t.test('with the access log off (the default) there is no access line', async (t) => {
  const s = await setup(t, {});
  for (let i = 0; i < 3; i += 1) t.equal((await s.request(`/x${i}`)).status, 200);
  t.same(s.access(), [], 'no access lines');
  t.equal(s.sc.config.log.access, false);
});

t.test('a reload turns the access log on without a restart', async (t) => {
  const s = await setup(t, { level: 'info' });
  t.equal((await s.request('/before')).status, 200);
  await s.write({ level: 'info', access: true });
  const outcome = await s.sc.reload();
  t.match(outcome, { ok: true });
  t.equal((await s.request('/after')).status, 200);
  await eventually(() => s.access().length === 1, WAIT_MS);
  t.same(
    s.access().map((l) => l.path),
    ['/after'],
    'only the request after the reload is logged',
  );
});

t.test('log.access is a live setting (applied by a reload, no restart needed)', async (t) => {
  const w = await world(t);
  const current = await startedConfig(t, w.dir);
  const plan = reloadPlan(current, { ...current, log: { ...current.log, access: true } });
  t.same(plan.changed, ['log.access']);
  t.same(plan.restartRequired, []);
});

t.test(
  'the query redaction: names are compared percent-decoded and case-blind; pairs without a value are kept',
  async (t) => {
    t.equal(redactedQuery('%74oken=x&Password=y&flag&a=b'), '%74oken=[REDACTED]&Password=[REDACTED]&flag&a=b');
    t.equal(redactedQuery('%zz=1'), '%zz=[REDACTED]', 'a name that does not decode is redacted');
    t.same(targetForLog('/p'), { path: '/p', query: null });
    t.same(targetForLog('/p?'), { path: '/p', query: '' });
  },
);

async function startedConfig(t: Test, dir: string): Promise<Config> {
  const ingest = await (await world(t)).identity('ingest', { dns: ['localhost'] });
  const result = validateConfig(
    {
      identity: ingest.files,
      listeners: [
        {
          name: 'ingest',
          mode: 'inbound',
          listen: '127.0.0.1:0',
          target: '127.0.0.1:1',
          allow: { spiffe: [PRODUCER] },
        },
      ],
    },
    { baseDir: dir, source: null },
  );
  if (!result.ok) throw new Error('config invalid');
  return result.config;
}

t.test('a TCP listener logs one access line per connection: bytes each way, duration, how it ended', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  // a TCP app that answers every chunk with twice its bytes
  const app = net.createServer((s) =>
    s.on('data', (c: Buffer) => s.write(Buffer.concat([c, c]))).on('error', () => undefined),
  );
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => app.close(r)));
  const appAddr = `127.0.0.1:${(app.address() as net.AddressInfo).port}`;
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    log: { access: true },
    listeners: [
      {
        name: 'raw',
        mode: 'inbound',
        protocol: 'tcp',
        listen: '127.0.0.1:0',
        target: appAddr,
        allow: { spiffe: [PRODUCER] },
      },
    ],
  });
  const [host, port] = [sc.listeners[0]!.address().host, sc.listeners[0]!.address().port];
  const socket = tls.connect({
    host,
    port,
    ca: w.ca.certPem,
    cert: producer.certPem,
    key: producer.keyPem,
    servername: 'localhost',
  });
  await once(socket, 'secureConnect');
  socket.write(Buffer.alloc(100, 'x'));
  let got = 0;
  socket.on('data', (c: Buffer) => (got += c.length));
  await eventually(() => got === 200, WAIT_MS, 'the echo');
  socket.end();
  await eventually(() => sc.logs.lines.some((l) => l.msg === 'access'), WAIT_MS, 'the access line');
  t.match(
    sc.logs.lines.filter((l) => l.msg === 'access'),
    [{ listener: 'raw', peer: PRODUCER, protocol: 'tcp', bytesIn: 100, bytesOut: 200, end: 'closed', code: null }],
  );
  t.type(sc.logs.lines.find((l) => l.msg === 'access')!.durationMs, 'number');
});

t.test(
  'a TCP connection whose app cannot be reached gets an access line that says refused, with the code',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest', { dns: ['localhost'] });
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const gone = net.createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const goneAddr = `127.0.0.1:${(gone.address() as net.AddressInfo).port}`;
    await new Promise((r) => gone.close(r));
    const sc = await startTestSidecar(t, w.dir, {
      identity: ingest.files,
      log: { access: true },
      listeners: [
        {
          name: 'raw',
          mode: 'inbound',
          protocol: 'tcp',
          listen: '127.0.0.1:0',
          target: goneAddr,
          allow: { spiffe: [PRODUCER] },
        },
      ],
    });
    const { host, port } = sc.listeners[0]!.address();
    const socket = tls.connect({
      host,
      port,
      ca: w.ca.certPem,
      cert: producer.certPem,
      key: producer.keyPem,
      servername: 'localhost',
    });
    socket.on('error', () => undefined);
    await once(socket, 'close');
    await eventually(() => sc.logs.lines.some((l) => l.msg === 'access'), WAIT_MS, 'the access line');
    t.match(
      sc.logs.lines.filter((l) => l.msg === 'access'),
      [{ listener: 'raw', protocol: 'tcp', bytesIn: 0, bytesOut: 0, end: 'refused', code: 'ERR_UPSTREAM_UNAVAILABLE' }],
    );
  },
);
