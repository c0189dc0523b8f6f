/**
 * Every inbound handshake failure reason that handshake-telemetry.test.ts does not already
 * provoke, provoked for real over loopback TLS, and seen in both places an operator looks:
 * the scraped `tollgate_tls_handshakes_total{listener,result="failure",reason}` on the admin
 * /metrics, and the `/handshakes/recent` entry (reason, listener, remote address, TLS version
 * and peer where they are known). Each case has a control showing that the same client,
 * changed only in what provokes the failure, is accepted (or, where our listener refuses it
 * by policy, that a server without the policy accepts it), so a refusal is the reason named.
 */
import t from 'tap';
import tls from 'node:tls';
import net from 'node:net';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { makeCrl, type LeafOptions } from './helpers/pki.ts';
import {
  eventually,
  startTestSidecar,
  startUpstream,
  world,
  type Test,
  type TestIdentity,
  type TestSidecar,
  type Upstream,
  type World,
} from './helpers/world.ts';
import { expositionProblems, parsePrometheusText, sampleValue, type MetricFamily } from './helpers/prometheusText.ts';
import type { HandshakeRecord } from '../src/telemetry/recentHandshakes.ts';
import { INGEST, PRODUCER } from './helpers/identities.ts';

const LISTENER = 'ingest';
const WAIT_MS = 10_000;

interface Setup {
  readonly w: World;
  readonly app: Upstream;
  readonly sc: TestSidecar;
  readonly ingest: TestIdentity;
  readonly producer: TestIdentity;
}

interface SetupOptions {
  readonly identity?: LeafOptions;
  readonly tls?: Record<string, unknown>;
  readonly limits?: Record<string, unknown>;
  /** certificates the listener's CRL lists as revoked (a CRL is configured when given) */
  readonly revoke?: (w: World) => Promise<TestIdentity[]>;
}

/** An inbound HTTP listener with an admin server, allowing the producer. */
async function inbound(t: Test, opts: SetupOptions = {}): Promise<Setup> {
  const w = await world(t);
  const app = await startUpstream(t);
  const ingest = await w.identity('ingest', { spiffe: [INGEST], ...opts.identity });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  let identity: Record<string, unknown> = { ...ingest.files };
  if (opts.revoke !== undefined) {
    const crlFile = join(w.dir, 'ca.crl');
    await writeFile(crlFile, await makeCrl(w.ca, { revoked: (await opts.revoke(w)).map((r) => r.leaf) }));
    identity = { ...identity, crlFile };
  }
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity,
    ...(opts.tls === undefined ? {} : { tls: opts.tls }),
    listeners: [
      {
        name: LISTENER,
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: [PRODUCER] },
        ...(opts.limits === undefined ? {} : { limits: opts.limits }),
      },
    ],
  });
  return { w, app, sc, ingest, producer };
}

interface Attempt {
  /** the client completed its side of the handshake */
  readonly secure: boolean;
  /** the protocol the client negotiated, when it did */
  readonly protocol: string | null;
  /** the first bytes of an HTTP answer, if any came */
  readonly answer: string;
  /** the client's error code, or null when the connection just closed */
  readonly error: string | null;
  /** the client's local address:port, as the server sees the remote */
  readonly local: string;
}

/**
 * A raw TLS client to `port`: on completing its handshake it sends one HTTP request (TLS 1.3
 * lets a client finish before the server has judged its certificate), then resolves when the
 * connection ends, with what happened.
 */
function attempt(t: Test, port: number, opts: tls.ConnectionOptions): Promise<Attempt> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts });
    t.teardown(() => socket.destroy());
    let local = '';
    let secure = false;
    let protocol: string | null = null;
    let answer = '';
    let settled = false;
    const done = (error: string | null): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({ secure, protocol, answer, error, local });
    };
    socket.once('connect', () => (local = `${socket.localAddress}:${socket.localPort}`));
    socket.once('secureConnect', () => {
      secure = true;
      protocol = socket.getProtocol();
      socket.write('GET /attempt HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n');
    });
    socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    socket.setTimeout(WAIT_MS, () => done('client timeout'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    socket.once('close', () => done(null));
  });
}

function portOf(s: Setup): number {
  return s.sc.listeners[0]!.address().port;
}

function clientCert(id: TestIdentity, ca: { certPem: string }): tls.ConnectionOptions {
  return { ca: ca.certPem, cert: id.certPem, key: id.keyPem };
}

/** Scrape the admin /metrics over HTTP and parse it strictly (a syntax error throws). */
async function scrape(s: Setup): Promise<MetricFamily[]> {
  const res = await request(`http://127.0.0.1:${s.sc.admin!.port}/metrics`);
  if (res.statusCode !== 200) throw new Error(`admin /metrics answered ${res.statusCode}`);
  return parsePrometheusText(await res.body.text());
}

async function failures(s: Setup, labels: Record<string, string> = {}): Promise<number> {
  return sampleValue(await scrape(s), 'tollgate_tls_handshakes_total', {
    listener: LISTENER,
    result: 'failure',
    ...labels,
  });
}

async function recent(s: Setup): Promise<HandshakeRecord[]> {
  const res = await request(`http://127.0.0.1:${s.sc.admin!.port}/handshakes/recent`);
  return ((await res.body.json()) as { entries: HandshakeRecord[] }).entries;
}

/** Wait for exactly one recent entry, then check it and the scraped metric: one failure, of `reason`, and nothing else failed. */
async function expectOneFailure(
  t: Test,
  s: Setup,
  reason: string,
  expected: Partial<Record<keyof HandshakeRecord, unknown>>,
  client: Attempt,
): Promise<HandshakeRecord> {
  let entries: HandshakeRecord[] = [];
  await eventually(async () => (entries = await recent(s)).length >= 1, WAIT_MS, 'an entry in /handshakes/recent');
  t.equal(entries.length, 1, 'one entry in /handshakes/recent');
  const entry = entries[0]!;
  t.match(entry, { listener: LISTENER, side: 'server', kind: 'handshake_failure', reason, count: 1, ...expected });
  t.equal(entry.remote, client.local, 'the remote is the client (its address and port)');
  t.type(entry.code, 'string', 'the error or verification code is kept');
  t.ok(Date.parse(entry.at) > 0, 'with a time');
  await eventually(
    async () => (await failures(s, { reason })) === 1,
    WAIT_MS,
    `the scraped tollgate_tls_handshakes_total{reason="${reason}"} to be 1`,
  );
  const families = await scrape(s);
  t.same(expositionProblems(families), [], 'the scrape is well formed');
  t.equal(
    sampleValue(families, 'tollgate_tls_handshakes_total', { listener: LISTENER, result: 'failure', reason }),
    1,
    `tollgate_tls_handshakes_total{listener="${LISTENER}",result="failure",reason="${reason}"} 1`,
  );
  t.equal(
    sampleValue(families, 'tollgate_tls_handshakes_total', { listener: LISTENER, result: 'failure' }),
    1,
    'and no other failure was counted',
  );
  t.equal(
    sampleValue(families, 'tollgate_tls_handshakes_total', { listener: LISTENER, result: 'success' }),
    0,
    'nor a success',
  );
  t.equal(s.app.seen.length, 0, 'the app saw nothing');
  return entry;
}

/** A TLS server without tollgate's policy, presenting `id`, accepting whatever the client offers within `opts`. */
async function plainServer(t: Test, id: TestIdentity, opts: tls.TlsOptions): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ key: id.keyPem, cert: id.certPem, ...opts }, (c) => c.end());
  server.on('connection', (c: net.Socket) => {
    sockets.add(c);
    c.once('close', () => sockets.delete(c));
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const c of sockets) c.destroy();
    return new Promise((r) => server.close(r));
  });
  return (server.address() as AddressInfo).port;
}

t.test(
  'a client certificate good only for serverAuth (EKU) is refused as bad_certificate, seen in the metric and /handshakes/recent',
  async (t) => {
    const s = await inbound(t);
    // same CA, same SPIFFE ID, only the extended key usage differs from the producer's
    const serverOnly = await s.w.identity('server-only', { spiffe: [PRODUCER], eku: 'server' });
    const client = await attempt(t, portOf(s), clientCert(serverOnly, s.w.ca));
    t.notMatch(client.answer, /^HTTP/, 'no HTTP answer');
    // Node destroys a socket whose client certificate fails verification before it reports
    // the failure, so neither the certificate nor the version is left to record
    await expectOneFailure(t, s, 'bad_certificate', { code: 'INVALID_PURPOSE', peer: null, tlsVersion: null }, client);

    const control = await attempt(t, portOf(s), clientCert(s.producer, s.w.ca));
    t.match(control.answer, /^HTTP\/1\.1 200 /, 'control: the producer (EKU clientAuth) is served');
  },
);

t.test(
  'a revoked client certificate is refused as cert_revoked, seen in the metric and /handshakes/recent',
  async (t) => {
    let revoked: TestIdentity | null = null;
    const s = await inbound(t, {
      revoke: async (w) => [(revoked = await w.identity('revoked', { spiffe: [PRODUCER] }))],
    });
    const client = await attempt(t, portOf(s), clientCert(revoked!, s.w.ca));
    t.notMatch(client.answer, /^HTTP/, 'no HTTP answer');
    await expectOneFailure(t, s, 'cert_revoked', { code: 'CERT_REVOKED', peer: null, tlsVersion: null }, client);

    const control = await attempt(t, portOf(s), clientCert(s.producer, s.w.ca));
    t.match(
      control.answer,
      /^HTTP\/1\.1 200 /,
      'control: a producer certificate that is not revoked is served (the CRL loaded and verifies)',
    );
  },
);

t.test('a TLS 1.1 client is refused as protocol_version, seen in the metric and /handshakes/recent', async (t) => {
  const s = await inbound(t, { tls: { minVersion: 'TLSv1.2' } });
  const TLS11: tls.ConnectionOptions = { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };

  // control: this runtime's client really speaks TLS 1.1 to a server that allows it
  const oldServer = await plainServer(t, s.ingest, { minVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
  const old = await attempt(t, oldServer, { ca: s.w.ca.certPem, ...TLS11 });
  t.equal(old.protocol, 'TLSv1.1', 'control: the client negotiates TLS 1.1 with a server that allows it');

  const client = await attempt(t, portOf(s), { ...clientCert(s.producer, s.w.ca), ...TLS11 });
  t.equal(client.secure, false, 'the handshake does not complete');
  // refused at the ClientHello: no version was agreed and no certificate was sent
  await expectOneFailure(
    t,
    s,
    'protocol_version',
    { code: 'ERR_SSL_UNSUPPORTED_PROTOCOL', peer: null, tlsVersion: null },
    client,
  );
});

t.test(
  'a TLS 1.2 client offering only RSA key transport (no forward secrecy) to an RSA-keyed listener is refused as no_shared_cipher',
  async (t) => {
    const s = await inbound(t, { identity: { keyType: 'rsa2048' } });
    const NON_PFS: tls.ConnectionOptions = { maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256' };

    // control: the same offer is accepted by a server with the same RSA identity but without our policy
    const open = await plainServer(t, s.ingest, { ciphers: 'AES128-GCM-SHA256', minVersion: 'TLSv1.2' });
    const ok = await attempt(t, open, { ca: s.w.ca.certPem, ...NON_PFS });
    t.equal(ok.secure, true, 'control: AES128-GCM-SHA256 is negotiable with this RSA certificate');

    const client = await attempt(t, portOf(s), { ...clientCert(s.producer, s.w.ca), ...NON_PFS });
    t.equal(client.secure, false, 'the handshake does not complete');
    await expectOneFailure(
      t,
      s,
      'no_shared_cipher',
      { code: 'ERR_SSL_NO_SHARED_CIPHER', peer: null, tlsVersion: null },
      client,
    );

    const pfs = await attempt(t, portOf(s), {
      ...clientCert(s.producer, s.w.ca),
      maxVersion: 'TLSv1.2',
      ciphers: 'ECDHE-RSA-AES128-GCM-SHA256',
    });
    t.match(pfs.answer, /^HTTP\/1\.1 200 /, 'control: ECDHE-RSA-AES128-GCM-SHA256 from the same client is served');
  },
);

t.test(
  'a client that connects and sends nothing is cut at limits.handshakeTimeoutSeconds and shows as timeout',
  async (t) => {
    const TIMEOUT_S = 0.5;
    const s = await inbound(t, { limits: { handshakeTimeoutSeconds: TIMEOUT_S } });
    const socket = net.connect({ host: '127.0.0.1', port: portOf(s) });
    t.teardown(() => socket.destroy());
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    const connectedAt = performance.now();
    const local = `${socket.localAddress}:${socket.localPort}`;
    await once(socket, 'close', { signal: AbortSignal.timeout(WAIT_MS) });
    const elapsed = performance.now() - connectedAt;
    t.ok(elapsed >= TIMEOUT_S * 1000 - 50, `the server waited for the handshake timeout (${Math.round(elapsed)} ms)`);
    // that the cut was this timeout, and nothing else, is the reason and code asserted below
    await expectOneFailure(
      t,
      s,
      'timeout',
      { code: 'ERR_TLS_HANDSHAKE_TIMEOUT', peer: null, tlsVersion: null },
      { secure: false, protocol: null, answer: '', error: null, local },
    );
  },
);
