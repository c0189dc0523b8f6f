/**
 * Inbound authorization: an inbound HTTP listener in front of a loopback app, and mTLS
 * clients presenting all kinds of certificates. A peer is either allowed (its request
 * reaches the app with x-tollgate-peer set by us), refused with 403 ERR_PEER_NOT_ALLOWED
 * (valid certificate, identity or pin not allowed), or refused at the handshake (the
 * certificate itself is not acceptable). In every refused case the app sees nothing.
 */
import t from 'tap';
import type { Client } from 'undici';
import { spkiPin } from '../src/core/spkiPin.ts';
import { hoursAgo, makeCa } from './helpers/pki.ts';
import type { LeafOptions } from './helpers/pki.ts';
import { farEnd, type FarEnd, type FarEndCounts } from './helpers/farEnd.ts';
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
import { PRODUCER } from './helpers/identities.ts';

const LISTENER = 'ingest';

interface Setup {
  readonly w: World;
  readonly app: Upstream;
  /** what reached the app, counted as it arrived (connections, request events, bytes) */
  readonly far: FarEnd;
  readonly sc: TestSidecar;
}

/** A world, an app, and an inbound sidecar with the given allow rules in front of it. */
async function inbound(t: Test, allow: Record<string, unknown>): Promise<Setup> {
  return inboundWithWorld(t, await world(t), allow);
}

async function get(
  client: Client,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const res = await client.request({ path: '/data', method: 'GET', headers });
  return { status: res.statusCode, headers: res.headers as Record<string, unknown>, body: await res.body.text() };
}

/** The peer's request reached the app, which saw x-tollgate-peer: expectedPeer. */
async function assertAllowed(t: Test, s: Setup, id: TestIdentity, expectedPeer: string): Promise<void> {
  const res = await get(mtlsClient(t, s.sc.addr(), s.w.ca, id));
  t.equal(res.status, 200, 'the app answered');
  t.equal(res.headers['x-tollgate-error'], undefined, 'no tollgate error');
  t.equal(s.app.seen.length, 1, 'the app saw the request');
  t.equal(s.app.seen[0]?.headers['x-tollgate-peer'], expectedPeer, 'the app saw who the peer is');
}

async function assertNotAllowed(t: Test, s: Setup, id: TestIdentity): Promise<void> {
  const before = s.far.snapshot();
  const res = await get(mtlsClient(t, s.sc.addr(), s.w.ca, id));
  t.equal(res.status, 403, '403');
  t.equal(res.headers['x-tollgate-error'], 'ERR_PEER_NOT_ALLOWED', 'error header names the code');
  nothingReached(t, s, before, 'the app never saw the request');
}

/** No connection, request or byte reached the app since `before` (counted at the app, not inferred from our side). */
function nothingReached(t: Test, s: Setup, before: FarEndCounts, what: string): void {
  t.same(s.far.snapshot(), before, `${what} (no connection, request or byte at the app)`);
}

const NOTHING: FarEndCounts = { connections: 0, secureConnections: 0, requests: 0, bytes: 0 };

t.test(
  'allows a peer by exact SPIFFE ID and tells the app who it is, replacing any x-tollgate-peer the client sent',
  async (t) => {
    const s = await inbound(t, { spiffe: [PRODUCER] });
    const producer = await s.w.identity('producer', { spiffe: [PRODUCER] });
    const client = mtlsClient(t, s.sc.addr(), s.w.ca, producer);
    const res = await get(client, { 'x-tollgate-peer': 'spiffe://example.org/admin' });
    t.equal(res.status, 200);
    t.equal(s.app.seen.length, 1, 'the app saw the request');
    const seen = s.app.seen[0]!;
    t.equal(seen.headers['x-tollgate-peer'], PRODUCER, 'the peer header is the verified SPIFFE ID');
    const copies = seen.rawHeaders.filter(
      (_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'x-tollgate-peer',
    );
    t.equal(copies.length, 1, 'exactly one x-tollgate-peer header reached the app');
    t.notOk(seen.rawHeaders.includes('spiffe://example.org/admin'), 'the client-sent value is gone');
    t.equal(
      await s.sc.metric('tollgate_authz_decisions_total', { listener: LISTENER, decision: 'allow' }),
      1,
      'one allow decision',
    );
    t.equal(
      await s.sc.metric('tollgate_authz_decisions_total', { listener: LISTENER, decision: 'deny' }),
      0,
      'no deny decision',
    );
  },
);

t.test('refuses a SPIFFE ID that is not on the exact allow-list', async (t) => {
  const s = await inbound(t, { spiffe: [PRODUCER] });
  await assertNotAllowed(t, s, await s.w.identity('producer2', { spiffe: ['spiffe://example.org/producer2'] }));
  await assertNotAllowed(t, s, await s.w.identity('prefix', { spiffe: ['spiffe://example.org/producer/extra'] }));
});

t.test('a trust-domain wildcard allows any ID in that domain but not another domain', async (t) => {
  const s = await inbound(t, { spiffe: ['spiffe://example.org/*'] });
  const a = await s.w.identity('a', { spiffe: ['spiffe://example.org/team/a'] });
  const b = await s.w.identity('b', { spiffe: ['spiffe://example.org/b'] });
  const other = await s.w.identity('other', { spiffe: ['spiffe://other.org/a'] });
  const lookalike = await s.w.identity('lookalike', { spiffe: ['spiffe://example.org.evil.com/a'] });

  t.equal((await get(mtlsClient(t, s.sc.addr(), s.w.ca, a))).status, 200, 'nested path in the domain allowed');
  t.equal((await get(mtlsClient(t, s.sc.addr(), s.w.ca, b))).status, 200, 'another ID in the domain allowed');
  t.same(
    s.app.seen.map((r) => r.headers['x-tollgate-peer']),
    ['spiffe://example.org/team/a', 'spiffe://example.org/b'],
  );
  const before = s.far.snapshot();
  for (const id of [other, lookalike]) {
    const res = await get(mtlsClient(t, s.sc.addr(), s.w.ca, id));
    t.equal(res.status, 403, `${id.leaf.cert.subject} refused`);
    t.equal(res.headers['x-tollgate-error'], 'ERR_PEER_NOT_ALLOWED');
  }
  nothingReached(t, s, before, 'the refused peers never reached the app');
});

t.test('allows a peer by DNS SAN', async (t) => {
  const s = await inbound(t, { dns: ['producer.svc.cluster.local'] });
  const producer = await s.w.identity('producer-dns', { dns: ['producer.svc.cluster.local'] });
  const res = await get(mtlsClient(t, s.sc.addr(), s.w.ca, producer));
  t.equal(res.status, 200);
  t.equal(s.app.seen.length, 1, 'the app saw the request');
  t.match(
    String(s.app.seen[0]?.headers['x-tollgate-peer']),
    /CN=producer-dns/,
    'no SPIFFE ID: the peer header is the subject',
  );
  const before = s.far.snapshot();
  const res2 = await get(
    mtlsClient(t, s.sc.addr(), s.w.ca, await s.w.identity('wrong-dns', { dns: ['consumer.svc.cluster.local'] })),
  );
  t.equal(res2.status, 403, 'another DNS name refused');
  t.equal(res2.headers['x-tollgate-error'], 'ERR_PEER_NOT_ALLOWED');
  nothingReached(t, s, before, 'the other DNS name never reached the app');
});

t.test('allows a peer by CN', async (t) => {
  const s = await inbound(t, { cn: ['legacy-producer'] });
  const legacy = await s.w.identity('legacy-producer', { dns: [], ips: [] });
  const res = await get(mtlsClient(t, s.sc.addr(), s.w.ca, legacy));
  t.equal(res.status, 200);
  t.equal(s.app.seen.length, 1, 'the app saw the request');
  t.match(
    String(s.app.seen[0]?.headers['x-tollgate-peer']),
    /CN=legacy-producer/,
    'no SPIFFE ID: the peer header is the subject',
  );
  const before = s.far.snapshot();
  const res2 = await get(
    mtlsClient(t, s.sc.addr(), s.w.ca, await s.w.identity('legacy-consumer', { dns: [], ips: [] })),
  );
  t.equal(res2.status, 403, 'another CN refused');
  nothingReached(t, s, before, 'the other CN never reached the app');
});

t.test('a pin-only allow-list admits the pinned key and refuses another key from the same CA', async (t) => {
  const w = await world(t);
  const pinned = await w.identity('pinned', { spiffe: [PRODUCER] });
  const s = await inboundWithWorld(t, w, { any: true, spkiPins: [spkiPin(pinned.certPem)] });
  await assertAllowed(t, s, pinned, PRODUCER);
  // same identity, same CA, another key
  const rekeyed = await w.identity('rekeyed', { spiffe: [PRODUCER] });
  t.not(spkiPin(rekeyed.certPem), spkiPin(pinned.certPem), 'a different key has a different pin');
  const before = s.far.snapshot();
  const res = await get(mtlsClient(t, s.sc.addr(), w.ca, rekeyed));
  t.equal(res.status, 403);
  t.equal(res.headers['x-tollgate-error'], 'ERR_PEER_NOT_ALLOWED');
  nothingReached(t, s, before, 'the unpinned key never reached the app');
});

t.test('a backup pin admits the next key during rotation', async (t) => {
  const w = await world(t);
  const current = await w.identity('current', { spiffe: [PRODUCER] });
  const next = await w.identity('next', { spiffe: [PRODUCER] });
  const s = await inboundWithWorld(t, w, {
    spiffe: [PRODUCER],
    spkiPins: [spkiPin(current.certPem), spkiPin(next.certPem)],
  });
  const res = await get(mtlsClient(t, s.sc.addr(), w.ca, next));
  t.equal(res.status, 200, 'the second (backup) pin matches');
  t.equal(s.app.seen.length, 1);
  t.equal(s.app.seen[0]?.headers['x-tollgate-peer'], PRODUCER);
});

t.test('an identity rule and pins are both required: the right identity with the wrong key is refused', async (t) => {
  const w = await world(t);
  const pinned = await w.identity('pinned', { spiffe: ['spiffe://example.org/other'] });
  const rightIdWrongKey = await w.identity('producer', { spiffe: [PRODUCER] });
  const s = await inboundWithWorld(t, w, { spiffe: [PRODUCER], spkiPins: [spkiPin(pinned.certPem)] });
  await assertNotAllowed(t, s, rightIdWrongKey);
  // and the pinned key with the wrong identity is refused too: the pin does not stand in for the identity rule
  await assertNotAllowed(t, s, pinned);
  t.equal(await s.sc.metric('tollgate_authz_decisions_total', { listener: LISTENER, decision: 'deny' }), 2);
  const whys = s.sc.logs.lines.filter((l) => l.code === 'ERR_PEER_NOT_ALLOWED').map((l) => l.why);
  t.same(whys, ['pin', 'identity'], 'the logs say why each was refused');
});

t.test(
  'refuses a valid certificate that is not on the allow-list with 403, a JSON body, one deny and one warning',
  async (t) => {
    const s = await inbound(t, { spiffe: [PRODUCER] });
    const stranger = await s.w.identity('stranger', { spiffe: ['spiffe://example.org/stranger'] });
    const res = await get(mtlsClient(t, s.sc.addr(), s.w.ca, stranger));
    t.equal(res.status, 403);
    t.equal(res.headers['x-tollgate-error'], 'ERR_PEER_NOT_ALLOWED');
    t.match(String(res.headers['content-type']), /^application\/json/);
    const body = JSON.parse(res.body) as Record<string, unknown>;
    t.equal(body.error, 'ERR_PEER_NOT_ALLOWED');
    t.type(body.message, 'string');
    t.notOk(res.body.includes('stranger'), 'the body does not echo the peer identity');
    nothingReached(t, s, NOTHING, 'the app never saw the request');
    t.equal(
      await s.sc.metric('tollgate_authz_decisions_total', { listener: LISTENER, decision: 'deny' }),
      1,
      'one deny decision',
    );
    t.equal(
      await s.sc.metric('tollgate_authz_decisions_total', { listener: LISTENER, decision: 'allow' }),
      0,
      'no allow decision',
    );
    const warnings = s.sc.logs.lines.filter((l) => l.code === 'ERR_PEER_NOT_ALLOWED');
    t.equal(warnings.length, 1, 'one log line for the refusal');
    t.equal(warnings[0]?.level, 40, 'at warn level');
    t.equal(warnings[0]?.peer, 'spiffe://example.org/stranger', 'naming the peer');
    t.equal(
      await s.sc.metric('tollgate_tls_handshakes_total', { listener: LISTENER, result: 'success' }),
      1,
      'the handshake itself succeeded',
    );
  },
);

interface HandshakeCase {
  readonly name: string;
  /** the client certificate, or null for none */
  readonly client: (w: World) => Promise<TestIdentity | null>;
  /** the handshake failure reason label (a closed set: docs/reference.md, "Metrics") */
  readonly reason: string;
}

const HANDSHAKE_REFUSALS: HandshakeCase[] = [
  {
    name: 'refuses a client certificate from another CA at the handshake',
    client: async (w) => w.identity('foreign', { spiffe: [PRODUCER] }, await makeCa({ cn: 'another CA' })),
    reason: 'unknown_ca',
  },
  {
    name: 'refuses an expired client certificate at the handshake',
    client: (w) => w.identity('expired', { spiffe: [PRODUCER], notBefore: hoursAgo(48), notAfter: hoursAgo(24) }),
    reason: 'cert_expired',
  },
  {
    name: 'refuses a client with no certificate at the handshake',
    client: () => Promise.resolve(null),
    reason: 'no_client_cert',
  },
  {
    name: 'refuses a client certificate whose extended key usage is serverAuth only',
    client: (w) => w.identity('server-only', { spiffe: [PRODUCER], eku: 'server' } satisfies LeafOptions),
    reason: 'bad_certificate',
  },
];

for (const c of HANDSHAKE_REFUSALS) {
  t.test(c.name, async (t) => {
    // an allow-list the client's identity would pass: only the certificate itself can refuse it
    const s = await inbound(t, { spiffe: [PRODUCER] });
    const id = await c.client(s.w);
    const failuresBefore = await s.sc.metric('tollgate_tls_handshakes_total', {
      listener: LISTENER,
      result: 'failure',
    });
    t.equal(failuresBefore, 0);
    await t.rejects(get(mtlsClient(t, s.sc.addr(), s.w.ca, id)), 'the request fails');
    await eventually(
      async () => (await s.sc.metric('tollgate_tls_handshakes_total', { listener: LISTENER, result: 'failure' })) === 1,
      5000,
      'a handshake failure to be counted',
    );
    t.equal(
      await s.sc.metric('tollgate_tls_handshakes_total', { listener: LISTENER, result: 'failure', reason: c.reason }),
      1,
      `counted with reason ${c.reason}`,
    );
    t.equal(
      await s.sc.metric('tollgate_tls_handshakes_total', { listener: LISTENER, result: 'success' }),
      0,
      'no handshake succeeded',
    );
    t.equal(
      await s.sc.metric('tollgate_authz_decisions_total', { listener: LISTENER }),
      0,
      'never reached authorization',
    );
    nothingReached(t, s, NOTHING, 'the app saw nothing');
    const failureLogs = s.sc.logs.lines.filter((l) => l.msg === 'TLS handshake failed');
    t.equal(failureLogs.length, 1, 'one handshake failure logged');
    t.equal(failureLogs[0]?.reason, c.reason, 'the log names the reason');
  });
}

t.test(
  'authorizes before dialling: a refused peer gets 403 and the app sees no connection; with the app down an allowed one gets 502',
  async (t) => {
    const w = await world(t);
    const s = await inboundWithWorld(t, w, { spiffe: [PRODUCER] });
    const stranger = await w.identity('stranger', { spiffe: ['spiffe://example.org/stranger'] });
    const refused = await get(mtlsClient(t, s.sc.addr(), w.ca, stranger));
    t.equal(refused.status, 403, 'a not-allowed peer is refused before any upstream dial');
    t.equal(refused.headers['x-tollgate-error'], 'ERR_PEER_NOT_ALLOWED');
    nothingReached(t, s, NOTHING, 'no upstream dial was made');
    t.equal(
      await s.sc.metric('tollgate_upstream_errors_total', { listener: LISTENER }),
      0,
      'and no upstream error counted',
    );

    // the app goes down: an allowed peer is authorized, then its dial fails
    s.app.server.closeAllConnections();
    await new Promise((r) => s.app.server.close(r));
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const allowed = await get(mtlsClient(t, s.sc.addr(), w.ca, producer));
    t.equal(allowed.status, 502, 'an allowed peer reaches the (absent) upstream');
    t.equal(allowed.headers['x-tollgate-error'], 'ERR_UPSTREAM_UNAVAILABLE');
    t.equal((JSON.parse(allowed.body) as { error: string }).error, 'ERR_UPSTREAM_UNAVAILABLE');
    t.equal(await s.sc.metric('tollgate_upstream_errors_total', { listener: LISTENER, reason: 'upstream_refused' }), 1);
  },
);

/** Like inbound(), in an existing world (so certificates can be made before the config that pins them). */
async function inboundWithWorld(t: Test, w: World, allow: Record<string, unknown>): Promise<Setup> {
  const app = await startUpstream(t);
  const far = farEnd(app.server);
  const server = await w.identity('ingest-server', { spiffe: ['spiffe://example.org/ingest'] });
  const sc = await startTestSidecar(t, w.dir, {
    identity: server.files,
    listeners: [{ name: LISTENER, mode: 'inbound', protocol: 'http', listen: '127.0.0.1:0', target: app.addr, allow }],
  });
  return { w, app, far, sc };
}
