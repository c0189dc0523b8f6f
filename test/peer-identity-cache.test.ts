/**
 * The peer identity cache gives exactly what peerIdentity computes, once per certificate
 * (the same object again for the same bytes, another for a re-issued certificate of the same
 * key), from either form Node hands out, and stays within its bound.
 */
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { makeCa, makeLeaf } from './helpers/pki.ts';
import { peerIdentity } from '../src/tls/peerIdentity.ts';
import { PeerIdentityCache } from '../src/tls/peerIdentityCache.ts';

const ca = await makeCa();

t.test('a certificate seen again gives the identity computed the first time, equal to peerIdentity', async (t) => {
  const leaf = await makeLeaf(ca, {
    cn: 'producer',
    spiffe: ['spiffe://example.org/producer'],
    dns: ['Producer.example'],
  });
  const cache = new PeerIdentityCache();
  const first = cache.identityOf(new X509Certificate(leaf.certPem));
  t.same(first, peerIdentity(new X509Certificate(leaf.certPem)));
  t.equal(first.display, 'spiffe://example.org/producer');
  t.same(first.dns, ['producer.example']);
  t.equal(cache.identityOf(new X509Certificate(leaf.certPem)), first, 'a new X509Certificate of the same bytes hits');
  const x = new X509Certificate(leaf.certPem);
  t.equal(
    cache.identityOfPeerCertificate({ fingerprint256: x.fingerprint256, raw: x.raw }),
    first,
    'the checkServerIdentity form hits the same entry',
  );
  t.equal(cache.size, 1);
});

t.test('a different certificate is a different entry, even for the same key and names', async (t) => {
  const names = { cn: 'producer', spiffe: ['spiffe://example.org/producer'], dns: ['producer.example'] };
  const a = await makeLeaf(ca, names);
  const b = await makeLeaf(ca, { ...names, keyOf: a });
  const xa = new X509Certificate(a.certPem);
  const xb = new X509Certificate(b.certPem);
  t.equal(b.keyPem, a.keyPem, 'one key pair');
  t.ok(xb.publicKey.equals(xa.publicKey), 'both certificates carry the same public key');
  t.equal(xb.subject, xa.subject, 'the same subject');
  t.equal(xb.subjectAltName, xa.subjectAltName, 'the same names');
  t.not(xb.fingerprint256, xa.fingerprint256, 'but they are different certificates');
  const caKey = new X509Certificate(ca.certPem).publicKey;
  t.ok(xa.verify(caKey) && xb.verify(caKey), 'both signed by the CA');

  const cache = new PeerIdentityCache();
  const ia = cache.identityOf(xa);
  const ib = cache.identityOfPeerCertificate({ fingerprint256: xb.fingerprint256, raw: xb.raw });
  t.equal(cache.size, 2, 'two entries');
  t.not(ib, ia, "the second certificate is computed afresh, not served from the first one's entry");
  t.same(ib, peerIdentity(xb), 'and equals what peerIdentity computes for it');
  t.equal(ia.spkiPin, ib.spkiPin, 'with the same pin, as the key is the same');
  t.equal(ia.display, ib.display, 'and the same identity');
  t.equal(cache.identityOf(new X509Certificate(b.certPem)), ib, 'each certificate then hits its own entry');
  t.equal(cache.identityOf(new X509Certificate(a.certPem)), ia);
  t.equal(cache.size, 2);
});

t.test('past its capacity the oldest entry is dropped and recomputed when seen again', async (t) => {
  const leaves = await Promise.all([0, 1, 2].map((i) => makeLeaf(ca, { cn: `peer-${i}` })));
  const certs = leaves.map((l) => new X509Certificate(l.certPem));
  const cache = new PeerIdentityCache(2);
  const first = cache.identityOf(certs[0]!);
  cache.identityOf(certs[1]!);
  cache.identityOf(certs[2]!);
  t.equal(cache.size, 2);
  const again = cache.identityOf(certs[0]!);
  t.not(again, first, 'recomputed: a new object');
  t.same(again, first, 'with the same content');
  t.equal(cache.size, 2);
});
