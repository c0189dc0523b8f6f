/**
 * HTTP/2 through the request path (issue 20): an h2c client (prior knowledge, as gRPC clients
 * speak) → outbound (signs) → h2 over mTLS (ALPN) → inbound (verifies) → the app over HTTP/1.1;
 * an HTTP/1.1 producer still goes over HTTP/1.1 end to end; ALPN h2 straight to the inbound
 * with a client certificate; a refusal on a stream answers that stream and leaves the others.
 */
import t from 'tap';
import http2 from 'node:http2';
import { randomBytes } from 'node:crypto';
import { pipeline, ID_HEADER } from './helpers/pipeline.ts';
import { sha256, type Test } from './helpers/world.ts';

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
