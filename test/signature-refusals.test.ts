/**
 * Every refusal of the inbound signature and digest checks, triggered for real over mTLS on
 * loopback: the status and code of the error table (README.md, "Error codes"), the JSON body, exactly one count
 * under tollgate_signature_checks_total, one 'request refused' log line, one audit event, and
 * nothing at the app (expectRefused in helpers/signing.ts asserts all of it).
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Client } from 'undici';
import { PRODUCER } from './helpers/identities.ts';
import {
  world,
  startUpstream,
  startTestSidecar,
  mtlsClient,
  sha256,
  type Test,
  type TestSidecar,
  type Upstream,
} from './helpers/world.ts';
import {
  writeKey,
  signedHeaders,
  customSignature,
  signatureParams,
  countRequests,
  expectRefused,
  type TestKey,
} from './helpers/signing.ts';
import { contentDigestOf } from '../src/integrity/contentDigest.ts';
import { sf } from '../src/integrity/structuredFields.ts';

const FLOOR = ['@method', '@authority', '@path', '@query'];
const JSON_TYPE = { 'content-type': 'application/json' };

interface Inbound {
  readonly key: TestKey;
  readonly app: Upstream & { readonly requests: () => number };
  readonly sc: TestSidecar;
  readonly client: Client;
  /** a fresh mTLS client to the listener */
  newClient(): Client;
}

async function inbound(t: Test, integrity?: Record<string, unknown>): Promise<Inbound> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const key = await writeKey(join(w.dir, 'keys'), 'k1');
  const upstream = await startUpstream(t);
  const app = { ...upstream, requests: countRequests(upstream.server) };
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    keys: { dir: 'keys' },
    ...(integrity === undefined ? {} : { integrity }),
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
  // HTTP/1.1: absolute-form targets and connection-level refusals are its own (HTTP/2's :path is origin-form)
  const newClient = (): Client => mtlsClient(t, sc.addr(), w.ca, producer, 'localhost', { http1: true });
  return { key, app, sc, client: newClient(), newClient };
}

/** Send a signed request that must pass (fresh nonce), and read its answer. */
async function accepted(t: Test, x: Inbound, path = '/events', body = '{"ok":true}'): Promise<void> {
  const headers = signedHeaders({ method: 'POST', path, authority: x.sc.addr(), body, headers: JSON_TYPE, key: x.key });
  const res = await x.client.request({ method: 'POST', path, headers, body });
  const text = await res.body.text();
  t.equal(
    res.statusCode,
    200,
    res.statusCode === 200
      ? 'a correctly signed request is accepted'
      : `a correctly signed request is accepted: ${text}`,
  );
}

t.test(
  'ERR_SIG_MISSING: a request with no signature, or only a signature under another tag, is refused with 401',
  async (t) => {
    const x = await inbound(t);
    await expectRefused(t, x.sc, x.app, 'ERR_SIG_MISSING', () =>
      x.client.request({ method: 'GET', path: '/status', headers: { host: x.sc.addr() } }),
    );

    const body = '{"a":1}';
    const other = signedHeaders({
      method: 'POST',
      path: '/events',
      authority: x.sc.addr(),
      body,
      headers: JSON_TYPE,
      key: x.key,
      tag: 'someone-else',
    });
    await expectRefused(t, x.sc, x.app, 'ERR_SIG_MISSING', () =>
      x.client.request({ method: 'POST', path: '/events', headers: other, body }),
    );
    await accepted(t, x);
  },
);

t.test(
  'ERR_SIG_MALFORMED: signature fields that do not parse, a non-byte-sequence Signature, or created that is not an integer get 400',
  async (t) => {
    const x = await inbound(t);
    const good = signedHeaders({ method: 'GET', path: '/status', authority: x.sc.addr(), key: x.key });
    const get = (headers: Record<string, string>) => () =>
      x.client.request({ method: 'GET', path: '/status', headers });

    await expectRefused(
      t,
      x.sc,
      x.app,
      'ERR_SIG_MALFORMED',
      get({ ...good, 'signature-input': 'tollgate=("@method" "@authority"' }),
    );
    await expectRefused(t, x.sc, x.app, 'ERR_SIG_MALFORMED', get({ ...good, signature: 'tollgate="bm90IGJ5dGVz"' }));

    const headers = { host: x.sc.addr() };
    for (const created of [
      sf.decimal(Math.floor(Date.now() / 1000) + 0.5),
      sf.string(String(Math.floor(Date.now() / 1000))),
    ]) {
      const sig = customSignature({
        method: 'GET',
        path: '/status',
        headers,
        components: FLOOR,
        params: signatureParams('k1', { created }),
        secret: x.key.secret,
      });
      await expectRefused(t, x.sc, x.app, 'ERR_SIG_MALFORMED', get({ ...headers, ...sig }));
    }
  },
);

t.test(
  'ERR_SIG_COVERAGE: a signature that leaves out a component or parameter the profile requires gets 401',
  async (t) => {
    const x = await inbound(t, { requiredComponents: ['x-tenant'] });
    const body = '{"a":1}';
    const base = {
      host: x.sc.addr(),
      'x-tenant': 'acme',
      'content-type': 'application/json',
      'content-length': String(body.length),
      'content-digest': contentDigestOf(Buffer.from(body)),
    };
    const full = [...FLOOR, 'content-digest', 'content-type', 'content-length', 'x-tenant'];
    const post =
      (components: string[], params = signatureParams('k1'), headers: Record<string, string> = base) =>
      () => {
        const sig = customSignature({
          method: 'POST',
          path: '/events?batch=1',
          headers,
          components,
          params,
          secret: x.key.secret,
        });
        return x.client.request({ method: 'POST', path: '/events?batch=1', headers: { ...headers, ...sig }, body });
      };

    await t.test('@path not covered', async (t) => {
      await expectRefused(t, x.sc, x.app, 'ERR_SIG_COVERAGE', post(full.filter((c) => c !== '@path')));
    });
    await t.test('content with a Content-Digest that is not covered', async (t) => {
      await expectRefused(t, x.sc, x.app, 'ERR_SIG_COVERAGE', post(full.filter((c) => c !== 'content-digest')));
    });
    await t.test('content-type present but not covered', async (t) => {
      await expectRefused(t, x.sc, x.app, 'ERR_SIG_COVERAGE', post(full.filter((c) => c !== 'content-type')));
    });
    await t.test('a component required by integrity.requiredComponents not covered', async (t) => {
      await expectRefused(t, x.sc, x.app, 'ERR_SIG_COVERAGE', post(full.filter((c) => c !== 'x-tenant')));
    });
    await t.test('no nonce', async (t) => {
      await expectRefused(t, x.sc, x.app, 'ERR_SIG_COVERAGE', post(full, signatureParams('k1', { nonce: undefined })));
    });
    await t.test('the same request covering everything passes', async (t) => {
      const res = await post(full)();
      t.equal(res.statusCode, 200, await res.body.text());
      t.equal(x.app.requests(), 1);
    });
  },
);

t.test('ERR_SIG_UNKNOWN_KEY: a signature naming a key id that is not in the key ring gets 401', async (t) => {
  const x = await inbound(t);
  const body = '{"a":1}';
  const headers = signedHeaders({
    method: 'POST',
    path: '/events',
    authority: x.sc.addr(),
    body,
    headers: JSON_TYPE,
    key: { id: 'k9', secret: randomBytes(32) },
  });
  await expectRefused(t, x.sc, x.app, 'ERR_SIG_UNKNOWN_KEY', () =>
    x.client.request({ method: 'POST', path: '/events', headers, body }),
  );
});

t.test(
  'ERR_SIG_INVALID: a MAC made with other bytes under a known key id, or another algorithm, gets 401',
  async (t) => {
    const x = await inbound(t);
    const body = '{"a":1}';
    const wrongBytes = signedHeaders({
      method: 'POST',
      path: '/events',
      authority: x.sc.addr(),
      body,
      headers: JSON_TYPE,
      key: { id: 'k1', secret: randomBytes(32) },
    });
    await expectRefused(t, x.sc, x.app, 'ERR_SIG_INVALID', () =>
      x.client.request({ method: 'POST', path: '/events', headers: wrongBytes, body }),
    );

    const headers = { host: x.sc.addr() };
    const rsa = customSignature({
      method: 'GET',
      path: '/status',
      headers,
      components: FLOOR,
      params: signatureParams('k1', { alg: sf.string('rsa-pss-sha512') }),
      secret: x.key.secret,
    });
    await expectRefused(t, x.sc, x.app, 'ERR_SIG_INVALID', () =>
      x.client.request({ method: 'GET', path: '/status', headers: { ...headers, ...rsa } }),
    );
  },
);

t.test(
  'ERR_SIG_EXPIRED: created older than maxAge, created beyond the skew in the future, or expires passed gets 401',
  async (t) => {
    const x = await inbound(t, { skewSeconds: 30, maxAgeSeconds: 300 });
    const now = Math.floor(Date.now() / 1000);
    const headers = { host: x.sc.addr() };
    const get = (over: Parameters<typeof signatureParams>[1]) => () => {
      const sig = customSignature({
        method: 'GET',
        path: '/status',
        headers,
        components: FLOOR,
        params: signatureParams('k1', over),
        secret: x.key.secret,
      });
      return x.client.request({ method: 'GET', path: '/status', headers: { ...headers, ...sig } });
    };
    await expectRefused(t, x.sc, x.app, 'ERR_SIG_EXPIRED', get({ created: sf.integer(now - 300 - 60) }));
    await expectRefused(t, x.sc, x.app, 'ERR_SIG_EXPIRED', get({ created: sf.integer(now + 30 + 60) }));
    await expectRefused(
      t,
      x.sc,
      x.app,
      'ERR_SIG_EXPIRED',
      get({ created: sf.integer(now - 120), expires: sf.integer(now - 119) }),
    );

    // inside the window on every side: accepted
    const ok = await get({ created: sf.integer(now - 200), expires: sf.integer(now + 60) })();
    t.equal(ok.statusCode, 200, await ok.body.text());
  },
);

t.test('ERR_SIG_REPLAYED: a second request with a nonce already seen gets 401 and a replay audit event', async (t) => {
  const x = await inbound(t);
  const body = '{"a":1}';
  const headers = signedHeaders({
    method: 'POST',
    path: '/events',
    authority: x.sc.addr(),
    body,
    headers: JSON_TYPE,
    key: x.key,
  });
  const first = await x.client.request({ method: 'POST', path: '/events', headers, body });
  t.equal(first.statusCode, 200, await first.body.text());
  await expectRefused(t, x.sc, x.app, 'ERR_SIG_REPLAYED', () =>
    x.client.request({ method: 'POST', path: '/events', headers, body }),
  );
  t.equal(x.app.seen.length, 1);
});

t.test('ERR_DIGEST_MISSING: content without a Content-Digest gets 400', async (t) => {
  const x = await inbound(t);
  const body = '{"a":1}';
  const headers = signedHeaders({
    method: 'POST',
    path: '/events',
    authority: x.sc.addr(),
    body,
    headers: JSON_TYPE,
    key: x.key,
    digest: false,
  });
  t.notOk('content-digest' in headers);
  await expectRefused(t, x.sc, x.app, 'ERR_DIGEST_MISSING', () =>
    x.client.request({ method: 'POST', path: '/events', headers, body }),
  );
});

t.test('ERR_DIGEST_MISMATCH: a body changed after signing, or a deprecated md5 Content-Digest, gets 400', async (t) => {
  const x = await inbound(t);
  const body = '{"amount":100}';
  const headers = signedHeaders({
    method: 'POST',
    path: '/events',
    authority: x.sc.addr(),
    body,
    headers: JSON_TYPE,
    key: x.key,
  });
  const changed = '{"amount":999}';
  t.equal(changed.length, body.length);
  await expectRefused(t, x.sc, x.app, 'ERR_DIGEST_MISMATCH', () =>
    x.client.request({ method: 'POST', path: '/events', headers, body: changed }),
  );

  const md5 = signedHeaders({
    method: 'POST',
    path: '/events',
    authority: x.sc.addr(),
    body,
    headers: {
      ...JSON_TYPE,
      'content-digest': `md5=:${Buffer.from(sha256(body).slice(0, 32), 'hex').toString('base64')}:`,
    },
    key: x.key,
    digest: false,
  });
  t.match(md5['signature-input'], /"content-digest"/, 'the md5 digest is covered by a valid signature');
  await expectRefused(t, x.sc, x.app, 'ERR_DIGEST_MISMATCH', () =>
    x.client.request({ method: 'POST', path: '/events', headers: md5, body }),
  );
  await accepted(t, x);
});

t.test('ERR_REPLAY_CACHE_FULL: with room for one nonce, a second fresh nonce gets 503', async (t) => {
  const x = await inbound(t, { replayCacheEntries: 1 });
  await accepted(t, x);
  const body = '{"a":2}';
  const headers = signedHeaders({
    method: 'POST',
    path: '/events',
    authority: x.sc.addr(),
    body,
    headers: JSON_TYPE,
    key: x.key,
  });
  await expectRefused(t, x.sc, x.app, 'ERR_REPLAY_CACHE_FULL', () =>
    x.client.request({ method: 'POST', path: '/events', headers, body }),
  );
  t.equal(await x.sc.metric('tollgate_replay_cache_entries'), 1);
  t.equal(x.app.seen.length, 1);
});

t.test(
  'ERR_PAYLOAD_TOO_LARGE: in buffer mode a signed body over integrity.maxBufferedBytes gets 413 and nothing goes upstream',
  async (t) => {
    const x = await inbound(t, { bodyMode: 'buffer', maxBufferedBytes: 1024 });
    const body = randomBytes(4096).toString('hex');
    const headers = signedHeaders({
      method: 'POST',
      path: '/events',
      authority: x.sc.addr(),
      body,
      headers: JSON_TYPE,
      key: x.key,
    });
    // the signature itself verified: no signature check result is counted for a body refused for its size
    await expectRefused(
      t,
      x.sc,
      x.app,
      'ERR_PAYLOAD_TOO_LARGE',
      () => x.newClient().request({ method: 'POST', path: '/events', headers, body }),
      { result: null },
    );
    await accepted(t, x, '/events', '{"small":true}');
    t.equal(x.app.requests(), 1);
  },
);

t.test(
  'a refused request whose body was never read closes its connection, and the client carries on over a new one',
  async (t) => {
    const x = await inbound(t);
    const handshakes = async (): Promise<number> => x.sc.metric('tollgate_tls_handshakes_total', { result: 'success' });
    await accepted(t, x);
    t.equal(await handshakes(), 1);

    const body = randomBytes(512 * 1024);
    const headers = signedHeaders({
      method: 'POST',
      path: '/events',
      authority: x.sc.addr(),
      body,
      headers: { 'content-type': 'application/octet-stream' },
      key: { id: 'k1', secret: randomBytes(32) },
    });
    const res = await expectRefused(t, x.sc, x.app, 'ERR_SIG_INVALID', () =>
      x.client.request({ method: 'POST', path: '/events', headers, body }),
    );
    t.equal(res.headers.connection, 'close');

    await accepted(t, x);
    t.equal(await handshakes(), 2, 'the next request came over a new connection');
    t.equal(x.app.seen.length, 2);
  },
);
