import { createHmac, randomBytes, randomFillSync, type KeyObject } from 'node:crypto';
import { signatureBase, type MessageView } from './signatureBase.ts';
import {
  parseDictionary,
  serializeDictionary,
  serializeInnerList,
  sf,
  type BareItem,
  type Item,
} from './structuredFields.ts';
import { ALGORITHM } from './verifier.ts';
import type { MacKeys } from './hmac.ts';

/**
 * Outbound signing: one RFC 9421 signature over the profile's floor plus the content
 * fields that are present, with created, a fresh 128-bit nonce, keyid, alg and tag.
 * The message view must be the request exactly as it will be sent (headers after the
 * Host override, Content-Digest already set).
 */
export interface SignerOptions {
  readonly keyId: string;
  readonly key: KeyObject;
  readonly tag: string;
  /** seconds since the epoch */
  readonly created: number;
  /** defaults to 16 random bytes, base64url (from `nonces` when given) */
  readonly nonce?: string;
  readonly nonces?: NonceSource;
  /** prepared HMAC keys (faster than createHmac per message); without it, createHmac */
  readonly macs?: MacKeys;
}

export interface SignatureFields {
  readonly label: string;
  /** one Signature-Input member, `label=(...);created=...` */
  readonly signatureInput: string;
  /** one Signature member, `label=:...:` */
  readonly signature: string;
}

const LABEL = 'tollgate';
const NONCE_BYTES = 16;
const POOL_NONCES = 256;

/**
 * 128-bit random nonces, drawn from the CSPRNG 256 at a time: one randomFillSync per 4 KiB
 * instead of one call per request. Each nonce is used once; the pool is refilled, never reused.
 */
export class NonceSource {
  private readonly pool = Buffer.alloc(NONCE_BYTES * POOL_NONCES);
  private offset = this.pool.length;

  next(): string {
    if (this.offset === this.pool.length) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const nonce = this.pool.toString('base64url', this.offset, this.offset + NONCE_BYTES);
    this.offset += NONCE_BYTES;
    return nonce;
  }
}
const ALWAYS = ['@method', '@authority', '@path', '@query'];
const WHEN_PRESENT = ['content-digest', 'content-type', 'content-length'];

export function signRequest(msg: MessageView, options: SignerOptions): SignatureFields {
  const components = [...ALWAYS, ...WHEN_PRESENT.filter((name) => msg.headers.has(name))];
  const covered = sf.innerList(
    components.map((name) => sf.item(sf.string(name))),
    [
      ['created', sf.integer(options.created)],
      ['nonce', sf.string(options.nonce ?? options.nonces?.next() ?? randomBytes(NONCE_BYTES).toString('base64url'))],
      ['keyid', sf.string(options.keyId)],
      ['alg', sf.string(ALGORITHM)],
      ['tag', sf.string(options.tag)],
    ] as ReadonlyArray<readonly [string, BareItem]>,
  );
  const base = signatureBase(msg, covered);
  const mac =
    options.macs === undefined
      ? createHmac('sha256', options.key).update(base, 'latin1').digest()
      : options.macs.for(options.key).mac(base);
  const label = freeLabel(msg);
  return {
    label,
    signatureInput: `${label}=${serializeInnerList(covered)}`,
    signature: serializeDictionary(new Map<string, Item>([[label, sf.item(sf.bytes(mac))]])),
  };
}

/** "tollgate", or "tollgate-2", … when the app already sent a signature under that label. */
function freeLabel(msg: MessageView): string {
  const existing = msg.headers.fieldLines('signature-input');
  if (existing === undefined) return LABEL;
  let taken: ReadonlySet<string>;
  try {
    taken = new Set(parseDictionary(existing.join(', ')).keys());
  } catch {
    // the app's own field does not parse; ours still needs a label it cannot collide with
    taken = new Set(
      existing
        .join(', ')
        .split(',')
        .map((m) => m.trim().split('=')[0] ?? ''),
    );
  }
  if (!taken.has(LABEL)) return LABEL;
  for (let n = 2; ; n++) if (!taken.has(`${LABEL}-${n}`)) return `${LABEL}-${n}`;
}
