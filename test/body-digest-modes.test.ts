/**
 * How a signed request's body reaches the app in the two body modes: buffer (nothing goes
 * upstream until the whole body arrived and matched its Content-Digest) and stream (the body
 * flows with backpressure, the last chunk held back until the digest matches, and a mismatch
 * aborts the upstream request so the app never gets a complete body). Plus Content-Digest
 * with two algorithms, and a Content-Digest on a request without content.
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Client } from 'undici';
import { contentDigestOf } from '../src/integrity/contentDigest.ts';
import { PRODUCER } from './helpers/identities.ts';
import {
  world,
  startUpstream,
  startTestSidecar,
  mtlsClient,
  eventually,
  sha256,
  type Test,
  type TestSidecar,
} from './helpers/world.ts';
import { writeKey, signedHeaders, countRequests, expectRefused, type TestKey } from './helpers/signing.ts';

const MIB = 1024 * 1024;

/** One request as the recording app saw it. */
interface Recorded {
  readonly url: string;
  readonly contentLength: string | undefined;
  bytes: number;
  sha256: string;
  complete: boolean;
  aborted: boolean;
  closed: boolean;
}

interface Setup {
  readonly key: TestKey;
  readonly sc: TestSidecar;
  readonly client: Client;
  /** what happened, in order, on both sides: 'client:chunk N', 'client:end', 'app:request', 'app:first-byte', 'app:end' */
  readonly events: string[];
  readonly records: Recorded[];
  /** requests the app began to receive */
  readonly requests: () => number;
  /** requests whose whole body the app received */
  readonly completed: () => number;
  newClient(): Client;
}

/** An inbound verifying sidecar in front of an app that records when each request and its first body byte arrive. */
async function setup(t: Test, integrity?: Record<string, unknown>): Promise<Setup> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const key = await writeKey(join(w.dir, 'keys'), 'k1');
  const events: string[] = [];
  const records: Recorded[] = [];
  const app = await startUpstream(t, (req, res) => {
    const r: Recorded = {
      url: req.url ?? '',
      contentLength: req.headers['content-length'],
      bytes: 0,
      sha256: '',
      complete: false,
      aborted: false,
      closed: false,
    };
    records.push(r);
    events.push('app:request');
    const hash = createHash('sha256');
    req.on('data', (c: Buffer) => {
      if (r.bytes === 0) events.push('app:first-byte');
      r.bytes += c.length;
      hash.update(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      r.complete = true;
      r.sha256 = hash.digest('hex');
      events.push('app:end');
      const body = JSON.stringify({ bytes: r.bytes, sha256: r.sha256 });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    });
    req.on('close', () => {
      r.aborted = !req.complete;
      r.closed = true;
    });
  });
  const requests = countRequests(app.server);
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
  const newClient = (): Client => mtlsClient(t, sc.addr(), w.ca, producer);
  return {
    key,
    sc,
    client: newClient(),
    events,
    records,
    requests,
    completed: () => records.filter((r) => r.complete).length,
    newClient,
  };
}

function chunksOf(body: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) out.push(body.subarray(i, Math.min(i + size, body.length)));
  return out;
}

/**
 * A client body that yields `chunks` one by one, noting each in `events`; `between(i)` runs
 * after chunk i was taken (a small await, or waiting for something to happen upstream).
 */
async function* clientBody(
  chunks: readonly Buffer[],
  events: string[],
  between: (i: number) => Promise<void>,
): AsyncGenerator<Buffer> {
  for (let i = 0; i < chunks.length; i++) {
    events.push(`client:chunk ${i}`);
    yield chunks[i]!;
    await between(i);
  }
  events.push('client:end');
}

/** undici streams an async iterable body (with backpressure, pulling one chunk at a time); its types only name Readable */
function asBody(body: AsyncIterable<Buffer>): Readable {
  return body as unknown as Readable;
}

const tick = (ms: number) => () => new Promise<void>((r) => setTimeout(r, ms));

t.test('buffer mode: the app gets nothing until the whole body arrived and matched its digest', async (t) => {
  const x = await setup(t);
  const body = randomBytes(8 * 16 * 1024);
  const chunks = chunksOf(body, 16 * 1024);
  const last = `client:chunk ${chunks.length - 1}`;

  await t.test('a slow, correct body is forwarded only after its last chunk was sent', async (t) => {
    const headers = signedHeaders({
      method: 'POST',
      path: '/upload',
      authority: x.sc.addr(),
      body,
      headers: { 'content-type': 'application/octet-stream' },
      key: x.key,
    });
    const res = await x.client.request({
      method: 'POST',
      path: '/upload',
      headers,
      body: asBody(clientBody(chunks, x.events, tick(20))),
    });
    const answer = (await res.body.json()) as { bytes: number; sha256: string };
    t.equal(res.statusCode, 200);
    t.same(answer, { bytes: body.length, sha256: sha256(body) }, 'the body arrived intact');
    t.ok(
      x.events.indexOf(last) >= 0 && x.events.indexOf('app:request') > x.events.indexOf(last),
      `the app request began after the last chunk was sent: ${x.events.join(', ')}`,
    );
    t.equal(x.records[0]!.contentLength, String(body.length), 'forwarded with its exact length');
  });

  await t.test(
    'a body that does not match its digest gets 400 ERR_DIGEST_MISMATCH and the app sees no request at all',
    async (t) => {
      const signedFor = randomBytes(body.length);
      const headers = signedHeaders({
        method: 'POST',
        path: '/upload',
        authority: x.sc.addr(),
        body: signedFor,
        headers: { 'content-type': 'application/octet-stream' },
        key: x.key,
      });
      const before = x.requests();
      await expectRefused(t, x.sc, { requests: x.requests }, 'ERR_DIGEST_MISMATCH', () =>
        x.client.request({ method: 'POST', path: '/upload', headers, body: asBody(clientBody(chunks, [], tick(5))) }),
      );
      t.equal(x.requests(), before, 'no request reached the app');
      t.equal(x.records.length, 1);
    },
  );
});

/** The 4 MiB streaming cases, with a declared length and chunked. */
for (const framing of ['content-length', 'chunked'] as const) {
  t.test(
    `stream mode (${framing}): a 4 MiB body flows through while it is being sent and arrives intact`,
    async (t) => {
      const x = await setup(t, { bodyMode: 'stream' });
      const body = randomBytes(4 * MIB);
      const chunks = chunksOf(body, 64 * 1024);
      const half = Math.floor(chunks.length / 2);
      let streamedEarly = false;
      const headers = signedHeaders({
        method: 'POST',
        path: '/bulk',
        authority: x.sc.addr(),
        body,
        headers: { 'content-type': 'application/octet-stream' },
        key: x.key,
        contentLength: framing === 'content-length',
      });
      // halfway through, the client waits (bounded) for the app to have received bytes: only a streamed body gets there
      const between = async (i: number): Promise<void> => {
        if (i !== half) return;
        streamedEarly = await eventually(
          () => x.events.includes('app:first-byte'),
          5000,
          'the first body byte at the app',
        ).then(
          () => true,
          () => false,
        );
      };
      const res = await x.client.request({
        method: 'POST',
        path: '/bulk',
        headers,
        body: asBody(clientBody(chunks, x.events, between)),
      });
      const answer = (await res.body.json()) as { bytes: number; sha256: string };
      t.equal(res.statusCode, 200);
      t.same(
        answer,
        { bytes: body.length, sha256: sha256(body) },
        'the app received exactly the 4 MiB that were signed',
      );
      t.ok(streamedEarly, 'the app had bytes while the client had half of the body still to send');
      t.ok(
        x.events.indexOf('app:first-byte') < x.events.indexOf(`client:chunk ${chunks.length - 1}`),
        'first byte at the app before the last chunk was sent',
      );
      t.equal(x.records[0]!.contentLength, framing === 'content-length' ? String(body.length) : undefined);
      t.equal(await x.sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 1);
    },
  );

  t.test(
    `stream mode (${framing}): a 4 MiB body whose last chunk differs from what was digested is refused and the app's request aborted`,
    async (t) => {
      const x = await setup(t, { bodyMode: 'stream' });
      const body = randomBytes(4 * MIB);
      const headers = signedHeaders({
        method: 'POST',
        path: '/bulk',
        authority: x.sc.addr(),
        body,
        headers: { 'content-type': 'application/octet-stream' },
        key: x.key,
        contentLength: framing === 'content-length',
      });
      const chunks = chunksOf(body, 64 * 1024);
      const tail = Buffer.from(chunks[chunks.length - 1]!);
      tail[tail.length - 1]! ^= 0xff;
      chunks[chunks.length - 1] = tail;

      // the app answers only at the end of the body, so no response has started: the refusal is a proper 400
      const logStart = x.sc.logs.lines.length;
      await expectRefused(t, x.sc, { requests: x.completed }, 'ERR_DIGEST_MISMATCH', () =>
        x.client.request({
          method: 'POST',
          path: '/bulk',
          headers,
          body: asBody(clientBody(chunks, x.events, () => Promise.resolve())),
        }),
      );
      const audit = x.sc.logs.lines.slice(logStart).find((l) => l.audit === true && l.event === 'signature_failure');
      t.match(
        audit,
        { code: 'ERR_DIGEST_MISMATCH', keyId: x.key.id, peer: PRODUCER },
        'audited with the key id and peer, as a refusal decided before forwarding is',
      );
      await eventually(() => x.records.length === 1 && x.records[0]!.closed, 5000, 'the app request to close');
      const seen = x.records[0]!;
      t.ok(seen.aborted, 'the app saw its request aborted');
      t.notOk(seen.complete, 'the app never got a complete body');
      t.ok(seen.bytes < body.length, `the app got fewer bytes than the body (${seen.bytes} of ${body.length})`);
      t.notOk(x.events.includes('app:end'));
      if (framing === 'content-length')
        t.equal(seen.contentLength, String(body.length), 'it had been told the full length');
    },
  );
}

t.test('a Content-Digest with both sha-256 and sha-512 has both checked', async (t) => {
  for (const mode of ['buffer', 'stream'] as const) {
    await t.test(`${mode} mode`, async (t) => {
      const x = await setup(t, { bodyMode: mode });
      const body = Buffer.from(JSON.stringify({ event: 'purchase', amount: 42 }));
      const other = Buffer.from('something else');
      const digest = (s256: Buffer, s512: Buffer): string =>
        `${contentDigestOf(s256, 'sha-256')}, ${contentDigestOf(s512, 'sha-512')}`;
      const post = (contentDigest: string) => {
        const headers = signedHeaders({
          method: 'POST',
          path: '/events',
          authority: x.sc.addr(),
          body,
          headers: { 'content-type': 'application/json', 'content-digest': contentDigest },
          key: x.key,
          digest: false,
        });
        return x.newClient().request({ method: 'POST', path: '/events', headers, body });
      };

      const ok = await post(digest(body, body));
      t.equal(ok.statusCode, 200, await ok.body.text());
      await expectRefused(t, x.sc, { requests: x.completed }, 'ERR_DIGEST_MISMATCH', () => post(digest(body, other)));
      await expectRefused(t, x.sc, { requests: x.completed }, 'ERR_DIGEST_MISMATCH', () => post(digest(other, body)));
      t.equal(x.completed(), 1, 'only the request with both digests right reached the app whole');
    });
  }
});

t.test(
  'a GET without a body is accepted with the Content-Digest of the empty body and refused with another',
  async (t) => {
    const x = await setup(t);
    const get = (contentDigest: string) => () => {
      const headers = signedHeaders({
        method: 'GET',
        path: '/status',
        authority: x.sc.addr(),
        headers: { 'content-digest': contentDigest },
        key: x.key,
      });
      return x.client.request({ method: 'GET', path: '/status', headers });
    };
    const ok = await get(contentDigestOf(Buffer.alloc(0)))();
    t.equal(ok.statusCode, 200, await ok.body.text());
    t.equal(x.records[0]!.bytes, 0);
    await expectRefused(
      t,
      x.sc,
      { requests: x.requests },
      'ERR_DIGEST_MISMATCH',
      get(contentDigestOf(Buffer.from('not empty'))),
    );
    await expectRefused(
      t,
      x.sc,
      { requests: x.requests },
      'ERR_DIGEST_MISMATCH',
      get(contentDigestOf(Buffer.alloc(0), 'sha-512').replace(/:[^:]+:/, `:${randomBytes(64).toString('base64')}:`)),
    );
    t.equal(x.requests(), 1);
  },
);
