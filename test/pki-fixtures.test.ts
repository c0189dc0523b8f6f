import t from 'tap';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import tls from 'node:tls';
import { hoursAgo, makeCa, makeLeaf, tempDir, writeIdentityDir } from './helpers/pki.ts';

function opensslText(pem: string): string {
  return execFileSync('/usr/bin/openssl', ['x509', '-noout', '-text'], { input: pem, encoding: 'utf8' });
}

/** `openssl verify -purpose P` on an identity folder: whether OpenSSL accepts tls.crt for that purpose under ca.crt. */
function opensslVerifies(dir: string, purpose: 'sslserver' | 'sslclient'): boolean {
  try {
    execFileSync(
      '/usr/bin/openssl',
      ['verify', '-CAfile', join(dir, 'ca.crt'), '-purpose', purpose, join(dir, 'tls.crt')],
      {
        stdio: 'pipe',
      },
    );
    return true;
  } catch {
    return false;
  }
}

t.test('makeLeaf defaults: EC P-256, both EKUs, localhost and 127.0.0.1, valid for a day', async (t) => {
  const ca = await makeCa();
  const before = Date.now();
  const leaf = await makeLeaf(ca);
  const cert = new X509Certificate(leaf.certPem);
  t.equal(cert.subject, 'CN=test');
  t.equal(cert.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1');
  t.ok(cert.checkIssued(new X509Certificate(ca.certPem)));
  t.ok(cert.validFromDate.getTime() <= before - 5 * 60_000 + 1000, 'back-dated five minutes');
  t.ok(cert.validToDate.getTime() > before + 23 * 3600_000 && cert.validToDate.getTime() <= Date.now() + 24 * 3600_000);
  t.equal(createPrivateKey(leaf.keyPem).asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.match(opensslText(leaf.certPem), /TLS Web Server Authentication, TLS Web Client Authentication/);
  t.doesNotThrow(() => tls.createSecureContext({ cert: leaf.certPem, key: leaf.keyPem, ca: ca.certPem }));
});

t.test("makeLeaf eku 'server' gives a certificate OpenSSL refuses for client auth", async (t) => {
  const dir = await tempDir(t, 'tollgate-fixture-');
  const ca = await makeCa();
  const server = await makeLeaf(ca, { eku: 'server', spiffe: ['spiffe://example.org/api'], dns: ['api'], ips: [] });
  const text = opensslText(server.certPem);
  t.match(text, /X509v3 Extended Key Usage: *\n *TLS Web Server Authentication\n/);
  t.notMatch(text, /TLS Web Client Authentication/);
  t.equal(new X509Certificate(server.certPem).subjectAltName, 'URI:spiffe://example.org/api, DNS:api');

  await writeIdentityDir(dir, server, ca);
  t.ok(opensslVerifies(dir, 'sslserver'), 'fine as a server');
  t.notOk(opensslVerifies(dir, 'sslclient'), 'refused as a client');

  const none = await makeLeaf(ca, { eku: 'none' });
  t.notMatch(opensslText(none.certPem), /Extended Key Usage/, "'none' omits the extension");
});

t.test('makeLeaf with past dates gives an expired certificate, future dates a not-yet-valid one', async (t) => {
  const dir = await tempDir(t, 'tollgate-fixture-');
  const ca = await makeCa({ notBefore: hoursAgo(72) });
  const expired = await makeLeaf(ca, { notBefore: hoursAgo(48), notAfter: hoursAgo(24) });
  const cert = new X509Certificate(expired.certPem);
  t.ok(cert.validToDate.getTime() < Date.now(), 'notAfter is in the past');
  await writeIdentityDir(join(dir, 'expired'), expired, ca);
  const out = (() => {
    try {
      execFileSync(
        '/usr/bin/openssl',
        ['verify', '-CAfile', join(dir, 'expired', 'ca.crt'), join(dir, 'expired', 'tls.crt')],
        {
          stdio: 'pipe',
        },
      );
      return 'verified';
    } catch (err) {
      const { stdout, stderr } = err as { stdout?: Buffer; stderr?: Buffer };
      return `${String(stdout ?? '')}${String(stderr ?? '')}`;
    }
  })();
  t.match(out, /certificate has expired/);

  const future = await makeLeaf(ca, { notBefore: hoursAgo(-24), notAfter: hoursAgo(-48) });
  t.ok(new X509Certificate(future.certPem).validFromDate.getTime() > Date.now(), 'notBefore is in the future');

  await t.rejects(
    makeLeaf(ca, { notBefore: hoursAgo(1), notAfter: hoursAgo(2) }),
    /notAfter .* must be after notBefore/,
  );
});

t.test('makeLeaf rsa1024 gives a 1024-bit RSA key that Node refuses as too weak', async (t) => {
  const ca = await makeCa();
  const weak = await makeLeaf(ca, { keyType: 'rsa1024' });
  const key = createPrivateKey(weak.keyPem);
  t.equal(key.asymmetricKeyType, 'rsa');
  t.equal(key.asymmetricKeyDetails?.modulusLength, 1024);
  t.match(opensslText(weak.certPem), /Public-Key: \(1024 bit\)/);
  t.match(opensslText(weak.certPem), /Key Usage: critical\n *Digital Signature, Key Encipherment/);
  t.ok(new X509Certificate(weak.certPem).checkPrivateKey(key));
  t.throws(() => tls.createSecureContext({ cert: weak.certPem, key: weak.keyPem }), {
    code: 'ERR_SSL_EE_KEY_TOO_SMALL',
  });
});

t.test('an RSA CA signs EC leaves that Node TLS loads', async (t) => {
  // The pin test also makes an RSA CA; here it signs, so its signature algorithm is exercised.
  const ca = await makeCa({ keyType: 'rsa2048', cn: 'rsa root' });
  const leaf = await makeLeaf(ca, { cn: 'svc' });
  const text = opensslText(leaf.certPem);
  t.match(text, /Signature Algorithm: sha256WithRSAEncryption/);
  t.match(text, /Issuer: CN = rsa root/);
  t.ok(new X509Certificate(leaf.certPem).verify(new X509Certificate(ca.certPem).publicKey));
  t.doesNotThrow(() => tls.createSecureContext({ cert: leaf.certPem, key: leaf.keyPem, ca: ca.certPem }));
});

t.test('writeIdentityDir writes tls.crt, a private tls.key and ca.crt', async (t) => {
  const dir = await tempDir(t, 'tollgate-fixture-');
  const ca = await makeCa();
  const leaf = await makeLeaf(ca);
  const files = await writeIdentityDir(join(dir, 'id'), leaf, ca);
  t.same(files, {
    certFile: join(dir, 'id', 'tls.crt'),
    keyFile: join(dir, 'id', 'tls.key'),
    caFile: join(dir, 'id', 'ca.crt'),
  });
  t.equal((await stat(files.keyFile)).mode & 0o777, 0o600);
  t.equal(await readFile(files.caFile, 'utf8'), ca.certPem);
  t.equal(await readFile(files.certFile, 'utf8'), leaf.certPem);
});

t.test('tempDir removes its folder at teardown', async (t) => {
  let dir = '';
  await t.test('inner', async (t) => {
    dir = await tempDir(t, 'tollgate-tmp-');
    t.ok((await stat(dir)).isDirectory());
  });
  await t.rejects(stat(dir), { code: 'ENOENT' });
});
