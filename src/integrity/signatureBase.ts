import { TollgateError } from '../core/errors.ts';
import {
  parseDictionary,
  parseList,
  serializeDictionary,
  serializeInnerList,
  serializeItem,
  serializeList,
  serializeMember,
  serializeParameters,
  sf,
  StructuredFieldError,
  type InnerList,
  type Item,
} from './structuredFields.ts';

/**
 * RFC 9421 §2.5: the signature base of a request, built from the message exactly as it
 * is on the wire — the raw request-target (never URL-normalised), header values from
 * `rawHeaders` (repeated lines joined with ", "), `@authority` from Host. The same code
 * serves the verifier (over the request received) and the signer (over the request about
 * to be sent), so both sides always agree on what a component means.
 *
 * Any component that cannot be put into a base is refused, never guessed: an absent field
 * (ERR_SIG_INVALID — the signature does not fit this message; for content-digest,
 * ERR_DIGEST_MISSING), and a malformed or unsupported identifier, a duplicate identifier, a
 * repeated singleton field, or a value that is not printable ASCII (ERR_SIG_MALFORMED).
 */
export interface MessageView {
  readonly method: string;
  /** the request-target as received (req.url): origin-form, absolute-form, authority-form or "*" */
  readonly target: string;
  readonly scheme: 'http' | 'https';
  readonly headers: HeaderIndex;
}

/** Fields that may appear once only; a repeat would make their meaning ambiguous. */
const SINGLETONS = new Set(['host', 'content-type', 'content-length', 'content-digest', 'authorization', 'date']);

/** Header lines by lowercase name, in message order; built once per message from rawHeaders. */
export class HeaderIndex {
  readonly lines: Map<string, string[]>;

  constructor(lines: Map<string, string[]>) {
    this.lines = lines;
  }

  static fromRaw(raw: readonly string[]): HeaderIndex {
    const lines = new Map<string, string[]>();
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const existing = lines.get(name);
      if (existing === undefined) lines.set(name, [raw[i + 1]!]);
      else existing.push(raw[i + 1]!);
    }
    return new HeaderIndex(lines);
  }

  has(name: string): boolean {
    return this.lines.has(name);
  }

  /** the field's lines, trimmed, obs-fold replaced by a space; undefined when absent */
  fieldLines(name: string): string[] | undefined {
    const raw = this.lines.get(name);
    if (raw === undefined) return undefined;
    return raw.map(canonicalLine);
  }

  /** the combined value (lines joined with ", "); undefined when absent; a repeated singleton throws ERR_SIG_MALFORMED */
  value(name: string): string | undefined {
    const raw = this.lines.get(name);
    if (raw !== undefined && raw.length > 1 && SINGLETONS.has(name))
      throw malformed(`${name} appears ${raw.length} times`);
    return combined(raw);
  }

  /** the combined value (lines joined with ", ") of any field, singletons not checked; undefined when absent */
  joined(name: string): string | undefined {
    return combined(this.lines.get(name));
  }
}

/** one line needs no array: the common case, a field sent once */
function combined(raw: readonly string[] | undefined): string | undefined {
  if (raw === undefined) return undefined;
  return raw.length === 1 ? canonicalLine(raw[0]!) : raw.map(canonicalLine).join(', ');
}

function canonicalLine(line: string): string {
  return (line.includes('\n') ? line.replace(/\r?\n[ \t]+/g, ' ') : line).trim();
}

function malformed(detail: string): TollgateError {
  return new TollgateError('ERR_SIG_MALFORMED', detail);
}

/** Build the base for the covered components of one Signature-Input member (its inner list and parameters). */
export function signatureBase(msg: MessageView, covered: InnerList): string {
  return signatureBaseOf(msg, covered.items, signatureParams(covered));
}

/**
 * The same base from the covered items and the `@signature-params` value already serialized:
 * for a signer that writes that text itself (integrity/signer.ts), which must be exactly
 * `serializeInnerList` of the items with their parameters.
 */
export function signatureBaseOf(msg: MessageView, items: readonly Item[], params: string): string {
  let base = '';
  const seen: string[] = [];
  for (const item of items) {
    const id = componentIdentity(item);
    if (seen.includes(id)) throw malformed(`component ${serializeItem(item)} is covered twice`);
    seen.push(id);
    const value = componentValue(msg, item);
    // checked per value, so no value can carry a line break into the base and forge a line
    assertPrintableAscii(value);
    base += `${identifier(item)}: ${value}\n`;
  }
  return base + `"@signature-params": ${params}`;
}

/**
 * §2.3: the serialized inner list with its parameters. A member parsed from a received
 * Signature-Input whose text is already in serialized form is taken as it came (the parser
 * only offers the text when it is exactly what serializing would produce).
 */
function signatureParams(covered: InnerList): string {
  return covered.serialized ?? serializeInnerList(covered);
}

/** The serialized component identifier; the common case (a plain name, no parameters) without the general serializer. */
function identifier(item: Item): string {
  const name = (item.value as { value: string }).value;
  return item.params.size === 0 && !name.includes('"') && !name.includes('\\') ? `"${name}"` : serializeItem(item);
}

/** Name plus parameters in a fixed order: identifiers that differ only in parameter order are the same component. */
function componentIdentity(item: Item): string {
  if (item.value.kind !== 'string') throw malformed('a covered component is not a string');
  if (item.params.size === 0) return item.value.value;
  const names = [...item.params.keys()].sort();
  return `${item.value.value}${names.map((n) => serializeParameters(new Map([[n, item.params.get(n)!]]))).join('')}`;
}

function componentValue(msg: MessageView, item: Item): string {
  const name = (item.value as { value: string }).value;
  if (name.startsWith('@')) return derivedValue(msg, name, item);
  if (name === '' || name !== name.toLowerCase()) throw malformed(`field name "${name}" is not lowercase`);
  return fieldValue(msg, name, item);
}

/* ------------------------------------------------------------ derived components */

function derivedValue(msg: MessageView, name: string, item: Item): string {
  if (name === '@query-param') return queryParamValue(msg, item);
  if (item.params.size > 0) throw malformed(`component ${name} takes no parameters here`);
  switch (name) {
    case '@method':
      return msg.method;
    case '@authority':
      return authority(msg);
    case '@scheme':
      return msg.scheme;
    case '@target-uri':
      return `${msg.scheme}://${authority(msg)}${originForm(msg.target)}`;
    case '@request-target':
      return msg.target;
    case '@path':
      return pathOf(originForm(msg.target));
    case '@query':
      return queryOf(originForm(msg.target));
    case '@status':
      throw malformed('@status is a response component');
    case '@signature-params':
      throw malformed('@signature-params must not be covered');
    default:
      throw malformed(`unknown derived component ${name}`);
  }
}

/**
 * @authority: the authority of the target URI (RFC 9421 §2.2.3, RFC 9110 §7.2), host lowercased,
 * the scheme's default port dropped (RFC 9110 §4.2.3). That is the Host the client addressed,
 * except for an absolute-form request-target, whose own authority is the target's and the Host
 * field is ignored (RFC 9112 §3.2.2) — as the app behind us will read it.
 */
export function authority(msg: MessageView): string {
  const host = absoluteFormAuthority(msg.target) ?? msg.headers.value('host');
  if (host === undefined || host === '') throw new TollgateError('ERR_SIG_INVALID', 'no Host for @authority');
  return normaliseAuthority(host, msg.scheme);
}

/** The authority (userinfo removed) of an absolute-form request-target; undefined for any other form. */
function absoluteFormAuthority(target: string): string | undefined {
  if (target.startsWith('/')) return undefined;
  const scheme = target.indexOf('://');
  if (scheme <= 0) return undefined;
  const rest = target.slice(scheme + 3);
  const end = rest.search(/[/?#]/);
  const auth = end === -1 ? rest : rest.slice(0, end);
  return auth.slice(auth.lastIndexOf('@') + 1);
}

export function normaliseAuthority(host: string, scheme: 'http' | 'https'): string {
  const lower = host.toLowerCase();
  const defaultPort = scheme === 'https' ? ':443' : ':80';
  return lower.endsWith(defaultPort) ? lower.slice(0, -defaultPort.length) : lower;
}

/** The path-and-query of a request-target: origin-form as is; absolute-form without scheme and authority. */
function originForm(target: string): string {
  if (target.startsWith('/')) return target;
  const scheme = target.indexOf('://');
  if (scheme > 0) {
    const slash = target.indexOf('/', scheme + 3);
    const query = target.indexOf('?', scheme + 3);
    if (slash === -1 || (query !== -1 && query < slash)) return query === -1 ? '/' : `/${target.slice(query)}`;
    return target.slice(slash);
  }
  throw malformed('the request-target has no path');
}

function pathOf(origin: string): string {
  const q = origin.indexOf('?');
  const path = q === -1 ? origin : origin.slice(0, q);
  return path === '' ? '/' : path;
}

function queryOf(origin: string): string {
  const q = origin.indexOf('?');
  return q === -1 ? '?' : origin.slice(q);
}

/** @query-param;name="x" (§2.2.8): form-urlencoded parsing, then the form percent-encode set with %20 for space. */
function queryParamValue(msg: MessageView, item: Item): string {
  const nameParam = item.params.get('name');
  if (item.params.size !== 1 || nameParam === undefined || nameParam.kind !== 'string')
    throw malformed('@query-param needs exactly the parameter name');
  const query = queryOf(originForm(msg.target)).slice(1);
  let found: string | undefined;
  for (const pair of query.split('&')) {
    if (pair === '') continue; // WHATWG form parsing skips empty sequences ("a=1&&b=2", a trailing "&")
    const eq = pair.indexOf('=');
    const key = formEncode(formDecode(eq === -1 ? pair : pair.slice(0, eq)));
    if (key !== nameParam.value) continue;
    if (found !== undefined) throw malformed(`query parameter ${nameParam.value} appears more than once`);
    found = formEncode(formDecode(eq === -1 ? '' : pair.slice(eq + 1)));
  }
  if (found === undefined) throw new TollgateError('ERR_SIG_INVALID', `query parameter ${nameParam.value} is absent`);
  return found;
}

/** "UTF-8 decode without BOM": a leading BOM is kept, invalid sequences become U+FFFD (never throws) */
const UTF8 = new TextDecoder('utf-8', { ignoreBOM: true });

function isHexDigit(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
}

/**
 * WHATWG application/x-www-form-urlencoded parsing of one name or value: "+" is a space, %XX is
 * the byte XX (a "%" not followed by two hex digits stays literal), and the bytes are then
 * decoded as UTF-8 with U+FFFD for invalid sequences — what URLSearchParams does.
 */
function formDecode(s: string): string {
  const bytes = Buffer.from(s.replaceAll('+', ' '), 'utf8');
  const out = Buffer.allocUnsafe(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0x25 && i + 2 < bytes.length && isHexDigit(bytes[i + 1]!) && isHexDigit(bytes[i + 2]!)) {
      out[n++] = parseInt(String.fromCharCode(bytes[i + 1]!, bytes[i + 2]!), 16);
      i += 2;
    } else {
      out[n++] = b;
    }
  }
  return UTF8.decode(out.subarray(0, n));
}

/** application/x-www-form-urlencoded percent-encode set: all but ASCII alphanumerics and *-._, space as %20, uppercase hex. */
function formEncode(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const isSafe =
      (byte >= 0x30 && byte <= 0x39) ||
      (byte >= 0x41 && byte <= 0x5a) ||
      (byte >= 0x61 && byte <= 0x7a) ||
      byte === 0x2a ||
      byte === 0x2d ||
      byte === 0x2e ||
      byte === 0x5f;
    out += isSafe ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/* ------------------------------------------------------------ field components */

/** Structured types of the fields whose `sf` / `key` forms we can produce (RFC 9421 needs a known type). */
const STRUCTURED_TYPES: Readonly<Record<string, 'dictionary' | 'list'>> = {
  'content-digest': 'dictionary',
  'repr-digest': 'dictionary',
  'want-content-digest': 'dictionary',
  'want-repr-digest': 'dictionary',
  'signature-input': 'dictionary',
  signature: 'dictionary',
  'accept-signature': 'dictionary',
  priority: 'dictionary',
  'cache-status': 'list',
  'proxy-status': 'list',
};

function fieldValue(msg: MessageView, name: string, item: Item): string {
  const params = item.params;
  if (params.size === 0) return plainFieldValue(msg, name);
  for (const p of params.keys()) {
    if (p === 'req' || p === 'tr')
      throw malformed(`component parameter ${p} does not apply to a request's header section`);
    if (p !== 'sf' && p !== 'key' && p !== 'bs') throw malformed(`unknown component parameter ${p}`);
  }
  if (params.has('bs') && (params.has('sf') || params.has('key')))
    throw malformed('bs cannot be combined with sf or key');
  if (name === 'content-digest' && !msg.headers.has(name))
    throw new TollgateError('ERR_DIGEST_MISSING', 'content-digest is covered but absent');
  if (params.has('bs')) {
    const lines = msg.headers.fieldLines(name);
    if (lines === undefined) throw absent(name);
    return serializeList(lines.map((l) => sf.item(sf.bytes(Buffer.from(l, 'latin1')))));
  }
  const value = msg.headers.value(name);
  if (value === undefined) throw absent(name);
  if (!params.has('sf') && !params.has('key')) return value;
  return structuredValue(name, value, params.get('key'));
}

/** A field covered without parameters (the common case): its combined value as is. */
function plainFieldValue(msg: MessageView, name: string): string {
  if (name === 'content-digest' && !msg.headers.has(name))
    throw new TollgateError('ERR_DIGEST_MISSING', 'content-digest is covered but absent');
  const value = msg.headers.value(name);
  if (value === undefined) throw absent(name);
  return value;
}

function absent(name: string): TollgateError {
  return new TollgateError('ERR_SIG_INVALID', `covered field ${name} is absent`);
}

function structuredValue(name: string, value: string, key: ReturnType<Item['params']['get']>): string {
  const type = STRUCTURED_TYPES[name];
  if (type === undefined) throw malformed(`${name} has no known structured type`);
  try {
    if (key !== undefined) {
      if (type !== 'dictionary' || key.kind !== 'string') throw malformed(`key needs a dictionary field and a string`);
      const member = parseDictionary(value).get(key.value);
      if (member === undefined) throw new TollgateError('ERR_SIG_INVALID', `${name} has no member ${key.value}`);
      return serializeMember(member);
    }
    return type === 'dictionary' ? serializeDictionary(parseDictionary(value)) : serializeList(parseList(value));
  } catch (err) {
    if (err instanceof StructuredFieldError) throw malformed(`${name} is not a valid structured field`);
    throw err;
  }
}

/** anything but printable ASCII, space and tab; no `g` flag, so no state (V8 scans a value with it faster than a charCodeAt loop) */
const NOT_PRINTABLE = /[^\t\x20-\x7e]/;

/** Printable ASCII, space and tab; anything else (line breaks, other controls, non-ASCII) cannot go into a base. */
function assertPrintableAscii(value: string): void {
  if (NOT_PRINTABLE.test(value)) throw malformed('a covered value is not printable ASCII');
}
