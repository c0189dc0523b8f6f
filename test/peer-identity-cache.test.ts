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
  const leaf = await makeLeaf(ca, { cn: 'producer', spiffe: ['spiffe://example.org/producer'], dns: ['Producer.example'] });
  const cache = new PeerIdentityCache();
  const first = cache.identityOf(new X509Certificate(leaf.certPem));
  t.same(first, peerIdentity(new X509Certificate(leaf.certPem)));
  t.equal(first.display, 'spiffe://example.org/producer');
  t.same(first.dns, ['producer.example']);
  t.equal(cache.identityOf(new X509Certificate(leaf.certPem)), first, 'a new X509Certificate of the same bytes hits');
  const x = new X509Certificate(leaf.certPem);
  t.equal(cache.identityOfPeerCertificate({ fingerprint256: x.fingerprint256, raw: x.raw }), first, 'the checkServerIdentity form hits the same entry');
  t.equal(cache.size, 1);
});

t.test('a different certificate is a different entry, even for the same key and names', async (t) => {
  const a = await makeLeaf(ca, { cn: 'a', spiffe: ['spiffe://example.org/a'] });
  const b = await makeLeaf(ca, { cn: 'b', spiffe: ['spiffe://example.org/b'] });
  const cache = new PeerIdentityCache();
  const ia = cache.identityOf(new X509Certificate(a.certPem));
  const xb = new X509Certificate(b.certPem);
  const ib = cache.identityOfPeerCertificate({ fingerprint256: xb.fingerprint256, raw: xb.raw });
  t.equal(ia.display, 'spiffe://example.org/a');
  t.equal(ib.display, 'spiffe://example.org/b');
  t.not(ia.spkiPin, ib.spkiPin);
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
