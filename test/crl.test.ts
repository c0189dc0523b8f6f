/**
 * Certificate revocation lists (identity.crlFile), with real CRLs signed by the test CA and
 * real TLS: revoked peers are refused in both directions, a CRL past its nextUpdate is noticed
 * while loaded and handled as identity.crlStale says, and CRLs that cannot be trusted or that
 * leave a CA uncovered do not load.
 */
import t from 'tap';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { hoursAgo, makeCa, makeCrl, makeLeaf, type Teardownable } from './helpers/pki.ts';
import { handshake } from './helpers/handshake.ts';
import { farEnd, type FarEnd } from './helpers/farEnd.ts';
import {
  eventually,
  plainClient,
  startTestSidecar,
  startUpstream,
  world,
  type TestSidecar,
  type World,
} from './helpers/world.ts';
import { loadIdentity } from '../src/certs/identityBundle.ts';
import { StartupError } from '../src/core/errors.ts';
import { checkCommand } from '../src/cli/check.ts';
import type { Issued } from '../src/certs/issue.ts';
import { PRODUCER } from './helpers/identities.ts';

const DAY_MS = 86_400_000;
const WAIT_MS = 10_000;
const NO_WATCH = { watchDebounceMs: 3_600_000 };

interface Setup {
  w: World;
  server: Issued;
  good: Issued;
  revoked: Issued;
}

async function setup(t: Teardownable): Promise<Setup> {
  const w = await world(t, { notAfter: new Date(Date.now() + 30 * DAY_MS) });
  const leaf = { notAfter: new Date(Date.now() + 20 * DAY_MS) };
  return {
    w,
    server: await makeLeaf(w.ca, { cn: 'ingest', spiffe: ['spiffe://example.org/ingest'], ...leaf }),
    good: await makeLeaf(w.ca, { cn: 'producer', spiffe: [PRODUCER], ...leaf }),
    revoked: await makeLeaf(w.ca, { cn: 'producer-revoked', spiffe: [PRODUCER], ...leaf }),
  };
}

/** tls.crt, tls.key, ca.crt and ca.crl in `dir` */
async function identityFiles(
  dir: string,
  leaf: Issued,
  caPem: string,
  crlPem: string,
): Promise<{ certFile: string; keyFile: string; caFile: string; crlFile: string }> {
  const files = {
    certFile: join(dir, 'tls.crt'),
    keyFile: join(dir, 'tls.key'),
    caFile: join(dir, 'ca.crt'),
    crlFile: join(dir, 'ca.crl'),
  };
  await writeFile(files.certFile, leaf.certPem);
  await writeFile(files.keyFile, leaf.keyPem, { mode: 0o600 });
  await writeFile(files.caFile, caPem);
  await writeFile(files.crlFile, crlPem);
  return files;
}

async function inboundSidecar(
  t: Teardownable,
  s: Setup,
  crlPem: string,
  crlStale: 'warn' | 'refuse',
  timing: Record<string, number> = NO_WATCH,
): Promise<{ sc: TestSidecar; files: Awaited<ReturnType<typeof identityFiles>> }> {
  const app = await startUpstream(t);
  const files = await identityFiles(s.w.dir, s.server, s.w.ca.certPem, crlPem);
  const sc = await startTestSidecar(
    t,
    s.w.dir,
    {
      admin: { listen: '127.0.0.1:0' },
      identity: { ...files, crlStale },
      listeners: [
        { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
      ],
    },
    { identityTiming: timing },
  );
  return { sc, files };
}

async function accepted(sc: TestSidecar, s: Setup, client: Issued): Promise<boolean> {
  return (await handshake(sc.addr(), { ca: s.w.ca.certPem, identity: client })).ok;
}

/** the newest nextUpdate a CRL can have and still be stale in about `ms` (CRL times have whole seconds) */
function secondsFromNow(ms: number): Date {
  return new Date(Math.ceil((Date.now() + ms) / 1000) * 1000);
}

t.test(
  'inbound: a revoked client certificate is refused and counted as cert_revoked; other clients are accepted',
  async (t) => {
    const s = await setup(t);
    const { sc } = await inboundSidecar(t, s, await makeCrl(s.w.ca, { revoked: [s.revoked] }), 'warn');
    t.ok(await accepted(sc, s, s.good), 'a client that is not revoked is accepted');
    t.notOk(await accepted(sc, s, s.revoked), 'the revoked client is refused');
    await eventually(
      async () =>
        (await sc.metric('tollgate_tls_handshakes_total', { result: 'failure', reason: 'cert_revoked' })) === 1,
      WAIT_MS,
      'the refusal to be counted',
    );
    t.equal(await sc.metric('tollgate_tls_handshakes_total', { result: 'failure' }), 1, 'and nothing else failed');
    t.match(
      sc.logs.lines.find((l) => l.audit === true && l.event === 'handshake_failure'),
      { reason: 'cert_revoked', code: 'CERT_REVOKED' },
      'audited with the verification code',
    );
    t.equal(await sc.metric('tollgate_crl_stale'), 0);
    t.ok(
      (await sc.metric('tollgate_crl_next_update_timestamp_seconds', { crl: 'crl' })) > Date.now() / 1000,
      'the CRL nextUpdate is published',
    );
  },
);

/** an HTTPS server presenting `leaf` (it does not ask for a client certificate), with what reaches it counted */
async function tlsServer(t: Teardownable, leaf: Issued): Promise<{ addr: string; far: FarEnd }> {
  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) =>
    res.end('from the remote'),
  );
  server.on('tlsClientError', () => undefined);
  const far = farEnd(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  return { addr: `127.0.0.1:${(server.address() as AddressInfo).port}`, far };
}

t.test(
  'outbound: a server whose certificate is revoked gets 502 ERR_UPSTREAM_IDENTITY over HTTP and a closed connection over TCP',
  async (t) => {
    const s = await setup(t);
    const revokedServer = await makeLeaf(s.w.ca, { cn: 'warehouse-revoked' });
    const goodServer = await makeLeaf(s.w.ca, { cn: 'warehouse' });
    const { addr: revokedAddr, far: revokedFar } = await tlsServer(t, revokedServer);
    const { addr: goodAddr, far: goodFar } = await tlsServer(t, goodServer);
    const files = await identityFiles(
      s.w.dir,
      s.good,
      s.w.ca.certPem,
      await makeCrl(s.w.ca, { revoked: [revokedServer] }),
    );
    const outbound = (name: string, protocol: string, target: string): Record<string, unknown> => ({
      name,
      mode: 'outbound',
      protocol,
      listen: '127.0.0.1:0',
      target,
      serverName: 'localhost',
    });
    const sc = await startTestSidecar(
      t,
      s.w.dir,
      {
        identity: files,
        listeners: [
          outbound('to-revoked', 'http', revokedAddr),
          outbound('to-good', 'http', goodAddr),
          outbound('tcp-to-revoked', 'tcp', revokedAddr),
        ],
      },
      { identityTiming: NO_WATCH },
    );

    const good = await plainClient(t, sc.addr(1)).request({ path: '/', method: 'GET' });
    t.equal(good.statusCode, 200, 'a server that is not revoked is reached');
    t.equal(await good.body.text(), 'from the remote');
    t.equal(goodFar.requests(), 1, 'the good server counted the request it answered');
    t.ok(goodFar.bytes() > 0, 'and read its bytes');

    const res = await plainClient(t, sc.addr(0)).request({ path: '/', method: 'GET' });
    t.equal(res.statusCode, 502, 'HTTP to the revoked server: 502');
    t.equal(res.headers['x-tollgate-error'], 'ERR_UPSTREAM_IDENTITY');
    t.match(await res.body.json(), { error: 'ERR_UPSTREAM_IDENTITY' });
    t.equal(
      await sc.metric('tollgate_upstream_errors_total', { listener: 'to-revoked', reason: 'upstream_identity' }),
      1,
    );
    t.ok(revokedFar.connections() >= 1, 'tollgate did reach the revoked server (it has to, to see its certificate)');
    t.equal(revokedFar.requests(), 0, 'HTTP: the revoked server never began a request');
    t.equal(revokedFar.bytes(), 0, 'HTTP: the revoked server never read an application byte');
    const connectionsBeforeTcp = revokedFar.connections();

    const outcome = await new Promise<{ data: string; error: string | null }>((resolve) => {
      const socket = net.connect(sc.listeners[2]!.address().port, '127.0.0.1');
      // bytes that would reach the revoked server if the connection were spliced through
      socket.write('GET / HTTP/1.1\r\nhost: warehouse\r\n\r\n');
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (c: string) => (data += c));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve({ data, error: err.code ?? err.message }));
      socket.on('close', () => resolve({ data, error: null }));
      socket.setTimeout(WAIT_MS, () => socket.destroy(new Error('timeout')));
    });
    t.equal(outcome.data, '', 'TCP to the revoked server: nothing comes back');
    t.not(outcome.error, 'timeout', `the connection is closed (${String(outcome.error)})`);
    await eventually(
      async () =>
        (await sc.metric('tollgate_upstream_errors_total', {
          listener: 'tcp-to-revoked',
          reason: 'upstream_identity',
        })) === 1,
      WAIT_MS,
      'the TCP refusal to be counted',
    );
    t.ok(revokedFar.connections() > connectionsBeforeTcp, 'TCP: tollgate dialled the revoked server');
    t.equal(revokedFar.requests(), 0, 'TCP: the revoked server never began a request');
    t.equal(revokedFar.bytes(), 0, 'TCP: the revoked server never read an application byte');
  },
);

t.test(
  'crlStale "warn": a CRL that goes stale while loaded is noticed; tollgate keeps serving without it, warns and sets tollgate_crl_stale',
  async (t) => {
    const s = await setup(t);
    const nextUpdate = secondsFromNow(2500);
    const { sc } = await inboundSidecar(t, s, await makeCrl(s.w.ca, { revoked: [s.revoked], nextUpdate }), 'warn');
    t.equal(await sc.metric('tollgate_crl_next_update_timestamp_seconds', { crl: 'crl' }), nextUpdate.getTime() / 1000);
    t.notOk(await accepted(sc, s, s.revoked), 'while fresh, the revoked client is refused');

    await eventually(
      async () => (await sc.metric('tollgate_crl_stale')) === 1,
      WAIT_MS,
      'tollgate_crl_stale to become 1',
    );
    t.ok(Date.now() >= nextUpdate.getTime(), 'not before nextUpdate');
    t.ok(await accepted(sc, s, s.good), 'stale: a good client is still accepted');
    t.ok(await accepted(sc, s, s.revoked), 'stale: revocation is no longer checked from the stale CRL');
    const warnings = sc.logs.lines.filter(
      (l) => l.msg === 'CRL is stale: revocation is not checked from crlFile until a fresh CRL is loaded',
    );
    t.equal(warnings.length, 1, 'one warning');
    t.match(warnings[0], { level: 40, crlStale: 'warn', stale: [/stale since/] });
    t.match(
      sc.logs.lines.find((l) => l.audit === true && l.event === 'reload'),
      { trigger: 'crl_next_update', revocationChecking: false },
      'the change is audited',
    );
    const status = (await (await request(`http://127.0.0.1:${sc.admin!.port}/status`)).body.json()) as {
      identity: { revocation: unknown };
    };
    t.match(status.identity.revocation, { crls: 1, stale: true, checking: false });

    t.same(
      await Promise.all([sc.reload('api'), sc.reload('api')]).then((r) => r.map((x) => x.changed)),
      [false, false],
      'reloading the same files changes nothing',
    );
    t.equal(
      sc.logs.lines.filter((l) => l.msg === warnings[0]!.msg).length,
      1,
      'and does not repeat the warning within the hour',
    );
  },
);

t.test(
  'crlStale "refuse": a CRL that goes stale while loaded refuses every handshake; a stale CRL does not load; a fresh one restores service',
  async (t) => {
    const s = await setup(t);
    const { sc, files } = await inboundSidecar(
      t,
      s,
      await makeCrl(s.w.ca, { revoked: [s.revoked], nextUpdate: secondsFromNow(2500) }),
      'refuse',
    );
    t.ok(await accepted(sc, s, s.good), 'while fresh, a good client is accepted');

    await eventually(
      async () => (await sc.metric('tollgate_crl_stale')) === 1,
      WAIT_MS,
      'tollgate_crl_stale to become 1',
    );
    t.notOk(await accepted(sc, s, s.good), 'stale: a good client is refused');
    t.match(
      sc.logs.lines.find((l) => l.msg === 'TLS handshake failed' && l.code === 'CRL_HAS_EXPIRED'),
      { reason: 'other' },
      'by OpenSSL, as CRL_HAS_EXPIRED',
    );
    t.match(
      sc.logs.lines.find((l) => /^CRL is stale/.test(String(l.msg))),
      { level: 50, crlStale: 'refuse' },
    );

    await writeFile(files.crlFile, await makeCrl(s.w.ca, { thisUpdate: hoursAgo(3), nextUpdate: hoursAgo(1) }));
    const stale = await sc.reload('api');
    t.equal(stale.ok, false, 'a reload with a stale CRL fails');
    t.match(stale.problems, [/^identity\.crlFile .*: the CRL of .* is stale since .*identity\.crlStale "refuse"/]);

    await writeFile(files.crlFile, await makeCrl(s.w.ca, { revoked: [s.revoked] }));
    t.match(await sc.reload('api'), { ok: true, changed: true }, 'a fresh CRL loads');
    t.equal(await sc.metric('tollgate_crl_stale'), 0);
    t.ok(await accepted(sc, s, s.good), 'a good client is accepted again');
    t.notOk(await accepted(sc, s, s.revoked), 'and the revoked one refused');
  },
);

t.test(
  'a stale CRL at start: "warn" starts with a warning, "refuse" does not start; tollgate check says the same',
  async (t) => {
    const s = await setup(t);
    const staleCrl = await makeCrl(s.w.ca, { thisUpdate: hoursAgo(3), nextUpdate: hoursAgo(1) });
    const files = await identityFiles(s.w.dir, s.server, s.w.ca.certPem, staleCrl);
    const app = await startUpstream(t);
    const config = (crlStale: string): Record<string, unknown> => ({
      admin: { listen: null },
      identity: { ...files, crlStale },
      listeners: [
        { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
      ],
    });

    const sc = await startTestSidecar(t, s.w.dir, config('warn'), { identityTiming: NO_WATCH });
    t.equal(await sc.metric('tollgate_crl_stale'), 1);
    t.ok(
      sc.logs.lines.some(
        (l) =>
          l.level === 40 &&
          l.msg === 'CRL is stale: revocation is not checked from crlFile until a fresh CRL is loaded',
      ),
    );
    t.ok(await accepted(sc, s, s.good), 'warn: serving');
    await sc.shutdown();

    const refused = await startTestSidecar(t, s.w.dir, config('refuse')).then(
      () => null,
      (err: unknown) => err,
    );
    t.ok(refused instanceof StartupError, 'refuse: the start fails');
    t.match((refused as StartupError).problems, [/^identity\.crlFile .*is stale since/]);

    const check = async (crlStale: string): Promise<{ code: number; out: string[]; err: string[] }> => {
      const file = join(s.w.dir, `check-${crlStale}.json`);
      await writeFile(file, JSON.stringify(config(crlStale)));
      const out: string[] = [];
      const err: string[] = [];
      const code = await checkCommand(
        ['--config', file],
        { out: (l) => out.push(l), err: (l) => err.push(l) },
        new Date(),
      );
      return { code, out, err };
    };
    const warn = await check('warn');
    t.equal(warn.code, 0, 'check with warn: exit 0');
    t.ok(
      warn.err.some((l) => /^warning: identity\.crlFile .*is stale since/.test(l)),
      'with a warning',
    );
    const refuse = await check('refuse');
    t.equal(refuse.code, 2, 'check with refuse: exit 2');
    t.ok(
      refuse.err.some((l) => /^\s+- identity\.crlFile .*is stale since/.test(l)),
      'naming the stale CRL as a problem',
    );
  },
);

t.test('the stale warning repeats at most once per interval', async (t) => {
  const s = await setup(t);
  const INTERVAL_MS = 300;
  const { sc } = await inboundSidecar(
    t,
    s,
    await makeCrl(s.w.ca, { thisUpdate: hoursAgo(3), nextUpdate: hoursAgo(1) }),
    'warn',
    { ...NO_WATCH, staleWarningIntervalMs: INTERVAL_MS },
  );
  const warnings = (): Array<Record<string, unknown>> =>
    sc.logs.lines.filter(
      (l) => l.msg === 'CRL is stale: revocation is not checked from crlFile until a fresh CRL is loaded',
    );
  await eventually(() => warnings().length >= 3, WAIT_MS, 'three warnings');
  const times = warnings().map((l) => l.time as number);
  for (let i = 1; i < times.length; i++)
    t.ok(
      times[i]! - times[i - 1]! >= INTERVAL_MS - 5,
      `warning ${i + 1} came ${times[i]! - times[i - 1]!} ms after the one before`,
    );
});

t.test('CRLs that cannot be trusted or leave a CA uncovered do not load', async (t) => {
  const s = await setup(t);
  const other = await makeCa({ cn: 'another CA' });
  const now = new Date();
  const load = async (crlPem: string, caPem = s.w.ca.certPem): Promise<readonly string[]> => {
    const files = await identityFiles(s.w.dir, s.server, caPem, crlPem);
    const r = await loadIdentity(files, now);
    return r.ok ? [] : r.problems;
  };
  t.match(
    await load(await makeCrl(s.w.ca, { signer: other })),
    [/the CRL issued by .* is not signed by that CA's key/],
    'a CRL with a bad signature',
  );
  t.match(
    await load(await makeCrl(other)),
    [/the CRL issued by CN=another CA is not from a CA in caFile/, /no CRL from the CA CN=tollgate test CA/],
    'a CRL from a CA we do not trust',
  );
  t.match(
    await load(await makeCrl(s.w.ca), s.w.ca.certPem + other.certPem),
    [/no CRL from the CA CN=another CA/],
    'a CA of the bundle without a CRL',
  );
  t.same(
    await load((await makeCrl(s.w.ca)) + (await makeCrl(other)), s.w.ca.certPem + other.certPem),
    [],
    'one CRL per CA in one file loads',
  );
  t.match(
    await load('-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n'),
    [/CRL #1 does not parse/],
    'a CRL that does not parse',
  );
  t.match(await load('not a CRL'), [/no PEM X509 CRL found/], 'a file without a CRL');
  t.match(
    await load(await makeCrl(s.w.ca, { thisUpdate: hoursAgo(-2), nextUpdate: hoursAgo(-30) })),
    [/is not valid before .*thisUpdate/],
    'a CRL not valid yet',
  );
  t.match(
    await load(await makeCrl(s.w.ca, { revoked: [s.server] })),
    [/our own certificate .* is revoked/],
    'a CRL that revokes our own certificate',
  );
  t.same(
    await load(await makeCrl(s.w.ca, { nextUpdate: null })),
    [],
    'a CRL without nextUpdate loads (it never goes stale)',
  );
});

t.test(
  "two CAs with a CRL each, in one file: each CA's revoked clients are refused, both CAs' good clients accepted",
  async (t) => {
    const s = await setup(t);
    const other = await makeCa({ cn: 'second CA', notAfter: new Date(Date.now() + 30 * DAY_MS) });
    const otherGood = await makeLeaf(other, { cn: 'p2', spiffe: [PRODUCER] });
    const otherRevoked = await makeLeaf(other, { cn: 'p2-revoked', spiffe: [PRODUCER] });
    const app = await startUpstream(t);
    const files = await identityFiles(
      s.w.dir,
      s.server,
      s.w.ca.certPem + other.certPem,
      (await makeCrl(s.w.ca, { revoked: [s.revoked] })) + (await makeCrl(other, { revoked: [otherRevoked] })),
    );
    const sc = await startTestSidecar(
      t,
      s.w.dir,
      {
        identity: files,
        listeners: [
          { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
        ],
      },
      { identityTiming: NO_WATCH },
    );
    const ok = async (client: Issued): Promise<boolean> =>
      (await handshake(sc.addr(), { ca: s.w.ca.certPem, identity: client })).ok;
    t.ok(await ok(s.good));
    t.ok(await ok(otherGood));
    t.notOk(await ok(s.revoked), 'revoked by the first CRL');
    t.notOk(await ok(otherRevoked), 'revoked by the second CRL (each CRL is handed to OpenSSL on its own)');
  },
);
