import { hash, type KeyObject } from 'node:crypto';

/**
 * HMAC-SHA256 (RFC 2104) for the request path. `createHmac` builds a native object per
 * message, which costs more than the hashing itself for a signature base of a few hundred
 * bytes; here the padded key blocks are prepared once per key and each MAC is two one-shot
 * SHA-256 calls over a reused buffer:
 *
 *   HMAC(K, m) = H((K' xor opad) || H((K' xor ipad) || m)),  K' = K padded to 64 bytes
 *               (or H(K) padded, when K is longer than the block)
 *
 * The result equals `createHmac('sha256', key)` (test/signature-vectors.test.ts checks the
 * RFC 9421 vectors through it). Comparison stays with the caller, in constant time.
 */
const BLOCK = 64;
const DIGEST = 32;

export class HmacSha256 {
  /** (K' xor ipad) followed by room for the message */
  private inner: Buffer;
  /** (K' xor opad) followed by the inner digest */
  private readonly outer: Buffer;

  constructor(key: KeyObject) {
    const raw = key.export();
    const k = raw.length > BLOCK ? hash('sha256', raw, 'buffer') : raw;
    this.inner = Buffer.alloc(BLOCK + 1024);
    this.outer = Buffer.alloc(BLOCK + DIGEST);
    for (let i = 0; i < BLOCK; i++) {
      const byte = i < k.length ? k[i]! : 0;
      this.inner[i] = byte ^ 0x36;
      this.outer[i] = byte ^ 0x5c;
    }
    raw.fill(0);
    k.fill(0);
  }

  /** the MAC of a latin1 (here: ASCII) string */
  mac(data: string): Buffer {
    const length = data.length;
    if (BLOCK + length > this.inner.length) {
      const bigger = Buffer.alloc(BLOCK + Math.max(length, this.inner.length * 2));
      this.inner.copy(bigger, 0, 0, BLOCK);
      this.inner.fill(0);
      this.inner = bigger;
    }
    this.inner.write(data, BLOCK, 'latin1');
    // digests travel as 'binary' (latin1) strings: Node's one-shot hash is about twice as fast that way as with 'buffer' output
    this.outer.write(hash('sha256', this.inner.subarray(0, BLOCK + length), 'binary'), BLOCK, 'binary');
    return Buffer.from(hash('sha256', this.outer, 'binary'), 'binary');
  }
}

/** One HmacSha256 per key object, made on first use; owned by whoever holds the key ring. */
export class MacKeys {
  private readonly byKey = new WeakMap<KeyObject, HmacSha256>();

  for(key: KeyObject): HmacSha256 {
    let mac = this.byKey.get(key);
    if (mac === undefined) {
      mac = new HmacSha256(key);
      this.byKey.set(key, mac);
    }
    return mac;
  }
}
