/**
 * The CLI as users meet it: `bin/tollgate.js` spawned as a real process, its exit code and
 * what it writes. Startup and validation failures exit 2 naming every problem with its
 * config path or flag; runtime failures (a port already taken) exit 1.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { PRODUCER } from './helpers/identities.ts';
import { exitWithin, startTollgate, type Finished } from './helpers/process.ts';
import { hoursAgo, makeCa, makeLeaf, tempDir, type Teardownable } from './helpers/pki.ts';
import { eventually, mtlsClient, startUpstream, world, type TestIdentity, type World } from './helpers/world.ts';

const DAY_MS = 86_400_000;
/** CA valid for 30 days, so only the leaf under test can trigger expiry warnings */
const LONG_CA = { notAfter: new Date(Date.now() + 30 * DAY_MS) };
/** a leaf well clear of the 7-day expiry warning */
const LONG_LEAF = { notAfter: new Date(Date.now() + 20 * DAY_MS) };

/** Run to completion, with a bound on how long that may take. */
async function run(
  t: Teardownable,
  args: string[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<Finished> {
  return exitWithin(startTollgate(t, args, opts.cwd), opts.timeoutMs ?? 20_000, `tollgate ${args.join(' ')}`);
}

/** Problem lines (`  - path: message`) from stderr. */
function problemLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('  - '));
}

function inboundListener(target: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target, allow: { spiffe: [PRODUCER] }, ...extra };
}

async function writeConfig(dir: string, name: string, raw: Record<string, unknown>): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, JSON.stringify(raw, null, 2));
  return file;
}

function configFor(
  id: TestIdentity,
  listeners: unknown[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    admin: { listen: null },
    identity: { certFile: id.files.certFile, keyFile: id.files.keyFile, caFile: id.files.caFile },
    listeners,
    ...extra,
  };
}

async function sidecarWorld(t: Teardownable): Promise<{ w: World; ingest: TestIdentity }> {
  const w = await world(t, LONG_CA);
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'], ...LONG_LEAF });
  return { w, ingest };
}

t.test('run --config with a valid config starts, proxies mTLS traffic, and exits 0 on SIGTERM', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const app = await startUpstream(t);
  const file = await writeConfig(
    w.dir,
    'good.json',
    configFor(ingest, [inboundListener(app.addr)], { admin: { listen: '127.0.0.1:0' } }),
  );
  const p = startTollgate(t, ['run', '--config', file]);
  await eventually(
    () => p.logs().some((l) => l.msg === 'tollgate started') || p.exitCode() !== null,
    15_000,
    'tollgate started',
  );
  const started = p.logs().find((l) => l.msg === 'tollgate started');
  t.ok(started, `logged "tollgate started" (stderr: ${p.stderr()})`);
  const listeners = (started?.listeners ?? []) as Array<{ name: string; address: string }>;
  t.equal(listeners.length, 1, 'one listener reported');
  const address = listeners[0]?.address ?? '';
  t.match(address, /^127\.0\.0\.1:[1-9][0-9]*$/, 'port 0 became a real port');

  const client = mtlsClient(t, address, w.ca, producer);
  const res = await client.request({ path: '/hello', method: 'GET' });
  const body = (await res.body.json()) as { url: string; headers: Record<string, string> };
  t.equal(res.statusCode, 200, 'request through the sidecar succeeds');
  t.equal(body.url, '/hello', 'the app saw the request');
  t.equal(body.headers['x-tollgate-peer'], PRODUCER, 'the app saw the peer identity');
  await client.close();

  p.kill('SIGTERM');
  const done = await p.exited;
  t.equal(done.code, 0, `exit 0 after SIGTERM (stderr: ${done.stderr})`);
});

t.test('run refuses an inbound listener without allow: exit 2 naming listeners[0].allow', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  const listener = inboundListener('127.0.0.1:8080');
  delete listener.allow;
  const file = await writeConfig(w.dir, 'no-allow.json', configFor(ingest, [listener]));
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /listeners\[0\]\.allow: /, 'names listeners[0].allow');
  t.notMatch(r.stdout, /tollgate started/, 'never started');
});

t.test(
  'run refuses an off-loopback inbound target without unsafeTarget, and accepts it with unsafeTarget',
  async (t) => {
    const { w, ingest } = await sidecarWorld(t);
    const file = await writeConfig(w.dir, 'off-loopback.json', configFor(ingest, [inboundListener('10.1.2.3:8080')]));
    const r = await run(t, ['run', '--config', file]);
    t.equal(r.code, 2, 'exit 2');
    t.match(
      r.stderr,
      /listeners\[0\]\.target: 10\.1\.2\.3:8080 .*unsafeTarget/,
      'names listeners[0].target and the way out',
    );

    const allowed = await writeConfig(
      w.dir,
      'unsafe-ok.json',
      configFor(ingest, [inboundListener('10.1.2.3:8080', { unsafeTarget: true })]),
    );
    const c = await run(t, ['check', '--config', allowed]);
    t.equal(c.code, 0, `with unsafeTarget: true the same config is valid (stderr: ${c.stderr})`);
  },
);

t.test('run refuses an unknown key: exit 2 naming its path', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  const file = await writeConfig(
    w.dir,
    'unknown.json',
    configFor(ingest, [inboundListener('127.0.0.1:8080', { allwo: { any: true } })]),
  );
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /listeners\[0\]\.allwo: .*unknown/, 'names listeners[0].allwo as unknown');
});

t.test('run lists every problem at once, each with its path', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  const listener = inboundListener('10.0.0.1:80');
  delete listener.allow;
  const raw = configFor(ingest, [listener], { bogus: true, tls: { minVersion: 'TLSv1.0' } });
  const file = await writeConfig(w.dir, 'many.json', raw);
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  const lines = problemLines(r.stderr);
  for (const path of ['bogus', 'tls.minVersion', 'listeners[0].target', 'listeners[0].allow']) {
    t.ok(
      lines.some((l) => l.startsWith(`  - ${path}: `)),
      `${path} is listed (stderr: ${r.stderr})`,
    );
  }
  t.equal(lines.length, 4, 'exactly the four problems, one line each');
});

t.test('run refuses a certificate file of garbage PEM: exit 2 naming identity.certFile', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  await writeFile(
    ingest.files.certFile,
    '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n',
  );
  const file = await writeConfig(w.dir, 'garbage.json', configFor(ingest, [inboundListener('127.0.0.1:8080')]));
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /identity\.certFile /, 'names identity.certFile');
  t.notMatch(r.stdout, /tollgate started/, 'never started');
});

t.test('run refuses a key that does not match the certificate: exit 2 naming identity.keyFile', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  const other = await makeLeaf(w.ca, { cn: 'other' });
  await writeFile(ingest.files.keyFile, other.keyPem, { mode: 0o600 });
  const file = await writeConfig(w.dir, 'mismatch.json', configFor(ingest, [inboundListener('127.0.0.1:8080')]));
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /identity\.keyFile .*does not match/, 'names identity.keyFile and the mismatch');
});

t.test('run refuses a certificate its CA did not issue: exit 2 naming the chain', async (t) => {
  const w = await world(t, LONG_CA);
  const stranger = await makeCa({ cn: 'some other CA', ...LONG_CA });
  // the leaf comes from `stranger`, ca.crt is the world's CA
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] }, stranger);
  const file = await writeConfig(w.dir, 'bad-ca.json', configFor(ingest, [inboundListener('127.0.0.1:8080')]));
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /identity\.certFile .*chain does not verify against caFile/, 'names the chain and the CA file');
});

t.test('run refuses an expired identity certificate: exit 2 naming identity.certFile', async (t) => {
  const w = await world(t, LONG_CA);
  const ingest = await w.identity('ingest', { notBefore: hoursAgo(48), notAfter: hoursAgo(24) });
  const file = await writeConfig(w.dir, 'expired.json', configFor(ingest, [inboundListener('127.0.0.1:8080')]));
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /identity\.certFile .*expired/, 'names identity.certFile as expired');
});

t.test('run exits 1 naming listeners[0].listen and EADDRINUSE when the port is taken', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((r) => squatter.close(r)));
  const port = (squatter.address() as AddressInfo).port;
  const file = await writeConfig(
    w.dir,
    'in-use.json',
    configFor(ingest, [inboundListener('127.0.0.1:8080', { listen: `127.0.0.1:${port}` })]),
  );
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 1, 'exit 1: a runtime failure, not a config one');
  t.match(
    r.stderr,
    new RegExp(`listeners\\[0\\]\\.listen: 127\\.0\\.0\\.1:${port}: EADDRINUSE`),
    'names the listener path, the address and EADDRINUSE',
  );
});

t.test('run exits 1 naming admin.listen and EADDRINUSE when the admin port is taken', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((r) => squatter.close(r)));
  const port = (squatter.address() as AddressInfo).port;
  const file = await writeConfig(
    w.dir,
    'admin-in-use.json',
    configFor(ingest, [inboundListener('127.0.0.1:8080')], { admin: { listen: `127.0.0.1:${port}` } }),
  );
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 1, 'exit 1');
  t.match(
    r.stderr,
    new RegExp(`admin\\.listen: 127\\.0\\.0\\.1:${port}: EADDRINUSE`),
    'names admin.listen, the address and EADDRINUSE',
  );
});

t.test('run without a usable config file exits 2 and says why', async (t) => {
  const dir = await tempDir(t, 'tollgate-cli-noconfig-');
  const none = await run(t, ['run']);
  t.equal(none.code, 2, 'no --config: exit 2');
  t.match(none.stderr, /--config/, 'names --config');

  const missing = await run(t, ['run', '--config', join(dir, 'missing.json')]);
  t.equal(missing.code, 2, 'missing file: exit 2');
  t.match(missing.stderr, /  - config: cannot read .*missing\.json/, 'names the file');

  const notJson = join(dir, 'broken.json');
  await writeFile(notJson, '{ "listeners": [ }');
  const broken = await run(t, ['run', '--config', notJson]);
  t.equal(broken.code, 2, 'invalid JSON: exit 2');
  t.match(broken.stderr, /  - config: invalid JSON/, 'says it is not JSON');
});

t.test('run refuses an identity file that does not exist: exit 2 naming identity.certFile', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  const raw = configFor(ingest, [inboundListener('127.0.0.1:8080')]);
  (raw.identity as Record<string, string>).certFile = join(w.dir, 'nowhere.crt');
  const file = await writeConfig(w.dir, 'no-cert.json', raw);
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /identity\.certFile .*nowhere\.crt: ENOENT/, 'names identity.certFile and ENOENT');
});

t.test('inbound without --target exits 2 naming --target', async (t) => {
  const { ingest } = await sidecarWorld(t);
  const f = ingest.files;
  const r = await run(t, [
    'inbound',
    '--listen',
    '127.0.0.1:0',
    '--cert',
    f.certFile,
    '--key',
    f.keyFile,
    '--ca',
    f.caFile,
    '--allow-spiffe',
    PRODUCER,
  ]);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /  - --target: required/, 'names --target');
  t.equal(problemLines(r.stderr).length, 1, 'and nothing else');
});

t.test('inbound refuses flags of the wrong mode or that cannot go together: exit 2 naming the flag', async (t) => {
  const { w, ingest } = await sidecarWorld(t);
  const f = ingest.files;
  const base = [
    'inbound',
    '--listen',
    '127.0.0.1:0',
    '--target',
    '127.0.0.1:8080',
    '--cert',
    f.certFile,
    '--key',
    f.keyFile,
    '--ca',
    f.caFile,
    '--allow-spiffe',
    PRODUCER,
  ];

  const wrongMode = await run(t, [...base, '--verify-spiffe', 'spiffe://example.org/ingest']);
  t.equal(wrongMode.code, 2, '--verify-spiffe on inbound: exit 2');
  t.match(wrongMode.stderr, /  - --verify-spiffe: .*outbound/, 'names --verify-spiffe as outbound-only');

  const tcpWithKeys = await run(t, [...base, '--protocol', 'tcp', '--keys', w.dir]);
  t.equal(tcpWithKeys.code, 2, '--protocol tcp with --keys: exit 2');
  t.match(tcpWithKeys.stderr, /  - --keys: /, 'names --keys');
  t.notMatch(tcpWithKeys.stdout, /tollgate started/, 'never started');
});

t.test('an unknown command exits 2 and says which', async (t) => {
  const r = await run(t, ['frobnicate']);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /unknown command frobnicate/, 'names the command');
});

t.test(
  'check --config: exit 0 on a good config, 0 with a warning when the certificate expires in 3 days, 2 when broken',
  async (t) => {
    const w = await world(t, LONG_CA);
    const good = await w.identity('good', LONG_LEAF);
    const soon = await w.identity('soon', { notBefore: hoursAgo(21 * 24), notAfter: hoursAgo(-72) }); // 3 of its 24 days left: under a third
    const broken = await w.identity('broken', { notBefore: hoursAgo(48), notAfter: hoursAgo(1) });
    const goodFile = await writeConfig(w.dir, 'good.json', configFor(good, [inboundListener('127.0.0.1:8080')]));
    const soonFile = await writeConfig(w.dir, 'soon.json', configFor(soon, [inboundListener('127.0.0.1:8080')]));
    const brokenFile = await writeConfig(w.dir, 'broken.json', configFor(broken, [inboundListener('127.0.0.1:8080')]));

    const g = await run(t, ['check', '--config', goodFile]);
    t.equal(g.code, 0, `good config: exit 0 (stderr: ${g.stderr})`);
    t.notMatch(g.stderr, /warning/i, 'good config: no warning');
    t.match(g.stdout, /: ok/, 'good config: says ok');

    const s = await run(t, ['check', '--config', soonFile]);
    t.equal(s.code, 0, `expiring in 3 days: still exit 0 (stderr: ${s.stderr})`);
    t.match(
      s.stderr,
      /warning: identity\.certFile .*expires/,
      'expiring in 3 days: a warning naming identity.certFile',
    );

    const b = await run(t, ['check', '--config', brokenFile]);
    t.equal(b.code, 2, 'expired certificate: exit 2');
    t.match(b.stderr, /identity\.certFile .*expired/, 'expired certificate: named');

    const listener = inboundListener('127.0.0.1:8080');
    delete listener.allow;
    const invalidFile = await writeConfig(w.dir, 'invalid.json', configFor(good, [listener]));
    const i = await run(t, ['check', '--config', invalidFile]);
    t.equal(i.code, 2, 'invalid config: exit 2');
    t.match(i.stderr, /listeners\[0\]\.allow: /, 'invalid config: problem named by path');
  },
);

t.test('certs dev writes a CA and identities with private keys 0600, and certs pin agrees with openssl', async (t) => {
  const dir = await tempDir(t, 'tollgate-cli-certs-');
  const out = join(dir, 'pki');
  const r = await run(t, [
    'certs',
    'dev',
    '--out',
    out,
    '--identity',
    'alpha',
    '--identity',
    'beta',
    '--trust-domain',
    'test.local',
  ]);
  t.equal(r.code, 0, `certs dev: exit 0 (stderr: ${r.stderr})`);
  for (const keyFile of ['ca.key', 'alpha/tls.key', 'beta/tls.key']) {
    t.equal((await stat(join(out, keyFile))).mode & 0o777, 0o600, `${keyFile} is mode 0600`);
  }
  for (const name of ['alpha', 'beta']) {
    const cert = new X509Certificate(await readFile(join(out, name, 'tls.crt')));
    const ca = new X509Certificate(await readFile(join(out, name, 'ca.crt')));
    t.ok(cert.verify(ca.publicKey), `${name}: issued by the CA next to it`);
    t.match(cert.subjectAltName ?? '', `URI:spiffe://test.local/${name}`, `${name}: SPIFFE URI SAN`);
    t.match(cert.subjectAltName ?? '', `DNS:${name}`, `${name}: DNS SAN`);
    t.match(cert.subjectAltName ?? '', 'IP Address:127.0.0.1', `${name}: IP SAN 127.0.0.1`);
  }

  const certFile = join(out, 'alpha', 'tls.crt');
  const pin = await run(t, ['certs', 'pin', certFile]);
  t.equal(pin.code, 0, 'certs pin: exit 0');
  const expected = execFileSync(
    'sh',
    [
      '-c',
      'openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64',
      'sh',
      certFile,
    ],
    { encoding: 'utf8' },
  ).trim();
  t.match(expected, /^[A-Za-z0-9+/]{43}=$/, 'openssl produced a base64 SHA-256');
  t.equal(pin.stdout, `sha256/${expected}\n`, 'certs pin prints exactly sha256/ + the openssl pipeline, one line');

  const otherPin = await run(t, ['certs', 'pin', join(out, 'beta', 'tls.crt')]);
  t.not(otherPin.stdout, pin.stdout, 'another key, another pin');
});

t.test('keys new writes 32 random bytes as base64 in a 0600 file and refuses to overwrite it', async (t) => {
  const dir = await tempDir(t, 'tollgate-cli-keys-');
  const out = join(dir, 'keys');
  const r = await run(t, ['keys', 'new', '--out', out, '--id', 'k1']);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`);
  const file = join(out, 'k1');
  t.equal((await stat(file)).mode & 0o777, 0o600, 'mode 0600');
  const text = (await readFile(file, 'utf8')).trim();
  t.match(text, /^[A-Za-z0-9+/]{43}=$/, 'one base64 value');
  t.equal(Buffer.from(text, 'base64').length, 32, 'of 32 bytes');

  const again = await run(t, ['keys', 'new', '--out', out, '--id', 'k1']);
  t.not(again.code, 0, 'a second run with the same id fails');
  t.ok(again.code === 1 || again.code === 2, `with a meaningful exit code (got ${again.code})`);
  t.match(again.stderr, /k1/, 'naming the file');
  t.equal((await readFile(file, 'utf8')).trim(), text, 'and leaves the existing key untouched');

  const k2 = await run(t, ['keys', 'new', '--out', out, '--id', 'k2']);
  t.equal(k2.code, 0, 'another id: exit 0');
  t.not((await readFile(join(out, 'k2'), 'utf8')).trim(), text, 'a different random key');
});

t.test('demo --once runs the whole story and exits 0', async (t) => {
  const r = await run(t, ['demo', '--once'], { timeoutMs: 60_000 });
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`);
  t.match(r.stdout, /30\/30 signed events accepted/, 'all thirty signed events went through');
  t.match(
    r.stdout,
    /100x the usual size: HTTP 202 .* flagged: 1 too_large \(the same in \/anomalies\/recent and tollgate_payload_anomalies_total\)/,
    'the oversized event passed in observe mode and was flagged once, as the admin API lists it',
  );
  t.notMatch(r.stdout, /http:\/\/127\.0\.0\.1:\d+\/status/, 'no admin URL that is dead once --once returns');
  t.match(r.stdout, /without --once/, 'it says how to keep the sidecars up');
  t.match(
    r.stdout,
    /Signature-Input: tollgate=\("@method" "@authority" "@path" "@query" "content-digest"/,
    'the signature the app saw is shown',
  );
  t.match(r.stdout, /ERR_PEER_NOT_ALLOWED/, 'the intruder was refused with ERR_PEER_NOT_ALLOWED');
  t.match(r.stdout, /no signature: refused with HTTP 401 ERR_SIG_MISSING/, 'an unsigned request was refused');
  t.match(r.stdout, /a replay\): refused with HTTP 401 ERR_SIG_REPLAYED/, 'the replayed request was refused');
});
