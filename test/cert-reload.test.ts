/**
 * Certificate reload, end to end: real files (a Kubernetes-style Secret volume swapped through
 * its `..data` symlink, plain files rewritten), real TLS on loopback, the three triggers
 * (directory watch, admin POST /reload, SIGHUP to a real process). New handshakes get the new
 * identity; open connections keep the one they negotiated; a bad new identity keeps the old.
 */
import t from 'tap';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { PRODUCER } from './helpers/identities.ts';
import { makeCa, makeLeaf, type Teardownable } from './helpers/pki.ts';
import { secretVolume } from './helpers/secretVolume.ts';
import { handshake } from './helpers/handshake.ts';
import { exitWithin, startTollgate } from './helpers/process.ts';
import {
  eventually,
  heldUpstream,
  mtlsClient,
  sha256,
  startTestSidecar,
  startUpstream,
  world,
  type TestSidecar,
  type World,
} from './helpers/world.ts';
import type { Issued } from '../src/certs/issue.ts';

const DAY_MS = 86_400_000;
const WAIT_MS = 10_000;
/** the directory watch is off in tests that trigger reloads themselves (its debounce never ends within a test) */
const NO_WATCH = { watchDebounceMs: 3_600_000 };

function fingerprint(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}

interface Setup {
  w: World;
  /** two server identities from the same CA: what is served before and after */
  a: Issued;
  b: Issued;
  producer: Issued;
}

async function setup(t: Teardownable): Promise<Setup> {
  const w = await world(t, { notAfter: new Date(Date.now() + 30 * DAY_MS) });
  const leaf = { spiffe: ['spiffe://example.org/ingest'], notAfter: new Date(Date.now() + 20 * DAY_MS) };
  return {
    w,
    a: await makeLeaf(w.ca, { cn: 'ingest-a', ...leaf }),
    b: await makeLeaf(w.ca, { cn: 'ingest-b', ...leaf }),
    producer: await makeLeaf(w.ca, {
      cn: 'producer',
      spiffe: [PRODUCER],
      notAfter: new Date(Date.now() + 20 * DAY_MS),
    }),
  };
}

/** identity files in a plain folder, rewritten in place by `write` */
async function plainFiles(
  dir: string,
  leaf: Issued,
  caPem: string,
): Promise<{
  files: { certFile: string; keyFile: string; caFile: string };
  write(cert: string, key: string, ca: string): Promise<void>;
}> {
  await mkdir(dir, { recursive: true });
  const files = { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), caFile: join(dir, 'ca.crt') };
  const write = async (cert: string, key: string, ca: string): Promise<void> => {
    await writeFile(files.certFile, cert);
    await writeFile(files.keyFile, key, { mode: 0o600 });
    await writeFile(files.caFile, ca);
  };
  await write(leaf.certPem, leaf.keyPem, caPem);
  return { files, write };
}

function inbound(target: string): Record<string, unknown> {
  return {
    name: 'ingest',
    mode: 'inbound',
    protocol: 'http',
    listen: '127.0.0.1:0',
    target,
    allow: { spiffe: [PRODUCER] },
  };
}

function adminUrl(sc: TestSidecar, path: string): string {
  return `http://127.0.0.1:${sc.admin!.port}${path}`;
}

async function postReload(
  sc: TestSidecar,
): Promise<{ status: number; body: { ok: boolean; changed?: boolean; problems: string[]; error?: string } }> {
  const res = await request(adminUrl(sc, '/reload'), { method: 'POST' });
  return {
    status: res.statusCode,
    body: (await res.body.json()) as { ok: boolean; changed?: boolean; problems: string[]; error?: string },
  };
}

/** the fingerprint a new handshake with the listener gets, or the error */
async function served(sc: TestSidecar, s: Setup, client: Issued = s.producer, ca = s.w.ca.certPem): Promise<string> {
  const r = await handshake(sc.addr(), { ca, identity: client });
  return r.ok ? r.fingerprint256 : `refused: ${r.error}`;
}

function auditReloads(sc: TestSidecar): Array<Record<string, unknown>> {
  return sc.logs.lines.filter((l) => l.audit === true && l.event === 'reload');
}

/** A keep-alive HTTPS agent with one socket, so consecutive requests share one connection. */
function keepAliveAgent(t: Teardownable, s: Setup): https.Agent {
  const agent = new https.Agent({
    keepAlive: true,
    maxSockets: 1,
    ca: s.w.ca.certPem,
    cert: s.producer.certPem,
    key: s.producer.keyPem,
    servername: 'localhost',
  });
  t.teardown(() => agent.destroy());
  return agent;
}

function get(
  agent: https.Agent,
  addr: string,
  path: string,
): Promise<{ status: number; socket: TLSSocket; fingerprint: string }> {
  const i = addr.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: addr.slice(0, i), port: Number(addr.slice(i + 1)), path, agent, method: 'GET' },
      (res) => {
        const socket = res.socket as TLSSocket;
        const fp = socket.getPeerCertificate().fingerprint256;
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, socket, fingerprint: fp }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

t.test(
  'a Kubernetes Secret volume swap reloads the identity: new handshakes get the new certificate, an open keep-alive connection keeps working',
  async (t) => {
    const s = await setup(t);
    const app = await startUpstream(t);
    const vol = await secretVolume(join(s.w.dir, 'ingest-tls'), {
      'tls.crt': s.a.certPem,
      'tls.key': s.a.keyPem,
      'ca.crt': s.w.ca.certPem,
    });
    const sc = await startTestSidecar(
      t,
      s.w.dir,
      {
        identity: { certFile: vol.path('tls.crt'), keyFile: vol.path('tls.key'), caFile: vol.path('ca.crt') },
        listeners: [inbound(app.addr)],
      },
      { identityTiming: { watchDebounceMs: 50 } },
    );
    const agent = keepAliveAgent(t, s);
    const first = await get(agent, sc.addr(), '/before');
    t.equal(first.status, 200, 'serving before the swap');
    t.equal(first.fingerprint, fingerprint(s.a.certPem), 'with certificate a');

    await vol.update({ 'tls.crt': s.b.certPem, 'tls.key': s.b.keyPem, 'ca.crt': s.w.ca.certPem });
    await eventually(
      async () => (await served(sc, s)) === fingerprint(s.b.certPem),
      WAIT_MS,
      'a new handshake to get certificate b',
    );
    t.pass('a new handshake gets certificate b');

    const handshakesBefore = await sc.metric('tollgate_tls_handshakes_total', { result: 'success' });
    const again = await get(agent, sc.addr(), '/after');
    t.equal(again.status, 200, 'the keep-alive connection opened before the swap still works');
    t.equal(again.socket, first.socket, 'on the same socket');
    t.equal(again.fingerprint, fingerprint(s.a.certPem), 'which still has certificate a');
    t.equal(
      await sc.metric('tollgate_tls_handshakes_total', { result: 'success' }),
      handshakesBefore,
      'without a new handshake',
    );

    t.equal(await sc.metric('tollgate_cert_reloads_total', { result: 'success' }), 1, 'one successful reload counted');
    t.equal(
      await sc.metric('tollgate_cert_reloads_total', { result: 'failure' }),
      0,
      'and no failure (the swap is atomic)',
    );
    t.match(
      sc.logs.lines.find((l) => l.msg === 'certificates reloaded' && l.changed === true),
      { trigger: 'watch', level: 30 },
    );
    const audits = auditReloads(sc);
    t.equal(audits.length, 1, 'one reload audit event');
    t.match(audits[0], { ok: true, trigger: 'watch', serial: new X509Certificate(s.b.certPem).serialNumber });
  },
);

t.test(
  'admin POST /reload applies changed files; a second reload finds nothing changed; GET /reload is 405',
  async (t) => {
    const s = await setup(t);
    const app = await startUpstream(t);
    const id = await plainFiles(join(s.w.dir, 'ingest'), s.a, s.w.ca.certPem);
    const sc = await startTestSidecar(
      t,
      s.w.dir,
      { admin: { listen: '127.0.0.1:0' }, identity: id.files, listeners: [inbound(app.addr)] },
      { identityTiming: NO_WATCH },
    );
    t.equal(await served(sc, s), fingerprint(s.a.certPem));

    const wrongMethod = await request(adminUrl(sc, '/reload'));
    t.equal(wrongMethod.statusCode, 405, 'GET /reload is 405');
    t.equal(wrongMethod.headers.allow, 'POST', 'naming POST as the method allowed');
    await wrongMethod.body.dump();
    const alsoWrong = await request(adminUrl(sc, '/reload'), { method: 'PUT' });
    t.equal(alsoWrong.statusCode, 405, 'and so is PUT');
    await alsoWrong.body.dump();

    await id.write(s.b.certPem, s.b.keyPem, s.w.ca.certPem);
    t.same(await postReload(sc), { status: 200, body: { ok: true, changed: true, problems: [] } });
    t.equal(await served(sc, s), fingerprint(s.b.certPem), 'new handshakes get certificate b');

    t.same(
      await postReload(sc),
      { status: 200, body: { ok: true, changed: false, problems: [] } },
      'the same files again: a success that changes nothing',
    );
    t.equal(await sc.metric('tollgate_cert_reloads_total', { result: 'success' }), 1);
    t.equal(await sc.metric('tollgate_cert_reloads_total', { result: 'unchanged' }), 1);
    t.equal(auditReloads(sc).length, 1, 'only the reload that changed something is audited');
    t.equal(await served(sc, s), fingerprint(s.b.certPem));
    t.match(
      sc.logs.lines.filter((l) => l.msg === 'certificates reloaded'),
      [
        { trigger: 'admin', changed: true },
        { trigger: 'admin', changed: false },
      ],
    );
  },
);

t.test('a reload that does not validate keeps the old identity, is counted, logged once and audited', async (t) => {
  const s = await setup(t);
  const app = await startUpstream(t);
  const otherCa = await makeCa({ cn: 'someone else' });
  const stranger = await makeLeaf(otherCa, { cn: 'stranger' });
  const id = await plainFiles(join(s.w.dir, 'ingest'), s.a, s.w.ca.certPem);
  const sc = await startTestSidecar(
    t,
    s.w.dir,
    { admin: { listen: '127.0.0.1:0' }, identity: id.files, listeners: [inbound(app.addr)] },
    { identityTiming: NO_WATCH },
  );
  const served0 = fingerprint(s.a.certPem);

  const cases: Array<{ name: string; cert: string; key: string; ca: string; problem: RegExp }> = [
    {
      name: 'a broken certificate',
      cert: '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n',
      key: s.b.keyPem,
      ca: s.w.ca.certPem,
      problem: /^identity\.certFile .*tls\.crt: /,
    },
    {
      name: 'a key that does not match the certificate',
      cert: s.b.certPem,
      key: s.a.keyPem,
      ca: s.w.ca.certPem,
      problem: /^identity\.keyFile .*: does not match the certificate/,
    },
    {
      name: 'a CA bundle that does not verify the chain',
      cert: s.b.certPem,
      key: s.b.keyPem,
      ca: otherCa.certPem,
      problem: /^identity\.certFile .*: chain does not verify against caFile/,
    },
    {
      name: 'a certificate from a CA the bundle does not hold',
      cert: stranger.certPem,
      key: stranger.keyPem,
      ca: s.w.ca.certPem,
      problem: /chain does not verify/,
    },
  ];
  let failures = 0;
  for (const c of cases) {
    await id.write(c.cert, c.key, c.ca);
    const errorsBefore = sc.logs.lines.filter((l) => l.level === 50).length;
    const r = await postReload(sc);
    failures += 1;
    t.equal(r.status, 500, `${c.name}: POST /reload answers 500`);
    t.equal(r.body.ok, false);
    t.match(r.body.problems, [c.problem], `${c.name}: the problem is named`);
    t.equal(await served(sc, s), served0, `${c.name}: new handshakes still get the old certificate`);
    t.equal(
      await sc.metric('tollgate_cert_reloads_total', { result: 'failure' }),
      failures,
      `${c.name}: counted as a failure`,
    );
    const errors = sc.logs.lines.filter((l) => l.level === 50).slice(errorsBefore);
    t.equal(errors.length, 1, `${c.name}: one error line`);
    t.match(errors[0], { msg: 'certificate reload failed; keeping the current identity', trigger: 'admin' });
    t.match(auditReloads(sc).at(-1), { ok: false, trigger: 'admin', problems: [c.problem] }, `${c.name}: audited`);
  }
  t.equal(await sc.metric('tollgate_cert_reloads_total', { result: 'success' }), 0);

  await id.write(s.b.certPem, s.b.keyPem, s.w.ca.certPem);
  t.match(await postReload(sc), { status: 200, body: { ok: true, changed: true } }, 'good files load again');
  t.equal(await served(sc, s), fingerprint(s.b.certPem));
});

t.test(
  'CA rotation: with old and new CA bundled both are accepted; once the old CA is removed its clients are refused',
  async (t) => {
    const s = await setup(t);
    const app = await startUpstream(t);
    const newCa = await makeCa({ cn: 'tollgate test CA 2', notAfter: new Date(Date.now() + 60 * DAY_MS) });
    const bothCas = s.w.ca.certPem + newCa.certPem;
    const serverNew = await makeLeaf(newCa, { cn: 'ingest-new', spiffe: ['spiffe://example.org/ingest'] });
    const producerNew = await makeLeaf(newCa, { cn: 'producer-new', spiffe: [PRODUCER] });
    const id = await plainFiles(join(s.w.dir, 'ingest'), s.a, s.w.ca.certPem);
    const sc = await startTestSidecar(
      t,
      s.w.dir,
      { admin: { listen: '127.0.0.1:0' }, identity: id.files, listeners: [inbound(app.addr)] },
      { identityTiming: NO_WATCH },
    );
    const accepted = async (client: Issued): Promise<boolean> =>
      (await handshake(sc.addr(), { ca: bothCas, identity: client })).ok;

    t.ok(await accepted(s.producer), 'before: a client of the old CA is accepted');
    t.notOk(await accepted(producerNew), 'before: a client of the new CA is refused');

    await id.write(s.a.certPem, s.a.keyPem, bothCas);
    t.match(await postReload(sc), { status: 200, body: { ok: true, changed: true } });
    t.ok(await accepted(s.producer), 'overlap: a client of the old CA is accepted');
    t.ok(await accepted(producerNew), 'overlap: a client of the new CA is accepted');

    await id.write(serverNew.certPem, serverNew.keyPem, newCa.certPem);
    t.match(await postReload(sc), { status: 200, body: { ok: true, changed: true } });
    const unknownCaBefore = await sc.metric('tollgate_tls_handshakes_total', {
      result: 'failure',
      reason: 'unknown_ca',
    });
    t.notOk(await accepted(s.producer), 'after: a client of the old CA is refused');
    t.ok(await accepted(producerNew), 'after: a client of the new CA is accepted');
    await eventually(
      async () =>
        (await sc.metric('tollgate_tls_handshakes_total', { result: 'failure', reason: 'unknown_ca' })) ===
        unknownCaBefore + 1,
      WAIT_MS,
      'the refusal to be counted as unknown_ca',
    );
    t.equal(
      await sc.metric('tollgate_cert_expiration_timestamp_seconds', { cert: 'ca_1' }),
      0,
      'the old CA is gone from the expiry gauges',
    );
  },
);

t.test(
  'reload under load: checksummed transfers over several connections see no error while five reloads happen',
  async (t) => {
    const s = await setup(t);
    const app = await startUpstream(t);
    const id = await plainFiles(join(s.w.dir, 'ingest'), s.a, s.w.ca.certPem);
    const sc = await startTestSidecar(
      t,
      s.w.dir,
      { identity: id.files, listeners: [inbound(app.addr)] },
      { identityTiming: NO_WATCH },
    );
    const KEEP_ALIVE = 4;
    const FRESH = 2;
    const PER_CLIENT = 25;
    const BODY_BYTES = 48 * 1024;
    let completed = 0;
    const errors: string[] = [];

    async function run(client: ReturnType<typeof mtlsClient>, fresh: boolean): Promise<void> {
      for (let i = 0; i < PER_CLIENT; i++) {
        const body = randomBytes(BODY_BYTES);
        try {
          const res = await client.request({
            path: `/load/${i}`,
            method: 'POST',
            body,
            headers: { 'content-type': 'application/octet-stream' },
            reset: fresh,
          });
          const seen = (await res.body.json()) as { bodySha256: string; bodyLength: number };
          if (res.statusCode !== 200) errors.push(`status ${res.statusCode}`);
          else if (seen.bodySha256 !== sha256(body) || seen.bodyLength !== BODY_BYTES)
            errors.push(`checksum mismatch on request ${i}`);
        } catch (err) {
          errors.push(`${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`);
        }
        completed += 1;
      }
    }

    const clients = [
      ...Array.from({ length: KEEP_ALIVE }, () => run(mtlsClient(t, sc.addr(), s.w.ca, s.producer), false)),
      // a new connection (and handshake) for every request, so handshakes race the swaps
      ...Array.from({ length: FRESH }, () => run(mtlsClient(t, sc.addr(), s.w.ca, s.producer), true)),
    ];
    const total = (KEEP_ALIVE + FRESH) * PER_CLIENT;
    const leaves = [s.b, s.a];
    for (let r = 0; r < 5; r++) {
      const leaf = leaves[r % 2]!;
      const mark = completed;
      await eventually(() => completed > mark || completed === total, WAIT_MS, 'traffic to flow between reloads');
      await id.write(leaf.certPem, leaf.keyPem, s.w.ca.certPem);
      const result = await sc.reload('api');
      t.match(result, { ok: true, changed: true }, `reload ${r + 1} swapped the identity`);
    }
    await Promise.all(clients);
    t.equal(completed, total, `all ${total} transfers finished`);
    t.same(errors, [], 'with no error and every checksum right');
    t.equal(await sc.metric('tollgate_cert_reloads_total', { result: 'success' }), 5);
    t.equal(await sc.metric('tollgate_tls_handshakes_total', { result: 'failure' }), 0, 'no handshake failed');
  },
);

t.test(
  'reload requests are ignored while draining: admin 409, watch and API logged at info, nothing counted',
  async (t) => {
    const s = await setup(t);
    const app = await heldUpstream(t);
    const id = await plainFiles(join(s.w.dir, 'ingest'), s.a, s.w.ca.certPem);
    const sc = await startTestSidecar(
      t,
      s.w.dir,
      { admin: { listen: '127.0.0.1:0' }, identity: id.files, listeners: [inbound(app.addr)] },
      { identityTiming: { watchDebounceMs: 30 } },
    );
    const pending = mtlsClient(t, sc.addr(), s.w.ca, s.producer).request({ path: '/held', method: 'GET' });
    await eventually(() => app.received() === 1, WAIT_MS, 'the app to receive the request');

    const stopped = sc.shutdown();
    t.equal(sc.readiness.draining(), true, 'draining');
    t.match(await sc.reload('api'), { ok: false, ignored: 'draining' }, 'an API reload is ignored');
    const viaAdmin = await postReload(sc);
    t.equal(viaAdmin.status, 409, 'POST /reload answers 409 while draining');
    t.match(viaAdmin.body, { ok: false, error: 'ERR_ADMIN_CONFLICT' });

    await id.write(s.b.certPem, s.b.keyPem, s.w.ca.certPem);
    await eventually(
      () => sc.logs.lines.some((l) => l.msg === 'reload ignored while draining' && l.trigger === 'watch'),
      WAIT_MS,
      'the watched change to be ignored',
    );
    const ignored = sc.logs.lines.filter((l) => l.msg === 'reload ignored while draining');
    t.ok(
      ignored.every((l) => l.level === 30),
      'logged at info',
    );
    t.same([...new Set(ignored.map((l) => l.trigger))].sort(), ['admin', 'api', 'watch'], 'from each trigger');
    t.equal(await sc.metric('tollgate_cert_reloads_total'), 0, 'no reload counted, neither success nor failure');
    t.equal(auditReloads(sc).length, 0, 'none audited');

    app.release();
    const res = await pending;
    t.equal(res.statusCode, 200, 'the in-flight request completes');
    await res.body.dump();
    t.equal(await stopped, true);
  },
);

t.test('SIGHUP makes a running tollgate reload files the directory watch cannot see', async (t) => {
  const s = await setup(t);
  const app = await startUpstream(t);
  // the configured paths are symlinks to files in another folder: a change there is not in a
  // watched directory, so only the signal can bring it in
  const store = await plainFiles(join(s.w.dir, 'store'), s.a, s.w.ca.certPem);
  const visible = join(s.w.dir, 'visible');
  await mkdir(visible);
  for (const [name, target] of [
    ['tls.crt', store.files.certFile],
    ['tls.key', store.files.keyFile],
    ['ca.crt', store.files.caFile],
  ] as const) {
    await symlink(target, join(visible, name));
  }
  const config = {
    admin: { listen: null },
    identity: {
      certFile: join(visible, 'tls.crt'),
      keyFile: join(visible, 'tls.key'),
      caFile: join(visible, 'ca.crt'),
    },
    listeners: [inbound(app.addr)],
  };
  const file = join(s.w.dir, 'tollgate.json');
  await writeFile(file, JSON.stringify(config));
  const p = startTollgate(t, ['run', '--config', file]);
  const startedLine = (): Record<string, unknown> | undefined => p.logs().find((l) => l.msg === 'tollgate started');
  await eventually(() => startedLine() !== undefined || !p.running(), 15_000, 'tollgate started');
  const line = startedLine();
  if (line === undefined) throw new Error(`tollgate did not start: ${p.stderr()}`);
  const addr = (line.listeners as Array<{ address: string }>)[0]!.address;
  const servedNow = async (): Promise<string> => {
    const r = await handshake(addr, { ca: s.w.ca.certPem, identity: s.producer });
    return r.ok ? r.fingerprint256 : `refused: ${r.error}`;
  };
  t.equal(await servedNow(), fingerprint(s.a.certPem));

  await store.write(s.b.certPem, s.b.keyPem, s.w.ca.certPem);
  p.kill('SIGHUP');
  await eventually(
    () => p.logs().some((l) => l.msg === 'certificates reloaded') || !p.running(),
    WAIT_MS,
    'the reload to be logged',
  );
  t.match(
    p.logs().find((l) => l.msg === 'certificates reloaded'),
    { trigger: 'sighup', changed: true },
  );
  t.equal(await servedNow(), fingerprint(s.b.certPem), 'new handshakes get certificate b');

  p.kill('SIGTERM');
  t.equal((await exitWithin(p, WAIT_MS)).code, 0);
});
