import t from 'tap';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { PRODUCER } from './helpers/identities.ts';
import { world, startUpstream, startTestSidecar, mtlsClient, plainClient, sha256, type Test } from './helpers/world.ts';
import { writeKey, signedHeaders } from './helpers/signing.ts';

async function verifyingInbound(
  t: Test,
  opts: { integrity?: Record<string, unknown>; upstream?: Parameters<typeof startUpstream>[1] } = {},
) {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const key = await writeKey(join(w.dir, 'keys'), 'k1');
  const app = await startUpstream(t, opts.upstream);
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    keys: { dir: 'keys' },
    ...(opts.integrity === undefined ? {} : { integrity: opts.integrity }),
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
  return { w, ingest, producer, key, app, sc, client };
}

t.test('a request signed by the outbound sidecar is verified by the inbound sidecar and reaches the app', async (t) => {
  const { w, producer, app, sc } = await verifyingInbound(t);
  const out = await startTestSidecar(t, w.dir, {
    identity: producer.files,
    keys: { dir: 'keys' },
    listeners: [
      {
        name: 'to-ingest',
        mode: 'outbound',
        listen: '127.0.0.1:0',
        target: sc.addr(),
        serverName: 'localhost',
        integrity: { sign: true, keyId: 'k1' },
      },
    ],
  });
  const client = plainClient(t, out.addr());
  const body = JSON.stringify({ event: 'page_view' });
  const res = await client.request({
    path: '/events?batch=1',
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json' },
  });
  t.equal(res.statusCode, 200, await res.body.text());
  const seen = app.seen[0]!;
  t.equal(seen.bodySha256, sha256(body));
  t.match(
    seen.headers['signature-input'],
    /^tollgate=\("@method" "@authority" "@path" "@query" "content-digest" "content-type" "content-length"\);created=\d+;nonce="[A-Za-z0-9_-]{22}";keyid="k1";alg="hmac-sha256";tag="tollgate"$/,
  );
  t.equal(await sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 1);

  const get = await client.request({ path: '/status', method: 'GET' });
  t.equal(get.statusCode, 200);
  await get.body.dump();
  t.equal(await sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 2);
});

t.test('the same signed request sent twice is refused the second time as a replay', async (t) => {
  const { sc, client, key, app } = await verifyingInbound(t);
  const headers = signedHeaders({
    method: 'POST',
    path: '/events',
    authority: sc.addr(),
    body: '{"a":1}',
    headers: { 'content-type': 'application/json' },
    key,
  });
  const first = await client.request({ path: '/events', method: 'POST', body: '{"a":1}', headers });
  t.equal(first.statusCode, 200, await first.body.text());
  const second = await client.request({ path: '/events', method: 'POST', body: '{"a":1}', headers });
  t.equal(second.statusCode, 401);
  t.equal(second.headers['x-tollgate-error'], 'ERR_SIG_REPLAYED');
  await second.body.dump();
  t.equal(app.seen.length, 1);
  t.equal(await sc.metric('tollgate_signature_checks_total', { result: 'replayed' }), 1);
  t.equal(await sc.metric('tollgate_replay_cache_entries'), 1, 'one live nonce, read at scrape time');
});

t.test('a declared body larger than the check buffer is refused before its signature is spent', async (t) => {
  const { sc, client, key, app } = await verifyingInbound(t, { integrity: { maxBufferedBytes: 1024 } });
  const body = Buffer.alloc(4096, 'a');
  const headers = signedHeaders({ method: 'POST', path: '/big', authority: sc.addr(), body, key });
  const res = await client.request({ path: '/big', method: 'POST', body, headers });
  t.equal(res.statusCode, 413);
  t.equal(res.headers['x-tollgate-error'], 'ERR_PAYLOAD_TOO_LARGE');
  await res.body.dump();
  t.equal(app.seen.length, 0);
  t.equal(await sc.metric('tollgate_replay_cache_entries'), 0, 'the nonce was not spent');
});

/** An outbound sidecar signing towards a verifying inbound one; the app behind the inbound records what arrives. */
async function signingPair(t: Test, outboundIntegrity: Record<string, unknown> = {}) {
  const inbound = await verifyingInbound(t);
  const out = await startTestSidecar(t, inbound.w.dir, {
    identity: inbound.producer.files,
    keys: { dir: 'keys' },
    integrity: outboundIntegrity,
    listeners: [
      {
        name: 'to-ingest',
        mode: 'outbound',
        listen: '127.0.0.1:0',
        target: inbound.sc.addr(),
        serverName: 'localhost',
        integrity: { sign: true, keyId: 'k1' },
      },
    ],
  });
  return { ...inbound, out, appClient: plainClient(t, out.addr()) };
}

t.test(
  'outbound keeps and signs an app-supplied sha-512 Content-Digest and streams the body instead of holding it',
  async (t) => {
    const { appClient, app } = await signingPair(t, { maxBufferedBytes: 1024 });
    const body = Buffer.alloc(64 * 1024, 'x');
    const digest = `sha-512=:${createHash('sha512').update(body).digest('base64')}:`;
    const res = await appClient.request({
      path: '/bulk',
      method: 'POST',
      body,
      headers: { 'content-digest': digest, 'content-type': 'application/octet-stream' },
    });
    t.equal(res.statusCode, 200, 'a body larger than the outbound buffer passes: it was not buffered');
    await res.body.dump();
    t.equal(app.seen[0]?.headers['content-digest'], digest, "the app's digest went through unchanged");
    t.match(String(app.seen[0]?.headers['signature-input']), /"content-digest"/);
    t.equal(app.seen[0]?.bodySha256, sha256(body));
  },
);

t.test(
  'outbound replaces a deprecated app digest with its own sha-256, and signs a chunked body with its exact length',
  async (t) => {
    const { appClient, app } = await signingPair(t);
    const parts = ['{"a":', '1}'];
    async function* chunked(): AsyncGenerator<Buffer> {
      for (const p of parts) yield Buffer.from(p);
    }
    const res = await appClient.request({
      path: '/events',
      method: 'POST',
      body: Readable.from(chunked()),
      headers: { 'content-digest': 'md5=:Sd/dVLAcvNLSq16eXua5uQ==:', 'content-type': 'application/json' },
    });
    t.equal(res.statusCode, 200, 'accepted by the verifying inbound sidecar');
    await res.body.dump();
    const seen = app.seen[0]!;
    t.equal(
      seen.headers['content-digest'],
      `sha-256=:${createHash('sha256').update(parts.join('')).digest('base64')}:`,
    );
    t.equal(seen.headers['content-length'], String(parts.join('').length));
    t.equal(seen.headers['transfer-encoding'], undefined);
    t.match(String(seen.headers['signature-input']), /"content-digest" "content-type" "content-length"\)/);
  },
);

t.test(
  'outbound refuses a body over maxBufferedBytes it would have to hold to digest, with 413 and nothing sent',
  async (t) => {
    const { appClient, app, out } = await signingPair(t, { maxBufferedBytes: 1024 });
    const res = await appClient.request({ path: '/events', method: 'POST', body: Buffer.alloc(4096, 'y') });
    t.equal(res.statusCode, 413);
    t.equal(res.headers['x-tollgate-error'], 'ERR_PAYLOAD_TOO_LARGE');
    await res.body.dump();
    t.equal(app.seen.length, 0);
    t.equal(
      out.logs.lines.filter((l) => l.msg === 'request refused' && l.code === 'ERR_PAYLOAD_TOO_LARGE').length,
      1,
      'one log line',
    );
  },
);

t.test(
  'outbound signs under a free label when the app already sent a signature labelled tollgate, and the inbound picks ours by tag',
  async (t) => {
    const { appClient, app } = await signingPair(t);
    const res = await appClient.request({
      path: '/events',
      method: 'GET',
      headers: { 'signature-input': 'tollgate=("@method");created=1;keyid="app"', signature: 'tollgate=:AAAA:' },
    });
    t.equal(res.statusCode, 200);
    await res.body.dump();
    const input = String(app.seen[0]?.headers['signature-input']);
    t.match(
      input,
      /^tollgate=\("@method"\);created=1;keyid="app", tollgate-2=\("@method" "@authority" "@path" "@query"\);created=\d+;nonce="[^"]+";keyid="k1";alg="hmac-sha256";tag="tollgate"$/,
    );
  },
);
