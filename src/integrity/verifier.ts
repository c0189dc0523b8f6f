import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import { TollgateError, type ErrorCode } from '../core/errors.ts';
import type { Clock } from '../core/clock.ts';
import type { KeyRing } from './keyRing.ts';
import type { ReplayCache } from './replayCache.ts';
import { parseContentDigest, type ExpectedDigest } from './contentDigest.ts';
import type { MacKeys } from './hmac.ts';
import { signatureBase, type MessageView } from './signatureBase.ts';
import {
  parseDictionary,
  StructuredFieldError,
  type BareItem,
  type Dictionary,
  type DictionaryOptions,
  type InnerList,
  type Item,
} from './structuredFields.ts';

/**
 * Inbound verification of tollgate's RFC 9421 profile (README.md, "Message integrity"):
 *
 *   signature fields present? -> parse -> ours (tag) with a known keyid? -> parameters ->
 *   time window -> coverage floor -> base -> HMAC (constant time) -> Content-Digest usable? ->
 *   nonce not seen (inserted only now, after the MAC verified)
 *
 * The result says which error code applies, or which digests the body must then match.
 * Checking the body itself is the request path's job (buffered or streamed).
 */
export interface SignatureProfile {
  readonly tag: string;
  readonly skewSeconds: number;
  readonly maxAgeSeconds: number;
  /** components required in addition to the floor (config `integrity.requiredComponents`) */
  readonly requiredComponents: readonly string[];
}

export interface VerifierDeps {
  readonly profile: SignatureProfile;
  readonly keys: () => KeyRing;
  readonly replay: ReplayCache;
  readonly clock: Clock;
  /** prepared HMAC keys (faster than createHmac per message); without it, createHmac */
  readonly macs?: MacKeys;
}

export type Verification =
  | {
      readonly ok: true;
      readonly keyId: string;
      /** the signature's nonce (remembered here; a deployment-wide claim may follow: integrity/nonceFingerprint.ts) */
      readonly nonce: string;
      readonly label: string;
      readonly digests: readonly ExpectedDigest[] | null;
    }
  | { readonly ok: false; readonly code: ErrorCode; readonly detail: string; readonly keyId: string | null };

export const ALGORITHM = 'hmac-sha256';
const MAC_BYTES = 32;
const FLOOR = ['@method', '@authority', '@path', '@query'] as const;
const KNOWN_PARAMS = new Set(['created', 'expires', 'nonce', 'alg', 'keyid', 'tag']);
const MAX_NONCE_LENGTH = 256;
/** each candidate costs a base and a MAC; more of ours than this in one request is refused, not computed */
const MAX_CANDIDATES = 4;
const UNIQUE_LABELS: DictionaryOptions = Object.freeze({ rejectDuplicateKeys: true });

interface Candidate {
  readonly label: string;
  readonly covered: InnerList;
  readonly keyId: string | null;
}

function refused(code: ErrorCode, detail: string, keyId: string | null = null): Verification {
  return { ok: false, code, detail, keyId };
}

/** Verify the request's signature; `hasContent` is whether the request carries a body. */
export function verifyRequest(msg: MessageView, hasContent: boolean, deps: VerifierDeps): Verification {
  const inputValue = msg.headers.joined('signature-input');
  const sigValue = msg.headers.joined('signature');
  if (inputValue === undefined && sigValue === undefined)
    return refused('ERR_SIG_MISSING', 'no Signature-Input or Signature field');

  let inputs: Dictionary;
  let signatures: Dictionary;
  try {
    inputs = parseDictionary(inputValue ?? '', UNIQUE_LABELS);
    signatures = parseDictionary(sigValue ?? '', UNIQUE_LABELS);
  } catch (err) {
    if (err instanceof StructuredFieldError)
      return refused('ERR_SIG_MALFORMED', `signature fields do not parse: ${err.message}`);
    throw err;
  }

  const candidates = ourCandidates(inputs, deps.profile.tag);
  if (candidates.length === 0) return refused('ERR_SIG_MISSING', `no signature tagged "${deps.profile.tag}"`);
  if (candidates.length > MAX_CANDIDATES)
    return refused(
      'ERR_SIG_MALFORMED',
      `${candidates.length} signatures tagged "${deps.profile.tag}"; at most ${MAX_CANDIDATES} are checked`,
    );

  const ring = deps.keys();
  let first: Verification | null = null;
  let anyKnown = false;
  for (const c of candidates) {
    const key = c.keyId === null ? undefined : ring.get(c.keyId);
    if (c.keyId !== null && key === undefined) continue;
    anyKnown = true;
    const outcome = checkCandidate(msg, hasContent, c, signatures, key, deps);
    if (outcome.ok) return outcome;
    first ??= outcome;
  }
  if (!anyKnown)
    return refused('ERR_SIG_UNKNOWN_KEY', 'no signature of ours names a key in the key ring', candidates[0]!.keyId);
  return first!;
}

function ourCandidates(inputs: Dictionary, tag: string): Candidate[] {
  const out: Candidate[] = [];
  for (const [label, member] of inputs) {
    if (member.kind !== 'inner-list') continue;
    const t = member.params.get('tag');
    if (t === undefined || t.kind !== 'string' || t.value !== tag) continue;
    const k = member.params.get('keyid');
    out.push({ label, covered: member, keyId: k !== undefined && k.kind === 'string' ? k.value : null });
  }
  return out;
}

function checkCandidate(
  msg: MessageView,
  hasContent: boolean,
  c: Candidate,
  signatures: Dictionary,
  key: KeyObject | undefined,
  deps: VerifierDeps,
): Verification {
  const keyId = c.keyId;
  const sig = signatures.get(c.label);
  if (sig === undefined) return refused('ERR_SIG_MALFORMED', `Signature has no member ${c.label}`, keyId);
  if (sig.kind !== 'item' || sig.value.kind !== 'bytes')
    return refused('ERR_SIG_MALFORMED', `Signature ${c.label} is not a byte sequence`, keyId);

  // parameters: known names, right types, the required ones present
  const p = c.covered.params;
  for (const [name, value] of p) {
    if (!KNOWN_PARAMS.has(name)) return refused('ERR_SIG_MALFORMED', `unknown signature parameter ${name}`, keyId);
    const wanted = name === 'created' || name === 'expires' ? 'integer' : 'string';
    if (value.kind !== wanted)
      return refused(
        'ERR_SIG_MALFORMED',
        `signature parameter ${name} must be ${wanted === 'integer' ? 'an integer' : 'a string'}`,
        keyId,
      );
  }
  const created = num(p.get('created'));
  const nonce = str(p.get('nonce'));
  if (keyId === null || key === undefined) return refused('ERR_SIG_COVERAGE', 'keyid is required', keyId);
  if (created === undefined) return refused('ERR_SIG_COVERAGE', 'created is required', keyId);
  if (nonce === undefined || nonce === '') return refused('ERR_SIG_COVERAGE', 'nonce is required', keyId);
  if (nonce.length > MAX_NONCE_LENGTH)
    return refused('ERR_SIG_MALFORMED', `nonce longer than ${MAX_NONCE_LENGTH} characters`, keyId);
  const alg = str(p.get('alg'));
  if (alg !== undefined && alg !== ALGORITHM)
    return refused('ERR_SIG_INVALID', `alg ${alg} is not ${ALGORITHM}`, keyId);

  // time: created within skew of now and not older than maxAge; expires, when given, not passed
  const now = Math.floor(deps.clock.now() / 1000);
  const { skewSeconds, maxAgeSeconds } = deps.profile;
  if (created > now + skewSeconds)
    return refused('ERR_SIG_EXPIRED', `created is ${created - now} s in the future`, keyId);
  if (now - created > maxAgeSeconds) return refused('ERR_SIG_EXPIRED', `created is ${now - created} s old`, keyId);
  const expires = num(p.get('expires'));
  if (expires !== undefined && (expires < created || now > expires + skewSeconds))
    return refused('ERR_SIG_EXPIRED', 'expires has passed', keyId);

  const coverage = coverageProblem(msg, hasContent, c.covered, deps.profile.requiredComponents);
  if (coverage !== null) return refused(coverage.code, coverage.detail, keyId);

  let base: string;
  try {
    base = signatureBase(msg, c.covered);
  } catch (err) {
    if (err instanceof TollgateError) return refused(err.code, err.message, keyId);
    throw err;
  }
  const mac = sig.value.value;
  const expected =
    deps.macs === undefined ? createHmac('sha256', key).update(base, 'latin1').digest() : deps.macs.for(key).mac(base);
  if (mac.length !== MAC_BYTES || !timingSafeEqual(expected, mac))
    return refused('ERR_SIG_INVALID', 'the MAC does not match', keyId);

  let digests: ExpectedDigest[] | null = null;
  const digestValue = msg.headers.joined('content-digest');
  if (digestValue !== undefined) {
    try {
      digests = parseContentDigest(digestValue);
    } catch (err) {
      if (err instanceof TollgateError) return refused(err.code, err.message, keyId);
      throw err;
    }
  }

  // last, once everything else holds: remember the nonce. Check and insert are one synchronous
  // step, so of concurrent copies exactly one is fresh.
  const seen = deps.replay.checkAndInsert(keyId, nonce);
  if (seen === 'replayed') return refused('ERR_SIG_REPLAYED', 'nonce already seen', keyId);
  if (seen === 'full') return refused('ERR_REPLAY_CACHE_FULL', 'replay cache is full of live entries', keyId);
  return { ok: true, keyId, nonce, label: c.label, digests };
}

/** The coverage floor: @method, @authority, @path, @query; content-digest for content; content-type when present; plus configured extras. */
function coverageProblem(
  msg: MessageView,
  hasContent: boolean,
  covered: InnerList,
  extra: readonly string[],
): { code: ErrorCode; detail: string } | null {
  const items = covered.items;
  for (const name of FLOOR)
    if (!covers(items, name)) return { code: 'ERR_SIG_COVERAGE', detail: `${name} is not covered` };
  if (hasContent && !covers(items, 'content-digest')) {
    return msg.headers.has('content-digest')
      ? { code: 'ERR_SIG_COVERAGE', detail: 'content-digest is not covered' }
      : { code: 'ERR_DIGEST_MISSING', detail: 'the request has content but no Content-Digest' };
  }
  if (msg.headers.has('content-type') && !covers(items, 'content-type'))
    return { code: 'ERR_SIG_COVERAGE', detail: 'content-type is not covered' };
  for (const name of extra)
    if (!covers(items, name)) return { code: 'ERR_SIG_COVERAGE', detail: `${name} is not covered` };
  return null;
}

/** Whether a component is covered whole (a `key` parameter selects only part of a field, so it does not count). */
function covers(items: readonly Item[], name: string): boolean {
  for (const item of items)
    if (item.value.kind === 'string' && item.value.value === name && !item.params.has('key')) return true;
  return false;
}

function num(item: BareItem | undefined): number | undefined {
  return item !== undefined && item.kind === 'integer' ? item.value : undefined;
}

function str(item: BareItem | undefined): string | undefined {
  return item !== undefined && item.kind === 'string' ? item.value : undefined;
}
