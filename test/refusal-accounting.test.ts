import t from 'tap';
import tls from 'node:tls';
import { world, startUpstream, startTestSidecar, mtlsClient } from './helpers/world.ts';

/** Bad input: a stable code, the right status, one log line, one metric, one audit event. */
t.test('a body over maxBodyBytes is refused with one log line, one metric and one audit event', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const producer = await w.identity('producer', { spiffe: ['spiffe://example.org/producer'] });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: ['spiffe://example.org/producer'] },
        limits: { maxBodyBytes: 1024 },
      },
    ],
  });
  const client = mtlsClient(t, sc.addr(), w.ca, producer);
  const res = await client.request({ path: '/events', method: 'POST', body: Buffer.alloc(2048, 1) });
  t.equal(res.statusCode, 413);
  t.equal(res.headers['x-tollgate-error'], 'ERR_PAYLOAD_TOO_LARGE');
  t.same(await res.body.json(), { error: 'ERR_PAYLOAD_TOO_LARGE', message: 'body over the configured limit' });
  t.equal(app.seen.length, 0, 'nothing went upstream');

  const warnings = sc.logs.lines.filter((l) => l.msg === 'request refused' && l.code === 'ERR_PAYLOAD_TOO_LARGE');
  t.equal(warnings.length, 1, 'one log line');
  const audits = sc.logs.lines.filter((l) => l.audit === true && l.event === 'request_refused');
  t.equal(audits.length, 1, 'one audit event');
  t.equal(audits[0]?.code, 'ERR_PAYLOAD_TOO_LARGE');
  t.equal(audits[0]?.peer, 'spiffe://example.org/producer');
  t.equal(
    await sc.metric('tollgate_requests_total', { listener: 'ingest', status_class: '4xx' }),
    1,
    'one metric increment',
  );
  t.equal(await sc.metric('tollgate_audit_events_total', { type: 'request_refused' }), 1);
});

t.test('a not-allowed peer is audited once per connection, not once per request', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const intruder = await w.identity('intruder', { spiffe: ['spiffe://example.org/intruder'] });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: ['spiffe://example.org/producer'] },
      },
    ],
  });
  // a denied peer's connection is closed after one answer, so several requests share it only when pipelined
  const requests = ['/a', '/b', '/c'].map((path) => `GET ${path} HTTP/1.1\r\nhost: localhost\r\n\r\n`).join('');
  const first = await exchange(sc.addr(), w.ca, intruder, requests);
  t.match(first, /^HTTP\/1\.1 403 /, 'the first request is answered 403');
  t.match(first, /\r\nx-tollgate-error: ERR_PEER_NOT_ALLOWED\r\n/i);
  t.match(first, /\r\nconnection: close\r\n/i, 'a denied peer is not kept connected');
  t.equal(first.match(/^HTTP\/1\.1 /gm)?.length, 1, 'and the connection closed after that one answer');
  const audits = (): Array<Record<string, unknown>> =>
    sc.logs.lines.filter((l) => l.audit === true && l.event === 'authz_deny');
  t.equal(audits().length, 1, 'three requests on one connection: one audit event');
  t.equal(audits()[0]?.peer, 'spiffe://example.org/intruder');
  t.equal(await sc.metric('tollgate_authz_decisions_total', { decision: 'deny' }), 1, 'one deny decision');
  t.equal(
    await sc.metric('tollgate_audit_events_total', { type: 'request_refused' }),
    0,
    'the requests themselves are not audited again',
  );

  // the count follows connections: a second connection is a second event
  await exchange(sc.addr(), w.ca, intruder, requests);
  t.equal(audits().length, 2, 'a second connection: a second audit event');
  t.equal(await sc.metric('tollgate_authz_decisions_total', { decision: 'deny' }), 2);
  t.equal(app.seen.length, 0, 'nothing went upstream');
});

/** Open one mTLS connection, write `data` in one go, and return everything read until the server closes it. */
function exchange(
  addr: string,
  ca: { certPem: string },
  id: { certPem: string; keyPem: string },
  data: string,
): Promise<string> {
  const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
  return new Promise((resolve, reject) => {
    const options = {
      host: '127.0.0.1',
      port,
      ca: ca.certPem,
      cert: id.certPem,
      key: id.keyPem,
      servername: 'localhost',
    };
    const socket = tls.connect(options, () => socket.write(data));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => (text += c));
    socket.on('error', reject);
    socket.on('close', () => resolve(text));
    socket.setTimeout(10_000, () => socket.destroy(new Error('the server did not close the connection')));
  });
}
