import { isDeepStrictEqual } from 'node:util';
import tls, { type TLSSocket, type TlsOptions } from 'node:tls';
import net, { type Socket } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { ListenerConfig } from '../config/types.ts';
import type { HandshakeFailureReason } from '../core/handshakeFailureReasons.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { secureContextOptions, type TlsMaterial } from '../tls/contexts.ts';
import { sessionIdContextOf, ticketKeysFor, trustDigest } from '../tls/sessionBinding.ts';
import type { TlsPolicy } from '../tls/policy.ts';
import { peerIdentity } from '../tls/peerIdentity.ts';
import { PeerIdentityCache } from '../tls/peerIdentityCache.ts';
import { classifyHandshakeFailure } from '../tls/handshakeFailure.ts';
import { authorizePeer, compileAllow, type CompiledAllow } from '../policy/authz.ts';
import type { AllowConfig } from '../config/types.ts';
import { attachContext, ConnectionContext, contextOf } from './connectionContext.ts';
import type { IntegrityStage } from '../integrity/integrityStage.ts';
import type { LiveSettable } from './liveSettings.ts';
import { HttpService, singleUpstreamPaths } from './httpService.ts';
import type { PathContext, PathSet } from './pathSet.ts';
import { gatewayPaths, type GatewayDeps } from './gatewayPaths.ts';
import { dialPlain } from './plainDial.ts';
import { dialH2c } from '../http2/h2Upstream.ts';
import type { SharedStore } from '../sharedState/sharedStore.ts';
import { Refusals } from './refusals.ts';
import { rateLimiterFor, anomalyStageFor } from './requestLimits.ts';
import { HandshakeGate, sourceKey } from './handshakeGate.ts';
import { acceptRefusals, watchMaxConnectionDrops } from './acceptRefusals.ts';
import type { RecentAnomalies } from '../anomaly/recentAnomalies.ts';
import { RecentHandshakes, formatRemote, tlsVersionOf, type HandshakeRecord } from '../telemetry/recentHandshakes.ts';
import { pipeSockets } from './tcpPipe.ts';
import { upstreamFailure } from './upstreamError.ts';
import { ConnectionSet, listenerHandle, type Listener } from './listener.ts';
import { DEFAULT_ROUTE } from '../core/routeLabels.ts';
import { AccessLog, logTcpAccess, tcpAccess } from '../telemetry/accessLog.ts';

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
  /** the access log's switch (one per thread, flipped by a reload); off when not given */
  readonly accessLog?: AccessLog;
  /** a gateway: its routes' integrity stages (verify, re-sign) from their settings */
  readonly integrityFor?: GatewayDeps['integrityFor'];
  /** replay cache and rate limits shared by the replicas (sharedState); this process's own when not given */
  readonly shared?: SharedStore | null;
  /** a gateway: the client context of mTLS origination to a route's targets (upstreamTls) */
  readonly clientContext?: GatewayDeps['clientContext'];
  /** a gateway: how target names are resolved (tests point it at their own DNS server); the system's when not given */
  readonly resolverFor?: GatewayDeps['resolverFor'];
}

export interface InboundListener extends Listener, LiveSettable {
  /**
   * New handshakes use this material from now on; open connections are untouched. A new CA
   * bundle or new CRLs also end every earlier TLS session (no resumption): tls/sessionBinding.ts.
   */
  setTlsMaterial(material: TlsMaterial): void;
  /** session tickets are issued and accepted under keys derived from these 48 bytes from now on (kept across setTlsMaterial) */
  setTicketKeys(keys: Buffer): void;
  /** new connections are authorized against this allow-list from now on; a change ends every earlier TLS session */
  setAllow(allow: AllowConfig): void;
}

const kAccepted = Symbol('tollgate.acceptedAt');
const kRemote = Symbol('tollgate.remote');
const kDropped = Symbol('tollgate.droppedAtAccept');
/** the accepted TCP socket: when it was accepted, who from (kept: a destroyed socket forgets its address), whether the handshake gate closed it */
type RawSocket = Socket & { [kAccepted]?: bigint; [kRemote]?: string | null; [kDropped]?: true };

/**
 * The inbound listener: terminates mTLS with `tls.createServer`, requires a client certificate
 * verified against our CA bundle, then authorizes the peer against the compiled allow-list and
 * pins, once per connection, before any upstream is dialled. HTTP goes through the HTTP/1.1
 * core and the request path to the loopback app; TCP is piped to the target port.
 */
export function createInboundListener(deps: InboundDeps): InboundListener {
  const { config, metrics, log } = deps;
  const limits = config.limits;
  let allow: CompiledAllow = compileAllow(config.allow);
  const conns = new ConnectionSet(metrics.connectionsActive.labels(config.name));
  const handshakeOk = metrics.handshakes.labels(config.name, 'success', '');
  const handshakeDuration = metrics.handshakeDuration.labels(config.name);
  const authzAllow = metrics.authzDecisions.labels(config.name, 'allow');
  const authzDeny = metrics.authzDecisions.labels(config.name, 'deny');
  const recent = deps.recentHandshakes ?? new RecentHandshakes();
  const identities = new PeerIdentityCache();
  let nextId = 0;

  // what the current sessions are bound to (tls/sessionBinding.ts); replaced whole by a reload
  let trust: Trust = trustOf(deps.material, config.allow);
  // the instance's shared ticket keys (hourly), or none: Node's random keys, new with each context
  let sharedTicketKeys = deps.ticketKeys;

  function trustOf(material: TlsMaterial, allowConfig: AllowConfig): Trust {
    return {
      material,
      allowConfig,
      digest: trustDigest(config.name, material, allowConfig),
      revoked: material.revoked,
    };
  }

  const serverOptions = (t: Trust): TlsOptions => ({
    ...secureContextOptions(t.material, deps.policy),
    requestCert: true,
    rejectUnauthorized: true,
    sessionIdContext: sessionIdContextOf(t.digest),
    // given with the options, the keys change with the context, in one step
    ...(sharedTicketKeys === undefined ? {} : { ticketKeys: ticketKeysFor(sharedTicketKeys, t.digest) }),
  });

  /** a new secure context for new handshakes; nothing changes if OpenSSL refuses it */
  function rebind(next: Trust): void {
    server.setSecureContext(serverOptions(next));
    trust = next;
  }

  const tlsServerOptions: TlsOptions = {
    ...serverOptions(trust),
    handshakeTimeout: limits.handshakeTimeoutSeconds * 1000,
    sessionTimeout: 300,
    // TCP: a half-close is passed on; HTTP: a client's FIN ends what it had in flight (as node:http does)
    allowHalfOpen: config.protocol === 'tcp',
    // HTTP: h2 beside http/1.1 unless http2 is off (a client offering only other protocols is refused: no_application_protocol)
    ...(config.protocol === 'http' ? { ALPNProtocols: config.http2 ? ['h2', 'http/1.1'] : ['http/1.1'] } : {}),
  };

  const refusals = new Refusals({ listener: config.name, metrics, audit: deps.audit });
  const accessLog = deps.accessLog ?? new AccessLog(false);
  const server: tls.Server = tls.createServer(tlsServerOptions);
  // HTTP: the HTTP/1.1 core with the request path behind one reference, swapped by a config reload (applyLive)
  let http: HttpService | null = null;
  if (config.protocol === 'http') {
    const single = (context: PathContext): PathSet =>
      singleUpstreamPaths(
        {
          ...pathDeps,
          hostOverride: null,
          integrity: deps.integrity,
          anomaly: anomalyStageFor(deps),
          rateLimiter: rateLimiterFor(config.limits),
          shared: deps.shared ?? null,
          dial: (done) => dialPlain(config.target.host, config.target.port, limits.upstreamTimeoutSeconds * 1000, done),
          // targetProtocol h2c: every exchange is a stream of an h2c session to the app
          h2:
            config.targetProtocol === 'h2c'
              ? {
                  dial: dialH2c(config.target.host, config.target.port, limits.upstreamTimeoutSeconds * 1000),
                  only: true,
                  scheme: 'http',
                }
              : null,
          // the local app: Node's http server keeps idle connections 5 s, so let ours go after 4
          keepAliveMs: 4_000,
        },
        context,
      );
    const pathDeps = {
      listener: config,
      metrics,
      log,
      clock: deps.clock,
      refusals,
      setPeerHeader: true,
      isDraining: () => conns.isDraining,
      upgrades: metrics.upgrades.labels(config.name),
      accessLog,
    };
    const service = new HttpService(
      config.mode === 'gateway'
        ? (context) =>
            gatewayPaths(
              {
                ...pathDeps,
                audit: deps.audit,
                recentAnomalies: deps.recentAnomalies,
                recentHandshakes: recent,
                integrityFor: deps.integrityFor,
                clientContext: deps.clientContext,
                resolverFor: deps.resolverFor,
                shared: deps.shared ?? null,
              },
              context,
            )
        : single,
    );
    http = service;
    server.on('secureConnection', (socket: TLSSocket) => {
      const ctx = contextOf(socket);
      if (ctx === undefined) {
        socket.destroy();
        return;
      }
      // a peer refused at the handshake still gets its 403 per request (authorizedAtHandshake)
      if (socket.alpnProtocol === 'h2') service.acceptH2(socket, ctx);
      else service.accept(socket, ctx);
    });
  } else {
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

  // the handshake gate (see handshakeGate.ts), and how what it refuses or closes is reported
  const gateRefusals = acceptRefusals({
    listener: config.name,
    metrics,
    log,
    audit: deps.audit,
    recent,
    clock: deps.clock,
    limits,
    inProgress: () => gate.inProgress,
  });
  const gate = new HandshakeGate(
    {
      maxInProgress: limits.maxConcurrentHandshakes,
      maxPerSource: limits.maxHandshakesPerSource,
      clientHelloTimeoutMs: limits.clientHelloTimeoutSeconds * 1000,
    },
    {
      clock: deps.clock,
      onClose(socket, why) {
        const raw = socket as RawSocket;
        raw[kDropped] = true;
        (why === 'evicted' ? gateRefusals.evicted : gateRefusals.clientHello).record(raw[kRemote] ?? null);
      },
    },
  );
  watchMaxConnectionDrops(server, gateRefusals.maxConnections);
  server.on('connection', (raw: RawSocket) => {
    // read before anything can destroy it (a destroyed socket has no address to give)
    const remote = formatRemote(raw.remoteAddress, raw.remotePort);
    raw[kRemote] = remote;
    const admission = gate.admit(raw, sourceKey(raw.remoteAddress));
    if (admission !== 'admitted') {
      // counted here, once: not again as a TLS error when the wrapped socket notices
      raw[kDropped] = true;
      (admission === 'cap' ? gateRefusals.cap : gateRefusals.sourceCap).record(remote);
      return;
    }
    raw[kAccepted] = deps.clock.monotonic();
  });

  // runs right after the HTTP parser (or our TCP handler) is attached, before any request is read
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    conns.add(socket);
    const raw = (socket as unknown as { _parent?: RawSocket })._parent;
    gate.done(raw);
    const cert = socket.getPeerX509Certificate();
    // OpenSSL checks the CRLs in a full handshake only (a resumed session skips verification,
    // and a handshake begun before a reload used the CRLs of then): the current ones, every time
    if (cert !== undefined && trust.revoked.size > 0 && trust.revoked.has(identities.revocationKeyOf(cert))) {
      refuseRevoked(socket, cert, raw?.[kRemote] ?? null);
      return;
    }
    // TLS 1.2 renegotiation (Node allows a client 3 per 10 minutes) is refused by closing, as HAProxy does; TLS 1.3 has none
    socket.disableRenegotiation();
    socket.on('error', onRenegotiation);
    const accepted = raw?.[kAccepted];
    if (accepted !== undefined) handshakeDuration.observe(Number(deps.clock.monotonic() - accepted) / 1e9);
    handshakeOk.inc();
    const id = ++nextId;
    const peer = cert === undefined ? null : identities.identityOf(cert);
    const decision = peer === null ? null : authorizePeer(allow, peer);
    const allowed = decision !== null && decision.allowed;
    // the address read at accept (the TLS socket would ask the kernel again)
    const remote = raw?.remoteAddress ?? socket.remoteAddress;
    const ctx = new ConnectionContext(log, { conn: id, peer: peer?.display ?? null, remote }, peer, allowed);
    attachContext(socket, ctx);
    if (allowed) {
      authzAllow.inc();
      if (log.isLevelEnabled('debug'))
        ctx.log.debug({ tls: socket.getProtocol(), cipher: socket.getCipher().name }, 'connection authorized');
    } else {
      authzDeny.inc();
      const why = decision !== null && !decision.allowed ? decision.why : 'identity';
      ctx.log.warn(
        {
          code: 'ERR_PEER_NOT_ALLOWED',
          why,
          spiffe: peer?.spiffe,
          dns: peer?.dns,
          cn: peer?.cn,
          spkiPin: peer?.spkiPin,
        },
        'peer not allowed',
      );
      deps.audit.record('authz_deny', {
        listener: config.name,
        peer: peer?.display ?? null,
        why,
        remote: socket.remoteAddress ?? null,
      });
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

  /**
   * One TLS connection that failed or was refused on the TLS level, whoever noticed: counted,
   * logged, audited and listed in /handshakes/recent once. Read from the socket before the caller
   * destroys it (a destroyed socket forgets its address).
   */
  function handshakeFailed(socket: TLSSocket, f: FailedHandshake): void {
    const address = socket.remoteAddress ?? null;
    metrics.handshakes.labels(config.name, 'failure', f.reason).inc();
    // a connection's own logger already names its remote address (a key twice would make the line invalid for strict readers)
    if (f.log === undefined) log.warn({ reason: f.reason, code: f.code, remote: address, ...f.logFields }, f.message);
    else f.log.warn({ reason: f.reason, code: f.code, ...f.logFields }, f.message);
    deps.audit.record('handshake_failure', {
      listener: config.name,
      reason: f.reason,
      remote: address,
      code: f.code,
      ...f.auditFields,
    });
    recent.add({
      at: new Date(deps.clock.now()).toISOString(),
      listener: config.name,
      side: 'server',
      kind: 'handshake_failure',
      reason: f.reason,
      remote: f.remote ?? formatRemote(socket.remoteAddress, socket.remotePort),
      peer: f.peer,
      tlsVersion: tlsVersionOf(socket),
      code: f.code,
      detail: f.detail,
    });
  }

  /** a peer the current CRLs revoke, found after the TLS layer let it in: accounted as the full handshake OpenSSL refuses would be */
  function refuseRevoked(socket: TLSSocket, cert: X509Certificate, remote: string | null): void {
    const resumed = socket.isSessionReused();
    const p = identities.identityOf(cert);
    handshakeFailed(socket, {
      reason: 'cert_revoked',
      code: 'CERT_REVOKED',
      remote,
      peer: { subject: p.subject, spiffe: p.spiffe[0] ?? null },
      detail: resumed
        ? 'revoked by the current CRL (a resumed session, which OpenSSL does not verify)'
        : 'revoked by the current CRL',
      message: 'TLS handshake failed',
      logFields: { resumed, peer: p.display },
      auditFields: { resumed },
    });
    socket.destroy();
  }

  /** a renegotiation attempt (socket.disableRenegotiation() makes it an error): closed, counted, logged and audited once */
  function onRenegotiation(this: TLSSocket, err: NodeJS.ErrnoException): void {
    if (err.code !== 'ERR_TLS_RENEGOTIATION_DISABLED' || this.destroyed) return;
    const ctx = contextOf(this);
    handshakeFailed(this, {
      reason: 'other',
      code: err.code,
      remote: null,
      peer: ctx?.peer == null ? null : { subject: ctx.peer.subject, spiffe: ctx.peer.spiffe[0] ?? null },
      detail: 'the client asked to renegotiate; renegotiation is refused',
      message: 'TLS renegotiation refused: connection closed',
      ...(ctx === undefined ? {} : { log: ctx.log }),
    });
    this.destroy();
  }

  // with a listener here, Node leaves the failed socket open: it is closed, then reported from
  // what was kept at accept (a handshake that failed has no TLS version to report)
  server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
    socket.destroy();
    reportClientError(err, socket);
  });

  function reportClientError(err: Error, socket: TLSSocket): void {
    const raw = (socket as unknown as { _parent?: RawSocket })._parent;
    // a connection the handshake gate refused or closed was counted (and aggregated) by it already
    if (raw?.[kDropped] === true) return;
    // a client certificate that fails verification only shows in authorizationError (Node destroys the socket itself)
    const verifyError = typeof socket.authorizationError === 'string' ? socket.authorizationError : null;
    // a client that connected and left without sending a byte (a port scan, a load balancer's TCP
    // health check, a flood's own sockets) is still counted (other) but reported per window, as
    // HAProxy's `option dontlognull` keeps such null connections out of its log
    if (
      raw !== undefined &&
      raw.bytesRead === 0 &&
      verifyError === null &&
      (err as NodeJS.ErrnoException).code === 'ECONNRESET'
    ) {
      gateRefusals.closedSilent.record(raw[kRemote] ?? null);
      return;
    }
    const peer = failedPeerOf(socket);
    handshakeFailed(socket, {
      reason: classifyHandshakeFailure(err, verifyError),
      code: verifyError ?? (err as NodeJS.ErrnoException).code ?? null,
      remote: raw?.[kRemote] ?? null,
      peer,
      detail: err.message,
      message: 'TLS handshake failed',
      logFields: { err: err.message, peer: peer?.spiffe ?? peer?.subject },
    });
  }

  function openTcpUpstream(downstream: TLSSocket, ctx: ConnectionContext): void {
    downstream.pause();
    const startedAt = deps.clock.monotonic();
    const upstream = net.connect({ host: config.target.host, port: config.target.port, allowHalfOpen: true });
    const onConnectError = (err: Error): void => {
      const failure = upstreamFailure(err);
      if (accessLog.enabled)
        logTcpAccess(ctx.log, tcpAccess(startedAt, deps.clock.monotonic(), null, failure.code, err));
      refusals.connection(
        downstream,
        failure.code,
        { log: ctx.log, route: DEFAULT_ROUTE, peer: ctx.peer?.display ?? null, method: null, path: null, keyId: null },
        { err: err.message },
        failure.reason,
      );
    };
    upstream.once('error', onConnectError);
    upstream.setTimeout(limits.upstreamTimeoutSeconds * 1000, () =>
      upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })),
    );
    upstream.once('connect', () => {
      upstream.removeListener('error', onConnectError);
      upstream.setTimeout(0);
      upstream.removeAllListeners('timeout');
      pipeSockets(downstream, upstream, limits.idleTimeoutSeconds * 1000, {
        closed: (stats) => {
          ctx.log.debug({ ...stats, error: stats.error?.message }, 'tcp connection closed');
          if (accessLog.enabled)
            logTcpAccess(ctx.log, tcpAccess(startedAt, deps.clock.monotonic(), stats, null, stats.error));
        },
      });
      downstream.resume();
    });
  }

  return {
    ...listenerHandle(config, server, conns, http),
    setTlsMaterial(material) {
      rebind(trustOf(material, trust.allowConfig));
    },
    setTicketKeys(keys) {
      sharedTicketKeys = keys;
      server.setTicketKeys(ticketKeysFor(keys, trust.digest));
    },
    applyLive(next, integrity) {
      if (!isDeepStrictEqual(next.allow, trust.allowConfig)) this.setAllow(next.allow);
      http?.apply(next, integrity, () => anomalyStageFor({ ...deps, config: next }));
    },
    setAllow(allowConfig) {
      const compiled = compileAllow(allowConfig);
      rebind(trustOf(trust.material, allowConfig));
      allow = compiled;
    },
  };
}

/** A TLS-level failure as handshakeFailed reports it. */
interface FailedHandshake {
  readonly reason: HandshakeFailureReason;
  readonly code: string | null;
  /** address:port as read at accept, or null to read it from the socket */
  readonly remote: string | null;
  readonly peer: HandshakeRecord['peer'];
  /** the /handshakes/recent entry's explanation */
  readonly detail: string;
  /** the log line: its message, what it adds, and the connection's logger when there is one */
  readonly message: string;
  readonly logFields?: Record<string, unknown>;
  readonly log?: Logger;
  readonly auditFields?: Record<string, unknown>;
}

/** What the listener's sessions are bound to, and the revoked serials of its CRLs, swapped as one. */
interface Trust {
  readonly material: TlsMaterial;
  readonly allowConfig: AllowConfig;
  readonly digest: Buffer;
  readonly revoked: TlsMaterial['revoked'];
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
