/**
 * The one form of a request path that routes are matched on. A gateway decides policy by path, and the app behind it
 * decodes the path again: any spelling that the two could read differently (`%2F`, `..`, `//`, `\`, `..;`) is
 * refused here, before routing, so a request can never match one route and be read by the app as another.
 *
 * Canonical form: escapes of unreserved characters (RFC 3986 §2.3: ALPHA DIGIT - . _ ~) are decoded, every other
 * escape is kept with uppercase hex, and nothing else changes (no case folding). The query is dropped.
 *
 * One pass over the target, no regular expression and no allocation beyond the result when the path needs no change.
 */

export type CanonicalPathResult = { ok: true; path: string } | { ok: false; detail: string };

const SLASH = 0x2f;
const PERCENT = 0x25;
const QUESTION = 0x3f;
const HASH = 0x23;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const SEMICOLON = 0x3b;
const SPACE = 0x20;
const DEL = 0x7f;

const HEX_UPPER = '0123456789ABCDEF';

/** 1 for the bytes RFC 3986 calls unreserved: their escapes mean the same as the byte itself. */
const UNRESERVED = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const isAlpha = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  const isDigit = c >= 0x30 && c <= 0x39;
  UNRESERVED[c] = isAlpha || isDigit || c === 0x2d || c === DOT || c === 0x5f || c === 0x7e ? 1 : 0;
}

/** The value of one hex digit, or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function refuse(detail: string): CanonicalPathResult {
  return { ok: false, detail };
}

/** Why a raw character may not be in a request target (controls, space, DEL, non-ASCII, `#`); null when it may. */
function badTargetCharacter(c: number): string | null {
  if (c < SPACE || c === DEL) return 'the request target contains a control character';
  if (c === SPACE) return 'the request target contains a space';
  if (c > DEL) return 'the request target contains a byte outside ASCII that is not percent-encoded';
  if (c === HASH) return 'the request target contains a fragment (#)';
  return null;
}

/** A segment that is "." or ".." once decoded; `length` and `dots` count its decoded characters (so far). */
function isDotSegment(length: number, dots: number): boolean {
  return length > 0 && length <= 2 && dots === length;
}

/**
 * Whether a ";" (raw or %3B) here starts the parameters of an empty or dot segment: servlet containers drop
 * `;parameters` before resolving the path, so "/a/..;x/b" is "/b" to them and "/;x/b" is "//b".
 */
function parametersHideSegment(length: number, dots: number): boolean {
  return length === 0 || isDotSegment(length, dots);
}

const HIDDEN_SEGMENT = 'the path contains an empty or dot segment followed by parameters (";" as in "..;x")';

/** The canonical path of an HTTP/1.1 request target (query removed), or why it is refused (400 ERR_BAD_PATH). */
export function canonicalPath(target: string): CanonicalPathResult {
  const n = target.length;
  if (n === 0 || target.charCodeAt(0) !== SLASH)
    return refuse('the request target is not origin-form (it must start with /)');
  // built only once an escape must change; `copied` is how much of target is already in it
  let out = '';
  let copied = 0;
  // the current segment, decoded: its length and how many of its characters are dots
  let segmentLength = 0;
  let segmentDots = 0;
  let end = n;
  for (let i = 1; i < n; i++) {
    const c = target.charCodeAt(i);
    if (c === SLASH) {
      if (segmentLength === 0) return refuse('the path contains an empty segment (//)');
      if (isDotSegment(segmentLength, segmentDots)) return refuse('the path contains a dot segment (. or ..)');
      segmentLength = 0;
      segmentDots = 0;
      continue;
    }
    if (c === QUESTION) {
      end = i;
      break;
    }
    if (c === PERCENT) {
      const high = i + 1 < n ? hexValue(target.charCodeAt(i + 1)) : -1;
      const low = i + 2 < n ? hexValue(target.charCodeAt(i + 2)) : -1;
      if (high < 0 || low < 0) return refuse('the path contains a malformed percent-encoding');
      const byte = high * 16 + low;
      if (byte === SLASH) return refuse('the path contains an encoded slash (%2F)');
      if (byte === BACKSLASH) return refuse('the path contains an encoded backslash (%5C)');
      if (byte === 0) return refuse('the path contains an encoded NUL (%00)');
      if (byte === SEMICOLON && parametersHideSegment(segmentLength, segmentDots)) return refuse(HIDDEN_SEGMENT);
      if (byte < 128 && UNRESERVED[byte] === 1) {
        out += target.slice(copied, i) + String.fromCharCode(byte);
        copied = i + 3;
        if (byte === DOT) segmentDots++;
      } else if (target.charCodeAt(i + 1) >= 0x61 || target.charCodeAt(i + 2) >= 0x61) {
        // a lowercase hex digit: the escape is kept, spelled in uppercase
        out += target.slice(copied, i) + '%' + HEX_UPPER[high]! + HEX_UPPER[low]!;
        copied = i + 3;
      }
      segmentLength++;
      i += 2;
      continue;
    }
    const bad = badTargetCharacter(c);
    if (bad !== null) return refuse(bad);
    if (c === BACKSLASH) return refuse('the path contains a backslash');
    if (c === SEMICOLON && parametersHideSegment(segmentLength, segmentDots)) return refuse(HIDDEN_SEGMENT);
    segmentLength++;
    if (c === DOT) segmentDots++;
  }
  // the last segment may be empty (a trailing slash) but not a dot segment
  if (isDotSegment(segmentLength, segmentDots)) return refuse('the path contains a dot segment (. or ..)');
  for (let i = end + 1; i < n; i++) {
    // the query is not routed on, but a byte no request target may carry is refused wherever it is
    const bad = badTargetCharacter(target.charCodeAt(i));
    if (bad !== null) return refuse(bad);
  }
  if (copied === 0) return { ok: true, path: end === n ? target : target.slice(0, end) };
  return { ok: true, path: out + target.slice(copied, end) };
}

/**
 * Whether `prefix` can be a route's pathPrefix: canonical already (so it is compared with canonical paths as is),
 * no query, no trailing slash unless it is "/" (segments are matched whole, so "/a/" would say nothing "/a" does not).
 * Only unreserved characters and "/" are allowed: a reserved character has two spellings (":" and "%3A") that the
 * canonical form keeps apart but an app may read as one, so a prefix holding one could be stepped around.
 */
export function isCanonicalPrefix(prefix: string): boolean {
  if (prefix === '/') return true;
  if (prefix.length < 2 || prefix.charCodeAt(0) !== SLASH || prefix.charCodeAt(prefix.length - 1) === SLASH)
    return false;
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix.charCodeAt(i);
    if (c !== SLASH && (c >= 128 || UNRESERVED[c] !== 1)) return false;
  }
  const canonical = canonicalPath(prefix);
  return canonical.ok && canonical.path === prefix;
}
