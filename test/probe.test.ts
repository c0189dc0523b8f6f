/**
 * `tollgate probe HOST:PORT`: inspect a TLS endpoint and judge it against expectations.
 * Real TLS servers on 127.0.0.1 port 0, a fresh PKI per test; first through probeEndpoint,
 * then as a real process (bin/tollgate.js runs dist/: `npm run build` first).
 */
import t from 'tap';
import tls from 'node:tls';
import net, { type AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { judgeProbe, type ProbeExpectations } from '../src/probe/judgeProbe.ts';
import { probeEndpoint } from '../src/probe/probeEndpoint.ts';
import { HYBRID_PQ_GROUP, runtimeSupportsGroup } from '../src/tls/policy.ts';
import { spkiPin } from '../src/core/spkiPin.ts';
import { exitWithin, startTollgate, type Finished } from './helpers/process.ts';
import { hoursAgo, makeCa, type Teardownable } from './helpers/pki.ts';
import { world, type TestIdentity, type World } from './helpers/world.ts';

const API = 'spiffe://example.org/api';
const CLIENT = 'spiffe://example.org/client';
/** what Node 24 (OpenSSL 3.5) negotiates between two peers offering tollgate's groups */
const DEFAULT_GROUP = runtimeSupportsGroup(HYBRID_PQ_GROUP) ? HYBRID_PQ_GROUP : 'X25519';
const NO_EXPECTATIONS: ProbeExpectations = { minDaysValid: 0, spiffe: [], spkiPins: [] };
const WRONG_PIN = 'sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

interface TestServer {
  readonly port: number;
  readonly addr: string;
}

/** A TLS server on loopback presenting `id`; it holds accepted connections open until teardown. */
async function startTlsServer(
  t: Teardownable,
  id: { certPem: string; keyPem: string },
  extra: tls.TlsOptions = {},
): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ cert: id.certPem, key: id.keyPem, ALPNProtocols: ['http/1.1'], ...extra }, (s) => {
    s.on('error', () => undefined);
  });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as AddressInfo).port;
  return { port, addr: `127.0.0.1:${port}` };
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function apiWorld(
  t: Teardownable,
  leafOpts: Parameters<World['identity']>[1] = {},
): Promise<{ w: World; api: TestIdentity }> {
  const w = await world(t);
  const api = await w.identity('api', { spiffe: [API], eku: 'server', ...leafOpts });
  return { w, api };
}

function probe(ca: { certPem: string }, port: number, extra: Partial<Parameters<typeof probeEndpoint>[0]> = {}) {
  return probeEndpoint({ host: '127.0.0.1', port, ca: ca.certPem, serverName: 'localhost', timeoutMs: 5000, ...extra });
}

function failed(checks: Array<{ name: string; ok: boolean }>): string[] {
  return checks.filter((c) => !c.ok).map((c) => c.name);
}

t.test(
  'probeEndpoint: a good endpoint reports TLS 1.3, the group, the chain, the SPIFFE ID and the pin, and every check holds',
  async (t) => {
    const { w, api } = await apiWorld(t);
    const srv = await startTlsServer(t, api);
    const r = await probe(w.ca, srv.port);
    t.equal(r.error, null, 'no error');
    t.equal(r.handshake, true, 'handshake completed');
    t.equal(r.tlsVersion, 'TLSv1.3');
    t.match(r.cipher, /^TLS_AES_|^TLS_CHACHA20_/, 'a TLS 1.3 suite');
    t.equal(r.group, DEFAULT_GROUP, `the negotiated group is ${DEFAULT_GROUP}`);
    t.equal(r.postQuantum, DEFAULT_GROUP === HYBRID_PQ_GROUP, 'flagged post-quantum when it is');
    t.equal(r.alpn, 'http/1.1', 'ALPN chosen by the server');
    t.equal(r.chain.length, 2, 'leaf and CA');
    t.equal(r.chain[0]?.subject, 'CN=api');
    t.equal(r.chain[0]?.issuer, 'CN=tollgate test CA');
    t.equal(r.chain[0]?.serial.toLowerCase(), api.leaf.cert.serialNumber.toLowerCase(), 'the serial number');
    t.ok(r.chain[0]?.subjectAltNames.includes(`URI:${API}`), 'leaf SANs listed');
    t.equal(r.chain[1]?.selfSigned, true, 'the chain ends at the self-signed CA');
    t.equal(r.chain[1]?.spkiPin, spkiPin(w.ca.certPem), 'the CA pin');
    t.same(r.leaf?.spiffe, [API]);
    t.same(r.leaf?.dns, ['localhost']);
    t.equal(r.leaf?.spkiPin, spkiPin(api.certPem), 'the leaf pin is the one certs pin prints');
    t.equal(r.trust.verified, true);
    t.equal(r.hostname.matches, true);
    t.equal(r.clientCertificate.status, 'not-required');
    const checks = judgeProbe(r, { minDaysValid: 0, spiffe: [API], spkiPins: [WRONG_PIN, spkiPin(api.certPem)] });
    t.same(failed(checks), [], 'every check holds');
    t.same(
      checks.map((c) => c.name),
      ['connection', 'trusted', 'hostname', 'validity', `spiffe ${API}`, 'spki-pin'],
    );
  },
);

t.test(
  'probeEndpoint: the group shows what was negotiated: X25519 or P-256 when the server offers only that',
  async (t) => {
    const { w, api } = await apiWorld(t);
    const x25519 = await startTlsServer(t, api, { ecdhCurve: 'X25519' });
    const p256 = await startTlsServer(t, api, { ecdhCurve: 'P-256' });
    const a = await probe(w.ca, x25519.port);
    t.equal(a.group, 'X25519');
    t.equal(a.postQuantum, false);
    const b = await probe(w.ca, p256.port);
    t.equal(b.group, 'P-256', 'OpenSSL says prime256v1; shown as P-256');
  },
);

t.test('probeEndpoint: a TLS 1.2-only server is reported as TLS 1.2 with an ECDHE cipher', async (t) => {
  const { w, api } = await apiWorld(t);
  const srv = await startTlsServer(t, api, { maxVersion: 'TLSv1.2' });
  const r = await probe(w.ca, srv.port);
  t.equal(r.error, null);
  t.equal(r.tlsVersion, 'TLSv1.2');
  t.match(r.cipher, /ECDHE/, 'ECDHE key exchange');
  t.equal(r.group, 'X25519', 'hybrid groups are TLS 1.3 only');
  t.same(failed(judgeProbe(r, NO_EXPECTATIONS)), []);
});

t.test('probeEndpoint: an expired server certificate fails the validity check only', async (t) => {
  const { w, api } = await apiWorld(t, { notBefore: hoursAgo(72), notAfter: hoursAgo(48) });
  const srv = await startTlsServer(t, api);
  const r = await probe(w.ca, srv.port);
  t.equal(r.error, null, 'the probe still connects');
  t.equal(r.trust.verified, true, 'the chain itself is fine');
  t.equal(r.trust.error, 'CERT_HAS_EXPIRED', 'OpenSSL said why it did not authorise');
  t.ok((r.leaf?.daysLeft ?? 0) < 0, 'negative days left');
  const checks = judgeProbe(r, NO_EXPECTATIONS);
  t.same(failed(checks), ['validity']);
  t.match(checks.find((c) => c.name === 'validity')?.detail, /expired at .* \(2 days ago\)/);
});

t.test('probeEndpoint: --min-days-valid fails a certificate expiring sooner', async (t) => {
  const { w, api } = await apiWorld(t, { notAfter: hoursAgo(-36) });
  const srv = await startTlsServer(t, api);
  const r = await probe(w.ca, srv.port);
  t.same(failed(judgeProbe(r, { ...NO_EXPECTATIONS, minDaysValid: 1 })), [], '1 day: holds (36 h left)');
  const checks = judgeProbe(r, { ...NO_EXPECTATIONS, minDaysValid: 2 });
  t.same(failed(checks), ['min-days-valid'], '2 days: fails');
  t.match(checks.find((c) => c.name === 'min-days-valid')?.detail, /1 day left, at least 2 days required/);
});

t.test('probeEndpoint: a name the certificate does not carry fails the hostname check', async (t) => {
  const { w, api } = await apiWorld(t);
  const srv = await startTlsServer(t, api);
  const r = await probe(w.ca, srv.port, { serverName: 'other' });
  t.equal(r.sni, 'other', 'sent as SNI');
  t.equal(r.hostname.matches, false);
  t.match(r.hostname.error, /other/);
  t.same(failed(judgeProbe(r, NO_EXPECTATIONS)), ['hostname']);
});

t.test(
  'probeEndpoint: the server name defaults to the host, and an IP is checked against IP SANs without SNI',
  async (t) => {
    const { w, api } = await apiWorld(t);
    const srv = await startTlsServer(t, api);
    const r = await probeEndpoint({ host: '127.0.0.1', port: srv.port, ca: w.ca.certPem, timeoutMs: 5000 });
    t.equal(r.serverName, '127.0.0.1');
    t.equal(r.sni, null, 'no SNI for an IP address');
    t.equal(r.hostname.matches, true, 'IP SAN 127.0.0.1 matches');
  },
);

t.test('probeEndpoint: a chain from another CA is not trusted, yet still shown', async (t) => {
  const { api } = await apiWorld(t);
  const stranger = await makeCa({ cn: 'some other CA' });
  const srv = await startTlsServer(t, api);
  const r = await probe(stranger, srv.port);
  t.equal(r.error, null, 'inspected anyway');
  t.equal(r.trust.verified, false);
  t.match(r.trust.error, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
  t.same(r.leaf?.spiffe, [API], 'the leaf is still shown');
  t.same(failed(judgeProbe(r, NO_EXPECTATIONS)), ['trusted']);
});

t.test('probeEndpoint: expectations on SPIFFE ID and SPKI pin fail when they do not match', async (t) => {
  const { w, api } = await apiWorld(t);
  const srv = await startTlsServer(t, api);
  const r = await probe(w.ca, srv.port);
  const checks = judgeProbe(r, { minDaysValid: 0, spiffe: [API, 'spiffe://example.org/nope'], spkiPins: [WRONG_PIN] });
  t.same(failed(checks), ['spiffe spiffe://example.org/nope', 'spki-pin']);
  t.match(checks.find((c) => c.name === 'spki-pin')?.detail, /is not one of the 1 expected pin/);
});

t.test(
  'probeEndpoint: a server requiring a client certificate accepts ours, and refuses us without one, saying why',
  async (t) => {
    const { w, api } = await apiWorld(t);
    const client = await w.identity('client', { spiffe: [CLIENT], eku: 'client' });
    const srv = await startTlsServer(t, api, { requestCert: true, rejectUnauthorized: true, ca: w.ca.certPem });

    const withCert = await probe(w.ca, srv.port, { cert: client.certPem, key: client.keyPem });
    t.equal(withCert.error, null, 'no error with a client certificate');
    t.equal(withCert.clientCertificate.offered, true);
    t.equal(withCert.clientCertificate.status, 'accepted');
    t.same(failed(judgeProbe(withCert, NO_EXPECTATIONS)), []);

    const without = await probe(w.ca, srv.port);
    t.equal(without.handshake, true, 'TLS 1.3: our side finished before the refusal');
    t.equal(without.error?.reason, 'no_client_cert');
    t.equal(without.error?.code, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    t.match(without.error?.message, /requires a client certificate and none was offered/);
    t.equal(without.clientCertificate.status, 'required');
    t.equal(without.leaf?.spkiPin, spkiPin(api.certPem), 'the server certificate is still reported');
    t.same(failed(judgeProbe(without, NO_EXPECTATIONS)), ['connection']);
  },
);

t.test('probeEndpoint: a client certificate from a CA the server does not trust is reported as refused', async (t) => {
  const { w, api } = await apiWorld(t);
  const rogueCa = await makeCa({ cn: 'rogue CA' });
  const rogue = await w.identity('rogue', { eku: 'client' }, rogueCa);
  const srv = await startTlsServer(t, api, { requestCert: true, rejectUnauthorized: true, ca: w.ca.certPem });
  const r = await probe(w.ca, srv.port, { cert: rogue.certPem, key: rogue.keyPem });
  t.not(r.error, null, 'an error');
  t.equal(r.clientCertificate.status, 'refused');
  t.match(r.error?.message, /refused the client certificate/);
});

t.test('probeEndpoint: a closed port gives a report with the error, not an exception', async (t) => {
  const ca = await makeCa();
  const r = await probe(ca, await closedPort());
  t.equal(r.handshake, false);
  t.equal(r.error?.stage, 'connect');
  t.equal(r.error?.reason, 'refused');
  t.equal(r.error?.code, 'ECONNREFUSED');
  t.same(r.chain, []);
  const checks = judgeProbe(r, { minDaysValid: 0, spiffe: [API], spkiPins: [] });
  t.ok(
    checks.every((c) => !c.ok),
    'nothing could be checked',
  );
  t.match(checks[0]?.detail, /connection refused/);
});

t.test('probeEndpoint: a server that never answers the handshake times out within the bound', async (t) => {
  const silent = net.createServer(() => undefined);
  const held = new Set<net.Socket>();
  silent.on('connection', (s) => held.add(s));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of held) s.destroy();
    return new Promise<void>((r) => silent.close(() => r()));
  });
  const ca = await makeCa();
  const started = Date.now();
  const r = await probe(ca, (silent.address() as AddressInfo).port, { timeoutMs: 300 });
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 290, `it waited for its timeout (${elapsed} ms)`);
  t.equal(r.error?.reason, 'timeout', 'and then gave up for that reason');
  t.equal(r.error?.stage, 'handshake');
});

// ---- the command, as a real process ----

async function run(t: Teardownable, args: string[]): Promise<Finished> {
  return exitWithin(startTollgate(t, ['probe', ...args]), 20_000, `tollgate probe ${args.join(' ')}`);
}

/** the check lines of the table: `  ✔ name  detail` */
function checkLine(stdout: string, name: string): string {
  return (
    stdout.split('\n').find((l) => new RegExp(`^  [✔✘] ${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} `).test(l)) ?? ''
  );
}

t.test(
  'tollgate probe: a good endpoint exits 0 and shows the version, group, SPIFFE ID and pin; --json says ok: true',
  async (t) => {
    const { api } = await apiWorld(t);
    const srv = await startTlsServer(t, api);
    const pin = spkiPin(api.certPem);
    const base = [
      srv.addr,
      '--ca',
      api.files.caFile,
      '--server-name',
      'localhost',
      '--expect-spiffe',
      API,
      '--expect-spki-pin',
      pin,
    ];
    const r = await run(t, base);
    t.equal(r.code, 0, `exit 0 (stdout: ${r.stdout} stderr: ${r.stderr})`);
    t.match(r.stdout, /^TLS version +TLSv1\.3$/m);
    t.match(r.stdout, new RegExp(`^group +${DEFAULT_GROUP}`, 'm'));
    t.match(r.stdout, new RegExp(`^SPIFFE IDs +${API}$`, 'm'));
    t.match(r.stdout, `SPKI pin      ${pin}`);
    t.match(r.stdout, /^chain +\[0\] CN=api +issuer CN=tollgate test CA/m);
    t.match(r.stdout, /^ +\[1\] CN=tollgate test CA .*\(self-signed\)$/m);
    t.match(checkLine(r.stdout, `spiffe ${API}`), /✔/);
    t.match(checkLine(r.stdout, 'spki-pin'), /✔/);
    t.match(r.stdout, /^result: ok$/m);

    const j = await run(t, [...base, '--json']);
    t.equal(j.code, 0, 'exit 0');
    const report = JSON.parse(j.stdout) as {
      ok: boolean;
      tlsVersion: string;
      group: string;
      checks: Array<{ name: string; ok: boolean }>;
      leaf: { spkiPin: string };
    };
    t.equal(report.ok, true);
    t.equal(report.tlsVersion, 'TLSv1.3');
    t.equal(report.group, DEFAULT_GROUP);
    t.equal(report.leaf.spkiPin, pin);
    t.ok(report.checks.length >= 5 && report.checks.every((c) => c.ok), 'every check listed and ok');
  },
);

t.test('tollgate probe: an expired server certificate exits 1 with the validity check failed', async (t) => {
  const { api } = await apiWorld(t, { notBefore: hoursAgo(72), notAfter: hoursAgo(48) });
  const srv = await startTlsServer(t, api);
  const r = await run(t, [srv.addr, '--ca', api.files.caFile, '--server-name', 'localhost']);
  t.equal(r.code, 1, 'exit 1');
  t.match(checkLine(r.stdout, 'validity'), /✘ validity +expired at/);
  t.match(checkLine(r.stdout, 'trusted'), /✔/, 'the chain itself is trusted');
  t.match(r.stdout, /result: FAILED \(1 of 4 checks\)/);
});

t.test('tollgate probe: --server-name other exits 1 with the hostname check failed', async (t) => {
  const { api } = await apiWorld(t);
  const srv = await startTlsServer(t, api);
  const r = await run(t, [srv.addr, '--ca', api.files.caFile, '--server-name', 'other']);
  t.equal(r.code, 1, 'exit 1');
  t.match(checkLine(r.stdout, 'hostname'), /✘ hostname .*other/);
});

t.test('tollgate probe: a wrong --expect-spki-pin exits 1', async (t) => {
  const { api } = await apiWorld(t);
  const srv = await startTlsServer(t, api);
  const r = await run(t, [
    srv.addr,
    '--ca',
    api.files.caFile,
    '--server-name',
    'localhost',
    '--expect-spki-pin',
    WRONG_PIN,
  ]);
  t.equal(r.code, 1, 'exit 1');
  t.match(checkLine(r.stdout, 'spki-pin'), /✘ spki-pin +sha256\/.* is not one of/);
});

t.test('tollgate probe: a wrong --expect-spiffe exits 1 naming the missing ID', async (t) => {
  const { api } = await apiWorld(t);
  const srv = await startTlsServer(t, api);
  const r = await run(t, [
    srv.addr,
    '--ca',
    api.files.caFile,
    '--server-name',
    'localhost',
    '--expect-spiffe',
    'spiffe://example.org/billing',
  ]);
  t.equal(r.code, 1, 'exit 1');
  t.match(
    checkLine(r.stdout, 'spiffe spiffe://example.org/billing'),
    /✘ .*not among the URI SANs \(spiffe:\/\/example\.org\/api\)/,
  );
});

t.test('tollgate probe: a server certificate from a CA other than --ca exits 1 as untrusted', async (t) => {
  const { w, api } = await apiWorld(t);
  const stranger = await makeCa({ cn: 'some other CA' });
  const strangerFile = join(w.dir, 'stranger.crt');
  await writeFile(strangerFile, stranger.certPem);
  const srv = await startTlsServer(t, api);
  const r = await run(t, [srv.addr, '--ca', strangerFile, '--server-name', 'localhost']);
  t.equal(r.code, 1, 'exit 1');
  t.match(checkLine(r.stdout, 'trusted'), /✘ trusted +the chain does not verify against --ca \(UNABLE_TO/);
});

t.test(
  'tollgate probe: a server requiring a client certificate: exit 0 with --cert/--key, exit 1 without and the reason shown',
  async (t) => {
    const { w, api } = await apiWorld(t);
    const client = await w.identity('client', { spiffe: [CLIENT], eku: 'client' });
    const srv = await startTlsServer(t, api, { requestCert: true, rejectUnauthorized: true, ca: w.ca.certPem });
    const base = [srv.addr, '--ca', api.files.caFile, '--server-name', 'localhost'];

    const ok = await run(t, [...base, '--cert', client.files.certFile, '--key', client.files.keyFile]);
    t.equal(ok.code, 0, `with a client certificate: exit 0 (stdout: ${ok.stdout})`);
    t.match(ok.stdout, /^client cert +accepted/m);

    const no = await run(t, base);
    t.equal(no.code, 1, 'without: exit 1');
    t.match(
      no.stdout,
      /^error +the server requires a client certificate and none was offered .*pass --cert and --key \[no_client_cert/m,
    );
    t.match(no.stdout, /^client cert +required/m);
    t.match(checkLine(no.stdout, 'connection'), /✘ connection .*no_client_cert/);
  },
);

t.test('tollgate probe: a closed port exits 1 with the error reported, not a crash', async (t) => {
  const { api } = await apiWorld(t);
  const port = await closedPort();
  const r = await run(t, [`127.0.0.1:${port}`, '--ca', api.files.caFile]);
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stdout, /^error +connection refused \[refused, ECONNREFUSED/m);
  t.equal(r.stderr, '', 'nothing on stderr: no stack trace');

  const j = await run(t, [`127.0.0.1:${port}`, '--ca', api.files.caFile, '--json']);
  t.equal(j.code, 1);
  const report = JSON.parse(j.stdout) as { ok: boolean; error: { reason: string } };
  t.equal(report.ok, false);
  t.equal(report.error.reason, 'refused');
});

t.test('tollgate probe: bad usage exits 2 naming the flag', async (t) => {
  const { w, api } = await apiWorld(t);
  const noCa = await run(t, ['127.0.0.1:443']);
  t.equal(noCa.code, 2, 'missing --ca: exit 2');
  t.match(noCa.stderr, /  - --ca: required/);

  const noEndpoint = await run(t, ['--ca', api.files.caFile]);
  t.equal(noEndpoint.code, 2, 'no endpoint: exit 2');
  t.match(noEndpoint.stderr, /  - HOST:PORT: required/);

  const badEndpoint = await run(t, ['localhost', '--ca', api.files.caFile]);
  t.equal(badEndpoint.code, 2, 'HOST without PORT: exit 2');
  t.match(badEndpoint.stderr, /  - HOST:PORT: localhost: expected HOST:PORT/);

  const unreadable = await run(t, ['127.0.0.1:443', '--ca', join(w.dir, 'missing.crt'), '--cert', api.files.certFile]);
  t.equal(unreadable.code, 2, 'unreadable file: exit 2');
  t.match(unreadable.stderr, /  - --ca: .*missing\.crt: ENOENT/, 'names --ca and the file');
  t.match(unreadable.stderr, /  - --key: required with --cert/, 'and --key, in the same run');

  const notPem = await run(t, ['127.0.0.1:443', '--ca', api.files.keyFile]);
  t.equal(notPem.code, 2, 'a key where a certificate belongs: exit 2');
  t.match(notPem.stderr, /  - --ca: .*not a PEM certificate/);

  const badPin = await run(t, [
    '127.0.0.1:443',
    '--ca',
    api.files.caFile,
    '--expect-spki-pin',
    'AAAA',
    '--timeout',
    '0',
  ]);
  t.equal(badPin.code, 2, 'malformed pin and timeout: exit 2');
  t.match(badPin.stderr, /  - --expect-spki-pin: AAAA: not an SPKI pin/);
  t.match(badPin.stderr, /  - --timeout: 0: /);

  const unknown = await run(t, ['127.0.0.1:443', '--ca', api.files.caFile, '--bogus']);
  t.equal(unknown.code, 2, 'unknown flag: exit 2');
  t.match(unknown.stderr, /--bogus/);
});
