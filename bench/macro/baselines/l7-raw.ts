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
 *
 *   node bench/macro/baselines/l7-raw.ts PORT UPSTREAM_PORT CERT KEY CA [--verify KEYDIR KEYID TAG]
 */
import { createHash, timingSafeEqual, type Hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [port, upstreamPort, cert, key, ca, flag, keyDir, keyId, tag] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string?,
  string?,
  string?,
  string?,
];

/** null: refused; else the sha-256 digest the body must have (null: no body) */
type Verify = (
  method: string,
  target: string,
  rawHeaders: string[],
  hasContent: boolean,
) => { digest: Buffer | null } | null;
const verify: Verify | null = flag === '--verify' ? await loadVerifier(keyDir!, keyId!, tag!) : null;

/** tollgate's verifier, key ring and replay cache from dist/ (URLs resolved by the bench when it strips types) */
async function loadVerifier(dir: string, id: string, sigTag: string): Promise<Verify> {
  const dist = new URL('DIST_URL/', import.meta.url);
  const { verifyRequest } = await import(new URL('integrity/verifier.js', dist).href);
  const { HeaderIndex } = await import(new URL('integrity/signatureBase.js', dist).href);
  const { keyRingFromEntries } = await import(new URL('integrity/keyRing.js', dist).href);
  const { createReplayCache } = await import(new URL('integrity/replayCache.js', dist).href);
  const { MacKeys } = await import(new URL('integrity/hmac.js', dist).href);
  const { systemClock } = await import(new URL('core/clock.js', dist).href);
  const ring = keyRingFromEntries([[id, Buffer.from(readFileSync(`${dir}/${id}`, 'utf8').trim(), 'base64')]]);
  const deps = {
    profile: { tag: sigTag, skewSeconds: 30, maxAgeSeconds: 300, requiredComponents: [] },
    keys: () => ring,
    replay: createReplayCache({ ttlMs: 330_000, maxEntries: 1_000_000, clock: systemClock }),
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

/** One side's framing: accumulate a head, then count `length` body bytes through. */
class Framer {
  buffered: Buffer | null = null;
  remaining = 0;
  inHead = true;

  readonly onHead: (head: Head) => boolean;
  readonly onBody: (chunk: Buffer, last: boolean) => void;

  constructor(onHead: (head: Head) => boolean, onBody: (chunk: Buffer, last: boolean) => void) {
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
  const request = new Framer(
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
  const response = new Framer(
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
