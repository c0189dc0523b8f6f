/**
 * The client certificate h2load cannot present, run as its own process:
 *
 *   node bench/macro/h2Relay.ts '<json RelaySpec>'
 *
 * h2load (nghttp2 1.52) has no option for a client certificate, and every HTTP/2 target here
 * requires one (tollgate always requires mTLS; the HAProxy target is configured the same way).
 * So h2load speaks h2c with prior knowledge to this relay on loopback, and the relay opens one
 * mTLS connection to the target for each of h2load's connections: the producer's certificate,
 * ALPN `h2` only (a connection that does not get `h2` is closed and counted), TCP_NODELAY on both
 * sides, bytes piped unchanged both ways. The target therefore sees what an HTTP/2 client with a
 * certificate sends: one TLS connection per h2load connection, h2load's frames as h2load batched
 * them. The relay's CPU is the client's, never counted as the proxy's.
 *
 * Protocol on stdout: `READY <port>` once it listens, then, when stdin closes, one JSON line
 * ({ opened, refused }) and it exits. Bounded by `limitMs`.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

export interface RelaySpec {
  /** the target */
  host: string;
  port: number;
  /** PEM file paths of the client's CA, certificate and key, and the server name to send */
  ca: string;
  cert: string;
  key: string;
  servername: string;
  /** the relay exits after this long whatever happens */
  limitMs: number;
}

export interface RelayReport {
  /** TLS connections to the target that negotiated h2 */
  opened: number;
  /** TLS connections that failed or did not negotiate h2 */
  refused: number;
  /** why the first refused one was refused */
  firstRefusal: string | null;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as RelaySpec;
setTimeout(() => {
  process.stderr.write('h2Relay: time limit reached\n');
  process.exit(3);
}, spec.limitMs).unref();

const secureContext = tls.createSecureContext({
  ca: readFileSync(spec.ca),
  cert: readFileSync(spec.cert),
  key: readFileSync(spec.key),
});
const report: RelayReport = { opened: 0, refused: 0, firstRefusal: null };

function refuse(why: string, down: net.Socket, up: tls.TLSSocket): void {
  report.refused++;
  report.firstRefusal ??= why;
  down.destroy();
  up.destroy();
}

function relay(down: net.Socket): void {
  down.setNoDelay(true);
  const up = tls.connect({
    host: spec.host,
    port: spec.port,
    secureContext,
    servername: spec.servername,
    ALPNProtocols: ['h2'],
  });
  up.setNoDelay(true);
  let connected = false;
  up.once('secureConnect', () => {
    if (up.alpnProtocol !== 'h2') return refuse(`ALPN ${String(up.alpnProtocol)} instead of h2`, down, up);
    connected = true;
    report.opened++;
    down.pipe(up);
    up.pipe(down);
  });
  up.on('error', (err: Error) => {
    if (!connected) refuse(err.message, down, up);
    else down.destroy();
  });
  down.on('error', () => up.destroy());
  down.on('close', () => up.destroy());
  up.on('close', () => down.destroy());
}

const server = net.createServer(relay);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY ${(server.address() as net.AddressInfo).port}\n`);
});
const done = (): void => {
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
};
process.stdin.on('end', done);
process.stdin.on('close', done);
process.stdin.resume();
