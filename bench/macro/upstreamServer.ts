/**
 * The fallback upstream when nginx is not installed: node:http on 127.0.0.1:PORT, every
 * request's body read and discarded (up to 2 MiB, else 413), then 200 with a small body.
 *
 *   node bench/macro/upstreamServer.ts PORT
 */
import http from 'node:http';

const MAX_BODY = 2 * 1024 * 1024;
const BODY = Buffer.from('ok\n');
const port = Number(process.argv[2]);

function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
  });
  req.on('end', () => {
    const status = size > MAX_BODY ? 413 : 200;
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
}

const server = http.createServer({ keepAliveTimeout: 300_000, requestTimeout: 0, headersTimeout: 60_000 }, onRequest);
server.maxRequestsPerSocket = 0;
server.keepAliveTimeout = 300_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
