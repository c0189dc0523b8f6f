import t from 'tap';
import { join } from 'node:path';
import { world, startUpstream, startTestSidecar, mtlsClient, plainClient, sha256, type Test } from './helpers/world.ts';
import { writeKey, signedHeaders, type TestKey } from './helpers/signing.ts';

const PRODUCER = 'spiffe://example.org/producer';

async function verifyingInbound(t: Test, opts: { integrity?: Record<string, unknown>; upstream?: Parameters<typeof startUpstream>[1] } = {}) {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const key = await writeKey(join(w.dir, 'keys'), 'k1');
  const app = await startUpstream(t, opts.upstream);
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    keys: { dir: 'keys' },
    ...(opts.integrity === undefined ? {} : { integrity: opts.integrity }),
    listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] }, integrity: { verify: true } }],
  });
  const client = mtlsClient(t, sc.addr(), w.ca, producer);
  return { w, ingest, producer, key, app, sc, client };
}

t.test('a request signed by the outbound sidecar is verified by the inbound sidecar and reaches the app', async (t) => {
  const { w, producer, app, sc } = await verifyingInbound(t);
  const out = await startTestSidecar(t, w.dir, {
    identity: producer.files,
    keys: { dir: 'keys' },
    listeners: [{ name: 'to-ingest', mode: 'outbound', listen: '127.0.0.1:0', target: sc.addr(), serverName: 'localhost', integrity: { sign: true, keyId: 'k1' } }],
  });
  const client = plainClient(t, out.addr());
  const body = JSON.stringify({ event: 'page_view' });
  const res = await client.request({ path: '/events?batch=1', method: 'POST', body, headers: { 'content-type': 'application/json' } });
  t.equal(res.statusCode, 200, await res.body.text());
  const seen = app.seen[0]!;
  t.equal(seen.bodySha256, sha256(body));
  t.match(seen.headers['signature-input'], /^tollgate=\("@method" "@authority" "@path" "@query" "content-digest" "content-type" "content-length"\);created=\d+;nonce="[A-Za-z0-9_-]{22}";keyid="k1";alg="hmac-sha256";tag="tollgate"$/);
  t.equal(await sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 1);

  const get = await client.request({ path: '/status', method: 'GET' });
  t.equal(get.statusCode, 200);
  await get.body.dump();
  t.equal(await sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 2);
});

t.test('the same signed request sent twice is refused the second time as a replay', async (t) => {
  const { sc, client, key, app } = await verifyingInbound(t);
  const headers = signedHeaders({ method: 'POST', path: '/events', authority: sc.addr(), body: '{"a":1}', headers: { 'content-type': 'application/json' }, key });
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
