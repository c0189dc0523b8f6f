/**
 * A small certificate issuer on top of @peculiar/x509 and Node's WebCrypto.
 *
 * Shared by the development PKI (`tollgate certs dev`) and the test fixtures, so both
 * build certificates the same way. Everything here is pure: it returns PEM text and
 * key handles and touches no files.
 *
 * About global state: @peculiar/x509 keeps one process-wide default crypto provider
 * (`x509.cryptoProvider`). Every call below passes Node's WebCrypto explicitly, and
 * `useNodeWebCrypto()` also sets it as that default, because some of the library's
 * internals (public-key parsing) read the default rather than the argument. Setting it
 * is idempotent: it is the same object as `globalThis.crypto` in Node.
 */
import { KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** Key algorithms we issue: ECDSA P-256 by default; RSA for TLS-policy and weak-key tests. */
export type KeyType = 'ec' | 'rsa1024' | 'rsa2048';

/** Which extended key usages a leaf carries. `none` omits the extension altogether. */
export type LeafUsage = 'both' | 'server' | 'client' | 'none';

/** A certificate with its key pair, in both parsed and PEM form. An issued CA signs with it. */
export interface Issued {
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
  readonly keyType: KeyType;
  /** PEM "CERTIFICATE". */
  readonly certPem: string;
  /** PKCS#8 PEM "PRIVATE KEY". */
  readonly keyPem: string;
}

export interface CaSpec {
  commonName: string;
  notBefore: Date;
  notAfter: Date;
  keyType?: KeyType;
  /** basicConstraints pathLenConstraint; default 0 (may sign leaves only). */
  pathLength?: number;
}

export interface LeafSpec {
  commonName: string;
  /** URI SANs, e.g. SPIFFE IDs. */
  uris?: readonly string[];
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
  usage?: LeafUsage;
  notBefore: Date;
  notAfter: Date;
  keyType?: KeyType;
}

const EC_KEYGEN: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const EC_SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const RSA_SIGN = { name: 'RSASSA-PKCS1-v1_5' } as const;
const RSA_PUBLIC_EXPONENT = new Uint8Array([1, 0, 1]);

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const USAGE_OIDS: Readonly<Record<LeafUsage, readonly string[]>> = {
  both: [SERVER_AUTH, CLIENT_AUTH],
  server: [SERVER_AUTH],
  client: [CLIENT_AUTH],
  none: [],
};

/** Make @peculiar/x509's process-wide default provider Node's WebCrypto (see the file comment). */
export function useNodeWebCrypto(): webcrypto.Crypto {
  x509.cryptoProvider.set(webcrypto);
  return webcrypto;
}

/** A fresh extractable signing key pair. RSA keys use RSASSA-PKCS1-v1_5 with SHA-256, which Node's TLS accepts. */
export async function generateKeyPair(keyType: KeyType = 'ec'): Promise<CryptoKeyPair> {
  const crypto = useNodeWebCrypto();
  const usages: webcrypto.KeyUsage[] = ['sign', 'verify'];
  if (keyType === 'ec') return crypto.subtle.generateKey(EC_KEYGEN, true, usages);
  const modulusLength = keyType === 'rsa1024' ? 1024 : 2048;
  const params: webcrypto.RsaHashedKeyGenParams = {
    name: 'RSASSA-PKCS1-v1_5',
    modulusLength,
    publicExponent: RSA_PUBLIC_EXPONENT,
    hash: 'SHA-256',
  };
  return crypto.subtle.generateKey(params, true, usages);
}

/** PKCS#8 PEM ("PRIVATE KEY") of an extractable private key. */
export function privateKeyToPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** A random positive serial number of 16 bytes, as hex, with a non-zero leading byte so DER keeps all 16. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  const first = (bytes[0] ?? 0) & 0x7f;
  bytes[0] = first === 0 ? 1 : first;
  return bytes.toString('hex');
}

/** A self-signed CA: basicConstraints CA critical, keyUsage keyCertSign+cRLSign critical, SKI. */
export async function issueCa(spec: CaSpec): Promise<Issued> {
  checkWindow(spec.notBefore, spec.notAfter);
  const keyType = spec.keyType ?? 'ec';
  const crypto = useNodeWebCrypto();
  const keys = await generateKeyPair(keyType);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: distinguishedName(spec.commonName),
      notBefore: spec.notBefore,
      notAfter: spec.notAfter,
      signingAlgorithm: signingAlgorithm(keyType),
      keys: keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, spec.pathLength ?? 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return issued(cert, keys, keyType);
}

/**
 * An end-entity certificate signed by `issuer`: basicConstraints CA:false, keyUsage
 * digitalSignature critical (plus keyEncipherment for RSA keys, as RSA key exchange needs
 * it), the requested EKUs, SANs, SKI and AKI.
 */
export async function issueLeaf(issuer: Issued, spec: LeafSpec): Promise<Issued> {
  checkWindow(spec.notBefore, spec.notAfter);
  const keyType = spec.keyType ?? 'ec';
  const crypto = useNodeWebCrypto();
  const keys = await generateKeyPair(keyType);
  const names = subjectAltNames(spec);
  const usage = spec.usage ?? 'both';

  let keyUsage = x509.KeyUsageFlags.digitalSignature;
  if (keyType !== 'ec') keyUsage |= x509.KeyUsageFlags.keyEncipherment;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(keyUsage, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey, false, crypto),
  ];
  if (usage !== 'none') extensions.push(new x509.ExtendedKeyUsageExtension([...USAGE_OIDS[usage]], false));
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));

  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: distinguishedName(spec.commonName),
      issuer: issuer.cert.subjectName,
      notBefore: spec.notBefore,
      notAfter: spec.notAfter,
      signingAlgorithm: signingAlgorithm(issuer.keyType),
      publicKey: keys.publicKey,
      signingKey: issuer.keys.privateKey,
      extensions,
    },
    crypto,
  );
  return issued(cert, keys, keyType);
}

function issued(cert: x509.X509Certificate, keys: CryptoKeyPair, keyType: KeyType): Issued {
  return Object.freeze({
    cert,
    keys,
    keyType,
    certPem: cert.toString('pem') + '\n',
    keyPem: privateKeyToPem(keys.privateKey),
  });
}

function signingAlgorithm(keyType: KeyType): webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams {
  return keyType === 'ec' ? EC_SIGN : RSA_SIGN;
}

/** A one-attribute subject, built structurally so a CN containing ',' or '=' stays one CN. */
function distinguishedName(commonName: string): x509.Name {
  if (commonName.length === 0 || commonName.length > 64) {
    throw new Error(`common name must be 1 to 64 characters, got ${commonName.length}`);
  }
  return new x509.Name([{ CN: [commonName] }]);
}

function subjectAltNames(spec: LeafSpec): x509.JsonGeneralNames {
  const names: x509.JsonGeneralNames = [];
  for (const uri of spec.uris ?? []) names.push({ type: 'url', value: uri });
  for (const dns of spec.dnsNames ?? []) names.push({ type: 'dns', value: dns });
  for (const ip of spec.ipAddresses ?? []) {
    if (isIP(ip) === 0) throw new Error(`not an IP address for a SAN: ${JSON.stringify(ip)}`);
    names.push({ type: 'ip', value: ip });
  }
  return names;
}

function checkWindow(notBefore: Date, notAfter: Date): void {
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) {
    throw new Error('certificate validity dates must be valid dates');
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new Error(
      `certificate notAfter (${notAfter.toISOString()}) must be after notBefore (${notBefore.toISOString()})`,
    );
  }
}
