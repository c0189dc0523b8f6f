/**
 * An exploratory L7 baseline: what an HTTP/1.1 path that bypasses node:http and undici costs
 * in Node. Node `tls.createServer` with mTLS; each connection gets its own keep-alive upstream
 * socket (net); the request head is parsed by hand (request line, fields, Content-Length),
 * hop-by-hop fields dropped, head and body written upstream; the response head parsed the
 * same way and the response piped back. One exchange at a time per connection.
 *
 * It is a measuring instrument, not a proxy: Content-Length framing only (anything else
 * closes the connection), no limits, no validation beyond what framing needs; requests of a
 * connection go in order over its own upstream socket, so responses come back in order. It
 * answers one question: how close to HAProxy could a request path of our own get?
 * With `--verify KEYDIR KEYID TAG` it also runs tollgate's RFC 9421 verifier and replay cache
 * (from dist/) on every request and checks the body against its Content-Digest as it streams
 * (sha-256), to show what the checks would cost on such a path.
 * With `--llhttp` the heads are parsed by Node's llhttp binding instead, strict, as tollgate's
 * core loads it (from dist/), one REQUEST and one RESPONSE parser per connection, everything else
 * the same: the instrument with the parser issue 15 chose, to tell the parser's cost from the
 * rest of what tollgate-l7 does over raw-l7.
 *
 * `--replay-entries N` sizes the replay cache (default 1,000,000, tollgate's default), for a run
 * that keeps the instrument under load for minutes (bench/interleaved.ts).
 *
 *   node bench/macro/baselines/l7-raw.ts PORT UPSTREAM_PORT CERT KEY CA [--verify KEYDIR KEYID TAG] [--llhttp]
 *        [--replay-entries N]
 */
import { createHash, timingSafeEqual, type Hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [port, upstreamPort, cert, key, ca] = process.argv.slice(2, 7) as [string, string, string, string, string];
const options = process.argv.slice(7);
const verifyAt = options.indexOf('--verify');
const entriesAt = options.indexOf('--replay-entries');
const replayEntries = entriesAt >= 0 ? Number(options[entriesAt + 1]) : 1_000_000;
/** dist/ (the bench puts its URL here when it strips the types; replaced once, so it is named once) */
const DIST = new URL('DIST_URL/', import.meta.url);

/** null: refused; else the sha-256 digest the body must have (null: no body) */
type Verify = (
  method: string,
  target: string,
  rawHeaders: string[],
  hasContent: boolean,
) => { digest: Buffer | null } | null;
const verify: Verify | null =
  verifyAt >= 0 ? await loadVerifier(options[verifyAt + 1]!, options[verifyAt + 2]!, options[verifyAt + 3]!) : null;

/** tollgate's verifier, key ring and replay cache from dist/ */
async function loadVerifier(dir: string, id: string, sigTag: string): Promise<Verify> {
  const { verifyRequest } = await import(new URL('integrity/verifier.js', DIST).href);
  const { HeaderIndex } = await import(new URL('integrity/signatureBase.js', DIST).href);
  const { keyRingFromEntries } = await import(new URL('integrity/keyRing.js', DIST).href);
  const { createReplayCache } = await import(new URL('integrity/replayCache.js', DIST).href);
  const { MacKeys } = await import(new URL('integrity/hmac.js', DIST).href);
  const { systemClock } = await import(new URL('core/clock.js', DIST).href);
  const ring = keyRingFromEntries([[id, Buffer.from(readFileSync(`${dir}/${id}`, 'utf8').trim(), 'base64')]]);
  const deps = {
    profile: { tag: sigTag, skewSeconds: 30, maxAgeSeconds: 300, requiredComponents: [] },
    keys: () => ring,
    replay: createReplayCache({ ttlMs: 330_000, maxEntries: replayEntries, clock: systemClock }),
    clock: systemClock,
    macs: new MacKeys(),
  };
  return (method, target, rawHeaders, hasContent) => {
    const v = verifyRequest(
      { method, target, scheme: 'https', headers: HeaderIndex.fromRaw(rawHeaders) },
      hasContent,
      deps,
    );
    if (!v.ok) return null;
    const sha256 = (v.digests ?? []).find((d: { algorithm: string; value: Buffer }) => d.algorithm === 'sha-256');
    return { digest: hasContent ? (sha256?.value ?? Buffer.alloc(0)) : null };
  };
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'te',
  'trailer',
]);
const CRLFCRLF = Buffer.from('\r\n\r\n');
const MAX_HEAD = 64 * 1024;

interface Head {
  readonly line: string;
  readonly raw: string[];
  readonly length: number;
  readonly chunked: boolean;
}

/** request or status line, fields (name, value pairs, names as sent), Content-Length */
function parseHead(text: string): Head | null {
  const lines = text.split('\r\n');
  const raw: string[] = [];
  let length = 0;
  let chunked = false;
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!;
    const colon = l.indexOf(':');
    if (colon <= 0) return null;
    const name = l.slice(0, colon);
    const value = l.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (lower === 'content-length') length = Number(value);
    else if (lower === 'transfer-encoding') chunked = true;
    raw.push(name, value);
  }
  return Number.isSafeInteger(length) && length >= 0 ? { line: lines[0]!, raw, length, chunked } : null;
}

function headText(line: string, raw: readonly string[]): string {
  let out = `${line}\r\n`;
  for (let i = 0; i < raw.length; i += 2)
    if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) out += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return `${out}\r\n`;
}

/** What both ways of framing offer: bytes in; false when the stream cannot be framed. */
interface Framing {
  push(chunk: Buffer): boolean;
  /** the connection is gone (called from its 'close' event, never inside push) */
  close(): void;
}
type OnHead = (head: Head) => boolean;
type OnBody = (chunk: Buffer, last: boolean) => void;

/** One side's framing: accumulate a head, then count `length` body bytes through. */
class Framer implements Framing {
  buffered: Buffer | null = null;
  remaining = 0;
  inHead = true;

  readonly onHead: OnHead;
  readonly onBody: OnBody;

  constructor(onHead: OnHead, onBody: OnBody) {
    this.onHead = onHead;
    this.onBody = onBody;
  }

  push(chunk: Buffer): boolean {
    let data = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    this.buffered = null;
    while (data.length > 0) {
      if (this.inHead) {
        const end = data.indexOf(CRLFCRLF);
        if (end === -1) {
          if (data.length > MAX_HEAD) return false;
          this.buffered = data;
          return true;
        }
        const head = parseHead(data.toString('latin1', 0, end));
        if (head === null || head.chunked) return false;
        this.inHead = false;
        this.remaining = head.length;
        data = data.subarray(end + 4);
        if (!this.onHead(head)) return false;
        if (this.remaining === 0) {
          this.inHead = true;
          this.onBody(Buffer.alloc(0), true);
        }
        continue;
      }
      const take = Math.min(this.remaining, data.length);
      this.remaining -= take;
      const last = this.remaining === 0;
      if (last) this.inHead = true;
      this.onBody(take === data.length ? data : data.subarray(0, take), last);
      data = data.subarray(take);
    }
    return true;
  }

  close(): void {
    this.buffered = null;
  }
}

/** the framing of one side of a connection: by hand, or by llhttp with `--llhttp` */
type MakeFraming = (side: 'request' | 'response', onHead: OnHead, onBody: OnBody) => Framing;
const EMPTY = Buffer.alloc(0);
const makeFraming: MakeFraming = options.includes('--llhttp')
  ? await loadLlhttpFraming()
  : (_side, onHead, onBody) => new Framer(onHead, onBody);

/**
 * Framing by Node's llhttp binding, strict, loaded as tollgate's core loads it (dist/). The head
 * comes from the headers-complete callback, body chunks as llhttp hands them out, and the end of
 * a message as an empty last chunk (with --verify, the last body bytes have then already gone
 * upstream when the digest is compared: the instrument measures, it does not protect).
 */
async function loadLlhttpFraming(): Promise<MakeFraming> {
  const { loadHttpParser, STRICT } = await import(new URL('http1/parserBinding.js', DIST).href);
  const b = loadHttpParser();
  return (side, onHead, onBody) => {
    const p = b.create();
    let partial: string[] = [];
    let partialUrl = '';
    let refused = false;
    p[b.kOnMessageBegin] = () => 0;
    p[b.kOnHeaders] = (headers: string[], url: string) => {
      for (const h of headers) partial.push(h);
      partialUrl += url;
    };
    p[b.kOnHeadersComplete] = (
      _major: number,
      minor: number,
      raw: string[] | undefined,
      method: number,
      url: string | undefined,
      status: number,
      message: string,
    ) => {
      const fields = partial.length > 0 ? partial.concat(raw ?? []) : (raw ?? []);
      const target = partialUrl + (url ?? '');
      partial = [];
      partialUrl = '';
      const line =
        side === 'request' ? `${b.methods[method]} ${target} HTTP/1.${minor}` : `HTTP/1.${minor} ${status} ${message}`;
      const head = { line, raw: fields, ...framingOf(fields) };
      // Content-Length framing only, as by hand: a chunked message closes the connection
      if (head.chunked || !onHead(head)) refused = true;
      return 0;
    };
    // after a refused head nothing more of the stream is handed on (push reports the refusal)
    p[b.kOnBody] = (chunk: Buffer) => {
      if (!refused) onBody(chunk, false);
    };
    p[b.kOnMessageComplete] = () => {
      if (!refused) onBody(EMPTY, true);
    };
    p.initialize(side === 'request' ? b.REQUEST : b.RESPONSE, {}, MAX_HEAD, STRICT);
    return {
      push: (chunk) => typeof p.execute(chunk) === 'number' && !refused,
      close: () => p.close(),
    };
  };
}

/** Content-Length (0 without one) and whether Transfer-Encoding is there, as the hand split finds them */
function framingOf(raw: readonly string[]): { length: number; chunked: boolean } {
  let length = 0;
  let chunked = false;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === 'content-length') length = Number(raw[i + 1]);
    else if (lower === 'transfer-encoding') chunked = true;
  }
  return { length, chunked };
}

function onSecureConnection(client: tls.TLSSocket): void {
  client.setNoDelay(true);
  const upstream = net.connect(Number(upstreamPort), '127.0.0.1');
  upstream.setNoDelay(true);
  const fail = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', fail);
  upstream.on('error', fail);
  client.on('close', fail);
  upstream.on('close', fail);

  let hash: Hash | null = null;
  let expected: Buffer | null = null;
  const request = makeFraming(
    'request',
    (head) => {
      if (verify !== null) {
        const sp = head.line.indexOf(' ');
        const v = verify(
          head.line.slice(0, sp),
          head.line.slice(sp + 1, head.line.indexOf(' ', sp + 1)),
          head.raw,
          head.length > 0,
        );
        if (v === null) {
          client.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
          return false;
        }
        expected = v.digest;
        hash = expected === null ? null : createHash('sha256');
      }
      upstream.write(headText(head.line, head.raw));
      return true;
    },
    (chunk, last) => {
      if (hash !== null) hash.update(chunk);
      if (last && hash !== null) {
        const actual = hash.digest();
        hash = null;
        // the last bytes go upstream only once the whole body matched its digest
        if (expected === null || expected.length !== actual.length || !timingSafeEqual(expected, actual)) return fail();
      }
      if (chunk.length > 0) upstream.write(chunk);
    },
  );
  const response = makeFraming(
    'response',
    (head) => {
      client.write(headText(head.line, head.raw));
      return true;
    },
    (chunk) => {
      if (chunk.length > 0) client.write(chunk);
    },
  );
  // a head and the body bytes that came with it leave in one write (one TLS record)
  client.on('data', (chunk: Buffer) => {
    upstream.cork();
    const ok = request.push(chunk);
    upstream.uncork();
    if (!ok && !client.writableEnded) fail(); // a refused signature was answered with 401 and is closing
  });
  upstream.on('data', (chunk: Buffer) => {
    client.cork();
    const ok = response.push(chunk);
    client.uncork();
    if (!ok) fail();
  });
  client.once('close', () => {
    request.close();
    response.close();
  });
}

const server = tls.createServer(
  {
    cert: readFileSync(cert),
    key: readFileSync(key),
    ca: readFileSync(ca),
    requestCert: true,
    rejectUnauthorized: true,
  },
  onSecureConnection,
);
server.on('tlsClientError', () => {});
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
