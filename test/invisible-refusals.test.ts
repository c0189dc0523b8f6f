/**
 * Refusals that used to leave no trace, or the wrong one (issue 14, item 5), checked on real
 * sockets through what an operator reads: the scraped /metrics, /handshakes/recent, the log.
 *
 * - connections Node drops at limits.maxConnections are counted
 *   (tollgate_connections_dropped_total{reason="max_connections"}, at 0 from the start), logged
 *   rate-limited, audited and kept as one aggregated entry, on inbound and outbound listeners;
 * - with a CRL configured, an untrusted chain is unknown_ca (OpenSSL says UNABLE_TO_GET_CRL) and
 *   a chain signed by a leaf is bad_certificate (UNSPECIFIED), while a revoked client stays cert_revoked;
 * - one Kubernetes `..data` swap is one reload outcome, not success plus unchanged.
 */
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { writeFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { makeCa, makeCrl, makeLeaf } from './helpers/pki.ts';
import { INGEST, PRODUCER } from './helpers/identities.ts';
import { parsePrometheusText, sampleValue, type MetricFamily } from './helpers/prometheusText.ts';
import { secretVolume } from './helpers/secretVolume.ts';
import { eventually, startTestSidecar, startUpstream, world, type Test, type TestSidecar } from './helpers/world.ts';
import type { HandshakeRecord } from '../src/telemetry/recentHandshakes.ts';

const WAIT_MS = 10_000;
const DROPPED = 'tollgate_connections_dropped_total';

async function scrape(sc: TestSidecar): Promise<MetricFamily[]> {
  const res = await request(`http://127.0.0.1:${sc.admin!.port}/metrics`);
  return parsePrometheusText(await res.body.text());
}

async function recent(sc: TestSidecar): Promise<HandshakeRecord[]> {
  const res = await request(`http://127.0.0.1:${sc.admin!.port}/handshakes/recent`);
  return ((await res.body.json()) as { entries: HandshakeRecord[] }).entries;
}

function portOf(addr: string): number {
  return Number(addr.slice(addr.lastIndexOf(':') + 1));
}

/** a TCP connection that is accepted and says nothing (held open by the test) */
async function holder(t: Test, port: number): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  await once(s, 'connect');
  return s;
}

/** a connection beyond maxConnections: Node accepts it and closes it at once */
async function refusedConnect(t: Test, port: number): Promise<void> {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  await once(s, 'close', { signal: AbortSignal.timeout(WAIT_MS) });
}

t.test(
  'connections dropped at maxConnections are counted from 0, logged once per window, audited and kept as one entry (inbound and outbound)',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest', { spiffe: [INGEST] });
    const app = await startUpstream(t);
    // silent holders must not be closed by the ClientHello deadline while the test runs
    const limits = { maxConnections: 2, clientHelloTimeoutSeconds: 60, handshakeTimeoutSeconds: 60 };
    const sc = await startTestSidecar(t, w.dir, {
      admin: { listen: '127.0.0.1:0' },
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
        {
          name: 'to-app',
          mode: 'outbound',
          listen: '127.0.0.1:0',
          target: '127.0.0.1:9',
          serverName: 'localhost',
          limits,
        },
      ],
    });
    const before = await scrape(sc);
    for (const listener of ['ingest', 'to-app']) {
      const atZero = (s: MetricFamily['samples'][number]): boolean =>
        s.name === DROPPED && s.labels.listener === listener && s.labels.reason === 'max_connections' && s.value === 0;
      const zero = before.some((f) => f.samples.some(atZero));
      t.ok(zero, `${listener}: the series exists at 0 from the start`);
    }

    for (const i of [0, 1]) {
      const port = portOf(sc.addr(i));
      await holder(t, port);
      await holder(t, port);
      for (let k = 0; k < 3; k++) await refusedConnect(t, port);
    }
    await eventually(
      async () => sampleValue(await scrape(sc), DROPPED, { reason: 'max_connections' }) === 6,
      WAIT_MS,
      'six drops counted',
    );
    const after = await scrape(sc);
    t.equal(
      sampleValue(after, DROPPED, { listener: 'ingest', reason: 'max_connections' }),
      3,
      'inbound: each drop counted',
    );
    t.equal(
      sampleValue(after, DROPPED, { listener: 'to-app', reason: 'max_connections' }),
      3,
      'outbound: each drop counted',
    );
    t.equal(
      sampleValue(after, 'tollgate_tls_handshakes_total', { result: 'failure' }),
      0,
      'not handshake failures: no handshake was tried',
    );

    const entries = (await recent(sc)).filter((e) => e.kind === 'connection_dropped');
    t.equal(entries.length, 2, 'one entry per listener, not one per connection');
    for (const listener of ['ingest', 'to-app']) {
      const entry = entries.find((e) => e.listener === listener);
      t.match(
        entry,
        { side: 'server', reason: null, code: 'MAX_CONNECTIONS', count: 3, remote: /^127\.0\.0\.1:\d+$/ },
        `${listener}: aggregated with its count`,
      );
    }
    const lines = sc.logs.lines.filter((l) => l.msg === 'connections dropped at accept: maxConnections open');
    t.equal(lines.length, 2, 'one log line per listener in the window');
    t.match(lines[0], { level: 40, code: 'MAX_CONNECTIONS', dropped: 1, max: 2 });
    const audits = sc.logs.lines.filter((l) => l.audit === true && l.event === 'connection_dropped');
    t.match(
      audits,
      [
        { reason: 'max_connections', dropped: 1 },
        { reason: 'max_connections', dropped: 1 },
      ],
      'audited once per listener in the window',
    );
    t.equal(sampleValue(after, 'tollgate_audit_events_total', { type: 'connection_dropped' }), 2);
  },
);

/** One mTLS attempt with a given chain: resolves when the server has closed it. */
async function presenting(t: Test, port: number, caPem: string, chainPem: string, keyPem: string): Promise<void> {
  const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: caPem, cert: chainPem, key: keyPem });
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  // TLS 1.3: the client finishes first; the server's verdict arrives as the connection closing
  s.once('secureConnect', () => s.write('GET / HTTP/1.1\r\nhost: localhost\r\n\r\n'));
  await once(s, 'close', { signal: AbortSignal.timeout(WAIT_MS) });
}

t.test(
  'with a CRL: an untrusted chain is unknown_ca, a chain signed by a leaf is bad_certificate, a revoked client is still cert_revoked',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest', { spiffe: [INGEST] });
    const revoked = await w.identity('revoked', { spiffe: [PRODUCER] });
    const crlFile = join(w.dir, 'ca.crl');
    await writeFile(crlFile, await makeCrl(w.ca, { revoked: [revoked.leaf] }));
    const app = await startUpstream(t);
    const sc = await startTestSidecar(t, w.dir, {
      admin: { listen: '127.0.0.1:0' },
      identity: { ...ingest.files, crlFile },
      listeners: [
        { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
      ],
    });
    const port = portOf(sc.addr());

    // a whole chain from a CA we do not trust, its root included
    const foreignCa = await makeCa({ cn: 'someone else' });
    const foreign = await makeLeaf(foreignCa, { cn: 'foreign', spiffe: [PRODUCER] });
    await presenting(t, port, w.ca.certPem, foreign.certPem + foreignCa.certPem, foreign.keyPem);
    // a certificate signed by a leaf of our CA (not a CA), that leaf sent along
    const notACa = await makeLeaf(w.ca, { cn: 'not-a-ca' });
    const leafSigned = await makeLeaf(notACa, { cn: 'leaf-signed', spiffe: [PRODUCER] });
    await presenting(t, port, w.ca.certPem, leafSigned.certPem + notACa.certPem, leafSigned.keyPem);
    // the control: a real revocation is still told apart
    await presenting(t, port, w.ca.certPem, revoked.certPem, revoked.keyPem);

    let entries: HandshakeRecord[] = [];
    await eventually(async () => (entries = await recent(sc)).length === 3, WAIT_MS, 'three entries');
    t.match(
      entries,
      [
        { reason: 'unknown_ca', code: 'UNABLE_TO_GET_CRL' },
        { reason: 'bad_certificate', code: 'UNSPECIFIED' },
        { reason: 'cert_revoked', code: 'CERT_REVOKED' },
      ],
      'each with its reason, the exact code kept',
    );
    const m = await scrape(sc);
    t.equal(
      sampleValue(m, 'tollgate_tls_handshakes_total', { listener: 'ingest', result: 'failure', reason: 'unknown_ca' }),
      1,
    );
    t.equal(
      sampleValue(m, 'tollgate_tls_handshakes_total', {
        listener: 'ingest',
        result: 'failure',
        reason: 'bad_certificate',
      }),
      1,
    );
    t.equal(
      sampleValue(m, 'tollgate_tls_handshakes_total', {
        listener: 'ingest',
        result: 'failure',
        reason: 'cert_revoked',
      }),
      1,
    );
    t.equal(
      sampleValue(m, 'tollgate_tls_handshakes_total', { listener: 'ingest', result: 'failure', reason: 'other' }),
      0,
      'none is "other"',
    );
    t.equal(app.seen.length, 0, 'the app saw nothing');
  },
);

t.test('one Kubernetes ..data swap is one reload outcome: success, not success and unchanged', async (t) => {
  const w = await world(t);
  const a = await w.identity('ingest-a', { spiffe: [INGEST] });
  const b = await w.identity('ingest-b', { spiffe: [INGEST] });
  const vol = await secretVolume(join(w.dir, 'ingest-tls'), {
    'tls.crt': a.certPem,
    'tls.key': a.keyPem,
    'ca.crt': w.ca.certPem,
  });
  const app = await startUpstream(t);
  const sc = await startTestSidecar(
    t,
    w.dir,
    {
      admin: { listen: '127.0.0.1:0' },
      identity: { certFile: vol.path('tls.crt'), keyFile: vol.path('tls.key'), caFile: vol.path('ca.crt') },
      listeners: [
        { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
      ],
    },
    // a short debounce, so the swap's own events (new folder, rename, removal of the old folder) can land in separate reloads
    { identityTiming: { watchDebounceMs: 5 } },
  );
  const watchReloads = (): number =>
    sc.logs.lines.filter((l) => l.msg === 'certificates reloaded' && l.trigger === 'watch').length;

  await vol.update({ 'tls.crt': b.certPem, 'tls.key': b.keyPem, 'ca.crt': w.ca.certPem });
  await eventually(
    async () => sampleValue(await scrape(sc), 'tollgate_cert_reloads_total', { result: 'success' }) === 1,
    WAIT_MS,
    'the swap applied',
  );
  // one more event in the folder after the swap (as an editor's or the kubelet's leftovers would
  // make), so at least one reload that finds nothing new surely runs before we count
  const seen = watchReloads();
  await writeFile(join(vol.dir, '.probe'), 'x');
  await unlink(join(vol.dir, '.probe'));
  await eventually(() => watchReloads() > seen, WAIT_MS, 'a watch reload after the swap');
  await eventually(
    () => sc.logs.lines.some((l) => l.msg === 'certificates reloaded' && l.changed === false),
    WAIT_MS,
    'it found nothing new',
  );

  const m = await scrape(sc);
  t.equal(sampleValue(m, 'tollgate_cert_reloads_total', { result: 'success' }), 1, 'the swap: one success');
  t.equal(
    sampleValue(m, 'tollgate_cert_reloads_total', { result: 'unchanged' }),
    0,
    'and no unchanged for the same swap',
  );
  t.equal(sampleValue(m, 'tollgate_cert_reloads_total', { result: 'failure' }), 0);
  t.equal(sc.logs.lines.filter((l) => l.audit === true && l.event === 'reload').length, 1, 'one reload audit event');

  // asked for, a reload that finds nothing new is still answered and counted as unchanged
  t.match(await sc.reload('api'), { ok: true, changed: false });
  t.equal(
    sampleValue(await scrape(sc), 'tollgate_cert_reloads_total', { result: 'unchanged' }),
    1,
    'an API reload of the same files: unchanged',
  );
});

t.test(
  'clients that connect and leave without a byte are counted as other but logged once per window, not once each',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest', { spiffe: [INGEST] });
    const app = await startUpstream(t);
    const sc = await startTestSidecar(t, w.dir, {
      admin: { listen: '127.0.0.1:0' },
      identity: ingest.files,
      listeners: [
        { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
      ],
    });
    const port = portOf(sc.addr());
    for (let i = 0; i < 5; i++) {
      // what a load balancer's TCP health check or a port scan does
      const s = await holder(t, port);
      s.destroy();
    }
    await eventually(
      async () =>
        sampleValue(await scrape(sc), 'tollgate_tls_handshakes_total', { result: 'failure', reason: 'other' }) === 5,
      WAIT_MS,
      'five counted',
    );
    const entries = await recent(sc);
    t.equal(entries.length, 1, 'one entry');
    t.match(entries[0], { reason: 'other', code: 'CLOSED_BEFORE_CLIENT_HELLO', count: 5 });
    t.equal(sc.logs.lines.filter((l) => l.msg === 'TLS handshake failed').length, 0, 'no line per connection');
    t.match(
      sc.logs.lines.filter((l) => l.msg === 'connections closed by the client before sending a TLS ClientHello'),
      [{ level: 40, dropped: 1 }],
      'one line',
    );
  },
);
