/**
 * The trivial L4 baseline: Node `tls.createServer` with mTLS (requestCert, verified) piping
 * each connection to the upstream with `net`. No policy, no metrics, nothing else.
 *
 *   node bench/macro/baselines/l4.ts PORT UPSTREAM_PORT CERT KEY CA
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [port, upstreamPort, cert, key, ca] = process.argv.slice(2) as [string, string, string, string, string];

function onSecureConnection(client: tls.TLSSocket): void {
  client.setNoDelay(true);
  const upstream = net.connect(Number(upstreamPort), '127.0.0.1');
  upstream.setNoDelay(true);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.pipe(upstream).pipe(client);
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
