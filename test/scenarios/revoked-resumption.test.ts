/**
 * Scenario: a client whose certificate is revoked by a CRL reload tries to come back by
 * resuming a TLS session it got before (a TLS 1.3 PSK ticket, a TLS 1.2 session ticket, a
 * TLS 1.2 session id). It is refused, accounted as a revoked handshake, and nothing reaches the
 * app: counted where it arrives (app `request` events and connections), not from a metric.
 *
 * What tollgate does (tls/sessionBinding.ts, tls/revocation.ts): every session is bound to a
 * digest of the CA bundle, the CRLs and the allow-list (session id context and ticket keys), so
 * a change of any of them ends every earlier session on every thread; and every connection,
 * resumed or not, is checked against the current CRLs. A change of our own certificate only
 * keeps sessions resumable.
 */
import t from 'tap';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { makeCrl, makeLeaf, type Teardownable } from '../helpers/pki.ts';
import { startApp, type App } from '../helpers/pipeline.ts';
import { INGEST, PRODUCER } from '../helpers/identities.ts';
import { eventually, startTestSidecar, world, type Test, type TestSidecar, type World } from '../helpers/world.ts';
import { revocationKey, revocationKeyOf } from '../../src/tls/revocation.ts';
import { loadIdentity } from '../../src/certs/identityBundle.ts';
import { revokedToApply } from '../../src/certs/crl.ts';
import type { InboundListener } from '../../src/proxy/inboundListener.ts';
import type { Issued } from '../../src/certs/issue.ts';

const WAIT_MS = 10_000;
const NO_WATCH = { watchDebounceMs: 3_600_000 };
const LISTENER = 'ingest';
const VERSIONS = ['TLSv1.3', 'TLSv1.2'] as const;

interface Setup {
  readonly w: World;
  readonly app: App;
  readonly sc: TestSidecar;
  readonly files: { certFile: string; keyFile: string; caFile: string; crlFile: string };
  /** the client that gets revoked */
  readonly attacker: Issued;
  /** a client that stays good */
  readonly good: Issued;
  readonly server: Issued;
  readonly admin: string;
}

/** An inbound listener with a CRL (revoking nobody at first) in front of a counting app. */
async function setup(t: Teardownable, extra: Record<string, unknown> = {}): Promise<Setup> {
  const w = await world(t);
  const app = await startApp(t);
  const server = await makeLeaf(w.ca, { cn: 'ingest', spiffe: [INGEST] });
  const attacker = await makeLeaf(w.ca, { cn: 'producer-1', spiffe: [PRODUCER] });
  const good = await makeLeaf(w.ca, { cn: 'producer-2', spiffe: [PRODUCER] });
  const files = {
    certFile: join(w.dir, 'tls.crt'),
    keyFile: join(w.dir, 'tls.key'),
    caFile: join(w.dir, 'ca.crt'),
    crlFile: join(w.dir, 'ca.crl'),
  };
  await writeFile(files.certFile, server.certPem);
  await writeFile(files.keyFile, server.keyPem, { mode: 0o600 });
  await writeFile(files.caFile, w.ca.certPem);
  await writeFile(files.crlFile, await makeCrl(w.ca));
  const sc = await startTestSidecar(
    t,
    w.dir,
    {
      admin: { listen: '127.0.0.1:0' },
      identity: files,
      tls: { minVersion: 'TLSv1.2' },
      listeners: [
        { name: LISTENER, mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
      ],
      ...extra,
    },
    { identityTiming: NO_WATCH },
  );
  return { w, app, sc, files, attacker, good, server, admin: `http://127.0.0.1:${sc.admin!.port}` };
}

interface Attempt {
  /** the client finished its side of the handshake (in TLS 1.3 that is before the server has checked the client) */
  readonly connected: boolean;
  readonly reused: boolean;
  /** the HTTP status of the answer, or null when none came */
  readonly status: number | null;
  readonly error: string | null;
  /** the last session (ticket) the server handed out on this connection */
  readonly session: Buffer | null;
}

/** One fresh mTLS connection as `client`, resuming `session` if given, sending one request (Connection: close). */
function attempt(
  s: Setup,
  client: Issued,
  version: (typeof VERSIONS)[number],
  path: string,
  session: Buffer | null = null,
): Promise<Attempt> {
  return new Promise((resolve) => {
    let connected = false;
    let reused = false;
    let last: Buffer | null = null;
    let data = '';
    let error: string | null = null;
    const socket = tls.connect({
      host: '127.0.0.1',
      port: s.sc.listeners[0]!.address().port,
      servername: 'localhost',
      ca: s.w.ca.certPem,
      cert: client.certPem,
      key: client.keyPem,
      minVersion: version,
      maxVersion: version,
      ...(session === null ? {} : { session }),
    });
    socket.setTimeout(WAIT_MS, () => socket.destroy(new Error('timeout')));
    socket.on('session', (b: Buffer) => (last = b));
    socket.once('secureConnect', () => {
      connected = true;
      reused = socket.isSessionReused();
      socket.write(`GET ${path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n`);
    });
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => (data += c));
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
    socket.once('close', () => {
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(data);
      resolve({ connected, reused, status: m === null ? null : Number(m[1]), error, session: last });
    });
  });
}

/** A first connection that is served and leaves a session to resume. */
async function sessionOf(
  t: Test,
  s: Setup,
  client: Issued,
  version: (typeof VERSIONS)[number],
  path: string,
): Promise<Buffer> {
  const first = await attempt(s, client, version, path);
  t.equal(first.status, 200, `${version}: ${path} is served`);
  t.ok(first.session !== null, `${version}: the server handed out a session`);
  return first.session!;
}

function revokedFailures(s: Setup): Promise<number> {
  return s.sc.metric('tollgate_tls_handshakes_total', {
    listener: LISTENER,
    result: 'failure',
    reason: 'cert_revoked',
  });
}

t.test(
  'a session from before a CRL reload does not let the revoked client back in (TLS 1.3 and TLS 1.2 tickets)',
  async (t) => {
    const s = await setup(t);
    for (const version of VERSIONS) {
      // sessions taken before the revocation, by the client to be revoked and by one that stays good
      const stolen = await sessionOf(t, s, s.attacker, version, `/before/${version}`);
      const kept = await sessionOf(t, s, s.good, version, `/good-before/${version}`);
      const again = await attempt(s, s.attacker, version, `/resumed/${version}`, stolen);
      t.ok(
        again.reused && again.status === 200,
        `${version}: control: before the revocation the session resumes and is served`,
      );

      const revokedBefore = await revokedFailures(s);
      await writeFile(s.files.crlFile, await makeCrl(s.w.ca, { revoked: [s.attacker] }));
      t.match(await s.sc.reload('api'), { ok: true, changed: true }, `${version}: the CRL revoking the client loads`);
      const requests = s.app.requests();
      const connections = s.app.connections();

      const refused = await attempt(s, s.attacker, version, `/after/${version}`, stolen);
      t.equal(refused.reused, false, `${version}: the old session is not resumed`);
      t.equal(refused.status, null, `${version}: no answer (${refused.error ?? 'closed'})`);
      t.equal(s.app.requests(), requests, `${version}: no request reached the app`);
      t.equal(s.app.connections(), connections, `${version}: the app was not even dialled`);
      await eventually(
        async () => (await revokedFailures(s)) === revokedBefore + 1,
        WAIT_MS,
        `${version}: the refusal to be counted as cert_revoked`,
      );

      // the client that was not revoked: its old session is gone too (the trust changed), it is served after a full handshake
      const good = await attempt(s, s.good, version, `/good-after/${version}`, kept);
      t.equal(
        good.reused,
        false,
        `${version}: a session from before a CRL change is not resumed, even for a good client`,
      );
      t.equal(good.status, 200, `${version}: the good client is served after a full handshake`);
      const fresh = await attempt(s, s.good, version, `/good-fresh/${version}`, good.session);
      t.ok(fresh.reused && fresh.status === 200, `${version}: and its new session resumes`);
      // the next round revokes nobody again
      await writeFile(s.files.crlFile, await makeCrl(s.w.ca));
      t.match(await s.sc.reload('api'), { ok: true, changed: true });
    }
    t.same(s.app.peers().size, 1, 'every request the app got came from the producer identity');
    t.equal(s.app.requests(), 10, 'the app got exactly the requests that were served (5 per version)');
  },
);

t.test(
  'the refusal of a revoked client is accounted like a refused full handshake: metric, /handshakes/recent, log line, audit event',
  async (t) => {
    const s = await setup(t);
    const stolen = await sessionOf(t, s, s.attacker, 'TLSv1.3', '/before');
    await writeFile(s.files.crlFile, await makeCrl(s.w.ca, { revoked: [s.attacker] }));
    t.match(await s.sc.reload('api'), { ok: true, changed: true });
    const requests = s.app.requests();
    const refused = await attempt(s, s.attacker, 'TLSv1.3', '/after', stolen);
    t.equal(refused.status, null, 'refused');
    t.equal(s.app.requests(), requests, 'nothing reached the app');
    await eventually(async () => (await revokedFailures(s)) === 1, WAIT_MS, 'cert_revoked to be counted');
    t.equal(
      await s.sc.metric('tollgate_tls_handshakes_total', { listener: LISTENER, result: 'failure' }),
      1,
      'one failure, nothing else',
    );
    t.match(
      s.sc.logs.lines.filter((l) => l.msg === 'TLS handshake failed'),
      [{ reason: 'cert_revoked', code: 'CERT_REVOKED' }],
      'one log line',
    );
    const audited = s.sc.logs.lines.filter((l) => l.audit === true && l.event === 'handshake_failure');
    t.match(audited, [{ listener: LISTENER, reason: 'cert_revoked', code: 'CERT_REVOKED' }], 'one audit event');
    const recent = (await (await request(`${s.admin}/handshakes/recent`)).body.json()) as {
      entries: Array<Record<string, unknown>>;
    };
    const failed = recent.entries.filter((e) => e.kind === 'handshake_failure');
    t.match(
      failed,
      [{ listener: LISTENER, reason: 'cert_revoked', code: 'CERT_REVOKED' }],
      'one /handshakes/recent entry',
    );
  },
);

t.test(
  'defence in depth: a resumed session is checked against the current revoked serials even if its keys still open it',
  async (t) => {
    // The ticket keys and session id context follow the CRL files, so in practice a resumption
    // after a CRL change is a full handshake that OpenSSL refuses. To see the per-connection check
    // alone, the listener gets material whose CRL bytes did not change (so the session still
    // resumes) but whose revoked set names the client: only that check can refuse it.
    const s = await setup(t);
    // the revoked set as a reload builds it, from a real CRL: keyed as a peer certificate is looked up
    const crlFile = join(s.w.dir, 'revoking.crl');
    await writeFile(crlFile, await makeCrl(s.w.ca, { revoked: [s.attacker] }));
    const loaded = await loadIdentity({ ...s.files, crlFile }, new Date());
    if (!loaded.ok) throw new Error(loaded.problems.join('; '));
    const revoked = revokedToApply(loaded.bundle.crls, 'warn', new Date());
    t.ok(
      revoked.has(revocationKeyOf(new X509Certificate(s.attacker.certPem))),
      'the set built from the CRL names the revoked certificate',
    );
    t.notOk(
      revoked.has(revocationKeyOf(new X509Certificate(s.good.certPem))),
      'and not another one of the same identity',
    );
    t.equal(
      revocationKey('CN=ca', '00ab12'),
      revocationKey('CN=ca', 'AB12'),
      'serials compare as numbers (case, a leading 00)',
    );

    const listener = s.sc.listener(LISTENER) as InboundListener;
    const material = {
      certPem: Buffer.from(s.server.certPem),
      keyPem: Buffer.from(s.server.keyPem),
      caPem: Buffer.from(s.w.ca.certPem),
      crls: [Buffer.from(await makeCrl(s.w.ca))],
      revoked: new Set<string>(),
    };
    listener.setTlsMaterial(material);
    for (const version of VERSIONS) {
      listener.setTlsMaterial({ ...material, revoked: new Set<string>() });
      const stolen = await sessionOf(t, s, s.attacker, version, `/before/${version}`);
      const failures = await revokedFailures(s);
      listener.setTlsMaterial({ ...material, revoked });
      const requests = s.app.requests();
      const connections = s.app.connections();
      const refused = await attempt(s, s.attacker, version, `/after/${version}`, stolen);
      t.ok(refused.connected && refused.reused, `${version}: the session did resume (the TLS layer let the client in)`);
      t.equal(refused.status, null, `${version}: but no answer came (${refused.error ?? 'closed'})`);
      t.equal(s.app.requests(), requests, `${version}: no request reached the app`);
      t.equal(s.app.connections(), connections, `${version}: the app was not dialled`);
      await eventually(
        async () => (await revokedFailures(s)) === failures + 1,
        WAIT_MS,
        `${version}: counted as cert_revoked`,
      );
      const line = s.sc.logs.lines.filter((l) => l.msg === 'TLS handshake failed').at(-1);
      t.match(
        line,
        { reason: 'cert_revoked', code: 'CERT_REVOKED', resumed: true, peer: PRODUCER },
        `${version}: logged as a revoked resumed session`,
      );
      const audited = s.sc.logs.lines.filter((l) => l.audit === true && l.event === 'handshake_failure').at(-1);
      t.match(
        audited,
        { listener: LISTENER, reason: 'cert_revoked', code: 'CERT_REVOKED', resumed: true },
        `${version}: audited`,
      );
      const recent = (await (await request(`${s.admin}/handshakes/recent`)).body.json()) as {
        entries: Array<Record<string, unknown>>;
      };
      const entry = {
        kind: 'handshake_failure',
        reason: 'cert_revoked',
        code: 'CERT_REVOKED',
        tlsVersion: version,
        detail: /resumed session/,
      };
      t.match(
        recent.entries.at(-1),
        { ...entry, peer: { spiffe: PRODUCER } },
        `${version}: listed in /handshakes/recent`,
      );
      const good = await attempt(s, s.good, version, `/good/${version}`);
      t.equal(good.status, 200, `${version}: another certificate of the same identity is still served`);
    }
  },
);

t.test('a client taken off the allow-list cannot resume its session', async (t) => {
  const s = await setup(t);
  const listener = s.sc.listener(LISTENER) as InboundListener;
  for (const version of VERSIONS) {
    listener.setAllow({ spiffe: [PRODUCER], dns: [], cn: [], spkiPins: [], any: false });
    const stolen = await sessionOf(t, s, s.attacker, version, `/before/${version}`);
    listener.setAllow({ spiffe: ['spiffe://example.org/someone-else'], dns: [], cn: [], spkiPins: [], any: false });
    const requests = s.app.requests();
    const refused = await attempt(s, s.attacker, version, `/after/${version}`, stolen);
    t.equal(
      refused.reused,
      false,
      `${version}: the session is not resumed (the allow-list is part of what sessions are bound to)`,
    );
    t.equal(refused.status, 403, `${version}: 403 ERR_PEER_NOT_ALLOWED`);
    t.equal(s.app.requests(), requests, `${version}: no request reached the app`);
  }
  t.equal(
    await s.sc.metric('tollgate_authz_decisions_total', { listener: LISTENER, decision: 'deny' }),
    2,
    'two denials',
  );
});

t.test('a reload that changes only our own certificate keeps sessions resumable', async (t) => {
  const s = await setup(t);
  for (const version of VERSIONS) {
    const session = await sessionOf(t, s, s.good, version, `/before/${version}`);
    const renewed = await makeLeaf(s.w.ca, { cn: 'ingest', spiffe: [INGEST] });
    await writeFile(s.files.certFile, renewed.certPem);
    await writeFile(s.files.keyFile, renewed.keyPem, { mode: 0o600 });
    t.match(await s.sc.reload('api'), { ok: true, changed: true }, `${version}: the renewed certificate loads`);
    const again = await attempt(s, s.good, version, `/after/${version}`, session);
    t.ok(again.reused, `${version}: the session resumes across a renewal of our certificate`);
    t.equal(again.status, 200, `${version}: and is served`);
  }
});

t.test(
  'TLS 1.2 session ids are never resumed (Node keeps no server-side session cache), so only tickets need rotating',
  async (t) => {
    const s = await setup(t);
    const sessFile = join(s.w.dir, 'session.pem');
    const certFile = join(s.w.dir, 'producer.crt');
    const keyFile = join(s.w.dir, 'producer.key');
    await writeFile(certFile, s.good.certPem);
    await writeFile(keyFile, s.good.keyPem, { mode: 0o600 });
    const sClient = async (extra: string[]): Promise<string> => {
      const port = s.sc.listeners[0]!.address().port;
      const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-tls1_2'];
      args.push('-cert', certFile, '-key', keyFile, '-CAfile', s.files.caFile, ...extra);
      const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
      child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
      child.stdin.end('GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n');
      const timer = setTimeout(() => child.kill('SIGKILL'), WAIT_MS);
      await once(child, 'close');
      clearTimeout(timer);
      return out;
    };
    const first = await sClient(['-no_ticket', '-sess_out', sessFile]);
    t.match(
      first,
      /^New, TLSv1\.2, Cipher is ECDHE-/m,
      'the first connection is a full TLS 1.2 handshake without a ticket',
    );
    t.match(first, /Session-ID: [0-9A-F]{64}/, 'and the server gave a session id');
    const second = await sClient(['-no_ticket', '-sess_in', sessFile]);
    t.match(second, /^New, TLSv1\.2/m, 'offering that session id gets a full handshake, not a resumption');
    t.notMatch(second, /^Reused,/m);
    // control: the same client with tickets does resume, so "New" above is the session id path, not the client
    const ticketFile = join(s.w.dir, 'ticket.pem');
    await sClient(['-sess_out', ticketFile]);
    t.match(await sClient(['-sess_in', ticketFile]), /^Reused, TLSv1\.2/m, 'control: a TLS 1.2 ticket resumes');
  },
);

t.test(
  'with two threads, a CRL change ends every earlier session on both, and new sessions resume on both',
  async (t) => {
    const s = await setup(t, { workers: 2 });
    t.equal(s.sc.workers, 2);
    const version = 'TLSv1.3';
    const mainThread = (): Promise<number> =>
      s.sc.metric('tollgate_tls_handshakes_total', { listener: LISTENER, result: 'success' });

    /** resumes `session` on fresh connections until both threads took at least one (the kernel spreads them), at most 40 */
    async function acrossThreads(
      session: Buffer,
      path: string,
    ): Promise<{ reused: number; attempts: number; mainThread: number; served: number }> {
      const before = await mainThread();
      let reused = 0;
      let served = 0;
      let attempts = 0;
      for (; attempts < 40; attempts++) {
        const a = await attempt(s, s.good, version, `${path}/${attempts}`, session);
        if (a.reused) reused++;
        if (a.status === 200) served++;
        const onMain = (await mainThread()) - before;
        if (attempts >= 3 && onMain > 0 && onMain < attempts + 1) break;
      }
      return { reused, attempts: attempts + 1, mainThread: (await mainThread()) - before, served };
    }

    const first = await sessionOf(t, s, s.good, version, '/first');
    const before = await acrossThreads(first, '/before');
    t.ok(
      before.mainThread > 0 && before.mainThread < before.attempts,
      `both threads took connections (main thread ${before.mainThread} of ${before.attempts})`,
    );
    t.equal(
      before.reused,
      before.attempts,
      'the session resumed on every connection: the ticket keys are shared by the threads',
    );

    // a CRL change that revokes someone else: no certificate of this client changed
    await writeFile(s.files.crlFile, await makeCrl(s.w.ca, { revoked: [s.attacker] }));
    t.match(await s.sc.reload('api'), { ok: true, changed: true });
    const after = await acrossThreads(first, '/after');
    t.ok(
      after.mainThread > 0 && after.mainThread < after.attempts,
      `both threads took connections (main thread ${after.mainThread} of ${after.attempts})`,
    );
    t.equal(after.reused, 0, 'the old session resumed on neither thread');
    t.equal(after.served, after.attempts, 'every connection was served after a full handshake');

    const second = await sessionOf(t, s, s.good, version, '/second');
    const renewed = await acrossThreads(second, '/renewed');
    t.equal(
      renewed.reused,
      renewed.attempts,
      'a session issued after the change resumes on every connection, on both threads',
    );

    const requests = s.app.requests();
    const revoked = await attempt(s, s.attacker, version, '/attacker');
    t.ok(
      revoked.status === null && s.app.requests() === requests,
      'the revoked client is refused a full handshake, on whichever thread',
    );
  },
);
