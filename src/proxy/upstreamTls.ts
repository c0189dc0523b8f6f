import tls, { type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import { TollgateError } from '../core/errors.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import { PeerIdentityCache } from '../tls/peerIdentityCache.ts';
import { verifyServer, type CompiledVerify } from '../policy/authz.ts';
import { CERT_VERIFY_CODES } from './upstreamError.ts';
import { classifyHandshakeFailure } from '../tls/handshakeFailure.ts';
import type { Clock } from '../core/clock.ts';
import type { HandshakeFailureReason } from '../core/handshakeFailureReasons.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { formatRemote, tlsVersionOf, type RecentHandshakes } from '../telemetry/recentHandshakes.ts';

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
  /** count and time handshakes, keep failures for /handshakes/recent; none in unit use */
  readonly telemetry?: UpstreamHandshakeTelemetry;
}

export interface UpstreamHandshakeTelemetry {
  readonly listener: string;
  readonly metrics: Metrics;
  readonly recent: RecentHandshakes;
  readonly clock: Clock;
}

export interface UpstreamTls {
  /** dial host:port; resolves with the verified socket and who answered */
  connect(host: string, port: number, allowHalfOpen: boolean): Promise<{ socket: TLSSocket; peer: PeerIdentity }>;
  /** new connections are checked against this from now on (a config reload); open ones keep the check they passed */
  setVerify(verify: CompiledVerify): void;
  /** the same dial, callback-style (the upstream pools), offering `alpn` (http/1.1 unless said) */
  dial(
    host: string,
    port: number,
    done: (err: Error | null, socket: TLSSocket | null) => void,
    alpn?: readonly string[],
  ): void;
}

const kPeer = Symbol('tollgate.upstreamPeer');
const HTTP1_ONLY: readonly string[] = ['http/1.1'];
type VerifiedSocket = TLSSocket & { [kPeer]?: PeerIdentity };

export function createUpstreamTls(opts: UpstreamTlsOptions): UpstreamTls {
  const sni = isIP(opts.serverName) === 0 ? opts.serverName : undefined;
  let verify = opts.verify;
  let session: Buffer | undefined;
  // the client context the session was made under: a resumed session keeps the client certificate it was made
  // with, so after a certificate reload the next connections must do a full handshake to present the new one
  let sessionContext: SecureContext | undefined;
  const identities = new PeerIdentityCache();
  const tel = opts.telemetry;
  const handshakeOk = tel?.metrics.handshakes.labels(tel.listener, 'success', '');
  const handshakeDuration = tel?.metrics.handshakeDuration.labels(tel.listener);

  /** a handshake that began (TCP connected) and did not complete */
  function handshakeFailed(socket: TLSSocket, host: string, port: number, err: Error): void {
    if (tel === undefined) return;
    const failure = classifyClientFailure(err);
    tel.metrics.handshakes.labels(tel.listener, 'failure', failure.reason).inc();
    tel.recent.add({
      at: new Date(tel.clock.now()).toISOString(),
      listener: tel.listener,
      side: 'client',
      kind: 'handshake_failure',
      reason: failure.reason,
      remote: formatRemote(host, port),
      peer: peerOfFailure(err),
      tlsVersion: tlsVersionOf(socket),
      code: failure.code,
      detail: err.message,
    });
  }

  function checkServerIdentity(this: void, _host: string, cert: PeerCertificate): Error | undefined {
    const peer = identities.identityOfPeerCertificate(cert);
    const nameErr = tls.checkServerIdentity(opts.serverName, cert);
    if (nameErr !== undefined)
      return refusedPeer(new TollgateError('ERR_UPSTREAM_IDENTITY', nameErr.message, { cause: nameErr }), peer);
    const why = verifyServer(verify, peer);
    if (why !== null) return refusedPeer(new TollgateError('ERR_UPSTREAM_IDENTITY', why), peer);
    return undefined;
  }

  function dial(
    host: string,
    port: number,
    allowHalfOpen: boolean,
    done: (err: Error | null, socket: TLSSocket | null) => void,
    alpn: readonly string[] = HTTP1_ONLY,
  ): void {
    let settled = false;
    const context = opts.secureContext();
    const socket: VerifiedSocket = tls.connect({
      host,
      port,
      servername: sni,
      secureContext: context,
      checkServerIdentity,
      session: context === sessionContext ? session : undefined,
      ALPNProtocols: alpn as string[],
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
    // a handshake is timed from TCP connect, as inbound times it from accept
    let tcpConnectedAt: bigint | null = null;
    socket.once('connect', () => {
      tcpConnectedAt = tel?.clock.monotonic() ?? 0n;
    });
    const onTimeout = (): void => {
      const err = new TollgateError('ERR_UPSTREAM_TIMEOUT', `TLS connect to ${host}:${port} timed out`);
      if (tcpConnectedAt !== null) handshakeFailed(socket, host, port, err);
      settle(err);
    };
    const onError = (err: Error): void => {
      // refused or unreachable before any TLS byte: an upstream error, not a handshake failure
      if (tcpConnectedAt !== null && !settled) handshakeFailed(socket, host, port, err);
      settle(classifyConnectError(err));
    };
    socket.once('secureConnect', () => {
      if (tel !== undefined && !settled) {
        handshakeOk?.inc();
        if (tcpConnectedAt !== null) handshakeDuration?.observe(Number(tel.clock.monotonic() - tcpConnectedAt) / 1e9);
      }
      const cert = socket.getPeerX509Certificate();
      if (cert !== undefined) socket[kPeer] = identities.identityOf(cert);
      settle(null);
    });
    socket.on('session', (s: Buffer) => {
      session = s;
      sessionContext = context;
    });
    socket.once('timeout', onTimeout);
    socket.once('error', onError);
  }

  return {
    setVerify(next) {
      verify = next;
      // Node skips checkServerIdentity on a resumed session: the next connection must do a full handshake to be checked
      session = undefined;
      sessionContext = undefined;
    },
    connect(host, port, allowHalfOpen) {
      return new Promise((resolve, reject) => {
        dial(host, port, allowHalfOpen, (err, socket) => {
          if (err !== null || socket === null) reject(err);
          else resolve({ socket, peer: (socket as VerifiedSocket)[kPeer]! });
        });
      });
    },
    dial(host, port, done, alpn) {
      dial(host, port, false, done, alpn);
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

/**
 * The handshake failure reason of an outbound connect error. The server's identity not
 * matching (name, SPIFFE ID, pin: ERR_UPSTREAM_IDENTITY from our checkServerIdentity) is a
 * bad_certificate; chain verification codes map as on the server side (unknown_ca,
 * cert_expired, cert_revoked…); a TLS alert from the server (it refused our certificate) by
 * its alert; a timeout after TCP connect is timeout.
 */
export function classifyClientFailure(err: Error): { reason: HandshakeFailureReason; code: string | null } {
  if (err instanceof TollgateError) {
    if (err.code === 'ERR_UPSTREAM_IDENTITY') return { reason: 'bad_certificate', code: err.code };
    if (err.code === 'ERR_UPSTREAM_TIMEOUT') return { reason: 'timeout', code: err.code };
  }
  const code = (err as NodeJS.ErrnoException).code ?? null;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return { reason: 'bad_certificate', code };
  const verifyCode = code !== null && CERT_VERIFY_CODES.has(code) ? code : null;
  return { reason: classifyHandshakeFailure(err, verifyCode), code };
}

/** who answered, for an identity refusal (the socket is destroyed by the time the error arrives) */
const refusedPeers = new WeakMap<Error, PeerIdentity>();

function refusedPeer(err: Error, peer: PeerIdentity): Error {
  refusedPeers.set(err, peer);
  return err;
}

function peerOfFailure(err: Error): { subject: string; spiffe: string | null } | null {
  const p = refusedPeers.get(err);
  return p === undefined ? null : { subject: p.subject, spiffe: p.spiffe[0] ?? null };
}
