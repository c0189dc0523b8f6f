import t from 'tap';
import { NonceSource } from '../src/integrity/signer.ts';

t.test('nonces are 128-bit base64url strings, all distinct across several pool refills', async (t) => {
  const source = new NonceSource();
  const seen = new Set<string>();
  for (let i = 0; i < 2_000; i++) {
    const n = source.next();
    if (!/^[A-Za-z0-9_-]{22}$/.test(n)) t.fail(`not 16 bytes of base64url: ${n}`);
    seen.add(n);
  }
  t.equal(seen.size, 2_000, 'no nonce repeats, including across refills of the 256-nonce pool');
  t.not(new NonceSource().next(), new NonceSource().next(), 'separate sources draw separately');
});
