/**
 * Interop with an independent RFC 9421 implementation, the `http-message-signatures` package
 * (dhensby, 1.0.6), over real mTLS on loopback:
 *
 * - its signatures, sent by an mTLS client, are accepted by a verifying inbound listener;
 * - the requests a signing outbound listener sends are accepted by its verifier.
 *
 * Its known deviations (read in its source, 1.0.6) are kept out of the way rather than tested around: it
 * upper-cases @method (we send upper-case methods), takes @authority/@path/@query from the
 * WHATWG URL it is given (we give it https://<the Host sent><the raw target>, with targets URL
 * parsing leaves unchanged), does not check bodies (the digest is checked here, independently)
 * and keeps no nonces.
 */
import t from 'tap';
import https from 'node:https';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { createSigner, createVerifier, httpbis, type VerifyingKey } from 'http-message-signatures';
import {
  mtlsClient,
  plainClient,
  sha256,
  startTestSidecar,
  startUpstream,
  world,
  type Test,
  type World,
} from './helpers/world.ts';
import { countRequests, expectRefused, writeKey, type TestKey } from './helpers/signing.ts';
import { farEnd } from './helpers/farEnd.ts';
import { PRODUCER } from './helpers/identities.ts';

const SIGNED_FIELDS = ['@method', '@authority', '@path', '@query', 'content-digest', 'content-type', 'content-length'];
const SIGNED_PARAMS = ['created', 'nonce', 'keyid', 'alg', 'tag'];

/** Content-Digest computed here, without tollgate's code */
function digestField(body: Buffer, alg: 'sha-256' | 'sha-512'): string {
  return `${alg}=:${createHash(alg === 'sha-256' ? 'sha256' : 'sha512')
    .update(body)
    .digest('base64')}:`;
}

// ---------------------------------------------------------------------------------------------
// direction 1: the library signs, tollgate's inbound listener verifies

/**
 * A verifying inbound listener in front of an app whose arrivals are counted, and an mTLS
 * client for it. `shared` puts it in an existing world with that world's key (written under keys/).
 */
async function verifyingInbound(t: Test, shared?: { w: World; key: TestKey }) {
  const w = shared?.w ?? (await world(t));
  const ingest = await w.identity('verifier', { dns: ['localhost'] });
  const producer = await w.identity('producer-client', { spiffe: [PRODUCER] });
  const key = shared?.key ?? (await writeKey(join(w.dir, 'keys'), 'k1'));
  const app = await startUpstream(t);
  const far = farEnd(app.server);
  const sc = await startTestSidecar(t, w.dir, {
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
  });
  const client = mtlsClient(t, sc.addr(), w.ca, producer);
  return { key, app, far, sc, client };
}

/** Headers for `method path` signed by the library with `secret` under key id `keyId`. */
async function librarySigned(opts: {
  method: string;
  authority: string;
  path: string;
  headers: Record<string, string>;
  keyId: string;
  secret: Buffer;
  fields: string[];
}) {
  const signed = await httpbis.signMessage(
    {
      key: createSigner(opts.secret, 'hmac-sha256', opts.keyId),
      name: 'sig1',
      fields: opts.fields,
      params: SIGNED_PARAMS,
      paramValues: { created: new Date(), nonce: randomBytes(16).toString('base64url'), tag: 'tollgate' },
    },
    { method: opts.method, url: `https://${opts.authority}${opts.path}`, headers: opts.headers },
  );
  return signed.headers;
}

t.test(
  'a POST signed by http-message-signatures is accepted by a verifying inbound listener and its body reaches the app',
  async (t) => {
    const { key, app, sc, client } = await verifyingInbound(t);
    const body = Buffer.from(JSON.stringify({ event: 'page_view', at: Date.now() }));
    const path = '/events?batch=1&src=interop';
    const headers = await librarySigned({
      method: 'POST',
      authority: sc.addr(),
      path,
      headers: {
        host: sc.addr(),
        'content-type': 'application/json',
        'content-length': String(body.length),
        'content-digest': digestField(body, 'sha-512'),
      },
      keyId: key.id,
      secret: key.secret,
      fields: SIGNED_FIELDS,
    });
    t.match(
      headers['Signature-Input'],
      /^sig1=\("@method" "@authority" "@path" "@query" "content-digest" "content-type" "content-length"\);created=\d+;nonce="[^"]+";keyid="k1";alg="hmac-sha256";tag="tollgate"$/,
    );

    const res = await client.request({ path, method: 'POST', headers, body });
    t.equal(res.statusCode, 200, await res.body.text());
    t.equal(app.seen.length, 1);
    const seen = app.seen[0]!;
    t.equal(seen.url, path);
    t.equal(seen.bodySha256, sha256(body), 'the app received the body');
    t.equal(
      seen.headers['signature-input'],
      headers['Signature-Input'],
      'the signature fields are passed on as received',
    );
    t.equal(await sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 1);
  },
);

t.test('a GET without a body signed by http-message-signatures is accepted', async (t) => {
  const { key, app, sc, client } = await verifyingInbound(t);
  const headers = await librarySigned({
    method: 'GET',
    authority: sc.addr(),
    path: '/status',
    headers: { host: sc.addr() },
    keyId: key.id,
    secret: key.secret,
    fields: ['@method', '@authority', '@path', '@query'],
  });
  const res = await client.request({ path: '/status', method: 'GET', headers });
  t.equal(res.statusCode, 200, await res.body.text());
  t.equal(app.seen.length, 1);
  t.equal(app.seen[0]!.bodyLength, 0);
  t.equal(await sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 1);
});

t.test(
  'a request signed by http-message-signatures with another secret under the same key id is refused with 401 ERR_SIG_INVALID',
  async (t) => {
    const { key, far, sc, client } = await verifyingInbound(t);
    const body = Buffer.from('{"event":"forged"}');
    const headers = await librarySigned({
      method: 'POST',
      authority: sc.addr(),
      path: '/events',
      headers: {
        host: sc.addr(),
        'content-type': 'application/json',
        'content-length': String(body.length),
        'content-digest': digestField(body, 'sha-256'),
      },
      keyId: key.id,
      secret: randomBytes(32),
      fields: SIGNED_FIELDS,
    });
    const res = await client.request({ path: '/events', method: 'POST', headers, body });
    t.equal(res.statusCode, 401);
    t.equal(res.headers['x-tollgate-error'], 'ERR_SIG_INVALID');
    await res.body.dump();
    t.same(
      far.snapshot(),
      { connections: 0, secureConnections: 0, requests: 0, bytes: 0 },
      'nothing reached the app: no connection, request or byte',
    );
    t.equal(await sc.metric('tollgate_signature_checks_total', { result: 'invalid' }), 1);
  },
);

// ---------------------------------------------------------------------------------------------
// direction 2: tollgate's outbound listener signs, the library verifies

interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer;
}

/** An mTLS HTTPS app presenting a `localhost` certificate from the world's CA, recording every request in full. */
async function startCapturingApp(t: Test, w: World): Promise<{ addr: string; received: Received[] }> {
  const id = await w.identity('ingest', { dns: ['localhost'] });
  const received: Received[] = [];
  const server = https.createServer(
    { cert: id.certPem, key: id.keyPem, ca: w.ca.certPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const headers: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(req.headers)) if (value !== undefined) headers[name] = value;
        received.push({ method: req.method ?? '', url: req.url ?? '', headers, body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }).end('ok');
      });
    },
  );
  server.on('tlsClientError', () => undefined);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  return { addr: `127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

async function signingOutbound(t: Test) {
  const w = await world(t);
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const key = await writeKey(join(w.dir, 'keys'), 'k1');
  const app = await startCapturingApp(t, w);
  const sc = await startTestSidecar(t, w.dir, {
    identity: producer.files,
    keys: { dir: 'keys' },
    listeners: [
      {
        name: 'to-app',
        mode: 'outbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        serverName: 'localhost',
        integrity: { sign: true, keyId: 'k1' },
      },
    ],
  });
  return { w, key, app, client: plainClient(t, sc.addr()) };
}

/** Verify what the app received with the library, trusting exactly `key` under its id. */
async function libraryVerifies(r: Received, key: TestKey, requiredFields: string[]): Promise<boolean | null> {
  const looked: Array<Record<string, unknown>> = [];
  const result = await httpbis.verifyMessage(
    {
      keyLookup: async (params): Promise<VerifyingKey | null> => {
        looked.push({ ...params });
        if (
          params.keyid !== key.id ||
          params.tag !== 'tollgate' ||
          typeof params.nonce !== 'string' ||
          params.nonce === ''
        )
          return null;
        return { id: key.id, algs: ['hmac-sha256'], verify: createVerifier(key.secret, 'hmac-sha256') };
      },
      requiredParams: SIGNED_PARAMS,
      requiredFields,
      maxAge: 300,
      tolerance: 30,
    },
    { method: r.method, url: `https://${String(r.headers.host)}${r.url}`, headers: r.headers },
  );
  if (looked.length !== 1) throw new Error(`expected exactly one signature, the library saw ${looked.length}`);
  return result;
}

/** The digest check the library does not do: every member of the received Content-Digest against the received body. */
function digestMatchesBody(r: Received): boolean {
  const field = r.headers['content-digest'];
  if (typeof field !== 'string' || field === '') return false;
  return field.split(',').every((member) => {
    const m = /^\s*(sha-256|sha-512)=:([A-Za-z0-9+/=]+):\s*$/.exec(member);
    return m !== null && digestField(r.body, m[1] as 'sha-256' | 'sha-512') === `${m[1]}=:${m[2]}:`;
  });
}

t.test(
  'a POST signed by a signing outbound listener is accepted by http-message-signatures, and its Content-Digest matches the body received',
  async (t) => {
    const { key, app, client } = await signingOutbound(t);
    const body = Buffer.from(JSON.stringify({ order: 42, items: ['a', 'b'] }));
    const res = await client.request({
      path: '/orders?x=1&y=two',
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    t.equal(res.statusCode, 200, await res.body.text());
    t.equal(app.received.length, 1);
    const r = app.received[0]!;
    t.equal(r.url, '/orders?x=1&y=two');
    t.equal(r.headers.host, app.addr, 'Host is the target authority');
    t.ok(r.body.equals(body), 'the body arrived unchanged');
    t.equal(r.headers['content-digest'], digestField(body, 'sha-256'));
    t.ok(digestMatchesBody(r), 'Content-Digest matches the body received');
    t.match(
      r.headers['signature-input'],
      /^tollgate=\("@method" "@authority" "@path" "@query" "content-digest" "content-type" "content-length"\);created=\d+;nonce="[^"]+";keyid="k1";alg="hmac-sha256";tag="tollgate"$/,
    );
    t.equal(await libraryVerifies(r, key, ['@method', '@authority', '@path', '@query', 'content-digest']), true);
  },
);

t.test('a GET signed by a signing outbound listener is accepted by http-message-signatures', async (t) => {
  const { key, app, client } = await signingOutbound(t);
  const res = await client.request({ path: '/status', method: 'GET' });
  t.equal(res.statusCode, 200, await res.body.text());
  const r = app.received[0]!;
  t.equal(r.headers['content-digest'], undefined, 'no content, no Content-Digest');
  t.match(r.headers['signature-input'], /^tollgate=\("@method" "@authority" "@path" "@query"\);/);
  t.equal(await libraryVerifies(r, key, ['@method', '@authority', '@path', '@query']), true);
});

t.test(
  'a request signed by the outbound listener is refused by a verifying inbound listener once its body, digest or query is changed',
  async (t) => {
    const { w, key, app, client } = await signingOutbound(t);
    const body = Buffer.from('{"amount":100}');
    // two requests alike: one to change, one (with its own nonce) sent through unchanged to show the inbound accepts them
    for (let i = 0; i < 2; i++) {
      const res = await client.request({
        path: '/pay',
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      t.equal(res.statusCode, 200, await res.body.text());
    }
    const [r, control] = [app.received[0]!, app.received[1]!];
    const required = ['@method', '@authority', '@path', '@query', 'content-digest'];
    t.equal(await libraryVerifies(r, key, required), true, 'as received, it verifies (independently)');

    const swapped = Buffer.from('{"amount":999}');
    const bodyChanged: Received = { ...r, body: swapped };
    t.notOk(
      digestMatchesBody(bodyChanged),
      'another body of the same length no longer matches the signed Content-Digest',
    );
    const digestChanged: Received = {
      ...r,
      body: swapped,
      headers: { ...r.headers, 'content-digest': digestField(swapped, 'sha-256') },
    };
    t.ok(digestMatchesBody(digestChanged), 'a digest recomputed for the new body matches it ...');
    t.equal(
      await libraryVerifies(digestChanged, key, required),
      false,
      '... but the signature over the old digest no longer verifies',
    );
    const otherPath: Received = { ...r, url: '/pay?to=mallory' };
    t.equal(await libraryVerifies(otherPath, key, required), false, 'nor does it for another query');

    // now through tollgate: the same key, a verifying inbound listener, each request exactly as it would arrive
    const inbound = await verifyingInbound(t, { w, key });
    const inboundApp = { requests: countRequests(inbound.app.server) };
    const resend = (m: Received) => () =>
      inbound.client.request({
        path: m.url,
        method: m.method as 'POST',
        headers: forwardable(m.headers),
        body: m.body,
      });
    const accepted = await resend(control)();
    t.equal(accepted.statusCode, 200, `the unchanged request is accepted (${await accepted.body.text()})`);
    t.equal(inboundApp.requests(), 1, 'and reaches the app');
    // an invalid signature does not spend the nonce, so the changed copies are each judged on their change
    await expectRefused(t, inbound.sc, inboundApp, 'ERR_SIG_INVALID', resend(digestChanged));
    await expectRefused(t, inbound.sc, inboundApp, 'ERR_SIG_INVALID', resend(otherPath));
    await expectRefused(t, inbound.sc, inboundApp, 'ERR_DIGEST_MISMATCH', resend(bodyChanged));
    t.equal(inbound.app.seen.length, 1, 'only the unchanged request was answered by the app');
  },
);

/** The end-to-end fields of a received request, to send it again (hop-by-hop ones dropped). */
function forwardable(headers: Record<string, string | string[]>): Record<string, string> {
  const keep = ['host', 'content-type', 'content-length', 'content-digest', 'signature-input', 'signature'];
  return Object.fromEntries(keep.filter((h) => typeof headers[h] === 'string').map((h) => [h, headers[h] as string]));
}
