import https from 'node:https';
import tls, { type TLSSocket, type TlsOptions } from 'node:tls';
import net, { type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import type { Pool } from 'undici';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { ListenerConfig } from '../config/types.ts';
import { formatHostPort } from '../config/hostPort.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { secureContextOptions, type TlsMaterial } from '../tls/contexts.ts';
import type { TlsPolicy } from '../tls/policy.ts';
import { peerIdentity } from '../tls/peerIdentity.ts';
import { PeerIdentityCache } from '../tls/peerIdentityCache.ts';
import { classifyHandshakeFailure } from '../tls/handshakeFailure.ts';
import { authorizePeer, compileAllow, type CompiledAllow } from '../policy/authz.ts';
import { attachContext, contextOf, type ConnectionContext } from './connectionContext.ts';
import { HttpPath, attachHttpPath, type IntegrityStage } from './httpPath.ts';
import { rateLimiterFor, anomalyStageFor } from './requestLimits.ts';
import { HandshakeGate } from './handshakeGate.ts';
import { attachClientErrorHandler } from './clientError.ts';
import type { RecentAnomalies } from '../anomaly/recentAnomalies.ts';
import { RecentHandshakes, formatRemote, tlsVersionOf, type HandshakeRecord } from '../telemetry/recentHandshakes.ts';
import { pipeSockets } from './tcpPipe.ts';
import { createUpstreamPool, httpServerLimits, idleTimeoutMs } from './httpLimits.ts';
import { ConnectionSet, listenerHandle, type Listener } from './listener.ts';

export interface InboundDeps {
  readonly config: ListenerConfig;
  readonly policy: TlsPolicy;
  readonly material: TlsMaterial;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  readonly log: Logger;
  readonly clock: Clock;
  /** message integrity for HTTP: verify (inbound), sign (outbound), or null */
  readonly integrity: IntegrityStage | null;
  /** where flagged anomalies are kept for the admin API (one per sidecar); a private list when not given */
  readonly recentAnomalies?: RecentAnomalies;
  /** where failed handshakes and refused peers are kept for the admin API (one per sidecar); a private list when not given */
  readonly recentHandshakes?: RecentHandshakes;
  /** 48 bytes of TLS session ticket keys shared by every worker (resumption across them); Node's random ones when not given */
  readonly ticketKeys?: Buffer;
}

export interface InboundListener extends Listener {
  /** new handshakes use this material from now on; open connections are untouched */
  setTlsMaterial(material: TlsMaterial): void;
  /** session tickets are issued and accepted under these 48 bytes from now on (kept across setTlsMaterial) */
  setTicketKeys(keys: Buffer): void;
}

const kAccepted = Symbol('tollgate.acceptedAt');
const kRemote = Symbol('tollgate.remote');
const kDropped = Symbol('tollgate.droppedAtAccept');
/** the accepted TCP socket: when it was accepted, who from (kept: a destroyed socket forgets its address), whether the cap dropped it */
type RawSocket = Socket & { [kAccepted]?: bigint; [kRemote]?: string | null; [kDropped]?: true };

/**
 * The inbound listener: terminates mTLS with `tls.createServer` semantics (an https.Server is
 * a tls.Server with the HTTP parser attached), requires a client certificate verified against
 * our CA bundle, then authorizes the peer against the compiled allow-list and pins, once per
 * connection, before any upstream is dialled. HTTP goes through the request path to the
 * loopback app; TCP is piped to the target port.
 */
export function createInboundListener(deps: InboundDeps): InboundListener {
  const { config, metrics, log } = deps;
  const limits = config.limits;
  const allow: CompiledAllow = compileAllow(config.allow);
  const conns = new ConnectionSet(metrics.connectionsActive.labels(config.name));
  const handshakeOk = metrics.handshakes.labels(config.name, 'success', '');
  const handshakeDuration = metrics.handshakeDuration.labels(config.name);
  const authzAllow = metrics.authzDecisions.labels(config.name, 'allow');
  const authzDeny = metrics.authzDecisions.labels(config.name, 'deny');
  const recent = deps.recentHandshakes ?? new RecentHandshakes();
  const identities = new PeerIdentityCache();
  let nextId = 0;

  const serverOptions = (material: TlsMaterial): TlsOptions => ({
    ...secureContextOptions(material, deps.policy),
    requestCert: true,
    rejectUnauthorized: true,
    sessionIdContext: sessionIdContextOf(config.name),
  });

  const tlsServerOptions: TlsOptions = {
    ...serverOptions(deps.material),
    handshakeTimeout: limits.handshakeTimeoutSeconds * 1000,
    sessionTimeout: 300,
    allowHalfOpen: config.protocol === 'tcp',
  };

  let pool: Pool | null = null;
  let server: tls.Server;
  if (config.protocol === 'http') {
    // the local app: Node's http server keeps idle connections 5 s, so let ours go after 4
    pool = createUpstreamPool(`http://${formatHostPort(config.target)}`, limits, 4_000, { timeout: limits.upstreamTimeoutSeconds * 1000 });
    const httpsServer = https.createServer({ ...tlsServerOptions, ...httpServerLimits(limits) });
    httpsServer.timeout = idleTimeoutMs(limits);
    attachClientErrorHandler(httpsServer, { listener: config.name, metrics, log, audit: deps.audit });
    attachHttpPath(
      httpsServer,
      new HttpPath({
        listener: config,
        dispatcher: pool,
        metrics,
        audit: deps.audit,
        log,
        clock: deps.clock,
        hostOverride: null,
        setPeerHeader: true,
        isDraining: () => conns.isDraining,
        integrity: deps.integrity,
        anomaly: anomalyStageFor(deps),
        rateLimiter: rateLimiterFor(config),
      }),
    );
    server = httpsServer;
  } else {
    server = tls.createServer(tlsServerOptions);
    server.on('secureConnection', (socket: TLSSocket) => {
      const ctx = contextOf(socket);
      if (ctx === undefined || !ctx.allowed) {
        socket.destroy();
        return;
      }
      openTcpUpstream(socket, ctx);
    });
  }
  server.maxConnections = limits.maxConnections;

  const gate = new HandshakeGate(limits.maxConcurrentHandshakes);
  let lastDropWarning = Number.NEGATIVE_INFINITY;
  let droppedSinceWarning = 0;
  let capEntry: HandshakeRecord | null = null;
  let capEntryStarted = Number.NEGATIVE_INFINITY;
  server.on('connection', (raw: RawSocket) => {
    // read before anything can destroy it (a destroyed socket has no address to give)
    const remote = formatRemote(raw.remoteAddress, raw.remotePort);
    if (!gate.admit(raw)) {
      raw[kDropped] = true;
      // a flood must not become a log flood: counted each time, logged at most every 10 s,
      // and folded into one /handshakes/recent entry per 10 s window
      metrics.handshakes.labels(config.name, 'failure', 'other').inc();
      droppedSinceWarning++;
      const now = deps.clock.now();
      const at = new Date(now).toISOString();
      if (capEntry !== null && now - capEntryStarted < 10_000) recent.bump(capEntry, at);
      else {
        capEntryStarted = now;
        capEntry = recent.add({
          at,
          listener: config.name,
          side: 'server',
          kind: 'handshake_failure',
          reason: 'other',
          remote,
          peer: null,
          tlsVersion: null,
          code: 'HANDSHAKE_CAP',
          detail: `dropped at accept: ${gate.max} TLS handshakes already in progress (count = connections dropped in this window; remote = the first)`,
        });
      }
      if (now - lastDropWarning >= 10_000) {
        log.warn({ dropped: droppedSinceWarning, inProgress: gate.inProgress, max: gate.max }, 'connections dropped at accept: too many TLS handshakes in progress');
        deps.audit.record('handshake_failure', { listener: config.name, reason: 'handshake_cap', dropped: droppedSinceWarning });
        lastDropWarning = now;
        droppedSinceWarning = 0;
      }
      return;
    }
    raw[kAccepted] = deps.clock.monotonic();
    raw[kRemote] = remote;
  });

  // runs right after the HTTP parser (or our TCP handler) is attached, before any request is read
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    conns.add(socket);
    const raw = (socket as unknown as { _parent?: RawSocket })._parent;
    gate.done(raw);
    const accepted = raw?.[kAccepted];
    if (accepted !== undefined) handshakeDuration.observe(Number(deps.clock.monotonic() - accepted) / 1e9);
    handshakeOk.inc();
    const cert = socket.getPeerX509Certificate();
    const id = ++nextId;
    const peer = cert === undefined ? null : identities.identityOf(cert);
    const decision = peer === null ? null : authorizePeer(allow, peer);
    const allowed = decision !== null && decision.allowed;
    const ctx: ConnectionContext = {
      id,
      log: log.child({ conn: id, peer: peer?.display ?? null, remote: socket.remoteAddress }),
      peer,
      allowed,
      inFlight: 0,
    };
    attachContext(socket, ctx);
    if (allowed) {
      authzAllow.inc();
      ctx.log.debug({ tls: socket.getProtocol(), cipher: socket.getCipher().name }, 'connection authorized');
    } else {
      authzDeny.inc();
      const why = decision !== null && !decision.allowed ? decision.why : 'identity';
      ctx.log.warn({ code: 'ERR_PEER_NOT_ALLOWED', why, spiffe: peer?.spiffe, dns: peer?.dns, cn: peer?.cn, spkiPin: peer?.spkiPin }, 'peer not allowed');
      deps.audit.record('authz_deny', { listener: config.name, peer: peer?.display ?? null, why, remote: socket.remoteAddress ?? null });
      recent.add({
        at: new Date(deps.clock.now()).toISOString(),
        listener: config.name,
        side: 'server',
        kind: 'authz_deny',
        reason: null,
        remote: formatRemote(socket.remoteAddress, socket.remotePort),
        peer: peer === null ? null : { subject: peer.subject, spiffe: peer.spiffe[0] ?? null },
        tlsVersion: tlsVersionOf(socket),
        code: 'ERR_PEER_NOT_ALLOWED',
        detail: why,
      });
    }
  });

  server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
    const raw = (socket as unknown as { _parent?: RawSocket })._parent;
    // a connection the handshake cap dropped was counted (and aggregated) at accept already
    if (raw?.[kDropped] === true) return;
    // a client certificate that fails verification only shows in authorizationError (Node destroys the socket itself)
    const verifyError = typeof socket.authorizationError === 'string' ? socket.authorizationError : null;
    const reason = classifyHandshakeFailure(err, verifyError);
    const code = verifyError ?? (err as NodeJS.ErrnoException).code;
    metrics.handshakes.labels(config.name, 'failure', reason).inc();
    const peer = failedPeerOf(socket);
    log.warn({ reason, code, err: err.message, remote: socket.remoteAddress, peer: peer?.spiffe ?? peer?.subject }, 'TLS handshake failed');
    deps.audit.record('handshake_failure', { listener: config.name, reason, remote: socket.remoteAddress ?? null, code: code ?? null });
    recent.add({
      at: new Date(deps.clock.now()).toISOString(),
      listener: config.name,
      side: 'server',
      kind: 'handshake_failure',
      reason,
      remote: raw?.[kRemote] ?? formatRemote(socket.remoteAddress, socket.remotePort),
      peer,
      tlsVersion: tlsVersionOf(socket),
      code: code ?? null,
      detail: err.message,
    });
  });

  function openTcpUpstream(downstream: TLSSocket, ctx: ConnectionContext): void {
    downstream.pause();
    const upstream = net.connect({ host: config.target.host, port: config.target.port, allowHalfOpen: true });
    const onConnectError = (err: Error): void => {
      metrics.upstreamErrors.labels(config.name, 'upstream_unavailable').inc();
      ctx.log.warn({ code: 'ERR_UPSTREAM_UNAVAILABLE', err: err.message }, 'upstream connect failed');
      downstream.destroy();
    };
    upstream.once('error', onConnectError);
    upstream.setTimeout(limits.upstreamTimeoutSeconds * 1000, () => upstream.destroy(new Error('connect timeout')));
    upstream.once('connect', () => {
      upstream.removeListener('error', onConnectError);
      upstream.setTimeout(0);
      upstream.removeAllListeners('timeout');
      pipeSockets(downstream, upstream, limits.idleTimeoutSeconds * 1000, {
        closed: (stats) => ctx.log.debug({ ...stats, error: stats.error?.message }, 'tcp connection closed'),
      });
      downstream.resume();
    });
  }

  // setSecureContext makes new ticket keys, so shared ones are applied again after each swap
  let ticketKeys = deps.ticketKeys;
  if (ticketKeys !== undefined) server.setTicketKeys(ticketKeys);
  return {
    ...listenerHandle(config, server, conns, pool),
    setTlsMaterial(material) {
      server.setSecureContext(serverOptions(material));
      if (ticketKeys !== undefined) server.setTicketKeys(ticketKeys);
    },
    setTicketKeys(keys) {
      ticketKeys = keys;
      server.setTicketKeys(keys);
    },
  };
}

/**
 * The certificate a failed client presented, when the socket is still open. Node destroys a
 * socket whose client certificate failed verification before telling us, so that case has
 * none; a destroyed socket is never asked (its OpenSSL state may be gone).
 */
function failedPeerOf(socket: TLSSocket): HandshakeRecord['peer'] {
  if (socket.destroyed) return null;
  try {
    const cert = socket.getPeerX509Certificate();
    if (cert === undefined) return null;
    const p = peerIdentity(cert);
    return { subject: p.subject, spiffe: p.spiffe[0] ?? null };
  } catch {
    return null;
  }
}

/**
 * The TLS session id context of a listener: a session (or ticket) resumes only on the listener
 * that issued it, on any worker thread and across restarts. Node's default is a hash of
 * process.argv, which differs between threads and between two ways of starting the same config.
 */
function sessionIdContextOf(listener: string): string {
  return createHash('sha256').update(`tollgate listener ${listener}`).digest('hex').slice(0, SESSION_ID_CONTEXT_CHARS);
}
/** OpenSSL's SSL_MAX_SID_CTX_LENGTH */
const SESSION_ID_CONTEXT_CHARS = 32;
