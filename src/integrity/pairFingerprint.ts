import { createHash, hash } from 'node:crypto';

/**
 * The 64-bit fingerprint both replay caches store for a (keyid, nonce) pair: the first 8
 * bytes of
 *
 *   SHA-256(salt ‖ u32le(utf8 length of keyId) ‖ keyId ‖ 0x00 ‖ nonce)
 *
 * as two little-endian uint32 words (hi, lo). The length prefix makes the encoding injective
 * even if a key id contains NUL; the salt (16 random bytes per cache) keeps anyone outside the
 * process from crafting colliding pairs or piling pairs into one probe chain. An all-zero
 * result is reported as (0, 1): (0, 0) marks an empty slot in both tables.
 *
 * One instance per cache and thread; `of` writes its result to `hi` / `lo` (no allocation on
 * the hot path but the digest).
 */
export const FINGERPRINT_SALT_BYTES = 16;
/** salt ‖ u32 length prefix */
const HEADER_BYTES = FINGERPRINT_SALT_BYTES + 4;
/** inputs whose UTF-8 form may not fit here take the (allocating) streaming path */
const SCRATCH_BYTES = 1024;

export class PairFingerprint {
  hi = 0;
  lo = 0;
  readonly #salt: Buffer;
  readonly #scratch = Buffer.alloc(SCRATCH_BYTES);
  /** views[n] = scratch[0, n), made once per length */
  readonly #views: Buffer[] = [];

  constructor(salt: Uint8Array) {
    if (salt.length !== FINGERPRINT_SALT_BYTES)
      throw new RangeError(`replay cache: the salt must be ${FINGERPRINT_SALT_BYTES} bytes`);
    this.#salt = Buffer.from(salt);
    this.#salt.copy(this.#scratch, 0);
  }

  of(keyId: string, nonce: string): void {
    let d: string;
    const scratch = this.#scratch;
    // a UTF-16 code unit never takes more than 3 UTF-8 bytes
    if (HEADER_BYTES + 1 + 3 * (keyId.length + nonce.length) <= SCRATCH_BYTES) {
      const keyBytes = scratch.write(keyId, HEADER_BYTES, 'utf8');
      scratch.writeUInt32LE(keyBytes, FINGERPRINT_SALT_BYTES);
      let end = HEADER_BYTES + keyBytes;
      scratch[end++] = 0;
      end += scratch.write(nonce, end, 'utf8');
      const view = (this.#views[end] ??= scratch.subarray(0, end));
      // binary (latin1) output: Node's one-shot hash is about twice as fast that way as with 'buffer' output
      d = hash('sha256', view, 'binary');
    } else {
      const prefix = Buffer.allocUnsafe(4);
      prefix.writeUInt32LE(Buffer.byteLength(keyId, 'utf8'), 0);
      d = createHash('sha256')
        .update(this.#salt)
        .update(prefix)
        .update(keyId, 'utf8')
        .update(SEPARATOR)
        .update(nonce, 'utf8')
        .digest('binary');
    }
    this.hi = (d.charCodeAt(0) | (d.charCodeAt(1) << 8) | (d.charCodeAt(2) << 16) | (d.charCodeAt(3) << 24)) >>> 0;
    this.lo = (d.charCodeAt(4) | (d.charCodeAt(5) << 8) | (d.charCodeAt(6) << 16) | (d.charCodeAt(7) << 24)) >>> 0;
    if (this.hi === 0 && this.lo === 0) this.lo = 1;
  }
}

const SEPARATOR = Buffer.alloc(1);
