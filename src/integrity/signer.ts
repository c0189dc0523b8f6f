import { createHmac, randomBytes, randomFillSync, type KeyObject } from 'node:crypto';
import { signatureBaseOf, type MessageView } from './signatureBase.ts';
import {
  parseDictionary,
  serializeBareItem,
  serializeInnerList,
  serializeParameters,
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
  /** the Signature-Input text kept between messages; without it, made for each message */
  readonly templates?: SignatureTemplates;
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

/**
 * What tollgate's Signature-Input member keeps from one request to the next, for one key id, tag
 * and set of present content fields: the covered items, and the serialized text around the two
 * parameters that change (created, nonce):
 *
 *   ("@method" … "content-digest");created=<n>;nonce="<s>";keyid="<id>";alg="hmac-sha256";tag="<t>"
 *   '------------- head -------------------'               '------------- tail ----------------'
 *
 * Both are made by the structured-fields serializer, so head + created + nonce + tail is exactly
 * `serializeInnerList` of the whole member (test/signature-vectors.test.ts compares them).
 */
interface SignatureTemplate {
  readonly items: readonly Item[];
  /** the inner list and `;created=` */
  readonly head: string;
  /** `;keyid=…;alg=…;tag=…` */
  readonly tail: string;
}

function templateFor(keyId: string, tag: string, present: number): SignatureTemplate {
  const names = [...ALWAYS, ...WHEN_PRESENT.filter((_, i) => (present & (1 << i)) !== 0)];
  const items = names.map((name) => sf.item(sf.string(name)));
  const list = serializeInnerList(sf.innerList(items));
  const params = serializeParameters(
    new Map<string, BareItem>([
      ['keyid', sf.string(keyId)],
      ['alg', sf.string(ALGORITHM)],
      ['tag', sf.string(tag)],
    ]),
  );
  return { items, head: `${list};created=`, tail: params };
}

/**
 * The templates of one signing stage, made on first use: one per set of present content fields
 * (eight at most) for the stage's key id and tag; a different key id or tag starts afresh.
 */
export class SignatureTemplates {
  #keyId = '';
  #tag = '';
  #byPresent: Array<SignatureTemplate | undefined> = [];

  for(keyId: string, tag: string, present: number): SignatureTemplate {
    if (keyId !== this.#keyId || tag !== this.#tag) {
      this.#keyId = keyId;
      this.#tag = tag;
      this.#byPresent = [];
    }
    return (this.#byPresent[present] ??= templateFor(keyId, tag, present));
  }
}

export function signRequest(msg: MessageView, options: SignerOptions): SignatureFields {
  const headers = msg.headers;
  let present = 0;
  for (let i = 0; i < WHEN_PRESENT.length; i++) if (headers.has(WHEN_PRESENT[i]!)) present |= 1 << i;
  const template =
    options.templates === undefined
      ? templateFor(options.keyId, options.tag, present)
      : options.templates.for(options.keyId, options.tag, present);
  const nonce = options.nonce ?? options.nonces?.next() ?? randomBytes(NONCE_BYTES).toString('base64url');
  const params = `${template.head}${serializeBareItem(sf.integer(options.created))};nonce=${serializeBareItem(sf.string(nonce))}${template.tail}`;
  const base = signatureBaseOf(msg, template.items, params);
  const mac =
    options.macs === undefined
      ? createHmac('sha256', options.key).update(base, 'latin1').digest()
      : options.macs.for(options.key).mac(base);
  const label = freeLabel(msg);
  return {
    label,
    signatureInput: `${label}=${params}`,
    // the one member `label=:<base64>:`: a label is a key (freeLabel), the MAC a byte sequence
    signature: `${label}=:${mac.toString('base64')}:`,
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
