/**
 * Requests the HTTP parser refuses before the request path sees them get the same treatment as
 * any refusal: status, x-tollgate-error, JSON body, connection closed, one log line, one metric
 * increment, one audit event — and the app sees nothing.
 */
import t from 'tap';
import tls from 'node:tls';
import { PRODUCER } from './helpers/identities.ts';
import { world, startUpstream, startTestSidecar, eventually, type Test } from './helpers/world.ts';

async function setup(t: Test, limits: Record<string, unknown> = {}) {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: [PRODUCER] },
        limits,
      },
    ],
  });
  /** send raw bytes over mTLS and collect everything until the server closes */
  const raw = (bytes: string, stallAfter = false): Promise<string> =>
    new Promise((resolve, reject) => {
      const [host, port] = [sc.addr().split(':')[0]!, Number(sc.addr().split(':')[1])];
      const socket = tls.connect(
        { host, port, servername: 'localhost', ca: w.ca.certPem, cert: producer.certPem, key: producer.keyPem },
        () => {
          socket.write(bytes);
          if (!stallAfter) return;
        },
      );
      let got = '';
      socket.setEncoding('latin1');
      socket.on('data', (c: string) => (got += c));
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
      socket.setTimeout(15_000, () => socket.destroy(new Error('no answer')));
    });
  return { sc, app, raw };
}

async function accounted(t: Test, sc: Awaited<ReturnType<typeof setup>>['sc'], code: string): Promise<void> {
  await eventually(
    () => sc.logs.lines.some((l) => l.msg === 'request refused' && l.code === code),
    5000,
    `the ${code} log line`,
  );
  t.equal(sc.logs.lines.filter((l) => l.msg === 'request refused' && l.code === code).length, 1, 'one log line');
  t.equal(
    sc.logs.lines.filter((l) => l.audit === true && l.event === 'request_refused' && l.code === code).length,
    1,
    'one audit event',
  );
  t.equal(
    await sc.metric('tollgate_requests_total', { listener: 'ingest', status_class: '4xx' }),
    1,
    'one metric increment',
  );
}

t.test('a request head over maxHeaderBytes gets 431 ERR_HEADERS_TOO_LARGE with its accounting', async (t) => {
  const { sc, app, raw } = await setup(t, { maxHeaderBytes: 1024 });
  const answer = await raw(`GET / HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(4096)}\r\n\r\n`);
  t.match(answer, /^HTTP\/1\.1 431 /);
  t.match(answer, /x-tollgate-error: ERR_HEADERS_TOO_LARGE/);
  t.match(answer, /\{"error":"ERR_HEADERS_TOO_LARGE","message":"request head over the configured limit"\}$/);
  await accounted(t, sc, 'ERR_HEADERS_TOO_LARGE');
  t.equal(app.seen.length, 0);
});

t.test('a request that does not parse gets 400 ERR_BAD_REQUEST with its accounting', async (t) => {
  const { sc, app, raw } = await setup(t);
  const answer = await raw('THIS IS NOT HTTP\r\n\r\n');
  t.match(answer, /^HTTP\/1\.1 400 /);
  t.match(answer, /x-tollgate-error: ERR_BAD_REQUEST/);
  await accounted(t, sc, 'ERR_BAD_REQUEST');
  t.equal(app.seen.length, 0);
});

t.test(
  'a request head not finished in headersTimeoutSeconds gets 408 ERR_HEADERS_TIMEOUT with its accounting',
  async (t) => {
    const { sc, app, raw } = await setup(t, { headersTimeoutSeconds: 1 });
    const answer = await raw('GET / HTTP/1.1\r\nhost: x\r\n', true);
    t.match(answer, /^HTTP\/1\.1 408 /);
    t.match(answer, /x-tollgate-error: ERR_HEADERS_TIMEOUT/);
    await accounted(t, sc, 'ERR_HEADERS_TIMEOUT');
    t.equal(app.seen.length, 0);
  },
);
