import t from 'tap';
import fc from 'fast-check';
import { createHmac, createSecretKey } from 'node:crypto';
import { HmacSha256, MacKeys } from '../src/integrity/hmac.ts';

t.test(
  'the prepared HMAC-SHA256 equals createHmac for any key length and any ASCII message, including ones that outgrow its buffer',
  async (t) => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.array(fc.string({ unit: 'binary-ascii', maxLength: 3000 }), { minLength: 1, maxLength: 4 }),
        (keyBytes, messages) => {
          const key = Buffer.from(keyBytes);
          const mac = new HmacSha256(createSecretKey(key));
          // several messages through one instance: a long one must not leave bytes behind for a short one
          for (const m of messages) {
            if (!mac.mac(m).equals(createHmac('sha256', key).update(m, 'latin1').digest())) return false;
          }
          return true;
        },
      ),
      { numRuns: 300 },
    );
    t.pass('300 random keys and message sequences agree');
  },
);

t.test('RFC 4231 test case 2 ("Jefe") gives the published HMAC-SHA-256', async (t) => {
  const mac = new HmacSha256(createSecretKey(Buffer.from('Jefe')));
  t.equal(
    mac.mac('what do ya want for nothing?').toString('hex'),
    '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
  );
});

t.test('MacKeys prepares each key once and keeps different keys apart', async (t) => {
  const macs = new MacKeys();
  const a = createSecretKey(Buffer.alloc(32, 1));
  const b = createSecretKey(Buffer.alloc(32, 2));
  t.equal(macs.for(a), macs.for(a), 'the same prepared key is reused');
  t.not(macs.for(a), macs.for(b));
  t.not(macs.for(a).mac('x').toString('hex'), macs.for(b).mac('x').toString('hex'));
});
