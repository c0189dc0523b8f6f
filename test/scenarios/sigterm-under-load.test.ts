/**
 * SIGTERM under load (issue 14, item 3): producer → outbound → inbound → app, both sidecars
 * real `bin/tollgate.js run` processes. Each round runs load until the outbound holds a
 * connection to the inbound for every concurrent request, then stops the producer and sends
 * the inbound SIGTERM in the same tick; as soon as it has stopped listening, a new inbound
 * process starts on the same port for the next round while it drains (rounds alternate between
 * two configs, each with its own admin port and audit log, so two processes never share one).
 *
 * In flight, precisely (the definition): every request the outbound had written on a
 * connection it already held to the inbound, or that had reached the inbound, when the signal
 * was sent. The producer starts no request after the signal, so every request it had started
 * counts, except one the outbound dispatched only after the inbound had stopped listening and
 * sent to a new connection (undici's pool may pick a client whose connection was just closed by
 * a `Connection: close` answer over one still open): that connect is refused, the request never
 * left the outbound, and the outbound logs it as refused with a `connect ECONNREFUSED` error and
 * `retried: false`. Such requests are counted and reported, not failed on; every other request
 * must succeed, intact, once — including one whose connection was lost and that the outbound
 * sent again (`retried: true` if that failed too). The inbound must exit 0 (nothing in flight
 * cut) every round, and `tollgate audit verify` must accept both audit logs.
 *
 * The next round's load starts only once the draining process has closed the connections left
 * idle at its drain (it waits DRAIN_IDLE_QUIET_MS first, about as long as a new process takes to
 * start). Until then the outbound's pool still holds them, and a request written on one as the
 * inbound closes it is lost before any byte of it is read (the race HTTP/1.1 leaves open, RFC 9112
 * §9.6; a POST is not sent again, RFC 9110 §9.2.2). Such a request was never in flight at a
 * signal: without that wait the next round's first POSTs met this close now and then (502
 * ERR_UPSTREAM_UNAVAILABLE, `read ECONNRESET` or `the upstream closed the connection`).
 *
 * Before the fix, the drain closed connections whose next request sat unread in the TLS socket
 * or the kernel (node:http took them for idle): a few requests a round failed with 502
 * ERR_UPSTREAM_UNAVAILABLE (the outbound read a reset).
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, summary, type LoadResult } from '../helpers/pipeline.ts';
import { tempDir } from '../helpers/pki.ts';
import { exitWithin, freePort, startTollgate, tryConnect, type Running } from '../helpers/process.ts';
import { parsePrometheusText, sampleValue } from '../helpers/prometheusText.ts';
import { eventually } from '../helpers/world.ts';

const ROUNDS = 20;
const CONCURRENCY = 8;
const DRAIN_TIMEOUT_SECONDS = 10;

/** One inbound config: its own admin port and audit log, so a new process can start while the last one drains. */
interface Slot {
  readonly configFile: string;
  readonly adminUrl: string;
  readonly auditFile: string;
}

t.test(
  `${ROUNDS} SIGTERMs under load: no in-flight request fails, the inbound exits 0 each time, the audit logs verify`,
  async (t) => {
    const auditDir = await tempDir(t, 'tollgate-sigterm-audit-');
    const auditKey = join(auditDir, 'audit.key');
    await writeFile(auditKey, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    // a fixed port, so every new inbound process is where the outbound sends
    const port = await freePort();
    const pl = await pipeline(t, {
      inbound: {
        run: 'process',
        listener: { listen: `127.0.0.1:${port}` },
        config: {
          drainTimeoutSeconds: DRAIN_TIMEOUT_SECONDS,
          audit: { file: join(auditDir, 'audit-a.log'), keyFile: auditKey },
        },
      },
      outbound: { run: 'process' },
    });
    // rounds alternate between two configs: the next process starts (binding the port the last one
    // stopped listening on) while the last one drains, each appending to its own audit log
    const other = pl.inbound.config();
    const adminPort = await freePort();
    other.admin = { listen: `127.0.0.1:${adminPort}` };
    other.audit = { file: join(auditDir, 'audit-b.log'), keyFile: auditKey };
    const otherFile = join(auditDir, 'inbound-b.json');
    await writeFile(otherFile, JSON.stringify(other));
    const slots: Slot[] = [
      { configFile: pl.inbound.configFile, adminUrl: pl.inbound.adminUrl, auditFile: join(auditDir, 'audit-a.log') },
      { configFile: otherFile, adminUrl: `http://127.0.0.1:${adminPort}`, auditFile: join(auditDir, 'audit-b.log') },
    ];

    const activeConnections = async (slot: Slot): Promise<number> => {
      const res = await fetch(`${slot.adminUrl}/metrics`);
      return sampleValue(parsePrometheusText(await res.text()), 'tollgate_connections_active', { listener: 'ingest' });
    };

    // a draining process whose admin server is gone has closed every connection
    const heldConnections = (slot: Slot): Promise<number> => activeConnections(slot).catch(() => 0);

    // why the outbound answered 502 in this round: its log lines since the round began
    let seenLogs = 0;
    // every refusal line names its ERR_ code (an upstream failure's line says what failed instead of "request refused")
    const outboundRefusals = (): Array<Record<string, unknown>> =>
      pl.outbound
        .logs()
        .slice(seenLogs)
        .filter((l) => String(l.code).startsWith('ERR_'));
    const neverSent = (l: Record<string, unknown>): boolean =>
      String(l.err).startsWith('connect ECONNREFUSED') && l.retried === false;

    let inbound: Running = pl.inbound.process!;
    const totals = { sent: 0, ok: 0, failed: 0, neverSent: 0, corrupted: 0, duplicated: 0 };
    const failures: string[] = [];
    const exits: Array<Promise<number | null>> = [];
    for (let round = 0; round < ROUNDS; round++) {
      const slot = slots[round % 2]!;
      seenLogs = pl.outbound.logs().length;
      const run = pl.producer.load({ count: 100_000, concurrency: CONCURRENCY, maxMs: 20_000, bodyBytes: 1024 });
      // traffic flows, and the outbound holds a connection to the inbound for each concurrent request
      await eventually(() => run.progress().ok >= 2 * CONCURRENCY, 15_000, `round ${round}: load under way`);
      await eventually(
        async () => (await activeConnections(slot)) >= CONCURRENCY,
        15_000,
        `round ${round}: ${CONCURRENCY} connections to the inbound`,
      );

      run.stop();
      const draining = inbound;
      draining.kill('SIGTERM');
      exits.push(
        exitWithin(draining, (DRAIN_TIMEOUT_SECONDS + 10) * 1000, `inbound (round ${round})`).then((f) => f.code),
      );
      const r: LoadResult = await run;
      // each 502 the producer got was logged by the outbound first; the pipe may lag behind
      await eventually(
        () => outboundRefusals().length >= r.failed,
        5_000,
        `round ${round}: the outbound's refusal log lines`,
      );
      const excused = outboundRefusals().filter(neverSent).length;
      totals.sent += r.sent;
      totals.ok += r.ok;
      totals.failed += r.failed - excused;
      totals.neverSent += excused;
      totals.corrupted += r.corrupted;
      totals.duplicated += r.duplicated;
      if (r.failed - excused + r.corrupted + r.duplicated > 0) {
        const why = outboundRefusals().map((l) => [l.code, l.err, l.cause, l.retried]);
        failures.push(`round ${round}: ${summary(r)}; the outbound refused ${JSON.stringify(why)}`);
      }

      if (round < ROUNDS - 1) {
        // the draining process has let go of the port once a connect is refused
        await eventually(
          async () => (await tryConnect(port)) === 'ECONNREFUSED' || !draining.running(),
          15_000,
          `round ${round}: the port to be released`,
        );
        const next = slots[(round + 1) % 2]!;
        // the process before last used the same audit log: it must be gone
        if (round >= 1) await exits[round - 1];
        const p = startTollgate(t, ['run', '--config', next.configFile]);
        inbound = p;
        await eventually(
          () => p.logs().some((l) => l.msg === 'tollgate started') || !p.running(),
          15_000,
          `round ${round + 1}: the inbound to start`,
        );
        if (!p.running()) throw new Error(`the inbound did not start again: ${p.stderr()}`);
        // the next round's requests must not race the draining process closing its idle connections (see above)
        await eventually(
          async () => !draining.running() || (await heldConnections(slot)) === 0,
          15_000,
          `round ${round}: the draining inbound to close its idle connections`,
        );
      }
    }

    t.comment(`${ROUNDS} rounds: ${JSON.stringify(totals)}`);
    t.ok(totals.sent >= ROUNDS * 2 * CONCURRENCY, `load ran every round (${totals.sent} requests)`);
    t.same(failures, [], 'no request in flight at a SIGTERM failed, was corrupted or arrived twice');
    t.equal(
      totals.ok + totals.neverSent,
      totals.sent,
      'every request succeeded, but for those never sent to the inbound',
    );
    t.ok(
      totals.neverSent <= totals.sent / 10,
      `few were dispatched only after the inbound had stopped listening (${totals.neverSent})`,
    );
    t.same(
      await Promise.all(exits),
      Array(ROUNDS).fill(0),
      'the inbound exited 0 after every SIGTERM (nothing in flight was cut)',
    );

    for (const slot of slots) {
      const verify = startTollgate(t, ['audit', 'verify', slot.auditFile, '--key', auditKey]);
      const v = await exitWithin(verify, 15_000, 'tollgate audit verify');
      t.equal(v.code, 0, `tollgate audit verify accepts ${slot.auditFile} (${v.stdout.trim()} ${v.stderr.trim()})`);
    }
  },
);
