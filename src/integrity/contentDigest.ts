import { createHash, hash, timingSafeEqual, type Hash } from 'node:crypto';
import { TollgateError } from '../core/errors.ts';
import {
  parseDictionary,
  serializeDictionary,
  sf,
  StructuredFieldError,
  type DictionaryOptions,
} from './structuredFields.ts';

/**
 * RFC 9530 Content-Digest: which algorithms count, parsing the field, and checking it
 * against the bytes that actually arrived (after transfer-coding removal, before any
 * content-coding, which is what Node hands us).
 *
 * Only sha-256 and sha-512 are accepted. Every other algorithm, the Deprecated ones of
 * RFC 9530 §5 (md5, sha, unixsum, unixcksum, adler, crc32c) included, makes the field
 * unacceptable: a digest we cannot check must not pass for one we did. When both accepted
 * algorithms are present, both must match.
 */
export type DigestAlgorithm = 'sha-256' | 'sha-512';

export interface ExpectedDigest {
  readonly algorithm: DigestAlgorithm;
  readonly value: Buffer;
}

const LENGTHS: Readonly<Record<DigestAlgorithm, number>> = { 'sha-256': 32, 'sha-512': 64 };
const NODE_NAMES: Readonly<Record<DigestAlgorithm, string>> = { 'sha-256': 'sha256', 'sha-512': 'sha512' };
const DEPRECATED = new Set(['md5', 'sha', 'unixsum', 'unixcksum', 'adler', 'crc32c']);
const UNIQUE_ALGORITHMS: DictionaryOptions = Object.freeze({ rejectDuplicateKeys: true });

function isAccepted(name: string): name is DigestAlgorithm {
  return name === 'sha-256' || name === 'sha-512';
}

/** Parse a Content-Digest value (repeated lines already joined with ", "); throws ERR_DIGEST_MISMATCH when it cannot be used. */
export function parseContentDigest(value: string): ExpectedDigest[] {
  let dict;
  try {
    dict = parseDictionary(value, UNIQUE_ALGORITHMS);
  } catch (err) {
    if (err instanceof StructuredFieldError)
      throw new TollgateError('ERR_DIGEST_MISMATCH', 'Content-Digest does not parse', { cause: err });
    throw err;
  }
  const out: ExpectedDigest[] = [];
  for (const [name, member] of dict) {
    if (!isAccepted(name)) {
      throw new TollgateError(
        'ERR_DIGEST_MISMATCH',
        DEPRECATED.has(name)
          ? `Content-Digest algorithm ${name} is deprecated`
          : `Content-Digest algorithm ${name} is not accepted`,
      );
    }
    if (member.kind !== 'item' || member.value.kind !== 'bytes')
      throw new TollgateError('ERR_DIGEST_MISMATCH', `Content-Digest ${name} is not a byte sequence`);
    if (member.value.value.length !== LENGTHS[name])
      throw new TollgateError('ERR_DIGEST_MISMATCH', `Content-Digest ${name} has the wrong length`);
    out.push({ algorithm: name, value: member.value.value });
  }
  if (out.length === 0) throw new TollgateError('ERR_DIGEST_MISMATCH', 'Content-Digest names no algorithm');
  return out;
}

/** Whether an app-supplied Content-Digest can be kept as is (parses, only accepted algorithms). */
export function isAcceptableContentDigest(value: string): boolean {
  try {
    parseContentDigest(value);
    return true;
  } catch {
    return false;
  }
}

/** Hashes the content as it arrives, for every expected algorithm, and compares at the end. */
export class DigestCheck {
  readonly expected: readonly ExpectedDigest[];
  readonly hashes: Hash[];
  bytes = 0;

  constructor(expected: readonly ExpectedDigest[]) {
    this.expected = expected;
    this.hashes = expected.map((e) => createHash(NODE_NAMES[e.algorithm]));
  }

  update(chunk: Buffer): void {
    this.bytes += chunk.length;
    for (const h of this.hashes) h.update(chunk);
  }

  /** true when every expected digest matches the bytes seen; call once */
  matches(): boolean {
    let ok = true;
    for (let i = 0; i < this.hashes.length; i++) {
      const actual = this.hashes[i]!.digest();
      const want = this.expected[i]!.value;
      // lengths were checked at parse time; compare without an early exit anyway
      ok = timingSafeEqual(actual, want) && ok;
    }
    return ok;
  }
}

/** Whether a complete body matches every expected digest (one-shot hashes: cheaper than DigestCheck when the body is already whole). */
export function digestsMatch(expected: readonly ExpectedDigest[], body: Buffer): boolean {
  let ok = true;
  for (const e of expected) {
    const actual = Buffer.from(hash(NODE_NAMES[e.algorithm], body, 'binary'), 'binary');
    ok = timingSafeEqual(actual, e.value) && ok;
  }
  return ok;
}

/** The Content-Digest value for a complete body. */
export function contentDigestOf(body: Buffer, algorithm: DigestAlgorithm = 'sha-256'): string {
  return contentDigestValue(Buffer.from(hash(NODE_NAMES[algorithm], body, 'binary'), 'binary'), algorithm);
}

/** The Content-Digest value for a digest already computed (a body hashed as it arrived). */
export function contentDigestValue(digest: Buffer, algorithm: DigestAlgorithm = 'sha-256'): string {
  return serializeDictionary(new Map([[algorithm, sf.item(sf.bytes(digest))]]));
}

/**
 * The digest a body being held is checked or signed with, computed as its chunks arrive (no
 * copy of the whole body to hash it): a single chunk is hashed in one call at the end, which
 * is cheaper for the small bodies most requests carry.
 */
export class ArrivingDigest {
  private readonly algorithms: readonly DigestAlgorithm[];
  private first: Buffer | null = null;
  private hashes: Hash[] | null = null;

  constructor(algorithms: readonly DigestAlgorithm[]) {
    this.algorithms = algorithms;
  }

  update(chunk: Buffer): void {
    if (this.hashes !== null) {
      for (const h of this.hashes) h.update(chunk);
      return;
    }
    if (this.first === null) {
      this.first = chunk;
      return;
    }
    this.hashes = this.algorithms.map((a) => createHash(NODE_NAMES[a]).update(this.first!));
    this.first = null;
    for (const h of this.hashes) h.update(chunk);
  }

  /** the digests, in the order of the algorithms; call once */
  digests(): Buffer[] {
    if (this.hashes !== null) return this.hashes.map((h) => h.digest());
    const body = this.first ?? EMPTY_BODY;
    return this.algorithms.map((a) => Buffer.from(hash(NODE_NAMES[a], body, 'binary'), 'binary'));
  }

  /** whether the body matches every expected digest, compared in constant time */
  matches(expected: readonly ExpectedDigest[]): boolean {
    const actual = this.digests();
    let ok = true;
    for (let i = 0; i < expected.length; i++) ok = timingSafeEqual(actual[i]!, expected[i]!.value) && ok;
    return ok;
  }
}

const EMPTY_BODY = Buffer.alloc(0);
