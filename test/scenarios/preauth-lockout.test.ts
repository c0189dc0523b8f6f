/**
 * Scenario: pre-authentication lockout (issue 14, item 1). Silent TCP connections, no
 * certificate needed, used to fill maxConcurrentHandshakes for handshakeTimeoutSeconds and lock
 * every other client out. Now a connection that sends no ClientHello byte is closed at
 * clientHelloTimeoutSeconds, one address holds at most maxHandshakesPerSource slots, and at a
 * limit the oldest silent connection makes room for the new one.
 *
 * The attack, from a process of its own: 1,000 silent sockets from 127.0.0.1 and 200 from
 * 127.0.0.2…127.0.0.41, each opened again 1 to 3 s after the server closes it (bounded in
 * connects and time), while legitimate traffic runs: 100 requests producer → outbound → inbound
 * → app (the outbound connects from 127.0.0.1, the flood's address), and 100 requests straight
 * to the inbound from a client of its own address, each on a new connection (a new handshake).
 */
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import tls from 'node:tls';
import { request } from 'undici';
import { pipeline, summary, type Side } from '../helpers/pipeline.ts';
import { PRODUCER } from '../helpers/identities.ts';
import { eventually } from '../helpers/world.ts';
import { silentFlood } from '../helpers/silentFlood.ts';
import type { HandshakeRecord } from '../../src/telemetry/recentHandshakes.ts';

const FROM_ONE = 1_000;
const OTHER_ADDRESSES = 40;
const PER_OTHER = 5;
const LEGIT = 100;
/** the direct client's requests in flight at once, each on its own new connection */
const DIRECT_CONCURRENCY = 4;
/** the attack's budget: connects in all, and time */
const MAX_CONNECTS = 4_000;
const MAX_MS = 20_000;
/** the direct legitimate client's own address (the chain's outbound shares 127.0.0.1 with the flood) */
const LEGIT_ADDRESS = '127.0.0.250';
const WAIT_MS = 15_000;

/**
 * One request on a new mTLS connection from LEGIT_ADDRESS: the response head, or the error that
 * ended it. No retries (an HTTP client library may reconnect and hide a refused connection).
 */
function freshRequest(
  host: string,
  port: number,
  path: string,
  id: { ca: string; cert: string; key: string },
): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({
      socket: net.connect({ host, port, localAddress: LEGIT_ADDRESS }),
      servername: 'localhost',
      ...id,
    });
    let got = '';
    const done = (r: string): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('client-side wait expired'), 10_000);
    s.once('secureConnect', () => s.write(`GET ${path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n`));
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (got.includes('\r\n')) done(got);
    });
    s.once('error', (err: NodeJS.ErrnoException) => done(`error ${err.code ?? err.message}`));
    s.once('close', () => done(got === '' ? 'closed without an answer' : got));
  });
}

/** handshake failures of the inbound with this reason */
function failures(side: Side, reason: string): Promise<number> {
  return side.metric('tollgate_tls_handshakes_total', { listener: 'ingest', result: 'failure', reason });
}

function hostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
}

t.test(
  '1,200 silent sockets do not lock legitimate clients out: every request succeeds, the drops are handshake_cap and timeout',
  async (t) => {
    // the inbound in its own process, as it would be: the flood's client side is this process
    const pl = await pipeline(t, {
      sign: false,
      inbound: { run: 'process', limits: { clientHelloTimeoutSeconds: 1, maxConnections: 4096 } },
    });
    const inbound = pl.inbound;
    const { host, port } = hostPort(inbound.addr);
    const direct = await pl.w.identity('direct-producer', { spiffe: [PRODUCER] });

    const others = Array.from({ length: OTHER_ADDRESSES }, (_, i) => ({
      localAddress: `127.0.0.${i + 2}`,
      count: PER_OTHER,
    }));
    const sources = [{ localAddress: '127.0.0.1', count: FROM_ONE }, ...others];
    const attack = await silentFlood(t, { host, port, sources, maxConnects: MAX_CONNECTS, maxMs: MAX_MS });
    // the lockout as it was: the cap full of silent connections, and more arriving
    const total = FROM_ONE + OTHER_ADDRESSES * PER_OTHER;
    await eventually(() => attack.stats().open >= FROM_ONE / 2, WAIT_MS, 'the flood to connect');
    await eventually(async () => (await failures(inbound, 'handshake_cap')) > 0, WAIT_MS, 'the cap reached');

    // legitimate traffic while the flood goes on: through the chain, and straight to the inbound
    // on a new connection (a new handshake) each
    const chain = pl.producer.load({ count: LEGIT, concurrency: 4, maxMs: 20_000, method: 'POST', bodyBytes: 512 });
    let directOk = 0;
    let next = 0;
    const directFailures: string[] = [];
    const client = async (): Promise<void> => {
      while (next < LEGIT) {
        const i = next++;
        const answer = await freshRequest(host, port, `/direct/${i}`, {
          ca: pl.w.ca.certPem,
          cert: direct.certPem,
          key: direct.keyPem,
        });
        if (answer.startsWith('HTTP/1.1 200 ')) directOk++;
        else directFailures.push(`${i}: ${answer.slice(0, 60)}`);
      }
    };
    await Promise.all(Array.from({ length: DIRECT_CONCURRENCY }, client));
    const r = await chain;
    // the ClientHello deadline (1 s here) has closed silent connections by now, or will shortly
    await eventually(async () => (await failures(inbound, 'timeout')) > 0, WAIT_MS, 'a ClientHello deadline close');
    // read before the flood stops: a client closing its own silent socket is a failure of its own (other)
    const other = await failures(inbound, 'other');
    const failedLines = inbound.logs().filter((l) => l.msg === 'TLS handshake failed');
    const end = await attack.stop();

    t.equal(
      directOk,
      LEGIT,
      `all ${LEGIT} direct requests, each a new handshake, succeed (${directFailures.slice(0, 5).join(', ')})`,
    );
    t.same({ ok: r.ok, failed: r.failed, corrupted: r.corrupted }, { ok: LEGIT, failed: 0, corrupted: 0 }, summary(r));
    const flood = `${end.connects} connects, ${end.closedByServer} closed by the server, ${end.open} open at the end`;
    t.ok(end.connects > total, `the flood kept reconnecting (${flood})`);

    // what it looks like to an operator
    const cap = await failures(inbound, 'handshake_cap');
    const timeouts = await failures(inbound, 'timeout');
    t.ok(cap > 0, `drops by the cap are handshake_cap (${cap})`);
    t.equal(other, 0, 'none of them is "other"');
    t.ok(timeouts > 0, `ClientHello deadline closes are timeout (${timeouts})`);
    const served = await inbound.metric('tollgate_tls_handshakes_total', { result: 'success' });
    t.ok(served >= LEGIT + 1, `every legitimate handshake completed (${served})`);

    const res = await request(`${inbound.adminUrl}/handshakes/recent`);
    const { entries } = (await res.body.json()) as { entries: HandshakeRecord[] };
    const byCode = (code: string): HandshakeRecord[] => entries.filter((e) => e.code === code);
    const capEntries = entries.filter((e) => e.reason === 'handshake_cap');
    t.ok(
      capEntries.length > 0 && capEntries.length <= 12,
      `the cap's drops are a few aggregated entries (${capEntries.length}), not one per socket`,
    );
    t.ok(
      capEntries.every((e) => e.kind === 'handshake_failure' && (e.code ?? '').startsWith('HANDSHAKE_CAP')),
      'each with a HANDSHAKE_CAP… code',
    );
    // each entry's count is its window's share of the metric: with the ring far from full, they add up to it
    const sum = (xs: HandshakeRecord[]): number => xs.reduce((n, e) => n + e.count, 0);
    t.equal(
      sum(capEntries),
      await failures(inbound, 'handshake_cap'),
      'the entries count every drop the metric counts',
    );
    t.ok(byCode('HANDSHAKE_CAP_EVICTED').length > 0, 'silent connections were closed to make room');
    t.match(
      byCode('CLIENT_HELLO_TIMEOUT')[0],
      { reason: 'timeout', kind: 'handshake_failure', remote: /^127\.0\.0\.\d+:\d+$/ },
      'the deadline has its entry',
    );
    const capLines = inbound
      .logs()
      .filter((l) => l.audit !== true && typeof l.code === 'string' && l.code.startsWith('HANDSHAKE_CAP'));
    // per code (3) and 10 s window: the first drop at once, the rest at the window's end
    t.ok(
      capLines.length > 0 && capLines.length <= 3 * 2 * 3,
      `the drops are logged, rate-limited (${capLines.length} lines)`,
    );
    t.same(failedLines, [], 'and not once per socket as handshake failures');
    t.equal(pl.app.requests(), 2 * LEGIT, 'the app saw exactly the legitimate requests');
  },
);

t.test(
  'a silent connection is closed at clientHelloTimeoutSeconds, long before handshakeTimeoutSeconds, and counted as timeout',
  async (t) => {
    const pl = await pipeline(t, {
      sign: false,
      inbound: { limits: { clientHelloTimeoutSeconds: 1, handshakeTimeoutSeconds: 30 } },
    });
    const inbound = pl.inbound;
    const connect = async (): Promise<net.Socket> => {
      const c = net.connect(hostPort(inbound.addr));
      c.on('error', () => undefined);
      t.teardown(() => c.destroy());
      await once(c, 'connect');
      return c;
    };
    const helloLines = (): Array<Record<string, unknown>> =>
      inbound.logs().filter((l) => l.code === 'CLIENT_HELLO_TIMEOUT' && l.audit !== true);

    const silent = await connect();
    const connectedAt = performance.now();
    await once(silent, 'close', { signal: AbortSignal.timeout(WAIT_MS) });
    t.ok(performance.now() - connectedAt >= 950, 'it was given its second');
    await eventually(async () => (await failures(inbound, 'timeout')) === 1, WAIT_MS, 'the timeout counted');
    t.match(helloLines()[0], { msg: 'connections closed: no TLS ClientHello in time', dropped: 1, level: 40 });

    // one byte of a ClientHello is enough to be given the whole handshake timeout: a talker and a
    // silent one connect together; once the silent one is closed, the talker's deadline has passed too
    const talker = await connect();
    talker.write(Buffer.from([0x16]));
    const quiet = await connect();
    await once(quiet, 'close', { signal: AbortSignal.timeout(WAIT_MS) });
    t.notOk(talker.destroyed, 'a connection that spoke is not closed by the ClientHello deadline');
    await eventually(async () => (await failures(inbound, 'timeout')) === 2, WAIT_MS, 'the second silent one counted');
    t.equal(helloLines().length, 1, 'logged once in its 10 s window');
  },
);
