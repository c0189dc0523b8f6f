/**
 * Tampering with a signed request, one covered thing at a time; concurrent replays of one
 * signed request; and key rotation in keys.dir while the sidecar runs (inbound: new keys are
 * taken and removed keys refused; outbound: a ring without the signing key is not taken).
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client } from 'undici';
import type { ErrorCode } from '../src/core/errors.ts';
import { contentDigestOf } from '../src/integrity/contentDigest.ts';
import { PRODUCER } from './helpers/identities.ts';
import {
  world,
  startUpstream,
  startTestSidecar,
  mtlsClient,
  plainClient,
  eventually,
  sha256,
  type Test,
  type TestSidecar,
  type Upstream,
  type World,
  type TestIdentity,
} from './helpers/world.ts';
import { writeKey, signedHeaders, countRequests, expectRefused, type TestKey } from './helpers/signing.ts';

interface Inbound {
  readonly w: World;
  readonly producer: TestIdentity;
  readonly keysDir: string;
  readonly k1: TestKey;
  readonly app: Upstream & { readonly requests: () => number };
  readonly sc: TestSidecar;
  readonly client: Client;
  newClient(): Client;
}

async function inbound(t: Test): Promise<Inbound> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const keysDir = join(w.dir, 'keys');
  const k1 = await writeKey(keysDir, 'k1');
  const upstream = await startUpstream(t);
  const app = { ...upstream, requests: countRequests(upstream.server) };
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
  // HTTP/1.1: absolute-form targets and connection-level refusals are its own (HTTP/2's :path is origin-form)
  const newClient = (): Client => mtlsClient(t, sc.addr(), w.ca, producer, 'localhost', { http1: true });
  return { w, producer, keysDir, k1, app, sc, client: newClient(), newClient };
}

/** A request as the client will send it: method, path, headers (host and signature fields included) and body. */
interface Wire {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

const PATH = '/events?batch=7';
const BODY = '{"event":"page_view","n":1}';

function signedEvent(x: Inbound, key: TestKey = x.k1): Wire {
  return {
    method: 'POST',
    path: PATH,
    body: BODY,
    headers: signedHeaders({
      method: 'POST',
      path: PATH,
      authority: x.sc.addr(),
      body: BODY,
      headers: { 'content-type': 'application/json' },
      key,
    }),
  };
}

function send(client: Client, r: Wire) {
  return client.request({
    method: r.method,
    path: r.path,
    headers: r.headers,
    ...(r.body === undefined ? {} : { body: r.body }),
  });
}

/** Change one Signature-Input parameter's serialized value. */
function withParam(r: Wire, name: string, value: string): Wire {
  const input = r.headers['signature-input']!;
  const changed = input.replace(new RegExp(`;${name}=("[^"]*"|\\d+)`), `;${name}=${value}`);
  if (changed === input) throw new Error(`no parameter ${name} in ${input}`);
  return { ...r, headers: { ...r.headers, 'signature-input': changed } };
}

t.test(
  'changing any one covered part of a signed request gets it refused; the untampered request passes',
  async (t) => {
    const x = await inbound(t);
    await writeKey(x.keysDir, 'k2');
    await eventually(async () => (await x.sc.metric('tollgate_key_ring_keys')) === 2, 5000, 'k2 in the key ring');

    const rows: ReadonlyArray<{
      readonly change: string;
      readonly code: ErrorCode;
      readonly tamper: (r: Wire) => Wire;
    }> = [
      { change: 'the method', code: 'ERR_SIG_INVALID', tamper: (r) => ({ ...r, method: 'PUT' }) },
      {
        change: 'the authority (Host)',
        code: 'ERR_SIG_INVALID',
        tamper: (r) => ({ ...r, headers: { ...r.headers, host: r.headers.host!.replace('127.0.0.1', 'localhost') } }),
      },
      {
        // refused before the signature is looked at: a target that names another authority than Host is ambiguous
        change: 'the authority, through an absolute-form request-target (Host unchanged)',
        code: 'ERR_BAD_REQUEST',
        tamper: (r) => ({ ...r, path: `https://elsewhere.example${r.path}` }),
      },
      {
        change: 'the path',
        code: 'ERR_SIG_INVALID',
        tamper: (r) => ({ ...r, path: r.path.replace('/events', '/admin') }),
      },
      {
        change: 'the query',
        code: 'ERR_SIG_INVALID',
        tamper: (r) => ({ ...r, path: r.path.replace('batch=7', 'batch=8') }),
      },
      {
        change: 'the content-type',
        code: 'ERR_SIG_INVALID',
        tamper: (r) => ({ ...r, headers: { ...r.headers, 'content-type': 'text/plain' } }),
      },
      {
        change: 'content-length and body together',
        code: 'ERR_SIG_INVALID',
        tamper: (r) => ({
          ...r,
          body: `${r.body!} `,
          headers: { ...r.headers, 'content-length': String(r.body!.length + 1) },
        }),
      },
      {
        change: 'the body only (same length, digest unchanged)',
        code: 'ERR_DIGEST_MISMATCH',
        tamper: (r) => ({ ...r, body: r.body!.replace('"n":1', '"n":9') }),
      },
      {
        change: 'the Content-Digest value',
        code: 'ERR_SIG_INVALID',
        tamper: (r) => ({
          ...r,
          headers: { ...r.headers, 'content-digest': contentDigestOf(Buffer.from('{"other":true}')) },
        }),
      },
      {
        change: 'one bit of the signature',
        code: 'ERR_SIG_INVALID',
        tamper: (r) => {
          const m = /^([a-z0-9-]+)=:([^:]*):$/.exec(r.headers.signature!);
          if (m === null) throw new Error(`unexpected Signature ${r.headers.signature}`);
          const mac = Buffer.from(m[2]!, 'base64');
          mac[0]! ^= 0x01;
          return { ...r, headers: { ...r.headers, signature: `${m[1]!}=:${mac.toString('base64')}:` } };
        },
      },
      {
        change: 'the created parameter',
        code: 'ERR_SIG_INVALID',
        tamper: (r) =>
          withParam(r, 'created', String(Number(/;created=(\d+)/.exec(r.headers['signature-input']!)![1]) - 1)),
      },
      {
        change: 'the nonce parameter',
        code: 'ERR_SIG_INVALID',
        tamper: (r) => withParam(r, 'nonce', `"${randomBytes(16).toString('base64url')}"`),
      },
      {
        change: 'the keyid parameter (another known key)',
        code: 'ERR_SIG_INVALID',
        tamper: (r) => withParam(r, 'keyid', '"k2"'),
      },
      { change: 'the tag parameter', code: 'ERR_SIG_MISSING', tamper: (r) => withParam(r, 'tag', '"other"') },
    ];

    for (const row of rows) {
      await t.test(`${row.change} -> ${row.code}`, async (t) => {
        const tampered = row.tamper(signedEvent(x));
        // a refusal closes the connection when the body was not read: a fresh client per row keeps rows independent
        await expectRefused(t, x.sc, x.app, row.code, () => send(x.newClient(), tampered));
      });
    }

    await t.test(
      'an absolute-form request naming the Host authority is verified and reaches the app in origin-form; another authority is 400',
      async (t) => {
        const target = `https://${x.sc.addr()}${PATH}`;
        const headers = signedHeaders({
          method: 'POST',
          path: target,
          authority: x.sc.addr(),
          body: BODY,
          headers: { 'content-type': 'application/json' },
          key: x.k1,
        });
        const res = await send(x.client, { method: 'POST', path: target, headers, body: BODY });
        t.equal(res.statusCode, 200, await res.body.text());
        t.equal(x.app.seen.at(-1)?.url, PATH, 'rewritten to origin-form');
        const seen = x.app.seen.length;
        const elsewhere = `https://elsewhere.example${PATH}`;
        const signed = signedHeaders({
          method: 'POST',
          path: elsewhere,
          authority: x.sc.addr(),
          body: BODY,
          headers: { 'content-type': 'application/json' },
          key: x.k1,
        });
        const refused = await send(x.client, { method: 'POST', path: elsewhere, headers: signed, body: BODY });
        t.equal(refused.statusCode, 400, await refused.body.text());
        t.equal(refused.headers['x-tollgate-error'], 'ERR_BAD_REQUEST');
        t.equal(x.app.seen.length, seen, 'the app saw nothing');
      },
    );

    await t.test('the untampered request (fresh nonce) is accepted', async (t) => {
      const res = await send(x.client, signedEvent(x));
      t.equal(res.statusCode, 200, await res.body.text());
      t.equal(x.app.seen.length, 2);
      t.equal(x.app.seen[1]!.bodySha256, sha256(BODY));
      t.equal(x.app.seen[1]!.url, PATH);
    });
  },
);

t.test(
  'of 20 concurrent copies of one signed request over 5 connections exactly one passes and 19 are replays',
  async (t) => {
    const x = await inbound(t);
    const request = signedEvent(x);
    const clients = Array.from({ length: 5 }, () => x.newClient());
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const res = await send(clients[i % clients.length]!, request);
        await res.body.dump();
        return { status: res.statusCode, code: res.headers['x-tollgate-error'] };
      }),
    );
    t.equal(results.filter((r) => r.status === 200).length, 1, 'exactly one 200');
    const replays = results.filter((r) => r.status === 401 && r.code === 'ERR_SIG_REPLAYED');
    t.equal(replays.length, 19, 'nineteen 401 ERR_SIG_REPLAYED');
    t.equal(x.app.requests(), 1, 'the app saw exactly one');
    t.equal(await x.sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 1);
    t.equal(await x.sc.metric('tollgate_signature_checks_total', { result: 'replayed' }), 19);
    await eventually(
      () => x.sc.logs.lines.filter((l) => l.audit === true && l.event === 'replay').length >= 19,
      2000,
      'the replay audit events',
    );
    t.equal(x.sc.logs.lines.filter((l) => l.audit === true && l.event === 'replay').length, 19);
  },
);

t.test(
  'a key written into keys.dir is taken without a restart, and a deleted key is then refused as unknown',
  async (t) => {
    const x = await inbound(t);
    const accepted = async (key: TestKey, what: string): Promise<void> => {
      const res = await send(x.client, signedEvent(x, key));
      const text = await res.body.text();
      t.equal(res.statusCode, 200, res.statusCode === 200 ? what : `${what}: ${text}`);
    };
    await accepted(x.k1, 'k1 passes at the start');
    t.equal(await x.sc.metric('tollgate_key_ring_keys'), 1);

    const k2 = await writeKey(x.keysDir, 'k2');
    await eventually(async () => (await x.sc.metric('tollgate_key_ring_keys')) === 2, 5000, 'k2 to join the key ring');
    await accepted(k2, 'k2 passes once it is in the ring');
    await accepted(x.k1, 'k1 still passes while k2 is in the ring');
    t.equal(await x.sc.metric('tollgate_key_ring_keys'), 2);

    await rm(join(x.keysDir, 'k1'));
    await eventually(async () => (await x.sc.metric('tollgate_key_ring_keys')) === 1, 5000, 'k1 to leave the key ring');
    await expectRefused(t, x.sc, x.app, 'ERR_SIG_UNKNOWN_KEY', () => send(x.newClient(), signedEvent(x, x.k1)));
    await accepted(k2, 'k2 passes after k1 is gone');
    t.ok(
      (await x.sc.metric('tollgate_key_ring_reloads_total', { result: 'success' })) >= 2,
      'both changes counted as successful reloads',
    );
    const changes = x.sc.logs.lines.filter((l) => l.audit === true && l.event === 'key_ring_change' && l.ok === true);
    t.ok(
      changes.some((l) => (l.added as string[]).includes('k2')),
      'the added key is audited',
    );
    t.ok(
      changes.some((l) => (l.removed as string[]).includes('k1')),
      'the removed key is audited',
    );
  },
);

t.test(
  'an outbound listener keeps signing when its signing key disappears from keys.dir: that reload is refused',
  async (t) => {
    const x = await inbound(t);
    const outKeys = join(x.w.dir, 'keys-out');
    await writeKey(outKeys, 'k1', x.k1.secret);
    await writeKey(outKeys, 'k2');
    const out = await startTestSidecar(t, x.w.dir, {
      identity: x.producer.files,
      keys: { dir: 'keys-out' },
      listeners: [
        {
          name: 'to-ingest',
          mode: 'outbound',
          listen: '127.0.0.1:0',
          target: x.sc.addr(),
          serverName: 'localhost',
          integrity: { sign: true, keyId: 'k1' },
        },
      ],
    });
    const client = plainClient(t, out.addr());
    const post = async (what: string): Promise<void> => {
      const res = await client.request({
        method: 'POST',
        path: '/events',
        body: BODY,
        headers: { 'content-type': 'application/json' },
      });
      const text = await res.body.text();
      t.equal(res.statusCode, 200, res.statusCode === 200 ? what : `${what}: ${text}`);
    };
    await post('signed with k1 and verified');

    await rm(join(outKeys, 'k1'));
    await eventually(
      async () => (await out.metric('tollgate_key_ring_reloads_total', { result: 'failure' })) >= 1,
      5000,
      'the refused reload',
    );
    const failed = out.logs.lines.find((l) => l.msg === 'key ring reload failed; keeping the current key ring');
    t.match(
      failed?.problems,
      [/listeners\[0\]\.integrity\.keyId: key k1 is not in keys\.dir/],
      'the refusal names the listener and its key',
    );
    t.equal(await out.metric('tollgate_key_ring_keys'), 2, 'the ring in use still holds both keys');

    const manual = await out.reload();
    t.notOk(manual.ok, 'an explicit reload is refused too');

    await post('still signed with k1 and verified after the refused reloads');
    t.equal(await x.sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 2);
    t.equal(x.app.seen.length, 2);
    t.match(x.app.seen[1]!.headers['signature-input'], /keyid="k1"/);
  },
);
