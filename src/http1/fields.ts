/**
 * Field lists of HTTP/1.1 messages as the core handles them: flat [name, value, …] arrays
 * as llhttp gives them (names as sent, order and repeats kept). What one hop must not pass
 * on (RFC 9110 §7.6.1), the request's framing and codings, and the heads the core writes.
 */

/** Fields that apply to one connection only; with every field a Connection value names, never forwarded. */
const HOP_BY_HOP: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'http2-settings',
];

/**
 * Lowercase names by their length, so a received name is compared only with those of its length,
 * character by character: no lowercased copy of it and no hash of it (a name llhttp hands over is
 * a new string each time, and a set would hash it on every lookup).
 */
function byLength(names: Iterable<string>): ReadonlyArray<readonly string[] | undefined> {
  const table: string[][] = [];
  for (const name of names) (table[name.length] ??= []).push(name);
  return table;
}

/**
 * `name` equals `lower` (a lowercase name) but for the case of its letters: where `lower` has a
 * letter, `name` may have it in either case (`c | 0x20`); anywhere else the same character. Exact
 * for any string, not only for the token characters llhttp lets into a name.
 */
function sameName(name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    const c = name.charCodeAt(i);
    const l = lower.charCodeAt(i);
    if (c !== l && ((c | 0x20) !== l || l < 0x61 || l > 0x7a)) return false;
  }
  return true;
}

/** A field name (any case) is `lower`, a lowercase name. */
export function isName(name: string, lower: string): boolean {
  return name.length === lower.length && sameName(name, lower);
}

/** one of `table`'s names, in any case */
function inTable(table: ReadonlyArray<readonly string[] | undefined>, name: string): boolean {
  const candidates = table[name.length];
  if (candidates === undefined) return false;
  for (const lower of candidates) if (sameName(name, lower)) return true;
  return false;
}

const HOP_BY_HOP_BY_LENGTH = byLength(HOP_BY_HOP);

/** A hop-by-hop field name (any case). */
export function isHopByHop(name: string): boolean {
  return inTable(HOP_BY_HOP_BY_LENGTH, name);
}

export const PEER_HEADER = 'x-tollgate-peer';

/**
 * Lowercased tokens of every Connection field ("close, X-Foo" → {close, x-foo}) that name a
 * field other than the hop-by-hop ones (dropped anyway); null when there is none, as for the
 * usual `keep-alive` or `close`.
 */
export function connectionTokens(raw: readonly string[]): Set<string> | null {
  let tokens: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    if (!isName(raw[i]!, 'connection')) continue;
    const value = raw[i + 1]!;
    if (value.length <= 10 && isHopByHopOrOption(value.trim().toLowerCase())) continue;
    for (const t of value.split(',')) {
      const name = t.trim().toLowerCase();
      if (name === '' || isHopByHopOrOption(name)) continue;
      tokens ??= new Set();
      tokens.add(name);
    }
  }
  return tokens;
}

/** A set of lowercase field names, asked about names in any case (compared by length first, without lowercasing). */
export class NameSet {
  readonly byLength: ReadonlyArray<readonly string[] | undefined>;
  constructor(names: readonly string[]) {
    this.byLength = byLength(names);
  }

  has(name: string): boolean {
    return inTable(this.byLength, name);
  }
}

/** connection options that are not field names, and the hop-by-hop names */
function isHopByHopOrOption(token: string): boolean {
  return token === 'close' || inTable(HOP_BY_HOP_BY_LENGTH, token);
}

/** What a request head says about its framing and its intent, read in one pass over its fields. */
export interface RequestFraming {
  /** the Content-Length value (llhttp has checked it is one decimal number), or -1 */
  contentLength: number;
  /** Transfer-Encoding fields, joined; '' when none */
  transferEncoding: string;
  /** how many Host fields */
  hosts: number;
  /** the (last) Host value, '' when none */
  host: string;
  /** `Expect: 100-continue` */
  expectContinue: boolean;
  /** the Upgrade value, lowercased; '' when none */
  upgrade: string;
  /** a Content-Digest field was sent */
  contentDigest: string | null;
  /** Content-Type application/grpc (or application/grpc+proto, …): a gRPC call */
  grpc: boolean;
}

export function requestFraming(raw: readonly string[]): RequestFraming {
  const f: RequestFraming = {
    contentLength: -1,
    transferEncoding: '',
    hosts: 0,
    host: '',
    expectContinue: false,
    upgrade: '',
    contentDigest: null,
    grpc: false,
  };
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // the first letter and the length pick the few names of interest without lowercasing every name
    const c = name.charCodeAt(0) | 0x20;
    if (c === 0x63 /* c */) {
      if (isName(name, 'content-length')) f.contentLength = Number(raw[i + 1]);
      else if (isName(name, 'content-digest'))
        f.contentDigest = f.contentDigest === null ? raw[i + 1]! : `${f.contentDigest}, ${raw[i + 1]}`;
      else if (isName(name, 'content-type')) f.grpc = isGrpcContentType(raw[i + 1]!);
    } else if (c === 0x74 /* t */) {
      if (isName(name, 'transfer-encoding'))
        f.transferEncoding = f.transferEncoding === '' ? raw[i + 1]! : `${f.transferEncoding}, ${raw[i + 1]}`;
    } else if (c === 0x68 /* h */) {
      if (isName(name, 'host')) {
        f.hosts += 1;
        f.host = raw[i + 1]!;
      }
    } else if (c === 0x65 /* e */) {
      if (isName(name, 'expect') && raw[i + 1]!.trim().toLowerCase() === '100-continue') f.expectContinue = true;
    } else if (c === 0x75 /* u */) {
      if (isName(name, 'upgrade')) f.upgrade = raw[i + 1]!.trim().toLowerCase();
    }
  }
  return f;
}

/** `application/grpc`, alone or with a `+format` or parameters (gRPC over HTTP/2, PROTOCOL-HTTP2.md) */
export function isGrpcContentType(value: string): boolean {
  if (value.length < 16 || value.slice(0, 16).toLowerCase() !== 'application/grpc') return false;
  const next = value.charCodeAt(16);
  return Number.isNaN(next) || next === 0x2b /* + */ || next === 0x3b /* ; */ || next === 0x20 || next === 0x09;
}

/** A Transfer-Encoding that is exactly `chunked` (the only coding tollgate forwards; llhttp has checked it is last). */
export function onlyChunked(transferEncoding: string): boolean {
  if (transferEncoding === '') return true;
  for (const t of transferEncoding.split(',')) {
    const coding = t.trim().toLowerCase();
    if (coding !== '' && coding !== 'chunked') return false;
  }
  return true;
}

/**
 * The fields of a message to pass on, as one latin1 string of `name: value\r\n` lines: hop-by-hop
 * fields and those Connection names dropped, and any field in `drop`.
 */
export function forwardedFields(raw: readonly string[], drop: NameSet | null): string {
  const named = connectionTokens(raw);
  let out = '';
  for (let i = 0; i < raw.length; i += 2) if (passesOn(raw[i]!, named, drop)) out += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return out;
}

/** A field this hop passes on: not hop-by-hop, not named by Connection, not in `drop`. */
function passesOn(name: string, named: Set<string> | null, drop: NameSet | null): boolean {
  return !isHopByHop(name) && (drop === null || !drop.has(name)) && (named === null || !named.has(name.toLowerCase()));
}

/** The same selection as a flat list (for signing: the signature base reads the fields as they will be sent). */
export function forwardedList(raw: readonly string[], drop: NameSet | null): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (passesOn(raw[i]!, named, drop)) out.push(raw[i]!, raw[i + 1]!);
  return out;
}

/** The first value of a field (`lowerName` lowercased), or '' when it is absent. */
export function fieldValue(raw: readonly string[], lowerName: string): string {
  for (let i = 0; i < raw.length; i += 2) if (isName(raw[i]!, lowerName)) return raw[i + 1]!;
  return '';
}

/** `name: value\r\n` lines of a flat list, as is. */
export function fieldLines(list: readonly string[]): string {
  let out = '';
  for (let i = 0; i < list.length; i += 2) out += `${list[i]}: ${list[i + 1]}\r\n`;
  return out;
}

/**
 * Reason phrases for the statuses tollgate itself answers with, and for the usual ones of an HTTP/2
 * upstream (which sends none) relayed to an HTTP/1.1 client; an HTTP/1.1 upstream's own phrase is
 * passed on as sent, and a status not listed goes with an empty one (RFC 9112 §4 allows it).
 */
export const REASON_PHRASES: Readonly<Record<number, string>> = {
  100: 'Continue',
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  206: 'Partial Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  304: 'Not Modified',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** RFC 9110 §9.2.2 */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'TRACE']);
