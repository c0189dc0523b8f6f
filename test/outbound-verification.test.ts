/**
 * Outbound verification: a plaintext loopback client talks to an outbound listener, which
 * originates mTLS to a server and must check that server's chain, name, SPIFFE ID and SPKI
 * pins before a single byte of the request leaves. Most servers here are bare
 * `https.createServer`s we start ourselves, so each test controls the server certificate;
 * the happy path runs outbound -> inbound sidecar -> app end to end.
 */
import t from 'tap';
import https from 'node:https';
import tls from 'node:tls';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { spkiPin, spkiPinOfKeyObject } from '../src/core/spkiPin.ts';
import { hoursAgo, makeCa } from './helpers/pki.ts';
import { farEnd, type FarEnd } from './helpers/farEnd.ts';
import {
  eventually,
  plainClient,
  sha256,
  startTestSidecar,
  startUpstream,
  world,
  type Test,
  type TestIdentity,
  type TestSidecar,
  type World,
} from './helpers/world.ts';
import { PRODUCER } from './helpers/identities.ts';

const LISTENER = 'to-warehouse';
const WAREHOUSE = 'spiffe://example.org/warehouse';

interface TlsApp {
  readonly addr: string;
  /** requests the server received (url + headers) */
  readonly seen: Array<{ url: string; headers: Record<string, unknown> }>;
  /** TLS connections the server completed */
  secureConnections: number;
  /** raw bytes the server read from TLS connections (TCP mode) */
  bytesReceived: number;
  /** TLS connections currently open on the server side */
  open: number;
  /** connections, handshakes, request events and application bytes, counted as they arrive */
  readonly far: FarEnd;
}

/** A bare mTLS HTTPS server presenting `serverId`, requiring a client certificate from the world's CA. */
async function startHttpsApp(t: Test, w: World, serverId: TestIdentity): Promise<TlsApp> {
  const server = https.createServer(
    { cert: serverId.certPem, key: serverId.keyPem, ca: w.ca.certPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      req.resume();
      req.on('end', () => {
        app.seen.push({ url: req.url ?? '', headers: req.headers });
        const body = JSON.stringify({ ok: true, url: req.url });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      });
    },
  );
  const app: TlsApp = { addr: '', seen: [], secureConnections: 0, bytesReceived: 0, open: 0, far: farEnd(server) };
  server.on('secureConnection', () => {
    app.secureConnections += 1;
  });
  return listenOn(t, server, app);
}

/** A bare mTLS TCP server presenting `serverId` that echoes what it reads, prefixed. */
async function startTlsEcho(t: Test, w: World, serverId: TestIdentity): Promise<TlsApp> {
  const server = tls.createServer(
    { cert: serverId.certPem, key: serverId.keyPem, ca: w.ca.certPem, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      app.secureConnections += 1;
      app.open += 1;
      socket.on('data', (chunk: Buffer) => {
        app.bytesReceived += chunk.length;
        socket.write(Buffer.concat([Buffer.from('echo:'), chunk]));
      });
      socket.on('end', () => socket.end());
      socket.on('error', () => undefined);
      socket.on('close', () => {
        app.open -= 1;
      });
    },
  );
  const app: TlsApp = { addr: '', seen: [], secureConnections: 0, bytesReceived: 0, open: 0, far: farEnd(server) };
  return listenOn(t, server, app);
}

async function listenOn(t: Test, server: tls.Server, app: TlsApp): Promise<TlsApp> {
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  (app as { addr: string }).addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return app;
}

/** An outbound sidecar whose identity is the producer, pointed at `target`. */
async function outbound(
  t: Test,
  w: World,
  target: string,
  extra: Record<string, unknown> = {},
  protocol: 'http' | 'tcp' = 'http',
): Promise<TestSidecar> {
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  return startTestSidecar(t, w.dir, {
    identity: producer.files,
    listeners: [{ name: LISTENER, mode: 'outbound', protocol, listen: '127.0.0.1:0', target, ...extra }],
  });
}

async function send(
  sc: TestSidecar,
  t: Test,
  path = '/orders',
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const res = await plainClient(t, sc.addr()).request({ path, method: 'GET' });
  return { status: res.statusCode, headers: res.headers as Record<string, unknown>, body: await res.body.text() };
}

t.test(
  'carries a request end to end: outbound -> inbound -> app, and the app learns the outbound identity',
  async (t) => {
    const w = await world(t);
    const app = await startUpstream(t);
    const warehouse = await w.identity('warehouse', { spiffe: [WAREHOUSE], dns: ['warehouse'] });
    const inbound = await startTestSidecar(t, w.dir, {
      identity: warehouse.files,
      listeners: [
        {
          name: 'ingest',
          mode: 'inbound',
          protocol: 'http',
          listen: '127.0.0.1:0',
          target: app.addr,
          allow: { spiffe: [PRODUCER] },
        },
      ],
    });
    const sc = await outbound(t, w, inbound.addr(), {
      serverName: 'warehouse',
      verify: { spiffe: [WAREHOUSE], spkiPins: [spkiPin(warehouse.certPem)] },
    });
    const body = Buffer.from(JSON.stringify({ order: 42, items: ['a', 'b'] }));
    const res = await plainClient(t, sc.addr()).request({
      path: '/orders?x=1',
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    t.equal(res.statusCode, 200);
    const echoed = (await res.body.json()) as { url: string; bodySha256: string };
    t.equal(echoed.url, '/orders?x=1', 'path and query arrive intact');
    t.equal(echoed.bodySha256, sha256(body), 'body arrives intact');
    t.equal(app.seen.length, 1, 'the app saw one request');
    t.equal(app.seen[0]?.headers['x-tollgate-peer'], PRODUCER, 'the app sees the outbound sidecar identity');
    t.equal(
      app.seen[0]?.headers.host,
      inbound.addr(),
      'outbound sends the target authority as Host, not the loopback hop',
    );
    t.equal(
      await inbound.metric('tollgate_authz_decisions_total', { decision: 'allow' }),
      1,
      'the inbound authorized the outbound',
    );
    t.equal(await sc.metric('tollgate_upstream_errors_total', { listener: LISTENER }), 0, 'no upstream errors');
  },
);

interface RefusalCase {
  readonly name: string;
  /** the certificate the server presents */
  readonly server: (w: World) => Promise<TestIdentity>;
  /** serverName / verify of the outbound listener */
  readonly listener: (server: TestIdentity) => Record<string, unknown>;
}

const REFUSALS: RefusalCase[] = [
  {
    name: 'refuses a server whose certificate does not name the configured serverName',
    server: (w) => w.identity('warehouse', { spiffe: [WAREHOUSE], dns: ['warehouse'] }),
    listener: () => ({ serverName: 'billing' }),
  },
  {
    name: 'refuses a server whose SPIFFE ID is not the one expected',
    server: (w) => w.identity('impostor', { spiffe: ['spiffe://example.org/impostor'], dns: ['warehouse'] }),
    listener: () => ({ serverName: 'warehouse', verify: { spiffe: [WAREHOUSE] } }),
  },
  {
    name: 'refuses a server with no SPIFFE ID when one is expected',
    server: (w) => w.identity('no-spiffe', { dns: ['warehouse'] }),
    listener: () => ({ serverName: 'warehouse', verify: { spiffe: [WAREHOUSE] } }),
  },
  {
    name: 'refuses a server outside the expected trust domain',
    server: (w) => w.identity('foreign-td', { spiffe: ['spiffe://other.org/warehouse'], dns: ['warehouse'] }),
    listener: () => ({ serverName: 'warehouse', verify: { spiffe: ['spiffe://example.org/*'] } }),
  },
  {
    name: 'refuses a server whose key matches none of the pins',
    server: (w) => w.identity('warehouse', { spiffe: [WAREHOUSE], dns: ['warehouse'] }),
    listener: () => ({ serverName: 'warehouse', verify: { spkiPins: [pinOfFreshKey(), pinOfFreshKey()] } }),
  },
  {
    name: 'refuses a server with the right identity but a key that is not pinned',
    server: (w) => w.identity('warehouse', { spiffe: [WAREHOUSE], dns: ['warehouse'] }),
    listener: () => ({ serverName: 'warehouse', verify: { spiffe: [WAREHOUSE], spkiPins: [pinOfFreshKey()] } }),
  },
  {
    name: 'refuses a server certificate from another CA',
    server: async (w) =>
      w.identity('foreign', { spiffe: [WAREHOUSE], dns: ['warehouse'] }, await makeCa({ cn: 'another CA' })),
    listener: () => ({ serverName: 'warehouse', verify: { spiffe: [WAREHOUSE] } }),
  },
  {
    name: 'refuses an expired server certificate',
    server: (w) =>
      w.identity('expired', {
        spiffe: [WAREHOUSE],
        dns: ['warehouse'],
        notBefore: hoursAgo(48),
        notAfter: hoursAgo(24),
      }),
    listener: () => ({ serverName: 'warehouse', verify: { spiffe: [WAREHOUSE] } }),
  },
];

/** A syntactically valid pin no test certificate has. */
function pinOfFreshKey(): string {
  return spkiPinOfKeyObject(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
}

for (const c of REFUSALS) {
  t.test(`${c.name} with 502 ERR_UPSTREAM_IDENTITY, before the request is sent`, async (t) => {
    const w = await world(t);
    const serverId = await c.server(w);
    const server = await startHttpsApp(t, w, serverId);
    const sc = await outbound(t, w, server.addr, c.listener(serverId));
    const res = await send(sc, t);
    t.equal(res.status, 502);
    t.equal(res.headers['x-tollgate-error'], 'ERR_UPSTREAM_IDENTITY');
    t.equal((JSON.parse(res.body) as { error: string }).error, 'ERR_UPSTREAM_IDENTITY', 'JSON body names the code');
    t.ok(server.far.connections() >= 1, 'tollgate dialled the server (to see its certificate)');
    t.equal(server.far.requests(), 0, 'the server never began a request');
    t.equal(server.far.bytes(), 0, 'the server never read an application byte');
    t.equal(
      await sc.metric('tollgate_upstream_errors_total', { listener: LISTENER, reason: 'upstream_identity' }),
      1,
      'counted as upstream_identity',
    );
    const warnings = sc.logs.lines.filter((l) => l.code === 'ERR_UPSTREAM_IDENTITY');
    t.equal(warnings.length, 1, 'one warning');
  });
}

t.test('accepts a server in the expected trust domain', async (t) => {
  const w = await world(t);
  const server = await startHttpsApp(
    t,
    w,
    await w.identity('warehouse', { spiffe: ['spiffe://example.org/team/warehouse-7'], dns: ['warehouse'] }),
  );
  const sc = await outbound(t, w, server.addr, {
    serverName: 'warehouse',
    verify: { spiffe: ['spiffe://example.org/*'] },
  });
  const res = await send(sc, t);
  t.equal(res.status, 200);
  t.equal(server.seen.length, 1, 'the server received the request');
  t.equal(server.seen[0]?.url, '/orders');
});

t.test('accepts a server whose key matches the backup pin, so keys can rotate', async (t) => {
  const w = await world(t);
  const serverId = await w.identity('warehouse', { spiffe: [WAREHOUSE], dns: ['warehouse'] });
  const server = await startHttpsApp(t, w, serverId);
  const sc = await outbound(t, w, server.addr, {
    serverName: 'warehouse',
    verify: { spiffe: [WAREHOUSE], spkiPins: [pinOfFreshKey(), spkiPin(serverId.certPem)] },
  });
  const res = await send(sc, t);
  t.equal(res.status, 200);
  t.equal(server.seen.length, 1, 'the server received the request');
  t.equal(await sc.metric('tollgate_upstream_errors_total', { listener: LISTENER }), 0);
});

t.test('checks the IP SAN when serverName is an IP address (the default: the target host)', async (t) => {
  const w = await world(t);
  const good = await startHttpsApp(
    t,
    w,
    await w.identity('ip-ok', { spiffe: [WAREHOUSE], dns: [], ips: ['127.0.0.1'] }),
  );
  const sc = await outbound(t, w, good.addr);
  t.equal((await send(sc, t)).status, 200, 'a certificate naming 127.0.0.1 is accepted for target 127.0.0.1');

  const w2 = await world(t);
  const bad = await startHttpsApp(
    t,
    w2,
    await w2.identity('ip-wrong', { spiffe: [WAREHOUSE], dns: ['127.0.0.1.nip.io'], ips: ['10.0.0.1'] }),
  );
  const sc2 = await outbound(t, w2, bad.addr);
  const res = await send(sc2, t);
  t.equal(res.status, 502, 'a certificate not naming 127.0.0.1 is refused');
  t.equal(res.headers['x-tollgate-error'], 'ERR_UPSTREAM_IDENTITY');
  t.ok(good.far.bytes() > 0, 'the accepted server read the request');
  t.ok(bad.far.connections() >= 1, 'tollgate dialled the refused server');
  t.equal(bad.far.requests(), 0, 'the refused server never began a request');
  t.equal(bad.far.bytes(), 0, 'the refused server never read an application byte');
});

t.test('reuses one verified upstream connection for sequential requests (keep-alive)', async (t) => {
  const w = await world(t);
  const server = await startHttpsApp(t, w, await w.identity('warehouse', { spiffe: [WAREHOUSE], dns: ['warehouse'] }));
  const sc = await outbound(t, w, server.addr, { serverName: 'warehouse', verify: { spiffe: [WAREHOUSE] } });
  for (let i = 0; i < 5; i++) {
    const res = await send(sc, t, `/r/${i}`);
    t.equal(res.status, 200, `request ${i} answered`);
  }
  t.same(
    server.seen.map((r) => r.url),
    ['/r/0', '/r/1', '/r/2', '/r/3', '/r/4'],
    'every request arrived, in order',
  );
  t.equal(server.secureConnections, 1, 'one TLS connection carried all five requests');
});

t.test('a TCP outbound relays bytes both ways to a server whose pin matches', async (t) => {
  const w = await world(t);
  const serverId = await w.identity('warehouse', { spiffe: [WAREHOUSE], dns: ['warehouse'] });
  const server = await startTlsEcho(t, w, serverId);
  const sc = await outbound(
    t,
    w,
    server.addr,
    { serverName: 'warehouse', verify: { spkiPins: [spkiPin(serverId.certPem)] } },
    'tcp',
  );
  const { received } = await tcpExchange(sc.addr(), 'hello');
  t.equal(received, 'echo:hello', 'the server got the bytes and its answer came back');
  t.equal(server.bytesReceived, 5);
});

t.test(
  'a TCP outbound closes the downstream connection without relaying a byte when the pin does not match',
  async (t) => {
    const w = await world(t);
    const server = await startTlsEcho(t, w, await w.identity('warehouse', { spiffe: [WAREHOUSE], dns: ['warehouse'] }));
    const sc = await outbound(
      t,
      w,
      server.addr,
      { serverName: 'warehouse', verify: { spkiPins: [pinOfFreshKey()] } },
      'tcp',
    );
    const { received, closed } = await tcpExchange(sc.addr(), 'secret payload');
    t.ok(closed, 'the downstream connection was closed');
    t.equal(received, '', 'nothing came back');
    await eventually(() => server.open === 0, 5000, 'the upstream connection to close');
    t.equal(server.bytesReceived, 0, 'the server never received a byte of the payload');
    t.equal(
      await sc.metric('tollgate_upstream_errors_total', { listener: LISTENER, reason: 'upstream_identity' }),
      1,
      'counted as upstream_identity',
    );
  },
);

/** Connect, write `payload`, half-close, and collect what comes back until the connection closes. */
function tcpExchange(addr: string, payload: string): Promise<{ received: string; closed: boolean }> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host, port, allowHalfOpen: true }, () => {
      socket.write(payload);
      socket.end();
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ received: Buffer.concat(chunks).toString('utf8'), closed: true }));
    socket.setTimeout(10_000, () => {
      socket.destroy();
      reject(new Error('the downstream connection was neither answered nor closed'));
    });
  });
}
