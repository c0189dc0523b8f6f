import t from 'tap';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, createSecretKey, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSpkiPin, spkiPin, spkiPinOfKeyObject } from '../src/core/spkiPin.ts';
import { makeCa, makeLeaf, tempDir } from './helpers/pki.ts';

/** The pin as OpenSSL computes it, straight from the certificate file. */
function opensslPin(certFile: string): string {
  const pubkeyPem = execFileSync('/usr/bin/openssl', ['x509', '-in', certFile, '-pubkey', '-noout']);
  const der = execFileSync('/usr/bin/openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pubkeyPem });
  const digest = execFileSync('/usr/bin/openssl', ['dgst', '-sha256', '-binary'], { input: der });
  const b64 = execFileSync('/usr/bin/openssl', ['enc', '-base64', '-A'], { input: digest, encoding: 'utf8' });
  return `sha256/${b64.trim()}`;
}

t.test('spkiPin matches what openssl computes, for EC and RSA certificates', async (t) => {
  const dir = await tempDir(t, 'tollgate-pin-');
  const ecCa = await makeCa();
  const rsaCa = await makeCa({ keyType: 'rsa2048' });
  const certs = {
    'ec CA': ecCa.certPem,
    'ec leaf': (await makeLeaf(ecCa, {})).certPem,
    'rsa CA': rsaCa.certPem,
  };
  const pins = new Set<string>();
  for (const [label, pem] of Object.entries(certs)) {
    const file = join(dir, `${label.replace(' ', '-')}.crt`);
    await writeFile(file, pem);
    const pin = spkiPin(pem);
    t.equal(pin, opensslPin(file), `${label}: same pin as openssl`);
    t.ok(isSpkiPin(pin), `${label}: pin has the pin syntax`);
    pins.add(pin);
  }
  t.equal(pins.size, 3, 'different keys, different pins');
});

t.test('spkiPin reads PEM strings, PEM buffers, DER and the first certificate of a bundle', async (t) => {
  const ca = await makeCa();
  const leaf = await makeLeaf(ca, {});
  const pin = spkiPin(leaf.certPem);
  t.equal(spkiPin(Buffer.from(leaf.certPem)), pin, 'PEM as a Buffer');
  t.equal(spkiPin(new X509Certificate(leaf.certPem).raw), pin, 'DER');
  t.equal(spkiPin(leaf.certPem + ca.certPem), pin, 'bundle: the first certificate counts');
  t.not(spkiPin(ca.certPem + leaf.certPem), pin, 'bundle order matters');
  t.throws(() => spkiPin('not a certificate'));
});

t.test('spkiPinOfKeyObject pins a key the same as its certificate', async (t) => {
  const ca = await makeCa();
  const leaf = await makeLeaf(ca, {});
  const pin = spkiPin(leaf.certPem);
  t.equal(spkiPinOfKeyObject(new X509Certificate(leaf.certPem).publicKey), pin, 'public key');
  t.equal(spkiPinOfKeyObject(createPrivateKey(leaf.keyPem)), pin, 'private key pins as its public half');
  t.throws(() => spkiPinOfKeyObject(createSecretKey(randomBytes(32))), /secret key/);
});

t.test('isSpkiPin accepts exactly sha256/ + canonical base64 of 32 bytes', async (t) => {
  const good = `sha256/${randomBytes(32).toString('base64')}`;
  t.ok(isSpkiPin(good));
  t.ok(isSpkiPin('sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='), 'sha256 of the empty string');

  const bad: Record<string, string> = {
    empty: '',
    'no prefix': randomBytes(32).toString('base64'),
    'other algorithm': `sha1/${randomBytes(32).toString('base64')}`,
    'upper-case prefix': `SHA256/${randomBytes(32).toString('base64')}`,
    '31 bytes': `sha256/${randomBytes(31).toString('base64')}`,
    '33 bytes': `sha256/${randomBytes(33).toString('base64')}`,
    '48 bytes': `sha256/${randomBytes(48).toString('base64')}`,
    'missing padding': good.slice(0, -1),
    base64url: 'sha256/47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=',
    'non-canonical trailing bits': 'sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=',
    'trailing space': `${good} `,
    'hex digest': `sha256/${randomBytes(32).toString('hex')}`,
    garbage: 'sha256/!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!=',
  };
  for (const [label, value] of Object.entries(bad)) t.notOk(isSpkiPin(value), `rejects ${label}`);
});
