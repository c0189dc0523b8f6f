/**
 * The TLS policy as a client sees it on an inbound listener: TLS 1.3 by default; TLS 1.2
 * only with ECDHE key exchange and AEAD ciphers (and only when tls.minVersion allows it);
 * nothing older; no weak identity keys; the hybrid post-quantum group where the runtime has
 * it; session resumption for returning clients. Clients are raw `tls.connect` sockets (and
 * the openssl CLI where Node cannot speak the old protocol at all), each presenting an
 * allowed client certificate, so the only thing that can refuse them is the TLS policy.
 */
import t, { type Test } from 'tap';
import tls, { type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { StartupError } from '../src/core/errors.ts';
import { HYBRID_PQ_GROUP, TLS13_SUITES, runtimeSupportsGroup } from '../src/tls/policy.ts';
import { INGEST, PRODUCER } from './helpers/identities.ts';
import { runOpenssl } from './helpers/process.ts';
import type { LeafOptions } from './helpers/pki.ts';
import {
  eventually,
  startTestSidecar,
  startUpstream,
  world,
  type TestIdentity,
  type TestSidecar,
  type Upstream,
  type World,
} from './helpers/world.ts';

const LISTENER = 'ingest';
const WAIT_MS = 10_000;

interface Setup {
  readonly w: World;
  readonly app: Upstream;
  readonly sc: TestSidecar;
  readonly producer: TestIdentity;
  readonly ingest: TestIdentity;
}

/** An inbound HTTP listener (with `tls` config and the given identity key options) allowing the producer. */
async function listener(t: Test, opts: { tls?: Record<string, unknown>; identity?: LeafOptions } = {}): Promise<Setup> {
  const w = await world(t);
  const app = await startUpstream(t);
  const ingest = await w.identity('ingest', { spiffe: [INGEST], ...opts.identity });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    ...(opts.tls === undefined ? {} : { tls: opts.tls }),
    listeners: [
      { name: LISTENER, mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
    ],
  });
  return { w, app, sc, producer, ingest };
}

interface Handshaken {
  readonly socket: TLSSocket;
  /** the first session (ticket) the server hands out on this connection */
  readonly session: Promise<Buffer>;
}

/** A raw mTLS client as the producer; resolves once the handshake completed, rejects if it failed. */
function handshake(t: Test, s: Setup, opts: tls.ConnectionOptions = {}): Promise<Handshaken> {
  const { port } = s.sc.listeners[0]!.address();
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: s.w.ca.certPem,
      cert: s.producer.certPem,
      key: s.producer.keyPem,
      ...opts,
    });
    t.teardown(() => socket.destroy());
    const session = new Promise<Buffer>((res) => socket.once('session', res));
    socket.once('secureConnect', () => {
      socket.removeListener('error', reject);
      socket.on('error', () => undefined);
      resolve({ socket, session });
    });
    socket.once('error', reject);
  });
}

function sClientArgs(s: Setup, version: string, extra: string[] = []): string[] {
  const { port } = s.sc.listeners[0]!.address();
  return [
    's_client',
    '-connect',
    `127.0.0.1:${port}`,
    '-servername',
    'localhost',
    version,
    '-cert',
    s.producer.files.certFile,
    '-key',
    s.producer.files.keyFile,
    '-CAfile',
    s.producer.files.caFile,
    ...extra,
  ];
}

function failures(s: Setup, reason: string): Promise<number> {
  return s.sc.metric('tollgate_tls_handshakes_total', { listener: LISTENER, result: 'failure', reason });
}

/** One HTTP/1.1 request on an established TLS socket; the raw response text. */
async function httpOver(socket: TLSSocket, path: string): Promise<string> {
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  const ended = once(socket, 'end', { signal: AbortSignal.timeout(WAIT_MS) });
  socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  await ended;
  return text;
}

/* --------------------------------------------------------------------- versions */

t.test('TLS 1.3 is negotiated by default, with a TLS 1.3 AEAD suite', async (t) => {
  const s = await listener(t);
  const { socket } = await handshake(t, s);
  t.equal(socket.getProtocol(), 'TLSv1.3', 'TLS 1.3');
  t.ok(
    (TLS13_SUITES as readonly string[]).includes(socket.getCipher().name),
    `a policy suite (${socket.getCipher().name})`,
  );
  t.match(await httpOver(socket, '/v13'), /^HTTP\/1\.1 200 /, 'and the request is served');
});

t.test('with tls.minVersion TLSv1.2, a TLS 1.2 client gets an ECDHE key exchange and an AEAD cipher', async (t) => {
  const s = await listener(t, { tls: { minVersion: 'TLSv1.2' } });
  const { socket } = await handshake(t, s, { maxVersion: 'TLSv1.2' });
  t.equal(socket.getProtocol(), 'TLSv1.2', 'TLS 1.2');
  const cipher = socket.getCipher().name;
  t.match(cipher, /^ECDHE-(ECDSA|RSA)-/, `ECDHE key exchange (${cipher})`);
  t.match(cipher, /-(GCM-SHA256|GCM-SHA384|CHACHA20-POLY1305)$/, `an AEAD cipher (${cipher})`);
  const eph = socket.getEphemeralKeyInfo() as { type?: string; name?: string };
  t.equal(eph.type, 'ECDH', 'an ephemeral ECDH key');
  t.ok(eph.name === 'X25519' || eph.name === 'prime256v1', `on a policy group (${eph.name})`);
  t.match(await httpOver(socket, '/v12'), /^HTTP\/1\.1 200 /, 'and the request is served');
});

t.test('TLS 1.1 is refused (openssl s_client -tls1_1), counted as protocol_version', async (t) => {
  const s = await listener(t);
  // the same command at TLS 1.2 connects: the arguments, certificate and key are good
  const control = await runOpenssl(sClientArgs(s, '-tls1_2'), WAIT_MS);
  t.match(control.out, /Cipher is ECDHE-/, 'control: openssl negotiates TLS 1.2 with the same arguments');

  const old = await runOpenssl(sClientArgs(s, '-tls1_1', ['-cipher', 'DEFAULT:@SECLEVEL=0']), WAIT_MS);
  t.notMatch(old.out, /Cipher is (?!\(NONE\))/, 'no cipher was negotiated');
  t.match(
    old.out,
    /alert protocol version|no protocols available|unsupported protocol|wrong version number/i,
    'the handshake failed on the protocol version',
  );
  t.not(old.code, 0, 'openssl reports failure');
  await eventually(async () => (await failures(s, 'protocol_version')) === 1, WAIT_MS, 'the failure to be counted');
  t.equal(s.app.seen.length, 0, 'the app saw nothing');
});

t.test('with tls.minVersion TLSv1.3, a TLS 1.2 client is refused', async (t) => {
  const s = await listener(t, { tls: { minVersion: 'TLSv1.3' } });
  await t.rejects(handshake(t, s, { maxVersion: 'TLSv1.2' }), { code: /^ERR_SSL_/ }, 'the TLS 1.2 handshake fails');
  await eventually(
    async () => (await failures(s, 'protocol_version')) === 1,
    WAIT_MS,
    'the failure to be counted as protocol_version',
  );
  const { socket } = await handshake(t, s);
  t.equal(socket.getProtocol(), 'TLSv1.3', 'a TLS 1.3 client still connects');
});

/* --------------------------------------------------------------------- ciphers */

t.test(
  'on an RSA-keyed listener, TLS 1.2 RSA key transport and CBC suites are refused; ECDHE-RSA with GCM is accepted',
  async (t) => {
    const s = await listener(t, { identity: { keyType: 'rsa2048' } });
    const RSA_KX = 'AES128-GCM-SHA256:AES256-GCM-SHA384';
    const CBC = 'ECDHE-RSA-AES128-SHA';

    // control: a server without our policy, with the same RSA identity, accepts both client offers,
    // so a refusal below is the listener's policy and not this runtime's client defaults
    const plain = tls.createServer(
      { key: s.ingest.keyPem, cert: s.ingest.certPem, ciphers: `${RSA_KX}:${CBC}`, minVersion: 'TLSv1.2' },
      (c) => c.end(),
    );
    plain.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise((r) => plain.close(r)));
    for (const ciphers of [RSA_KX, CBC]) {
      const c = tls.connect({
        host: '127.0.0.1',
        port: (plain.address() as AddressInfo).port,
        servername: 'localhost',
        ca: s.w.ca.certPem,
        maxVersion: 'TLSv1.2',
        ciphers,
      });
      t.teardown(() => c.destroy());
      c.on('error', () => undefined);
      await once(c, 'secureConnect', { signal: AbortSignal.timeout(WAIT_MS) });
      t.ok(c.getCipher().name, `control: ${ciphers} works against a server without the policy (${c.getCipher().name})`);
    }

    await t.rejects(
      handshake(t, s, { maxVersion: 'TLSv1.2', ciphers: RSA_KX }),
      { code: /^ERR_SSL_/ },
      'RSA key transport (no forward secrecy) is refused',
    );
    await t.rejects(
      handshake(t, s, { maxVersion: 'TLSv1.2', ciphers: CBC }),
      { code: /^ERR_SSL_/ },
      'a CBC suite is refused',
    );
    await eventually(
      async () => (await failures(s, 'no_shared_cipher')) === 2,
      WAIT_MS,
      'both failures to be counted as no_shared_cipher',
    );

    const { socket } = await handshake(t, s, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' });
    t.equal(socket.getProtocol(), 'TLSv1.2', 'TLS 1.2');
    t.equal(socket.getCipher().name, 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256 is accepted');
    t.match(await httpOver(socket, '/rsa'), /^HTTP\/1\.1 200 /, 'and the request is served');
    t.equal(s.app.seen.length, 1, 'the app saw only the accepted request');
  },
);

/* --------------------------------------------------------------------- keys */

t.test('an RSA-1024 identity key is refused at load, with the problem named', async (t) => {
  const w = await world(t);
  const app = await startUpstream(t);
  const weak = await w.identity('ingest', { spiffe: [INGEST], keyType: 'rsa1024' });
  let error: unknown = null;
  try {
    await startTestSidecar(t, w.dir, {
      identity: weak.files,
      listeners: [
        { name: LISTENER, mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
      ],
    });
  } catch (err) {
    error = err;
  }
  t.ok(error instanceof StartupError, 'startup fails with a StartupError');
  const problems = error instanceof StartupError ? error.problems : [];
  t.ok(
    problems.some(
      (p) => p.startsWith('identity.keyFile') && /RSA key of 1024 bits is below the minimum of 2048/.test(p),
    ),
    `a problem names the key file and its size (${problems.join('; ')})`,
  );
  t.ok(error instanceof StartupError && error.usage, 'as a configuration problem (exit 2)');
});

/* --------------------------------------------------------------------- groups */

// The system openssl here is 3.0 (no ML-KEM), so the hybrid group is checked with Node 24's
// client (OpenSSL 3.5): getEphemeralKeyInfo() names the group on this Node version, and a client
// offering nothing but the hybrid group must still complete the handshake.
const hybrid = runtimeSupportsGroup(HYBRID_PQ_GROUP);
t.test(
  'the hybrid post-quantum group X25519MLKEM768 is negotiated with a Node 24 client',
  { skip: hybrid ? false : `this runtime's OpenSSL (${process.versions.openssl}) has no ${HYBRID_PQ_GROUP}` },
  async (t) => {
    const s = await listener(t);
    const started = s.sc.logs.lines.find((l) => l.msg === 'tollgate started');
    t.equal(started?.postQuantum, true, 'the sidecar says it offers the hybrid group');

    const { socket } = await handshake(t, s);
    const info = socket.getEphemeralKeyInfo() as { name?: string };
    if (info.name !== undefined) t.equal(info.name, HYBRID_PQ_GROUP, `a default client negotiates ${HYBRID_PQ_GROUP}`);
    else
      t.comment(
        'getEphemeralKeyInfo() reports nothing for this group on this Node version; relying on the single-group client below',
      );

    const only = await handshake(t, s, { ecdhCurve: HYBRID_PQ_GROUP });
    t.equal(
      only.socket.getProtocol(),
      'TLSv1.3',
      `a client offering only ${HYBRID_PQ_GROUP} completes a TLS 1.3 handshake`,
    );
    t.match(await httpOver(only.socket, '/pq'), /^HTTP\/1\.1 200 /, 'and is served');

    // control: groups are really restricted (X448 is not in the policy)
    await t.rejects(
      handshake(t, s, { ecdhCurve: 'X448' }),
      { code: /^ERR_SSL_/ },
      'a client offering only X448 is refused',
    );
  },
);

/* --------------------------------------------------------------------- resumption */

t.test('a reconnecting client resumes its session, and the resumed connection is still authorized', async (t) => {
  const s = await listener(t);
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const first = await handshake(t, s, { maxVersion: version });
    t.notOk(first.socket.isSessionReused(), `${version}: the first connection is a full handshake`);
    const session = await Promise.race([
      first.session,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no session ticket')), WAIT_MS).unref()),
    ]);
    first.socket.destroy();

    const again = await handshake(t, s, { maxVersion: version, session });
    t.equal(again.socket.getProtocol(), version, `${version}: same version`);
    t.ok(again.socket.isSessionReused(), `${version}: the session was resumed`);
    t.match(
      await httpOver(again.socket, `/resumed/${version}`),
      /^HTTP\/1\.1 200 /,
      `${version}: the resumed connection is served`,
    );
    const seen = s.app.seen.find((r) => r.url === `/resumed/${version}`);
    t.equal(seen?.headers['x-tollgate-peer'], PRODUCER, `${version}: the app is told who the resumed peer is`);
  }
});
