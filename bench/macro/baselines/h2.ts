/**
 * The trivial HTTP/2 baseline: Node `http2.createSecureServer` with mTLS (ALPN h2 only), each
 * stream sent to the upstream over HTTP/1.1 with an undici Pool's `stream`, as baseline-l7 does
 * for an HTTP/1.1 request. Pseudo-headers become the request line and Host; hop-by-hop headers
 * dropped; nothing else.
 *
 *   node bench/macro/baselines/h2.ts PORT UPSTREAM_PORT CERT KEY CA
 */
import { readFileSync } from 'node:fs';
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import { Pool } from 'undici';

const [port, upstreamPort, cert, key, ca] = process.argv.slice(2) as [string, string, string, string, string];
const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, {
  connections: 128,
  pipelining: 1,
  keepAliveTimeout: 300_000,
});
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'te',
  'trailer',
]);

function forwardHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && name[0] !== ':' && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  stream.on('error', () => {});
  const forwarded = forwardHeaders(headers);
  forwarded.host = headers[':authority'] ?? '127.0.0.1';
  // as baseline-l7: the bench's request bodies carry a Content-Length
  const hasBody = headers['content-length'] !== undefined;
  pool.stream(
    {
      path: headers[':path'] ?? '/',
      method: (headers[':method'] ?? 'GET') as 'GET',
      headers: forwarded,
      // the request body as an async iterator that leaves the stream open: undici destroys a stream
      // body once sent, and this one is also where the response goes (undici takes any async
      // iterable as a body; its typings list only Readable)
      body: hasBody ? (stream.iterator({ destroyOnReturn: false }) as unknown as Readable) : null,
    },
    ({ statusCode, headers: upstreamHeaders }) => {
      // a stream the client reset meanwhile cannot answer: undici's write then fails, and the callback below cleans up
      if (!stream.destroyed) stream.respond({ ':status': statusCode, ...forwardHeaders(upstreamHeaders) });
      return stream;
    },
    (err) => {
      if (!stream.readableEnded) stream.resume();
      if (err === null || stream.destroyed) return;
      if (!stream.headersSent) stream.respond({ ':status': 502 }, { endStream: true });
      else stream.destroy();
    },
  );
}

const server = http2.createSecureServer({
  cert: readFileSync(cert),
  key: readFileSync(key),
  ca: readFileSync(ca),
  requestCert: true,
  rejectUnauthorized: true,
  allowHTTP1: false,
});
server.on('stream', onStream);
server.on('secureConnection', (socket) => socket.setNoDelay(true));
server.on('sessionError', () => {});
server.on('tlsClientError', () => {});
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
