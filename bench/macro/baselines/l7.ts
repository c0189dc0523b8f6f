/**
 * The trivial L7 baseline: Node `https.createServer` with mTLS, each request streamed to the
 * upstream with an undici Pool's `stream` (the fastest undici request API without a custom
 * dispatcher handler). Hop-by-hop headers dropped; nothing else.
 *
 *   node bench/macro/baselines/l7.ts PORT UPSTREAM_PORT CERT KEY CA
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
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

function forwardHeaders(
  headers: http.IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.stream(
    {
      path: req.url ?? '/',
      method: req.method as 'GET',
      headers: forwardHeaders(req.headers),
      body: hasBody ? req : null,
    },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, forwardHeaders(headers));
      return res;
    },
    (err) => {
      // an upstream that answers before reading the whole body (nginx `return`) leaves the rest
      // unread: drain it, or the next request on this keep-alive connection never gets parsed
      if (!req.readableEnded) req.resume();
      if (err === null) return;
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    },
  );
}

const server = https.createServer(
  {
    cert: readFileSync(cert),
    key: readFileSync(key),
    ca: readFileSync(ca),
    requestCert: true,
    rejectUnauthorized: true,
    keepAliveTimeout: 300_000,
  },
  onRequest,
);
server.on('connection', (socket: Duplex & { setNoDelay?: (v: boolean) => void }) => socket.setNoDelay?.(true));
server.on('tlsClientError', () => {});
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
