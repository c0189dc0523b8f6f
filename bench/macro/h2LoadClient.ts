/**
 * The HTTP/2 load client for the targets that verify signatures, run as its own process:
 *
 *   node bench/macro/h2LoadClient.ts '<json LoadSpec>'
 *
 * h2load sends the same header block on every request; a verifying target needs a fresh nonce,
 * hence a signature of its own, on each. This client is node:http2 with the producer's
 * certificate (ALPN h2): `connections` sessions with `streams` streams in flight on each, a
 * closed loop. Every request is signed as loadClient.ts signs an HTTP/1.1 one (RFC 9421 over
 * @method, @authority = :authority, @path, @query and the content fields present, fresh nonce),
 * the signed header blocks made before the first connection opens so that signing does not
 * compete with the proxy during the window. Bounded by time and count.
 *
 * Protocol on stdout, as loadClient.ts: `START` when the warm-up is over, `END` when the window
 * is over, then one JSON line (LoadResult).
 */
import { createSecretKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http2, { type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { contentDigestOf } from '../../src/integrity/contentDigest.ts';
import { MacKeys } from '../../src/integrity/hmac.ts';
import { HeaderIndex } from '../../src/integrity/signatureBase.ts';
import { NonceSource, signRequest } from '../../src/integrity/signer.ts';
import type { LoadResult, LoadSpec } from './loadClient.ts';

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
setTimeout(
  () => {
    process.stderr.write('h2LoadClient: hard time limit reached\n');
    process.exit(3);
  },
  spec.warmupMs + spec.durationMs + 30_000,
).unref();
if (spec.tls === null) throw new Error('h2LoadClient: mTLS targets only');
const tlsFiles = spec.tls;
const streamsPerSession = spec.streams ?? 1;
const body = spec.bodyBytes > 0 ? Buffer.alloc(spec.bodyBytes, 'x') : null;
const authority = `${spec.host}:${spec.port}`;

/* ---------------------------------------------------------------- header blocks */

const content: Array<[string, string]> =
  body === null
    ? []
    : [
        ['content-type', 'application/octet-stream'],
        ['content-length', String(body.length)],
      ];
if (body !== null && spec.sign !== null) content.push(['content-digest', contentDigestOf(body)]);
const base: OutgoingHttpHeaders = {
  ':method': spec.method,
  ':path': spec.path,
  ':scheme': 'https',
  ':authority': authority,
  'user-agent': 'tollgate-bench',
  ...Object.fromEntries(content),
};

const sign = spec.sign;
const signer = sign
  ? {
      key: createSecretKey(Buffer.from(readFileSync(sign.keyFile, 'utf8').trim(), 'base64')),
      macs: new MacKeys(),
      nonces: new NonceSource(),
      // the verifier reads @authority from :authority, carried to it as Host
      view: HeaderIndex.fromRaw([['host', authority], ...content].flat()),
    }
  : null;

function signedHeaders(): OutgoingHttpHeaders {
  if (signer === null || sign === null) return base;
  const fields = signRequest(
    { method: spec.method, target: spec.path, scheme: 'https', headers: signer.view },
    {
      keyId: sign.keyId,
      key: signer.key,
      tag: sign.tag,
      macs: signer.macs,
      nonces: signer.nonces,
      created: Math.floor(Date.now() / 1000),
    },
  );
  return { ...base, 'signature-input': fields.signatureInput, signature: fields.signature };
}

/** as loadClient.ts: enough for 25,000 req/s over warm-up + window, at most 150,000; past them, signed as sent */
const presigned: OutgoingHttpHeaders[] = [];
if (signer !== null) {
  const n = Math.min(150_000, Math.ceil(((spec.warmupMs + spec.durationMs) / 1000) * 25_000), spec.maxRequests);
  for (let i = 0; i < n; i++) presigned.push(signedHeaders());
}
let nextPresigned = 0;
let signedLive = 0;

function nextHeaders(): OutgoingHttpHeaders {
  if (signer === null) return base;
  if (nextPresigned < presigned.length) {
    const headers = presigned[nextPresigned]!;
    presigned[nextPresigned++] = base; // let it go once sent
    return headers;
  }
  signedLive++;
  return signedHeaders();
}

/* ---------------------------------------------------------------- accounting */

const MAX_SAMPLES = Math.min(spec.maxRequests, 4_000_000);
const latencies = new Float64Array(MAX_SAMPLES);
let measuring = false;
let stopped = false;
let completed = 0;
let requestBytes = 0;
let sessionsOpened = 0;
const errors = { status: 0, reset: 0, connect: 0 };
const statuses: Record<string, number> = {};
let windowStart = 0;

function record(status: number, startedAt: number): void {
  if (!measuring) return;
  if (status < 200 || status >= 300) {
    errors.status++;
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
  if (completed < MAX_SAMPLES) latencies[completed] = performance.now() - startedAt;
  completed++;
  if (body !== null) requestBytes += body.length;
  if (completed >= spec.maxRequests) finish();
}

/* ---------------------------------------------------------------- sessions */

const sessions = new Set<ClientHttp2Session>();
const ca = readFileSync(tlsFiles.ca);
const cert = readFileSync(tlsFiles.cert);
const key = readFileSync(tlsFiles.key);

/** one session with `streamsPerSession` closed loops on it; a session lost is opened again */
function openSession(): void {
  if (stopped) return;
  sessionsOpened++;
  let connected = false;
  const session = http2.connect(`https://${authority}`, {
    createConnection: () => {
      const socket = tls.connect({
        host: spec.host,
        port: spec.port,
        ca,
        cert,
        key,
        servername: tlsFiles.servername,
        ALPNProtocols: ['h2'],
      });
      socket.setNoDelay(true);
      return socket;
    },
  });
  sessions.add(session);
  session.on('error', () => {});
  session.once('connect', () => {
    connected = true;
    for (let i = 0; i < streamsPerSession; i++) issue(session);
  });
  session.once('close', () => {
    sessions.delete(session);
    if (stopped) return;
    if (!connected && measuring) errors.connect++;
    setTimeout(openSession, connected ? 0 : 50);
  });
}

function issue(session: ClientHttp2Session): void {
  if (stopped || session.closed || session.destroyed) return;
  const startedAt = performance.now();
  const stream = session.request(nextHeaders(), { endStream: body === null });
  let status = 0;
  stream.on('response', (headers) => (status = Number(headers[':status'])));
  stream.on('data', () => {});
  stream.on('error', () => {});
  stream.on('close', () => {
    if (status > 0 && stream.rstCode === http2.constants.NGHTTP2_NO_ERROR) record(status, startedAt);
    else if (measuring) errors.reset++;
    issue(session);
  });
  if (body !== null) stream.end(body);
}

/* ---------------------------------------------------------------- driver */

function finish(): void {
  if (stopped) return;
  stopped = true;
  measuring = false;
  const windowEnd = performance.now();
  process.stdout.write('END\n');
  for (const s of sessions) s.destroy();
  const n = Math.min(completed, MAX_SAMPLES);
  let latencyMs: LoadResult['latencyMs'] = null;
  if (n > 0) {
    const sorted = latencies.subarray(0, n).sort();
    const at = (q: number): number => sorted[Math.min(n - 1, Math.floor(q * n))]!;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i]!;
    latencyMs = { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: sorted[n - 1]!, mean: sum / n };
  }
  const result: LoadResult = {
    completed,
    errors,
    statuses,
    elapsedMs: windowEnd - windowStart,
    requestBytes,
    latencyMs,
    connectionsOpened: sessionsOpened,
    resumed: 0,
    queued: 0,
  };
  if (signedLive > 0)
    process.stderr.write(
      `h2LoadClient: the ${presigned.length} pre-signed blocks ran out; ${signedLive} signed as sent\n`,
    );
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

for (let i = 0; i < spec.connections; i++) openSession();
setTimeout(() => {
  measuring = true;
  windowStart = performance.now();
  process.stdout.write('START\n');
  setTimeout(finish, spec.durationMs);
}, spec.warmupMs);
