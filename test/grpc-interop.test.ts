/**
 * gRPC through tollgate with @grpc/grpc-js at both ends (issue 20, items 3 and 5): a grpc-js
 * client (insecure: h2c with prior knowledge) → outbound → h2 over mTLS → inbound (targetProtocol
 * h2c) → a grpc-js server. Unary, server streaming, client streaming and bidirectional calls with
 * integrity off and on; metadata, trailers and statuses both ways; deadlines; refusals seen by the
 * client as gRPC statuses; the calls counted as HTTP/2.
 */
import t from 'tap';
import http2 from 'node:http2';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import grpc from '@grpc/grpc-js';
import { pipeline, type PipelineOptions } from './helpers/pipeline.ts';
import { digestOf, grpcClient, startGrpcApp, type GrpcApp, type Msg } from './helpers/grpcApp.ts';
import { tempDir } from './helpers/pki.ts';
import { writeKey } from './helpers/signing.ts';
import type { Test } from './helpers/world.ts';

const S = grpc.status;
/** how long a test waits for something that must happen (a bound on a hang, not a timing assertion) */
const BOUND_MS = 10_000;

function within<T>(p: Promise<T>, what: string, ms = BOUND_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, bound]).finally(() => clearTimeout(timer));
}

/** app → inbound (h2c to the app) → outbound, with the grpc-js server as the app */
async function grpcPipeline(t: Test, app: GrpcApp, opts: PipelineOptions = {}) {
  const inbound = opts.inbound ?? {};
  return pipeline(t, {
    ...opts,
    inbound: { ...inbound, listener: { target: app.addr, targetProtocol: 'h2c', ...inbound.listener } },
  });
}

function payload(bytes: number): string {
  return randomBytes(bytes).toString('base64');
}

/** Server streaming, client streaming and unary, each checked message by message. */
async function unaryServerClientStreaming(t: Test, c: ReturnType<typeof grpcClient>, tag: string): Promise<void> {
  const p = payload(30_000);
  const u = await within(c.unary({ id: `${tag}-u`, payload: p }), 'unary status');
  t.equal(u.status.code, S.OK, `${tag} unary: OK (${u.status.details})`);
  t.equal(u.value?.digest, digestOf(p), `${tag} unary: the server got the 30 kB payload intact`);
  t.equal(u.value?.payload, p, `${tag} unary: the answer came back intact`);

  const ss = await within(c.serverStream({ id: `${tag}-ss`, n: 50, size: 2000 }), 'server streaming status');
  t.equal(ss.status.code, S.OK, `${tag} server streaming: OK (${ss.status.details})`);
  t.equal(ss.messages.length, 50, `${tag} server streaming: 50 messages`);
  t.same(
    ss.messages.map((m) => m.i),
    Array.from({ length: 50 }, (_, i) => i),
    `${tag} server streaming: in order`,
  );
  t.ok(
    ss.messages.every((m) => m.payload?.length === 2000 && m.digest === digestOf(m.payload)),
    `${tag} server streaming: each message intact`,
  );

  const sent: Msg[] = Array.from({ length: 50 }, (_, i) => ({ id: `${tag}-cs`, i, payload: payload(500) }));
  const cs = await within(c.clientStream(sent), 'client streaming status');
  t.equal(cs.status.code, S.OK, `${tag} client streaming: OK (${cs.status.details})`);
  t.equal(cs.value?.count, 50, `${tag} client streaming: the server got 50 messages`);
  t.equal(
    cs.value?.digest,
    digestOf(...sent.map((m) => m.payload!)),
    `${tag} client streaming: all of them, intact and in order`,
  );
}

t.test(
  'integrity off: unary, server streaming, client streaming and interactive bidi between grpc-js ends',
  async (t) => {
    const app = await startGrpcApp(t);
    const pl = await grpcPipeline(t, app, { sign: false });
    const c = grpcClient(t, pl.outbound.addr);

    await unaryServerClientStreaming(t, c, 'h2c');

    // bidi, ping-pong: each message is answered before the next is sent, so both directions stream
    const { call, outcome } = c.bidi();
    const replies: Msg[] = [];
    let wake: (() => void) | null = null;
    call.on('data', (m: Msg) => {
      replies.push(m);
      wake?.();
    });
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) {
      const p = payload(1000);
      sent.push(p);
      const answered = new Promise<void>((resolve) => (wake = resolve));
      call.write({ id: 'bidi', i, payload: p });
      await within(answered, `bidi reply ${i} before the next message`);
    }
    call.end();
    const b = await within(outcome, 'bidi status');
    t.equal(b.status.code, S.OK, `bidi: OK (${b.status.details})`);
    t.same(
      replies.map((m) => m.i),
      Array.from({ length: 20 }, (_, i) => i),
      'bidi: 20 replies, each received before the next message was sent',
    );
    t.ok(
      replies.every((m, i) => m.digest === digestOf(sent[i]!)),
      'bidi: each reply is about the message it answers',
    );

    t.equal(
      app.calls('Echo') + app.calls('Count') + app.calls('Sum') + app.calls('Chat'),
      4,
      'four calls reached the server',
    );
    t.equal(
      await pl.outbound.metric('tollgate_requests_total', { protocol: 'h2', status_class: '2xx' }),
      4,
      'the outbound counted the four calls as HTTP/2',
    );
    t.equal(
      await pl.inbound.metric('tollgate_requests_total', { protocol: 'h2', status_class: '2xx' }),
      4,
      'the inbound counted the four calls as HTTP/2 (they went on as h2)',
    );
    t.equal(await pl.inbound.metric('tollgate_requests_total', { protocol: 'http/1.1' }), 0, 'none as HTTP/1.1');
  },
);

t.test(
  'integrity on: unary, streaming calls and a bidi call that half-closes first are signed and verified',
  async (t) => {
    const app = await startGrpcApp(t);
    const pl = await grpcPipeline(t, app);
    const c = grpcClient(t, pl.outbound.addr);

    await unaryServerClientStreaming(t, c, 'signed');
    t.equal(
      await pl.inbound.metric('tollgate_signature_checks_total', { result: 'ok' }),
      3,
      'the inbound verified the signature of each of the three calls',
    );

    // bidi whose client writes everything, half-closes, then reads: the outbound holds the
    // messages until the half-close, signs them, and the inbound verifies them
    const { call, outcome } = c.bidi();
    const sent = Array.from({ length: 30 }, () => payload(800));
    sent.forEach((p, i) => call.write({ id: 'bidi-signed', i, payload: p }));
    call.end();
    const b = await within(outcome, 'bidi status');
    t.equal(b.status.code, S.OK, `bidi (half-closed first): OK (${b.status.details})`);
    t.same(
      b.messages.map((m) => m.digest),
      sent.map((p) => digestOf(p)),
      'bidi (half-closed first): 30 replies, in order, each about its message',
    );
    t.equal(await pl.inbound.metric('tollgate_signature_checks_total', { result: 'ok' }), 4, 'and it was verified');
    t.equal(await pl.inbound.metric('tollgate_requests_total', { protocol: 'h2', status_class: '2xx' }), 4);
    t.equal(await pl.outbound.metric('tollgate_requests_total', { protocol: 'h2', status_class: '2xx' }), 4);
  },
);

t.test('metadata, trailers and statuses pass both ways (integrity on)', async (t) => {
  const app = await startGrpcApp(t);
  const pl = await grpcPipeline(t, app);
  const c = grpcClient(t, pl.outbound.addr);

  const md = new grpc.Metadata();
  md.set('x-request-tag', 'tag-42');
  md.add('x-multi', 'one');
  md.add('x-multi', 'two');
  md.set('x-blob-bin', Buffer.from([0, 0xff, 0x10, 0x80]));
  const r = await within(c.unary({ id: 'meta-1', payload: 'x', meta: true }, { metadata: md }), 'status');
  t.equal(r.status.code, S.OK, r.status.details);

  const seen = app.metadataOf('meta-1');
  t.ok(seen, 'the server saw the call');
  t.same(seen?.get('x-request-tag'), ['tag-42'], 'request metadata reached the server');
  // Node joins a repeated field with ", " (as it would straight from the client): both values, in order
  t.same(
    seen
      ?.get('x-multi')
      .flatMap((v) => String(v).split(','))
      .map((v) => v.trim()),
    ['one', 'two'],
    'a repeated key reached the server with both values, in order',
  );
  t.same(seen?.get('x-blob-bin'), [Buffer.from([0, 0xff, 0x10, 0x80])], 'binary request metadata reached it intact');

  t.same(r.headers?.get('x-initial'), ['hello meta-1'], 'server initial metadata reached the client');
  t.same(r.headers?.get('x-initial-bin'), [Buffer.from([0, 1, 2, 0xfe, 0xff])], 'binary initial metadata too');
  t.same(r.status.metadata.get('x-trailer'), ['bye meta-1'], 'trailing metadata reached the client');
  t.same(r.status.metadata.get('x-trailer-bin'), [Buffer.from([0xff, 0, 0x7f])], 'binary trailing metadata too');

  // a status of the server's own, with a message that needs percent-encoding
  const details = 'no widget "w-1" here: 100% gone, ü';
  const nf = await within(c.unary({ id: 'nf-1', fail: { code: S.NOT_FOUND, details } }), 'status');
  t.equal(nf.status.code, S.NOT_FOUND, 'NOT_FOUND reached the client');
  t.equal(nf.status.details, details, 'with its message intact');
  t.same(nf.status.metadata.get('x-trailer'), ['bye nf-1'], 'and its trailing metadata');
  t.equal(nf.value, null);

  t.equal(await pl.inbound.metric('tollgate_signature_checks_total', { result: 'ok' }), 2, 'both calls verified');
});

t.test('deadlines', async (t) => {
  t.test('a grpc-js call past its deadline ends DEADLINE_EXCEEDED and the server sees it cancelled', async (t) => {
    const app = await startGrpcApp(t);
    const pl = await grpcPipeline(t, app);
    const c = grpcClient(t, pl.outbound.addr);
    const r = await within(c.hang({ id: 'late-1' }, { deadlineMs: 500 }), 'status');
    t.equal(r.status.code, S.DEADLINE_EXCEEDED, `the client: DEADLINE_EXCEEDED (${r.status.details})`);
    await within(app.whenCancelled('late-1'), 'cancellation at the server');
    t.same(app.cancelled(), ['late-1'], 'the server handler saw its call cancelled');
    // the channel still works after the cancelled call
    const ok = await within(c.unary({ id: 'after', payload: 'p' }), 'status');
    t.equal(ok.status.code, S.OK, 'the next call on the channel is answered');
  });

  t.test('an app that ignores grpc-timeout: the inbound itself ends the call at the deadline', async (t) => {
    // the grpc-js server keeps its own deadline, so here the app is a bare h2c server that never
    // answers: whatever ends the call is tollgate's bound on the upstream wait
    const app = http2.createServer();
    const streams: http2.ServerHttp2Stream[] = [];
    const reset = new Promise<number>((resolve) =>
      app.on('stream', (s) => {
        streams.push(s);
        s.on('error', () => undefined);
        s.on('close', () => resolve(s.rstCode));
      }),
    );
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    t.teardown(() => app.close());
    t.teardown(() => streams.forEach((s) => s.destroy()));
    const addr = `127.0.0.1:${(app.address() as AddressInfo).port}`;
    const pl = await pipeline(t, { sign: false, inbound: { listener: { target: addr, targetProtocol: 'h2c' } } });

    // straight to the inbound (ALPN h2, the producer's certificate), with no deadline of the client's own
    const leaf = pl.outbound.leaf();
    const session = http2.connect(`https://${pl.inbound.addr}`, {
      ca: pl.w.ca.certPem,
      cert: leaf.certPem,
      key: leaf.keyPem,
      servername: 'localhost',
    });
    session.on('error', () => undefined);
    t.teardown(() => session.close());
    const stream = session.request({
      ':method': 'POST',
      ':path': '/tollgate.test.Interop/Hang',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '300m',
    });
    stream.end(Buffer.from([0, 0, 0, 0, 2, 0x7b, 0x7d]));
    const head = within(
      new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        stream.on('response', resolve);
        stream.on('error', reject);
      }),
      'an answer from the inbound',
    );
    stream.resume();
    const h = await head;
    t.equal(h[':status'], 200, 'answered as gRPC does');
    t.equal(h['grpc-status'], String(S.DEADLINE_EXCEEDED), 'grpc-status DEADLINE_EXCEEDED');
    t.equal(h['grpc-message'], 'ERR_UPSTREAM_TIMEOUT', 'grpc-message names the code');
    const code = await within(reset, "the app's stream to end");
    t.not(code, http2.constants.NGHTTP2_NO_ERROR, `the inbound reset the app's stream (code ${code})`);
    t.equal(streams.length, 1, 'the call reached the app once');
  });
});

t.test('refusals reach the grpc-js client as gRPC statuses', async (t) => {
  t.test('the inbound does not allow the producer: PERMISSION_DENIED', async (t) => {
    const app = await startGrpcApp(t);
    const pl = await grpcPipeline(t, app, {
      sign: false,
      inbound: { allow: { spiffe: ['spiffe://example.org/someone-else'] } },
    });
    const r = await within(grpcClient(t, pl.outbound.addr).unary({ id: 'denied', payload: 'x' }), 'status');
    t.equal(r.status.code, S.PERMISSION_DENIED, 'PERMISSION_DENIED (7)');
    t.match(r.status.details, /ERR_PEER_NOT_ALLOWED/);
    t.equal(app.calls('Echo'), 0, 'nothing reached the server');
  });

  t.test('the outbound rate limit: RESOURCE_EXHAUSTED', async (t) => {
    const app = await startGrpcApp(t);
    // one token, refilled every 10 s: the second call is refused however slow the machine is
    const pl = await grpcPipeline(t, app, { sign: false, outbound: { limits: { requestsPerSecond: 0.1, burst: 1 } } });
    const c = grpcClient(t, pl.outbound.addr);
    const first = await within(c.unary({ id: 'rl-1', payload: 'x' }), 'status');
    t.equal(first.status.code, S.OK, 'the first call takes the one token');
    const second = await within(c.unary({ id: 'rl-2', payload: 'x' }), 'status');
    t.equal(second.status.code, S.RESOURCE_EXHAUSTED, 'RESOURCE_EXHAUSTED (8)');
    t.match(second.status.details, /ERR_RATE_LIMITED/);
    t.equal(app.calls('Echo'), 1, 'only the first reached the server');
  });

  t.test('an inbound that speaks HTTP/1.1 to its app: UNIMPLEMENTED', async (t) => {
    const pl = await pipeline(t, { sign: false });
    const r = await within(grpcClient(t, pl.outbound.addr).unary({ id: 'h1', payload: 'x' }), 'status');
    t.equal(r.status.code, S.UNIMPLEMENTED, 'UNIMPLEMENTED (12)');
    t.match(r.status.details, /ERR_GRPC_NEEDS_HTTP2/);
    t.equal(pl.app.requests(), 0, 'nothing reached the HTTP/1.1 app');
  });

  t.test('integrity on, the inbound does not know the signing key: UNAUTHENTICATED', async (t) => {
    const app = await startGrpcApp(t);
    const otherKeys = await tempDir(t);
    await writeKey(otherKeys, 'k9');
    const pl = await grpcPipeline(t, app, { inbound: { config: { keys: { dir: otherKeys } } } });
    const r = await within(grpcClient(t, pl.outbound.addr).unary({ id: 'unknown-key', payload: 'x' }), 'status');
    t.equal(r.status.code, S.UNAUTHENTICATED, 'UNAUTHENTICATED (16)');
    t.match(r.status.details, /ERR_SIG_UNKNOWN_KEY/);
    t.equal(app.calls('Echo'), 0, 'nothing reached the server');
    t.equal(await pl.inbound.metric('tollgate_signature_checks_total', { result: 'ok' }), 0, 'no signature passed');
  });
});
