import t from 'tap';
import { world, startUpstream, startTestSidecar, mtlsClient } from './helpers/world.ts';

/** Bad input: a stable code, the right status, one log line, one metric, one audit event. */
t.test('a body over maxBodyBytes is refused with one log line, one metric and one audit event', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const producer = await w.identity('producer', { spiffe: ['spiffe://example.org/producer'] });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: ['spiffe://example.org/producer'] }, limits: { maxBodyBytes: 1024 } }],
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
  t.equal(await sc.metric('tollgate_requests_total', { listener: 'ingest', status_class: '4xx' }), 1, 'one metric increment');
  t.equal(await sc.metric('tollgate_audit_events_total', { type: 'request_refused' }), 1);
});

t.test('a not-allowed peer is audited once per connection, not once per request', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const intruder = await w.identity('intruder', { spiffe: ['spiffe://example.org/intruder'] });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: ['spiffe://example.org/producer'] } }],
  });
  const client = mtlsClient(t, sc.addr(), w.ca, intruder);
  const first = await client.request({ path: '/a', method: 'GET' });
  t.equal(first.statusCode, 403);
  t.equal(first.headers.connection, 'close', 'a denied peer is not kept connected');
  await first.body.dump();
  const audits = sc.logs.lines.filter((l) => l.audit === true && l.event === 'authz_deny');
  t.equal(audits.length, 1);
  t.equal(audits[0]?.peer, 'spiffe://example.org/intruder');
  t.equal(await sc.metric('tollgate_authz_decisions_total', { decision: 'deny' }), 1);
});
