/**
 * TLS 1.2 client-initiated renegotiation is refused by closing the connection (Node would allow
 * a client 3 per 10 minutes), counted and logged once; a TLS 1.3 key update, which is not a
 * renegotiation, keeps the connection. SHA-224 is not among the signature algorithms: a client
 * that offers nothing else cannot complete a TLS 1.2 handshake. Driven with the real
 * `openssl s_client` (typing `R` asks it to renegotiate, `k` to update keys).
 */
import t from 'tap';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'undici';
import { startApp, type App } from './helpers/pipeline.ts';
import { INGEST, PRODUCER } from './helpers/identities.ts';
import { OPENSSL, runOpenssl } from './helpers/process.ts';
import {
  eventually,
  startTestSidecar,
  world,
  type Test,
  type TestIdentity,
  type TestSidecar,
  type World,
} from './helpers/world.ts';

const LISTENER = 'ingest';
const WAIT_MS = 10_000;

interface Setup {
  readonly w: World;
  readonly app: App;
  readonly sc: TestSidecar;
  readonly producer: TestIdentity;
  readonly admin: string;
}

async function setup(t: Test): Promise<Setup> {
  const w = await world(t);
  const app = await startApp(t);
  const ingest = await w.identity('ingest', { spiffe: [INGEST] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const sc = await startTestSidecar(t, w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: ingest.files,
    tls: { minVersion: 'TLSv1.2' },
    listeners: [
      { name: LISTENER, mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { spiffe: [PRODUCER] } },
    ],
  });
  return { w, app, sc, producer, admin: `http://127.0.0.1:${sc.admin!.port}` };
}

function sClientArgs(s: Setup, extra: string[]): string[] {
  const f = s.producer.files;
  const port = s.sc.listeners[0]!.address().port;
  return [
    's_client',
    '-connect',
    `127.0.0.1:${port}`,
    '-servername',
    'localhost',
    '-cert',
    f.certFile,
    '-key',
    f.keyFile,
    '-CAfile',
    f.caFile,
    ...extra,
  ];
}

/** An interactive s_client: what it printed so far, a way to type a line, and whether it exited by itself. */
interface Session {
  readonly child: ChildProcessWithoutNullStreams;
  out(): string;
  type(line: string): void;
  /** resolves with true when it exited by itself, false when it had to be killed after WAIT_MS */
  readonly exited: Promise<boolean>;
  waitFor(pattern: RegExp, what: string): Promise<void>;
}

function interactive(t: Test, args: string[]): Session {
  // -crlf: typed lines end in CRLF, as HTTP wants; -ign_eof is not given, so R and k are commands
  const child = spawn(OPENSSL, [...args, '-crlf'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stdin.on('error', () => undefined);
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    child.kill('SIGKILL');
  }, WAIT_MS);
  const exited = once(child, 'close').then(() => {
    clearTimeout(timer);
    return !killed;
  });
  t.teardown(() => {
    clearTimeout(timer);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    out: () => out,
    // one write per command: s_client reads a command only at the start of what it reads
    type: (line) => void child.stdin.write(`${line}\n`),
    exited,
    waitFor: (pattern, what) => eventually(() => pattern.test(out), WAIT_MS, what),
  };
}

/** One HTTP request over the s_client session, typed line by line; waits for its status line. */
async function get(c: Session, path: string, n: number): Promise<void> {
  c.type(`GET ${path} HTTP/1.1`);
  c.type('host: localhost');
  c.type('');
  await c.waitFor(new RegExp(`(HTTP/1\\.1 200 [^]*){${n}}`), `the answer to ${path}`);
}

t.test(
  'TLS 1.2: a client that asks to renegotiate is disconnected, counted and logged once; nothing it sends after reaches the app',
  async (t) => {
    const s = await setup(t);
    const c = interactive(t, sClientArgs(s, ['-tls1_2']));
    await c.waitFor(/Cipher is ECDHE-/, 'the TLS 1.2 handshake');
    await get(c, '/before', 1);
    t.equal(s.app.requests(), 1, 'the request before the renegotiation is served');

    c.type('R');
    await c.waitFor(/RENEGOTIATING/, 'openssl to start renegotiating');
    c.type('GET /after HTTP/1.1');
    c.type('host: localhost');
    c.type('');
    t.equal(await c.exited, true, 'the connection was closed under openssl: it exited by itself');
    t.equal((c.out().match(/HTTP\/1\.1 200 /g) ?? []).length, 1, 'only the first request was answered');
    t.equal(s.app.requests(), 1, 'the app got only the request from before the renegotiation');

    const failures = (reason?: string): Promise<number> =>
      s.sc.metric('tollgate_tls_handshakes_total', {
        listener: LISTENER,
        result: 'failure',
        ...(reason === undefined ? {} : { reason }),
      });
    await eventually(async () => (await failures()) === 1, WAIT_MS, 'the refusal to be counted');
    t.equal(await failures('other'), 1, 'once, as reason other');
    const CODE = 'ERR_TLS_RENEGOTIATION_DISABLED';
    const logged = s.sc.logs.lines.filter((l) => l.msg === 'TLS renegotiation refused: connection closed');
    t.match(logged, [{ code: CODE, peer: PRODUCER }], 'one log line, naming the peer');
    const audited = s.sc.logs.lines.filter((l) => l.audit === true && l.event === 'handshake_failure');
    t.match(audited, [{ listener: LISTENER, reason: 'other', code: CODE }], 'one audit event');
    const recent = (await (await request(`${s.admin}/handshakes/recent`)).body.json()) as {
      entries: Array<Record<string, unknown>>;
    };
    const entry = {
      kind: 'handshake_failure',
      reason: 'other',
      code: CODE,
      tlsVersion: 'TLSv1.2',
      peer: { spiffe: PRODUCER },
    };
    t.match(recent.entries, [entry], 'one /handshakes/recent entry');
  },
);

t.test('TLS 1.3: a key update is not a renegotiation; the connection stays and is served', async (t) => {
  const s = await setup(t);
  const c = interactive(t, sClientArgs(s, ['-tls1_3']));
  await c.waitFor(/TLSv1\.3/, 'the TLS 1.3 handshake');
  await get(c, '/before', 1);
  c.type('k');
  await c.waitFor(/KEYUPDATE/, 'openssl to send a key update');
  await get(c, '/after', 2);
  t.equal(s.app.requests(), 2, 'both requests reached the app');
  c.child.stdin.end();
  await c.exited;
  t.equal(
    await s.sc.metric('tollgate_tls_handshakes_total', { listener: LISTENER, result: 'failure' }),
    0,
    'no failure counted',
  );
});

t.test('TLS 1.2: a client offering only SHA-224 signature algorithms is refused; SHA-256 works', async (t) => {
  const s = await setup(t);
  const control = await runOpenssl(sClientArgs(s, ['-tls1_2', '-sigalgs', 'ECDSA+SHA256']), WAIT_MS);
  t.match(control.out, /Cipher is ECDHE-ECDSA-/, 'control: ECDSA+SHA256 negotiates TLS 1.2 with the same arguments');
  t.match(control.out, /Peer signing digest: SHA256/, 'and the server signed with SHA-256');

  const sha224 = await runOpenssl(sClientArgs(s, ['-tls1_2', '-sigalgs', 'ECDSA+SHA224:RSA+SHA224']), WAIT_MS);
  t.notMatch(sha224.out, /Cipher is (?!\(NONE\))/, 'no cipher was negotiated');
  t.notMatch(sha224.out, /Peer signing digest: SHA224/, 'the server never signed with SHA-224');
  t.not(sha224.code, 0, 'openssl reports failure');

  await eventually(
    async () =>
      (await s.sc.metric('tollgate_tls_handshakes_total', {
        listener: LISTENER,
        result: 'failure',
        reason: 'no_shared_cipher',
      })) === 1,
    WAIT_MS,
    'the failure to be counted as no_shared_cipher',
  );
  const logged = s.sc.logs.lines.filter((l) => l.msg === 'TLS handshake failed');
  t.match(
    logged,
    [{ reason: 'no_shared_cipher', code: 'ERR_SSL_NO_SHARED_SIGNATURE_ALGORITHMS' }],
    'logged once, with the code',
  );
  t.equal(s.app.requests(), 0, 'the app saw nothing');
});
