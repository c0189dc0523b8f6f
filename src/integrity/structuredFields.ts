/**
 * Structured Field Values for HTTP (RFC 9651, which obsoletes RFC 8941): a strict parser and
 * serializer for the fields tollgate reads and writes (Signature-Input, Signature,
 * Content-Digest, ...).
 *
 * Strictness, decided here once:
 * - Input must be ASCII (0x00-0x7F); anything malformed throws StructuredFieldError with the
 *   offset where parsing stopped. No recovery, no "best effort".
 * - Supported bare items are those of RFC 8941: Integer, Decimal, String, Token, Byte Sequence
 *   and Boolean. The RFC 9651 additions Date (`@1659578233`) and Display String (`%"..."`) are
 *   rejected: none of tollgate's fields use them, and accepting types nothing handles only
 *   widens what an attacker can send.
 * - Byte Sequences: the alphabet is exactly A-Z a-z 0-9 + / with at most two trailing `=`.
 *   Following RFC 9651 §4.2.7 ("parsers SHOULD NOT fail when '=' padding is not present" and
 *   "SHOULD NOT fail when non-zero pad bits are present"), unpadded input and non-zero pad bits
 *   are accepted. Padding that is present must be complete (`:ab=:` throws), and a length that
 *   cannot be base64 (4n+1 characters) throws. This is the WHATWG forgiving-base64 acceptance
 *   set, i.e. what `atob` (and so the structured-headers package) accepts for this alphabet.
 *   The serializer always writes standard padded base64.
 * - Integer -0 and Decimal -0.0 parse to +0.
 * - Trailing SP / HTAB after the last member of a List or Dictionary is accepted, as the RFC's
 *   algorithm discards OWS after each member; after a top-level Item only SP is discarded.
 * - Serializer failures also throw StructuredFieldError, with offset -1.
 * - The serializers return '' for an empty List, Dictionary or Parameters; per RFC 9651 §4.1
 *   an empty List or Dictionary means "do not send the field at all".
 *
 * Parsing scans the string by index with charCodeAt and a 128-entry class table; substrings are
 * cut only for the values handed back (keys, tokens, strings, base64 payloads).
 */

export type BareItem =
  | { readonly kind: 'integer'; readonly value: number }
  | { readonly kind: 'decimal'; readonly value: number }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'token'; readonly value: string }
  | { readonly kind: 'bytes'; readonly value: Buffer }
  | { readonly kind: 'boolean'; readonly value: boolean };
export type Parameters = ReadonlyMap<string, BareItem>;
export interface Item {
  readonly kind: 'item';
  readonly value: BareItem;
  readonly params: Parameters;
}
export interface InnerList {
  readonly kind: 'inner-list';
  readonly items: readonly Item[];
  readonly params: Parameters;
  /**
   * Set by the parser when the input text of this inner list and its parameters is already
   * exactly what `serializeInnerList` makes of it, so a caller needing the serialized form
   * (RFC 9421's `@signature-params`) can take the text instead of serializing again; undefined
   * whenever the text is not provably in that form (see `Parser.innerList`). Never set on
   * values built in code.
   */
  readonly serialized?: string | undefined;
}
export type Member = Item | InnerList;
export type Dictionary = ReadonlyMap<string, Member>;
export type List = readonly Member[];

export class StructuredFieldError extends Error {
  /** index into the input where parsing failed; -1 for serialization errors */
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(offset >= 0 ? `${message} (at offset ${offset})` : message);
    this.name = 'StructuredFieldError';
    this.offset = offset;
  }
}

export interface DictionaryOptions {
  /** RFC behaviour is "last value wins, first position kept"; with this set a repeated key throws instead (signature labels must be unique). */
  readonly rejectDuplicateKeys?: boolean;
}

// ---------------------------------------------------------------------------------------------
// character classes

const C_KEY_START = 1; // lcalpha / "*"
const C_KEY = 2; // lcalpha / DIGIT / "_" / "-" / "." / "*"
const C_TOKEN_START = 4; // ALPHA / "*"
const C_TOKEN = 8; // tchar / ":" / "/"
const C_DIGIT = 16;
const C_B64 = 32; // ALPHA / DIGIT / "+" / "/"

const CLASS = new Uint8Array(128);
for (let c = 0x61; c <= 0x7a; c++) CLASS[c]! |= C_KEY_START | C_KEY | C_TOKEN_START | C_TOKEN | C_B64;
for (let c = 0x41; c <= 0x5a; c++) CLASS[c]! |= C_TOKEN_START | C_TOKEN | C_B64;
for (let c = 0x30; c <= 0x39; c++) CLASS[c]! |= C_KEY | C_TOKEN | C_DIGIT | C_B64;
for (const ch of "!#$%&'*+-.^_`|~:/") CLASS[ch.charCodeAt(0)]! |= C_TOKEN;
for (const ch of '_-.*') CLASS[ch.charCodeAt(0)]! |= C_KEY;
CLASS[0x2a]! |= C_KEY_START | C_TOKEN_START; // *
CLASS[0x2b]! |= C_B64; // +
CLASS[0x2f]! |= C_B64; // /

const SP = 0x20;
const HTAB = 0x09;
const DQUOTE = 0x22;
const PERCENT = 0x25;
const LPAREN = 0x28;
const RPAREN = 0x29;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const COLON = 0x3a;
const SEMI = 0x3b;
const EQUALS = 0x3d;
const QUESTION = 0x3f;
const AT = 0x40;
const BACKSLASH = 0x5c;

/** charCodeAt past the end is NaN; CLASS[NaN] is undefined; both fall through every test below. */
function is(c: number, cls: number): boolean {
  return c < 128 && ((CLASS[c] ?? 0) & cls) !== 0;
}

const TRUE: BareItem = Object.freeze({ kind: 'boolean', value: true });
const FALSE: BareItem = Object.freeze({ kind: 'boolean', value: false });
const POW10 = [1, 10, 100, 1000];

/**
 * The Parameters of every item and inner list that has none: one shared map, so the common
 * parameterless item costs no allocation. Parameters are read-only by type; this one also
 * refuses mutation at run time, so a cast-away write fails loudly instead of leaking into
 * every other parse.
 */
const NO_PARAMS: Parameters = (() => {
  const m = new Map<string, BareItem>();
  const refuse = (): never => {
    throw new TypeError('Parameters are read-only');
  };
  Object.defineProperties(m, { set: { value: refuse }, delete: { value: refuse }, clear: { value: refuse } });
  return Object.freeze(m);
})();
const MAX_INTEGER = 999_999_999_999_999;
/** V8's regex engine scans a whole field for this about twice as fast as a charCodeAt loop; no `g` flag, so no state */
// eslint-disable-next-line no-control-regex -- the range is the point: anything outside ASCII
const NON_ASCII = /[^\x00-\x7f]/;

// ---------------------------------------------------------------------------------------------
// parsing

class Parser {
  readonly s: string;
  readonly len: number;
  pos = 0;
  /**
   * Cleared by any construct whose text differs from how the serializer writes its value
   * (extra spaces, "-0", leading zeros, `=?1` on a parameter, a repeated parameter key,
   * decimals and unaligned or padded byte sequences conservatively); reset per inner list.
   */
  canonical = true;

  constructor(input: string) {
    if (typeof input !== 'string') throw new StructuredFieldError('input is not a string', 0);
    const nonAscii = input.search(NON_ASCII);
    if (nonAscii !== -1) throw new StructuredFieldError('non-ASCII character', nonAscii);
    this.s = input;
    this.len = input.length;
    this.skipSP();
  }

  fail(message: string): never {
    throw new StructuredFieldError(message, this.pos);
  }

  /** skip SP, returning how many */
  skipSP(): number {
    const start = this.pos;
    while (this.s.charCodeAt(this.pos) === SP) this.pos++;
    return this.pos - start;
  }

  skipOWS(): void {
    let c = this.s.charCodeAt(this.pos);
    while (c === SP || c === HTAB) c = this.s.charCodeAt(++this.pos);
  }

  /** after the last List / Dictionary member (OWS consumed): end, or a comma and another member */
  nextMember(): boolean {
    this.skipOWS();
    if (this.pos >= this.len) return false;
    if (this.s.charCodeAt(this.pos) !== COMMA) this.fail('expected "," between members');
    this.pos++;
    this.skipOWS();
    if (this.pos >= this.len) this.fail('trailing comma');
    return true;
  }

  member(): Member {
    return this.s.charCodeAt(this.pos) === LPAREN ? this.innerList() : this.item();
  }

  item(): Item {
    const value = this.bareItem();
    return { kind: 'item', value, params: this.params() };
  }

  /** Serialized form: "(" items separated by one SP ")" parameters; see InnerList.serialized. */
  innerList(): InnerList {
    const start = this.pos;
    this.pos++; // (
    this.canonical = true;
    const items: Item[] = [];
    for (;;) {
      const spaces = this.skipSP();
      if (this.pos >= this.len) this.fail('unterminated inner list');
      if (this.s.charCodeAt(this.pos) === RPAREN) {
        if (spaces !== 0) this.canonical = false;
        this.pos++;
        const params = this.params();
        const serialized = this.canonical ? this.s.slice(start, this.pos) : undefined;
        return { kind: 'inner-list', items, params, serialized };
      }
      if (spaces !== (items.length === 0 ? 0 : 1)) this.canonical = false;
      items.push(this.item());
      const c = this.s.charCodeAt(this.pos);
      if (c !== SP && c !== RPAREN) {
        this.fail(this.pos >= this.len ? 'unterminated inner list' : 'expected SP or ")" after an inner list item');
      }
    }
  }

  params(): Parameters {
    if (this.s.charCodeAt(this.pos) !== SEMI) return NO_PARAMS;
    const params = new Map<string, BareItem>();
    while (this.s.charCodeAt(this.pos) === SEMI) {
      this.pos++;
      if (this.skipSP() !== 0) this.canonical = false;
      const key = this.key();
      let value = TRUE;
      if (this.s.charCodeAt(this.pos) === EQUALS) {
        this.pos++;
        value = this.bareItem();
        if (value === TRUE) this.canonical = false; // serialized as the bare key
      }
      const size = params.size;
      params.set(key, value);
      if (params.size === size) this.canonical = false; // a repeated key: serialized once, with the last value
    }
    return params;
  }

  key(): string {
    const start = this.pos;
    if (!is(this.s.charCodeAt(start), C_KEY_START)) this.fail('expected a key (lowercase letter or "*")');
    let p = start + 1;
    while (is(this.s.charCodeAt(p), C_KEY)) p++;
    this.pos = p;
    return this.s.slice(start, p);
  }

  bareItem(): BareItem {
    const c = this.s.charCodeAt(this.pos);
    if (c === MINUS || is(c, C_DIGIT)) return this.number();
    if (c === DQUOTE) return this.string();
    if (is(c, C_TOKEN_START)) return this.token();
    if (c === COLON) return this.bytes();
    if (c === QUESTION) return this.boolean();
    if (c === AT) this.fail('Date items are not supported');
    if (c === PERCENT) this.fail('Display String items are not supported');
    return this.fail(
      this.pos >= this.len ? 'unexpected end of input, expected an item' : 'unexpected character, expected an item',
    );
  }

  number(): BareItem {
    const s = this.s;
    let p = this.pos;
    const negative = s.charCodeAt(p) === MINUS;
    if (negative) p++;
    if (!is(s.charCodeAt(p), C_DIGIT)) {
      this.pos = p;
      this.fail('expected a digit');
    }
    let mantissa = 0;
    let intDigits = 0;
    let fracDigits = -1; // -1: no decimal point seen
    for (;;) {
      const c = s.charCodeAt(p);
      if (is(c, C_DIGIT)) {
        mantissa = mantissa * 10 + (c - 0x30);
        if (fracDigits < 0) {
          if (++intDigits > 15) {
            this.pos = p;
            this.fail('integer has more than 15 digits');
          }
        } else if (++fracDigits > 3) {
          this.pos = p;
          this.fail('decimal has more than 3 fractional digits');
        }
      } else if (c === DOT && fracDigits < 0) {
        if (intDigits > 12) {
          this.pos = p;
          this.fail('decimal has more than 12 integer digits');
        }
        fracDigits = 0;
      } else {
        break;
      }
      p++;
    }
    this.pos = p;
    if (fracDigits < 0) {
      // "-0" and leading zeros are serialized without
      if ((negative && mantissa === 0) || (intDigits > 1 && s.charCodeAt(p - intDigits) === 0x30))
        this.canonical = false;
      return { kind: 'integer', value: negative && mantissa !== 0 ? -mantissa : mantissa };
    }
    if (fracDigits === 0) this.fail('decimal ends with "."');
    this.canonical = false; // not worth proving: no field tollgate takes verbatim carries decimals
    // mantissa < 10^15 is exact and so is the power of ten: the division is correctly rounded,
    // giving the same double as parsing the decimal text
    const value = mantissa / POW10[fracDigits]!;
    return { kind: 'decimal', value: negative && value !== 0 ? -value : value };
  }

  string(): BareItem {
    const s = this.s;
    let p = this.pos + 1;
    let chunk = p;
    let out = '';
    for (;;) {
      const c = s.charCodeAt(p);
      if (c === DQUOTE) {
        out += s.slice(chunk, p);
        this.pos = p + 1;
        return { kind: 'string', value: out };
      }
      if (c === BACKSLASH) {
        out += s.slice(chunk, p);
        const e = s.charCodeAt(++p);
        if (e !== DQUOTE && e !== BACKSLASH) {
          this.pos = p;
          this.fail(p >= this.len ? 'unterminated string' : 'invalid escape in string (only \\" and \\\\)');
        }
        chunk = p; // the escaped character starts the next chunk
      } else if (!(c >= 0x20 && c <= 0x7e)) {
        this.pos = p;
        this.fail(p >= this.len ? 'unterminated string' : 'invalid character in string');
      }
      p++;
    }
  }

  token(): BareItem {
    const start = this.pos;
    let p = start + 1;
    while (is(this.s.charCodeAt(p), C_TOKEN)) p++;
    this.pos = p;
    return { kind: 'token', value: this.s.slice(start, p) };
  }

  bytes(): BareItem {
    const s = this.s;
    const start = this.pos + 1;
    let p = start;
    while (is(s.charCodeAt(p), C_B64)) p++;
    const dataEnd = p;
    while (s.charCodeAt(p) === EQUALS) p++;
    const c = s.charCodeAt(p);
    if (c !== COLON) {
      this.pos = p;
      this.fail(p >= this.len ? 'unterminated byte sequence' : 'invalid character in byte sequence');
    }
    const data = dataEnd - start;
    const pad = p - dataEnd;
    if (pad > 2 || data % 4 === 1 || (pad > 0 && (data + pad) % 4 !== 0)) {
      this.pos = start;
      this.fail('byte sequence is not valid base64');
    }
    this.pos = p + 1;
    // unpadded input, or padding, may carry non-zero pad bits the serializer would not write; only whole groups are taken as they are
    if (data % 4 !== 0 || pad !== 0) this.canonical = false;
    return { kind: 'bytes', value: decodeBase64(s, start, dataEnd) };
  }

  boolean(): BareItem {
    const c = this.s.charCodeAt(this.pos + 1);
    if (c === 0x31 || c === 0x30) {
      this.pos += 2;
      return c === 0x31 ? TRUE : FALSE;
    }
    this.pos++;
    return this.fail('expected "?1" or "?0"');
  }
}

/** base64 character -> its 6 bits; only ever indexed with characters the parser checked are C_B64 */
const B64_VALUE = new Uint8Array(128);
for (let i = 0; i < 64; i++)
  B64_VALUE['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;

/**
 * Decode s[start, end), base64 characters only (no padding, length not 4n+1), as Buffer.from
 * does: a trailing group of 2 or 3 characters gives 1 or 2 bytes, its leftover bits ignored.
 * Without the substring and the native call, it costs about half as much for a MAC or digest.
 */
function decodeBase64(s: string, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(((end - start) * 3) >> 2);
  let o = 0;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    const v =
      (B64_VALUE[s.charCodeAt(i)]! << 18) |
      (B64_VALUE[s.charCodeAt(i + 1)]! << 12) |
      (B64_VALUE[s.charCodeAt(i + 2)]! << 6) |
      B64_VALUE[s.charCodeAt(i + 3)]!;
    out[o++] = v >> 16;
    out[o++] = (v >> 8) & 0xff;
    out[o++] = v & 0xff;
  }
  const rest = end - i;
  if (rest >= 2) {
    const v =
      (B64_VALUE[s.charCodeAt(i)]! << 18) |
      (B64_VALUE[s.charCodeAt(i + 1)]! << 12) |
      (rest === 3 ? B64_VALUE[s.charCodeAt(i + 2)]! << 6 : 0);
    out[o++] = v >> 16;
    if (rest === 3) out[o++] = (v >> 8) & 0xff;
  }
  return out;
}

export function parseDictionary(input: string, options?: DictionaryOptions): Dictionary {
  const p = new Parser(input);
  const dict = new Map<string, Member>();
  if (p.pos >= p.len) return dict;
  const rejectDuplicates = options?.rejectDuplicateKeys === true;
  do {
    const keyAt = p.pos;
    const key = p.key();
    let member: Member;
    if (p.s.charCodeAt(p.pos) === EQUALS) {
      p.pos++;
      member = p.member();
    } else {
      member = { kind: 'item', value: TRUE, params: p.params() };
    }
    const size = dict.size;
    dict.set(key, member); // a repeated key keeps its first position and takes the last value
    if (rejectDuplicates && dict.size === size)
      throw new StructuredFieldError(`duplicate dictionary key "${key}"`, keyAt);
  } while (p.nextMember());
  return dict;
}

export function parseList(input: string): List {
  const p = new Parser(input);
  const list: Member[] = [];
  if (p.pos >= p.len) return list;
  do list.push(p.member());
  while (p.nextMember());
  return list;
}

export function parseItem(input: string): Item {
  const p = new Parser(input);
  const item = p.item();
  p.skipSP();
  if (p.pos < p.len) p.fail('unexpected characters after the item');
  return item;
}

// ---------------------------------------------------------------------------------------------
// serializing

function serializeError(message: string): never {
  throw new StructuredFieldError(message, -1);
}

function serializeKey(key: string): string {
  if (typeof key !== 'string' || !is(key.charCodeAt(0), C_KEY_START))
    serializeError(`invalid key ${JSON.stringify(key)}`);
  for (let i = 1; i < key.length; i++) {
    if (!is(key.charCodeAt(i), C_KEY)) serializeError(`invalid key ${JSON.stringify(key)}`);
  }
  return key;
}

function serializeDecimal(value: number): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) serializeError('decimal is not a finite number');
  const negative = value < 0;
  const abs = negative ? -value : value;
  if (abs >= 1e12) serializeError('decimal has more than 12 integer digits');
  let intPart: string;
  let frac: string;
  const sixteenths = abs * 16; // exact: multiplying by a power of two
  if (Number.isInteger(sixteenths) && sixteenths % 2 === 1) {
    // exactly halfway between two thousandths (odd multiples of 1/16 are the only such doubles);
    // toFixed would round away from zero, the RFC wants round-half-even. abs * 1000 is exact here.
    let n = Math.floor(abs * 1000);
    if (n % 2 === 1) n++;
    intPart = String(Math.floor(n / 1000));
    frac = String(n % 1000).padStart(3, '0');
  } else {
    // toFixed rounds the exact binary value, so away from a tie it is the correct rounding
    const fixed = abs.toFixed(3);
    const dot = fixed.length - 4;
    intPart = fixed.slice(0, dot);
    frac = fixed.slice(dot + 1);
  }
  if (intPart.length > 12) serializeError('decimal has more than 12 integer digits');
  let end = 3;
  while (end > 1 && frac.charCodeAt(end - 1) === 0x30) end--;
  frac = frac.slice(0, end);
  const zero = intPart === '0' && frac === '0';
  return (negative && !zero ? '-' : '') + intPart + '.' + frac;
}

function serializeString(value: string): string {
  if (typeof value !== 'string') serializeError('string item is not a string');
  let escapes = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) serializeError('string contains a character outside 0x20-0x7E');
    if (c === DQUOTE || c === BACKSLASH) escapes = true;
  }
  return escapes ? '"' + value.replace(/["\\]/g, '\\$&') + '"' : '"' + value + '"';
}

function serializeToken(value: string): string {
  if (typeof value !== 'string' || !is(value.charCodeAt(0), C_TOKEN_START))
    serializeError(`invalid token ${JSON.stringify(value)}`);
  for (let i = 1; i < value.length; i++) {
    if (!is(value.charCodeAt(i), C_TOKEN)) serializeError(`invalid token ${JSON.stringify(value)}`);
  }
  return value;
}

export function serializeBareItem(item: BareItem): string {
  switch (item.kind) {
    case 'integer': {
      const v = item.value;
      if (!Number.isInteger(v) || v < -MAX_INTEGER || v > MAX_INTEGER) serializeError(`integer ${v} is out of range`);
      return String(v); // String(-0) is "0"
    }
    case 'decimal':
      return serializeDecimal(item.value);
    case 'string':
      return serializeString(item.value);
    case 'token':
      return serializeToken(item.value);
    case 'bytes': {
      const v: unknown = item.value;
      if (Buffer.isBuffer(v)) return ':' + v.toString('base64') + ':';
      if (v instanceof Uint8Array)
        return ':' + Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') + ':';
      return serializeError('byte sequence is not a Buffer');
    }
    case 'boolean':
      if (item.value === true) return '?1';
      if (item.value === false) return '?0';
      return serializeError('boolean item is not a boolean');
    default:
      return serializeError(`unknown bare item kind ${JSON.stringify((item as { kind?: unknown }).kind)}`);
  }
}

function isTrue(item: BareItem): boolean {
  return item.kind === 'boolean' && item.value === true;
}

export function serializeParameters(params: Parameters): string {
  let out = '';
  for (const [key, value] of params) {
    out += ';' + serializeKey(key);
    if (!isTrue(value)) out += '=' + serializeBareItem(value);
  }
  return out;
}

export function serializeItem(item: Item): string {
  return serializeBareItem(item.value) + serializeParameters(item.params);
}

export function serializeInnerList(list: InnerList): string {
  let out = '(';
  const items = list.items;
  for (let i = 0; i < items.length; i++) {
    if (i > 0) out += ' ';
    out += serializeItem(items[i]!);
  }
  return out + ')' + serializeParameters(list.params);
}

export function serializeMember(member: Member): string {
  if (member.kind === 'item') return serializeItem(member);
  if (member.kind === 'inner-list') return serializeInnerList(member);
  return serializeError(`unknown member kind ${JSON.stringify((member as { kind?: unknown }).kind)}`);
}

export function serializeDictionary(dict: Dictionary): string {
  let out = '';
  let first = true;
  for (const [key, member] of dict) {
    if (!first) out += ', ';
    first = false;
    out += serializeKey(key);
    if (member.kind === 'item' && isTrue(member.value)) out += serializeParameters(member.params);
    else out += '=' + serializeMember(member);
  }
  return out;
}

export function serializeList(list: List): string {
  let out = '';
  for (let i = 0; i < list.length; i++) {
    if (i > 0) out += ', ';
    out += serializeMember(list[i]!);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// constructors

/** small constructors used by callers building fields; values are validated when serialized */
export const sf: {
  integer(n: number): BareItem;
  decimal(n: number): BareItem;
  string(s: string): BareItem;
  token(s: string): BareItem;
  bytes(b: Buffer): BareItem;
  boolean(v: boolean): BareItem;
  item(value: BareItem, params?: Iterable<readonly [string, BareItem]>): Item;
  innerList(items: readonly Item[], params?: Iterable<readonly [string, BareItem]>): InnerList;
} = {
  integer: (n) => ({ kind: 'integer', value: n }),
  decimal: (n) => ({ kind: 'decimal', value: n }),
  string: (s) => ({ kind: 'string', value: s }),
  token: (s) => ({ kind: 'token', value: s }),
  bytes: (b) => ({ kind: 'bytes', value: b }),
  boolean: (v) => (v ? TRUE : FALSE),
  item: (value, params) => ({ kind: 'item', value, params: params === undefined ? NO_PARAMS : new Map(params) }),
  innerList: (items, params) => ({
    kind: 'inner-list',
    items: items.slice(),
    params: params === undefined ? NO_PARAMS : new Map(params),
  }),
};
