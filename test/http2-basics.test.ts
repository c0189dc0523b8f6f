/**
 * HTTP/2 through the request path (issue 20): an h2c client (prior knowledge, as gRPC clients
 * speak) → outbound (signs) → h2 over mTLS (ALPN) → inbound (verifies) → the app over HTTP/1.1;
 * an HTTP/1.1 producer still goes over HTTP/1.1 end to end; ALPN h2 straight to the inbound
 * with a client certificate; a refusal on a stream answers that stream and leaves the others.
 */
import t from 'tap';
import http2 from 'node:http2';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { pipeline, ID_HEADER } from './helpers/pipeline.ts';
import { PRODUCER } from './helpers/identities.ts';
import { eventually, sha256, startTestSidecar, startUpstream, world, type Test } from './helpers/world.ts';

interface H2Answer {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
}

function h2request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer | null = null,
): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === null });
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    stream.on('response', (h) => (head = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    if (body !== null) stream.end(body);
  });
}

function h2c(t: Test, addr: string): http2.ClientHttp2Session {
  const session = http2.connect(`http://${addr}`);
  session.on('error', () => undefined);
  t.teardown(() => session.close());
  return session;
}

t.test('h2c from the app → outbound → h2 → inbound → the app over HTTP/1.1: signed, verified, intact', async (t) => {
  const pl = await pipeline(t);
  const session = h2c(t, pl.outbound.addr);
  const get = await h2request(session, { ':method': 'GET', ':path': '/v1/health?x=1' });
  t.equal(get.status, 200, 'a GET over h2c is answered');
  const body = randomBytes(40_000);
  const post = await h2request(
    session,
    { ':method': 'POST', ':path': '/v1/events', [ID_HEADER]: 'h2-post-1', 'content-type': 'application/octet-stream' },
    body,
  );
  t.equal(post.status, 200, 'a POST with a body of unknown length over h2c is answered');
  t.equal(sha256(post.body), sha256(body), 'the echoed body is intact');
  t.same(pl.app.digestsOf('h2-post-1'), [sha256(body)], 'the app received the body once, intact');
  t.equal(
    await pl.inbound.metric('tollgate_requests_total', { protocol: 'h2', status_class: '2xx' }),
    2,
    'the inbound counted both as HTTP/2 (the outbound sent them on as h2)',
  );
  t.equal(await pl.outbound.metric('tollgate_requests_total', { protocol: 'h2', status_class: '2xx' }), 2);
  t.equal(await pl.inbound.metric('tollgate_signature_checks_total', { result: 'ok' }), 2, 'each was verified');

  // many concurrent streams on one connection
  const many = await Promise.all(
    Array.from({ length: 50 }, (_, i) => h2request(session, { ':method': 'GET', ':path': `/n/${i}` })),
  );
  t.same(new Set(many.map((a) => a.status)), new Set([200]), '50 concurrent streams all answered');

  // an HTTP/1.1 producer still goes over HTTP/1.1 to the inbound
  const res = await pl.producer.request({ method: 'POST', path: '/h1', body: Buffer.from('hello') });
  t.equal(res.status, 200);
  t.equal(
    await pl.inbound.metric('tollgate_requests_total', { protocol: 'http/1.1', status_class: '2xx' }),
    1,
    'an HTTP/1.1 request stays HTTP/1.1 on its way',
  );
});

t.test('ALPN h2 straight to the inbound: verified mTLS, refusals per stream, the connection goes on', async (t) => {
  const pl = await pipeline(t, { sign: false });
  const leaf = pl.outbound.leaf();
  const session = http2.connect(`https://${pl.inbound.addr}`, {
    ca: pl.w.ca.certPem,
    cert: leaf.certPem,
    key: leaf.keyPem,
    servername: 'localhost',
  });
  session.on('error', () => undefined);
  t.teardown(() => session.close());
  const ok = await h2request(session, { ':method': 'GET', ':path': '/a' });
  t.equal(ok.status, 200);
  t.equal((session.socket as unknown as { alpnProtocol: string }).alpnProtocol, 'h2', 'h2 chosen by ALPN');
  // CONNECT over h2 is refused like over HTTP/1.1, on its stream only
  const connect = await h2request(session, { ':method': 'CONNECT', ':authority': 'evil.example:443' }).catch(
    (err: Error) => ({ status: -1, headers: {}, body: Buffer.from(err.message) }) as H2Answer,
  );
  t.equal(connect.status, 405, 'CONNECT: 405');
  t.match(connect.body.toString(), /ERR_METHOD_NOT_ALLOWED/);
  // a Host that names another authority than :authority is malformed
  const mismatch = await h2request(session, {
    ':method': 'GET',
    ':path': '/b',
    ':authority': 'localhost',
    host: 'other.example',
  });
  t.equal(mismatch.status, 400, 'Host ≠ :authority: 400');
  const again = await h2request(session, { ':method': 'GET', ':path': '/c' });
  t.equal(again.status, 200, 'the connection still serves other streams');
});

t.test('http2: false offers http/1.1 only', async (t) => {
  const pl = await pipeline(t, { sign: false, inbound: { listener: { http2: false } } });
  const leaf = pl.outbound.leaf();
  const session = http2.connect(`https://${pl.inbound.addr}`, {
    ca: pl.w.ca.certPem,
    cert: leaf.certPem,
    key: leaf.keyPem,
    servername: 'localhost',
  });
  const failed = await new Promise<Error>((resolve) => session.once('error', resolve));
  t.ok(failed, `an h2-only client cannot connect: ${failed.message}`);
  session.destroy();
});

/** A cleartext HTTP/2 app answering as a gRPC server does: a message, then trailers with grpc-status 0 and a custom one. */
async function startH2cApp(t: Test): Promise<{ addr: string; seen: http2.IncomingHttpHeaders[] }> {
  const seen: http2.IncomingHttpHeaders[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    seen.push(headers);
    stream.on('error', () => undefined);
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-trailer': 'kept' }));
      stream.end(Buffer.from([0, 0, 0, 0, 2, 0x68, 0x69]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { addr: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** a gRPC-shaped call: the answer's head, trailers and body */
function grpcCall(
  session: http2.ClientHttp2Session,
  path: string,
): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '5S',
    });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (h) => (trailers = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ headers, trailers, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

t.test(
  'a gateway route over h2c carries gRPC with its trailers; a route over HTTP/1.1 refuses it as a gRPC status',
  async (t) => {
    const w = await world(t);
    const edge = await w.identity('edge', { spiffe: ['spiffe://example.org/edge'], dns: ['localhost'] });
    const producer = await w.identity('producer', { spiffe: [PRODUCER] });
    const grpcApp = await startH2cApp(t);
    const web = await startUpstream(t);
    const sc = await startTestSidecar(t, w.dir, {
      identity: edge.files,
      listeners: [
        {
          name: 'edge',
          mode: 'gateway',
          listen: '127.0.0.1:0',
          allow: { spiffe: [PRODUCER] },
          routes: [
            { name: 'rpc', match: { pathPrefix: '/pkg.Svc' }, targets: [grpcApp.addr], targetProtocol: 'h2c' },
            { name: 'web', match: { pathPrefix: '/' }, targets: [web.addr] },
          ],
        },
      ],
    });
    const session = http2.connect(`https://${sc.addr()}`, {
      ca: w.ca.certPem,
      cert: producer.certPem,
      key: producer.keyPem,
      servername: 'localhost',
    });
    session.on('error', () => undefined);
    t.teardown(() => session.close());
    const ok = await grpcCall(session, '/pkg.Svc/Call');
    t.equal(ok.headers[':status'], 200);
    t.equal(ok.trailers['grpc-status'], '0', 'grpc-status arrives in trailers');
    t.equal(ok.trailers['x-trailer'], 'kept', 'other trailers pass too');
    t.same([...ok.body], [0, 0, 0, 0, 2, 0x68, 0x69], 'the message is intact');
    t.equal(grpcApp.seen[0]?.te, 'trailers', 'the app was told the client takes trailers');
    t.match(String(grpcApp.seen[0]?.['grpc-timeout']), /^\d+m$/, "the app got what is left of the call's deadline");
    t.equal(await sc.metric('tollgate_requests_total', { route: 'rpc', protocol: 'h2', status_class: '2xx' }), 1);

    const refused = await grpcCall(session, '/other.Svc/Call');
    t.equal(refused.headers[':status'], 200, 'a gRPC refusal is HTTP 200 …');
    t.equal(refused.headers['grpc-status'], '12', '… with UNIMPLEMENTED in a trailers-only answer');
    t.equal(refused.headers['grpc-message'], 'ERR_GRPC_NEEDS_HTTP2');
    t.equal(web.seen.length, 0, 'nothing reached the HTTP/1.1 app');
    t.equal(await sc.metric('tollgate_requests_total', { route: 'web', status_class: '5xx' }), 1, 'counted as a 502');
  },
);

t.test('a remote peer without h2: HTTP/2 requests go on over HTTP/1.1, gRPC is refused', async (t) => {
  const pl = await pipeline(t, { inbound: { listener: { http2: false } } });
  const session = h2c(t, pl.outbound.addr);
  const get = await h2request(session, { ':method': 'GET', ':path': '/fallback' });
  t.equal(get.status, 200, 'answered over HTTP/1.1 between the sidecars');
  t.equal(await pl.inbound.metric('tollgate_requests_total', { protocol: 'http/1.1', status_class: '2xx' }), 1);
  const call = await grpcCall(session, '/pkg.Svc/Call');
  t.equal(call.headers['grpc-status'], '12');
  t.equal(call.headers['grpc-message'], 'ERR_GRPC_NEEDS_HTTP2');
});

t.test('a drain sends GOAWAY and lets the streams in flight finish', async (t) => {
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const pl = await pipeline(t, {
    sign: false,
    app: (_req, res) => void held.then(() => res.end('finished')),
  });
  const leaf = pl.outbound.leaf();
  const session = http2.connect(`https://${pl.inbound.addr}`, {
    ca: pl.w.ca.certPem,
    cert: leaf.certPem,
    key: leaf.keyPem,
    servername: 'localhost',
  });
  session.on('error', () => undefined);
  const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
  const inFlight = h2request(session, { ':method': 'GET', ':path': '/slow' });
  await eventually(async () => (await pl.inbound.metric('tollgate_connections_active')) === 1, 5000, 'the connection');
  const stopped = pl.inbound.stop();
  t.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR, 'GOAWAY (NO_ERROR) as the drain begins');
  release();
  const answer = await inFlight;
  t.equal(answer.status, 200, 'the stream in flight was answered');
  t.equal(answer.body.toString(), 'finished');
  await stopped;
  t.equal(await pl.inbound.metric('tollgate_http2_goaways_total', { reason: 'drain' }), 1, 'counted');
});

t.test(
  'a connection without streams for the idle timeout gets GOAWAY and is counted idle; one with a stream is not',
  async (t) => {
    const pl = await pipeline(t, { sign: false, inbound: { limits: { idleTimeoutSeconds: 1 } } });
    const leaf = pl.outbound.leaf();
    const session = http2.connect(`https://${pl.inbound.addr}`, {
      ca: pl.w.ca.certPem,
      cert: leaf.certPem,
      key: leaf.keyPem,
      servername: 'localhost',
    });
    session.on('error', () => undefined);
    t.teardown(() => session.destroy());
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
    t.equal((await h2request(session, { ':method': 'GET', ':path': '/once' })).status, 200);
    t.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR, 'GOAWAY once idle');
    await eventually(
      async () => (await pl.inbound.metric('tollgate_http2_goaways_total', { reason: 'idle' })) === 1,
      5000,
      'the idle GOAWAY to be counted',
    );
  },
);

t.test('HTTP/2 on every thread of a process with workers: 2', async (t) => {
  const pl = await pipeline(t, { sign: false, inbound: { run: 'process', config: { workers: 2 } } });
  const leaf = pl.outbound.leaf();
  const statuses: number[] = [];
  // several connections, so the kernel hands some to each thread (SO_REUSEPORT)
  for (let c = 0; c < 8; c++) {
    const session = http2.connect(`https://${pl.inbound.addr}`, {
      ca: pl.w.ca.certPem,
      cert: leaf.certPem,
      key: leaf.keyPem,
      servername: 'localhost',
    });
    session.on('error', () => undefined);
    const answers = await Promise.all(
      Array.from({ length: 5 }, (_, i) => h2request(session, { ':method': 'GET', ':path': `/w/${c}/${i}` })),
    );
    statuses.push(...answers.map((a) => a.status));
    session.close();
  }
  t.same(new Set(statuses), new Set([200]), `${statuses.length} streams over 8 connections answered`);
  t.equal(
    await pl.inbound.metric('tollgate_requests_total', { protocol: 'h2', status_class: '2xx' }),
    40,
    'the merged scrape counts every thread',
  );
});

t.test(
  'with integrity on, a call whose client waits for answers before it half-closes ends DEADLINE_EXCEEDED (ERR_BODY_TIMEOUT)',
  async (t) => {
    const pl = await pipeline(t, { outbound: { limits: { bodyTimeoutSeconds: 1 } } });
    const session = h2c(t, pl.outbound.addr);
    const answer = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/pkg.Chat/Talk',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.on('response', resolve);
      stream.on('error', reject);
      // one message, then it waits for an answer before sending more (as an interactive bidi client does)
      stream.write(Buffer.from([0, 0, 0, 0, 1, 0x41]));
    });
    t.equal(answer['grpc-status'], '4', 'DEADLINE_EXCEEDED: the outbound cannot sign a stream that has not ended');
    t.equal(answer['grpc-message'], 'ERR_BODY_TIMEOUT');
    t.equal(pl.app.requests(), 0, 'nothing went on');
  },
);
