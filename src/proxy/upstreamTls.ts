import tls, { type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { TollgateError } from '../core/errors.ts';
import { peerIdentity, type PeerIdentity } from '../tls/peerIdentity.ts';
import { verifyServer, type CompiledVerify } from '../policy/authz.ts';
import { CERT_VERIFY_CODES } from './upstreamError.ts';

/**
 * Originates mTLS to a remote peer: our client certificate from the current secure
 * context (read per connection, so a reload applies to the next connection), the chain
 * checked against our CA bundle, the server name checked, then the SPIFFE ID and SPKI pins
 * the listener demands. Any identity failure becomes ERR_UPSTREAM_IDENTITY.
 */
export interface UpstreamTlsOptions {
  readonly serverName: string;
  readonly verify: CompiledVerify;
  readonly secureContext: () => SecureContext;
  readonly connectTimeoutMs: number;
}

export interface UpstreamTls {
  /** dial host:port; resolves with the verified socket and who answered */
  connect(host: string, port: number, allowHalfOpen: boolean): Promise<{ socket: TLSSocket; peer: PeerIdentity }>;
  /** undici's `connect` option: the same dial, callback-style */
  undiciConnect(opts: { hostname: string; port: string }, callback: (err: Error | null, socket: TLSSocket | null) => void): void;
}

const kPeer = Symbol('tollgate.upstreamPeer');
type VerifiedSocket = TLSSocket & { [kPeer]?: PeerIdentity };

export function createUpstreamTls(opts: UpstreamTlsOptions): UpstreamTls {
  const sni = isIP(opts.serverName) === 0 ? opts.serverName : undefined;
  let session: Buffer | undefined;

  function checkServerIdentity(this: void, _host: string, cert: PeerCertificate): Error | undefined {
    const nameErr = tls.checkServerIdentity(opts.serverName, cert);
    if (nameErr !== undefined) return new TollgateError('ERR_UPSTREAM_IDENTITY', nameErr.message, { cause: nameErr });
    const peer = peerIdentity(new X509Certificate(cert.raw));
    const why = verifyServer(opts.verify, peer);
    if (why !== null) return new TollgateError('ERR_UPSTREAM_IDENTITY', why);
    return undefined;
  }

  function dial(host: string, port: number, allowHalfOpen: boolean, done: (err: Error | null, socket: TLSSocket | null) => void): void {
    let settled = false;
    const socket: VerifiedSocket = tls.connect({
      host,
      port,
      servername: sni,
      secureContext: opts.secureContext(),
      checkServerIdentity,
      session,
      ALPNProtocols: ['http/1.1'],
      allowHalfOpen,
    } as tls.ConnectionOptions);
    socket.setNoDelay(true);
    socket.setTimeout(opts.connectTimeoutMs);
    const settle = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      socket.setTimeout(0);
      socket.removeListener('timeout', onTimeout);
      socket.removeListener('error', onError);
      if (err !== null) {
        socket.destroy();
        done(err, null);
      } else done(null, socket);
    };
    const onTimeout = (): void => settle(new TollgateError('ERR_UPSTREAM_TIMEOUT', `TLS connect to ${host}:${port} timed out`));
    const onError = (err: Error): void => settle(classifyConnectError(err));
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate();
      if (cert !== undefined) socket[kPeer] = peerIdentity(cert);
      settle(null);
    });
    socket.on('session', (s: Buffer) => {
      session = s;
    });
    socket.once('timeout', onTimeout);
    socket.once('error', onError);
  }

  return {
    connect(host, port, allowHalfOpen) {
      return new Promise((resolve, reject) => {
        dial(host, port, allowHalfOpen, (err, socket) => {
          if (err !== null || socket === null) reject(err);
          else resolve({ socket, peer: (socket as VerifiedSocket)[kPeer]! });
        });
      });
    },
    undiciConnect(o, callback) {
      dial(o.hostname, Number(o.port), false, callback);
    },
  };
}

function classifyConnectError(err: Error): Error {
  if (err instanceof TollgateError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && CERT_VERIFY_CODES.has(code)) {
    return new TollgateError('ERR_UPSTREAM_IDENTITY', `server certificate rejected: ${code}`, { cause: err });
  }
  return err;
}
