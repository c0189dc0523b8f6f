import t from 'tap';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import { createDevPki, writeDevPki } from '../src/certs/devPki.ts';
import type { PemKeyPair } from '../src/certs/devPki.ts';
import { makeCa, makeLeaf, tempDir, type Teardownable } from './helpers/pki.ts';
import { exitWithin, startTollgate, type Finished } from './helpers/process.ts';

const NOW = new Date('2026-03-01T12:00:00.000Z');
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

function opensslText(pem: string): string {
  return execFileSync('/usr/bin/openssl', ['x509', '-noout', '-text'], { input: pem, encoding: 'utf8' });
}

t.test('createDevPki issues a CA and SPIFFE-named identities as specified', async (t) => {
  const pki = await createDevPki({ trustDomain: 'example.org', identities: ['producer', 'warehouse'], now: NOW });
  t.same(Object.keys(pki.identities), ['producer', 'warehouse']);

  const ca = new X509Certificate(pki.ca.certPem);
  t.equal(ca.ca, true, 'CA flag set');
  t.equal(ca.subject, 'CN=tollgate dev CA (example.org)');
  t.equal(ca.issuer, ca.subject, 'self-issued');
  t.ok(ca.verify(ca.publicKey), 'self-signed');
  t.equal(ca.validFromDate.getTime(), NOW.getTime() - 5 * MINUTE);
  t.equal(ca.validToDate.getTime(), NOW.getTime() + 30 * DAY);

  const caParsed = new x509.X509Certificate(pki.ca.certPem);
  const bc = caParsed.getExtension(x509.BasicConstraintsExtension);
  t.ok(bc?.critical, 'basicConstraints critical');
  t.equal(bc?.ca, true);
  const caKu = caParsed.getExtension(x509.KeyUsagesExtension);
  t.ok(caKu?.critical, 'CA keyUsage critical');
  t.equal(caKu?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  const caSki = caParsed.getExtension(x509.SubjectKeyIdentifierExtension);
  t.ok(caSki?.keyId, 'CA has a subjectKeyIdentifier');

  const caKey = createPrivateKey(pki.ca.keyPem);
  t.match(pki.ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8 PEM');
  t.equal(caKey.asymmetricKeyType, 'ec');
  t.equal(caKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

  const serials = new Set([ca.serialNumber]);
  for (const name of ['producer', 'warehouse']) {
    const pair = pki.identities[name];
    if (!pair) throw new Error(`missing identity ${name}`);
    const leaf = new X509Certificate(pair.certPem);
    t.equal(leaf.subject, `CN=${name}`);
    t.equal(leaf.ca, false, `${name} is not a CA`);
    const sans = (leaf.subjectAltName ?? '').split(', ').sort();
    t.same(sans, [`DNS:${name}`, 'DNS:localhost', 'IP Address:127.0.0.1', `URI:spiffe://example.org/${name}`].sort());
    t.ok(leaf.checkIssued(ca), `${name} issued by the CA`);
    t.ok(leaf.verify(ca.publicKey), `${name} signed by the CA key`);
    t.equal(leaf.validFromDate.getTime(), NOW.getTime() - 5 * MINUTE, 'back-dated for clock skew');
    t.equal(leaf.validToDate.getTime(), NOW.getTime() + 30 * DAY);
    t.notOk(serials.has(leaf.serialNumber), 'serial is unique');
    serials.add(leaf.serialNumber);
    t.ok(parseInt(leaf.serialNumber.slice(0, 2), 16) < 0x80, 'serial is positive');

    const key = createPrivateKey(pair.keyPem);
    t.match(pair.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    t.ok(leaf.checkPrivateKey(key), `${name} key matches its certificate`);

    const text = opensslText(pair.certPem);
    t.match(text, /X509v3 Extended Key Usage: *\n *TLS Web Server Authentication, TLS Web Client Authentication/);
    t.match(text, /X509v3 Key Usage: critical\n *Digital Signature\n/);
    t.match(text, /X509v3 Basic Constraints: critical\n *CA:FALSE/);
    t.match(text, /Public Key Algorithm: id-ecPublicKey[\s\S]*NIST CURVE: P-256/);

    const parsed = new x509.X509Certificate(pair.certPem);
    const aki = parsed.getExtension(x509.AuthorityKeyIdentifierExtension);
    t.equal(aki?.keyId, caSki?.keyId, 'authorityKeyIdentifier names the CA key');
  }
});

t.test('createDevPki honours validityDays and leaves nothing sharing a key', async (t) => {
  const pki = await createDevPki({ trustDomain: 'dev.local', identities: ['a'], validityDays: 2, now: NOW });
  const leaf = new X509Certificate(pki.identities['a']?.certPem ?? '');
  t.equal(leaf.validToDate.getTime(), NOW.getTime() + 2 * DAY);
  t.not(pki.identities['a']?.keyPem, pki.ca.keyPem);
});

t.test('createDevPki refuses invalid names, listing every problem', async (t) => {
  await t.rejects(createDevPki({ trustDomain: 'Example.org', identities: ['ok'] }), {
    message: /trust domain "Example\.org"/,
  });
  for (const td of ['', 'under_score.org', 'a..b', '-lead.org', 'spiffe://x']) {
    await t.rejects(
      createDevPki({ trustDomain: td, identities: [] }),
      { message: /trust domain/ },
      `trust domain ${td}`,
    );
  }
  for (const name of ['a/b', '..', '.', '', 'sp ace', 'ca.key', 'é']) {
    await t.rejects(
      createDevPki({ trustDomain: 'example.org', identities: [name] }),
      { message: /identity name/ },
      `identity ${JSON.stringify(name)}`,
    );
  }
  await t.rejects(createDevPki({ trustDomain: 'example.org', identities: ['x', 'x'] }), { message: /listed twice/ });
  await t.rejects(createDevPki({ trustDomain: 'example.org', identities: ['x'], validityDays: 0 }), {
    message: /validityDays/,
  });
  const err = await createDevPki({ trustDomain: 'BAD', identities: ['a/b', 'ok', '..'] }).catch((e: unknown) => e);
  t.ok(err instanceof Error);
  const message = (err as Error).message;
  t.match(message, /"BAD"/);
  t.match(message, /"a\/b"/);
  t.match(message, /"\.\."/);
  t.notMatch(message, /"ok"/, 'valid names are not reported');
});

t.test('createDevPki accepts names using every allowed character class', async (t) => {
  const pki = await createDevPki({ trustDomain: 'prod-1.example.org', identities: ['Web_api-2.v1', 'localhost'] });
  const leaf = new X509Certificate(pki.identities['Web_api-2.v1']?.certPem ?? '');
  t.match(leaf.subjectAltName, 'URI:spiffe://prod-1.example.org/Web_api-2.v1');
  const local = new X509Certificate(pki.identities['localhost']?.certPem ?? '');
  t.equal(local.subjectAltName?.split('DNS:localhost').length, 2, 'DNS:localhost appears once');
});

t.test('writeDevPki lays out a CA and one TLS-secret-shaped folder per identity', async (t) => {
  const root = await tempDir(t, 'tollgate-devpki-');
  const out = join(root, 'nested', 'pki');
  const pki = await createDevPki({ trustDomain: 'example.org', identities: ['producer', 'warehouse'] });
  const files = await writeDevPki(out, pki);

  const expected = [
    'ca.crt',
    'ca.key',
    'producer/tls.crt',
    'producer/tls.key',
    'producer/ca.crt',
    'warehouse/tls.crt',
    'warehouse/tls.key',
    'warehouse/ca.crt',
  ].map((f) => join(out, f));
  t.same(files, expected, 'returns every file written, in order');

  for (const file of expected) {
    const mode = (await stat(file)).mode & 0o777;
    t.equal(mode, file.endsWith('.key') ? 0o600 : 0o644, `${file} mode ${mode.toString(8)}`);
  }
  for (const dir of [out, join(out, 'producer'), join(out, 'warehouse')]) {
    t.equal((await stat(dir)).mode & 0o777, 0o700, `${dir} is 0700`);
  }
  t.equal(await readFile(join(out, 'ca.crt'), 'utf8'), pki.ca.certPem);
  t.equal(await readFile(join(out, 'ca.key'), 'utf8'), pki.ca.keyPem);
  for (const name of ['producer', 'warehouse']) {
    t.equal(await readFile(join(out, name, 'ca.crt'), 'utf8'), pki.ca.certPem, `${name}/ca.crt is the CA`);
    t.equal(await readFile(join(out, name, 'tls.crt'), 'utf8'), pki.identities[name]?.certPem);
    t.equal(await readFile(join(out, name, 'tls.key'), 'utf8'), pki.identities[name]?.keyPem);
  }

  // Writing again over the same folder replaces the contents and keeps the key private.
  const again = await createDevPki({ trustDomain: 'example.org', identities: ['producer'] });
  await writeDevPki(out, again);
  t.equal(await readFile(join(out, 'producer', 'tls.key'), 'utf8'), again.identities['producer']?.keyPem);
  t.equal((await stat(join(out, 'producer', 'tls.key'))).mode & 0o777, 0o600);
});

interface HandshakeResult {
  serverSawPeer?: tls.PeerCertificate;
  serverError?: Error;
  /** Why the server's certificate check failed, when it did. */
  serverAuthorizationError?: string;
  clientAuthorized?: boolean;
  clientError?: Error;
  reply?: string;
}

/** One mutual-TLS exchange on 127.0.0.1: the server requires and verifies a client certificate. */
async function mutualTls(
  server: PemKeyPair & { caPem: string },
  client: PemKeyPair & { caPem: string },
): Promise<HandshakeResult> {
  const result: HandshakeResult = {};
  const srv = tls.createServer({
    cert: server.certPem,
    key: server.keyPem,
    ca: server.caPem,
    requestCert: true,
    rejectUnauthorized: true,
  });
  const serverDone = new Promise<void>((resolve) => {
    srv.on('secureConnection', (socket) => {
      result.serverSawPeer = socket.getPeerCertificate();
      socket.end('hello');
      socket.on('close', () => resolve());
    });
    srv.on('tlsClientError', (err, socket) => {
      result.serverError = err;
      result.serverAuthorizationError = String(socket.authorizationError ?? '');
      resolve();
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  const clientDone = new Promise<void>((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, cert: client.certPem, key: client.keyPem, ca: client.caPem });
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('secureConnect', () => {
      result.clientAuthorized = socket.authorized;
    });
    socket.on('data', (chunk: string) => {
      reply += chunk;
    });
    socket.on('error', (err) => {
      result.clientError = err;
    });
    socket.on('close', () => {
      result.reply = reply;
      resolve();
    });
  });
  await Promise.all([serverDone, clientDone]);
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return result;
}

t.test('two dev identities complete a mutual-TLS handshake; a foreign CA leaf is refused', async (t) => {
  const pki = await createDevPki({ trustDomain: 'example.org', identities: ['producer', 'warehouse'] });
  const caPem = pki.ca.certPem;
  const warehouse = { ...pki.identities['warehouse']!, caPem };
  const producer = { ...pki.identities['producer']!, caPem };

  const ok = await mutualTls(warehouse, producer);
  t.equal(ok.serverError, undefined, 'server accepted the client');
  t.equal(ok.clientError, undefined, 'client accepted the server');
  t.equal(ok.clientAuthorized, true, 'server certificate verified (IP SAN 127.0.0.1)');
  t.equal(ok.reply, 'hello');
  t.match(ok.serverSawPeer?.subjectaltname, 'URI:spiffe://example.org/producer', 'server saw the client SPIFFE ID');

  const otherCa = await makeCa({ cn: 'someone else' });
  const stranger = await makeLeaf(otherCa, { cn: 'producer', spiffe: ['spiffe://example.org/producer'] });

  const refusedClient = await mutualTls(warehouse, { certPem: stranger.certPem, keyPem: stranger.keyPem, caPem });
  t.ok(refusedClient.serverError, 'server refused the foreign client certificate');
  t.match(
    refusedClient.serverAuthorizationError,
    /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/,
    'refused for its issuer',
  );
  t.equal(refusedClient.serverSawPeer, undefined, 'no secure connection was established');
  t.not(refusedClient.reply, 'hello');

  const refusedServer = await mutualTls({ certPem: stranger.certPem, keyPem: stranger.keyPem, caPem }, producer);
  t.ok(refusedServer.clientError, 'client refused the foreign server certificate');
  t.equal(refusedServer.clientAuthorized, undefined, 'client never reached secureConnect');
  t.match(
    (refusedServer.clientError as NodeJS.ErrnoException | undefined)?.code,
    /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/,
  );
});

/** `tollgate certs dev …` as a process, run to its end. */
function certsDev(t: Teardownable, args: string[], cwd?: string): Promise<Finished> {
  return exitWithin(startTollgate(t, ['certs', 'dev', ...args], cwd), 20_000, `tollgate certs dev ${args.join(' ')}`);
}

t.test('certs dev writes into an absent folder and into an empty one', async (t) => {
  const dir = await tempDir(t, 'tollgate-certs-dev-');
  // what `npm run certs:dev` runs, from the folder it runs in
  const absent = await certsDev(t, ['--out', 'certs-dev/out'], dir);
  t.equal(absent.code, 0, `an absent folder: exit 0 (stderr: ${absent.stderr})`);
  t.ok((await stat(join(dir, 'certs-dev', 'out', 'ca.crt'))).isFile(), 'the CA is written');
  const empty = join(dir, 'empty');
  await mkdir(empty);
  const r = await certsDev(t, ['--out', empty, '--identity', 'solo']);
  t.equal(r.code, 0, `an empty folder: exit 0 (stderr: ${r.stderr})`);
  t.same((await readdir(empty)).sort(), ['ca.crt', 'ca.key', 'solo']);
});

t.test('certs dev refuses a folder that already holds files, in one line, and leaves its CA as it was', async (t) => {
  const dir = await tempDir(t, 'tollgate-certs-dev-');
  const out = join(dir, 'pki');
  t.equal((await certsDev(t, ['--out', out])).code, 0, 'the first PKI');
  const ca = await readFile(join(out, 'ca.crt'), 'utf8');
  const again = await certsDev(t, ['--out', out, '--identity', 'other']);
  t.equal(again.code, 2, 'exit 2');
  t.equal(again.stdout, '', 'nothing written to stdout');
  const lines = again.stderr.trimEnd().split('\n');
  t.equal(lines.length, 1, `one line (got: ${again.stderr})`);
  t.match(lines[0], `--out ${out} already holds ca.crt, ca.key, ingest/ and 1 more`, 'what is there');
  t.match(lines[0], /pass --force/, 'and how to go ahead anyway');
  t.equal(await readFile(join(out, 'ca.crt'), 'utf8'), ca, 'the CA is untouched');
  await t.rejects(stat(join(out, 'other')), 'no identity was added');

  const stray = join(dir, 'stray');
  await mkdir(stray);
  await writeFile(join(stray, 'notes.txt'), 'mine\n');
  const other = await certsDev(t, ['--out', stray]);
  t.equal(other.code, 2, 'a folder of anything else is refused too');
  t.match(other.stderr, 'already holds notes.txt;');

  const file = join(dir, 'a-file');
  await writeFile(file, 'x');
  const notDir = await certsDev(t, ['--out', file]);
  t.equal(notDir.code, 2, 'a file where the folder should be: exit 2');
  t.match(notDir.stderr, 'is a file, not a folder');
});

t.test('certs dev --force replaces the CA in a folder that holds one', async (t) => {
  const dir = await tempDir(t, 'tollgate-certs-dev-');
  const out = join(dir, 'pki');
  t.equal((await certsDev(t, ['--out', out])).code, 0, 'the first PKI');
  const before = new X509Certificate(await readFile(join(out, 'ca.crt')));
  const r = await certsDev(t, ['--out', out, '--force']);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`);
  const after = new X509Certificate(await readFile(join(out, 'ca.crt')));
  t.not(after.fingerprint256, before.fingerprint256, 'a new CA');
  const leaf = new X509Certificate(await readFile(join(out, 'ingest', 'tls.crt')));
  t.ok(leaf.verify(after.publicKey), 'the identities are issued by the new CA');
  t.notOk(leaf.verify(before.publicKey), 'not by the old one');
});
