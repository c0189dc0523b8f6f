import net, { type Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { ListenerConfig } from '../config/types.ts';
import { formatHostPort } from '../config/hostPort.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { compileVerify } from '../policy/authz.ts';
import { attachContext, ConnectionContext } from './connectionContext.ts';
import type { IntegrityStage } from '../integrity/integrityStage.ts';
import type { LiveSettable } from './liveSettings.ts';
import { rateLimiterFor } from './requestLimits.ts';
import { pipeSockets } from './tcpPipe.ts';
import { createUpstreamTls } from './upstreamTls.ts';
import { upstreamFailure } from './upstreamError.ts';
import { HttpService, singleUpstreamPaths } from './httpService.ts';
import { sessionOver } from '../http2/h2Upstream.ts';
import { H2Refused } from '../http2/protocolUpstream.ts';
import { sniffH2cPreface } from '../http2/h2cPreface.ts';

/** ALPN offered to the remote peer for an HTTP/2 exchange: h2, or http/1.1 from a peer without it (then H2Refused) */
const H2_FIRST: readonly string[] = ['h2', 'http/1.1'];
import { Refusals } from './refusals.ts';
import { ConnectionSet, listenerHandle, type Listener } from './listener.ts';
import { RecentHandshakes } from '../telemetry/recentHandshakes.ts';
import { maxConnectionsWindow, watchMaxConnectionDrops } from './acceptRefusals.ts';
import { DEFAULT_ROUTE } from '../core/routeLabels.ts';
import { AccessLog, logTcpAccess, tcpAccess } from '../telemetry/accessLog.ts';

export interface OutboundDeps {
  readonly config: ListenerConfig;
  /** the current client context (our certificate + CA bundle + policy), read per new upstream connection */
  readonly clientContext: () => SecureContext;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  readonly log: Logger;
  readonly clock: Clock;
  /** message integrity for HTTP: verify (inbound), sign (outbound), or null */
  readonly integrity: IntegrityStage | null;
  /** where failed upstream handshakes are kept for the admin API (one per sidecar); a private list when not given */
  readonly recentHandshakes?: RecentHandshakes;
  /** the access log's switch (one per thread, flipped by a reload); off when not given */
  readonly accessLog?: AccessLog;
}

/**
 * The outbound listener: plaintext on loopback for the local app, originating mTLS to the
 * remote peer with our client certificate, verifying chain, server name, SPIFFE ID and pins.
 * HTTP requests share a keep-alive pool of verified connections; TCP connections get one
 * upstream connection each.
 */
export function createOutboundListener(deps: OutboundDeps): Listener & LiveSettable {
  const { config, metrics, log } = deps;
  const limits = config.limits;
  const conns = new ConnectionSet(metrics.connectionsActive.labels(config.name));
  const upstreamTls = createUpstreamTls({
    serverName: config.serverName,
    verify: compileVerify(config.verify),
    secureContext: deps.clientContext,
    connectTimeoutMs: limits.upstreamTimeoutSeconds * 1000,
    telemetry: {
      listener: config.name,
      metrics,
      recent: deps.recentHandshakes ?? new RecentHandshakes(),
      clock: deps.clock,
    },
  });
  let nextId = 0;
  const newContext = (socket: Socket): ConnectionContext => {
    const id = ++nextId;
    const ctx = new ConnectionContext(log, { conn: id }, null, true);
    attachContext(socket, ctx);
    conns.add(socket);
    return ctx;
  };

  const refusals = new Refusals({ listener: config.name, metrics, audit: deps.audit });
  const accessLog = deps.accessLog ?? new AccessLog(false);
  // a connection from the local app: paused until there is somewhere to send its bytes (TCP) or the core reads it (HTTP)
  const server = net.createServer({
    allowHalfOpen: config.protocol === 'tcp',
    pauseOnConnect: config.protocol === 'tcp',
  });
  // HTTP: the HTTP/1.1 core with the request path behind one reference, swapped by a config reload (applyLive)
  let http: HttpService | null = null;
  if (config.protocol === 'http') {
    const service = new HttpService((context) =>
      singleUpstreamPaths(
        {
          listener: config,
          metrics,
          log,
          clock: deps.clock,
          refusals,
          hostOverride: formatHostPort(config.target),
          setPeerHeader: false,
          isDraining: () => conns.isDraining,
          integrity: deps.integrity,
          anomaly: null,
          // the local app's own rate: nothing to share with other replicas
          shared: null,
          rateLimiter: rateLimiterFor(config.limits),
          upgrades: metrics.upgrades.labels(config.name),
          accessLog,
          // verified mTLS to the remote peer: chain, name, SPIFFE ID, pins, PFS policy (upstreamTls.ts)
          dial: (done) => upstreamTls.dial(config.target.host, config.target.port, done),
          // what the app sent over h2c goes on as a stream of an h2 session (the same checks, ALPN h2)
          h2: config.http2
            ? {
                dial: (done) =>
                  upstreamTls.dial(
                    config.target.host,
                    config.target.port,
                    (err, socket) => {
                      if (err !== null || socket === null) return done(err ?? new Error('no socket'), null);
                      if (socket.alpnProtocol !== 'h2') {
                        socket.destroy();
                        return done(new H2Refused(socket.alpnProtocol ?? false), null);
                      }
                      sessionOver(
                        `https://${formatHostPort(config.target)}`,
                        socket,
                        limits.upstreamTimeoutSeconds * 1000,
                        done,
                      );
                    },
                    H2_FIRST,
                  ),
                only: false,
                scheme: 'https',
              }
            : null,
          // a remote peer: verified connections are worth keeping longer
          keepAliveMs: 30_000,
        },
        context,
      ),
    );
    http = service;
    server.on('connection', (socket: Socket) => {
      const ctx = newContext(socket);
      if (!config.http2) return service.accept(socket, ctx);
      // the local app may speak h2c with prior knowledge (gRPC clients do): its first bytes tell
      sniffH2cPreface(socket, limits.idleTimeoutSeconds * 1000, (h2c) =>
        h2c ? service.acceptH2(socket, ctx) : service.accept(socket, ctx),
      );
    });
  } else {
    server.on('connection', (downstream: Socket) => {
      const ctx = newContext(downstream);
      const startedAt = deps.clock.monotonic();
      upstreamTls.connect(config.target.host, config.target.port, true).then(
        ({ socket: upstream }) => {
          pipeSockets(downstream, upstream, limits.idleTimeoutSeconds * 1000, {
            closed: (stats) => {
              ctx.log.debug({ ...stats, error: stats.error?.message }, 'tcp connection closed');
              if (accessLog.enabled)
                logTcpAccess(ctx.log, tcpAccess(startedAt, deps.clock.monotonic(), stats, null, stats.error));
            },
          });
          downstream.resume();
        },
        (err: Error) => {
          const failure = upstreamFailure(err);
          if (accessLog.enabled)
            logTcpAccess(ctx.log, tcpAccess(startedAt, deps.clock.monotonic(), null, failure.code, err));
          refusals.connection(
            downstream,
            failure.code,
            { log: ctx.log, route: DEFAULT_ROUTE, peer: null, method: null, path: null, keyId: null },
            { err: err.message },
            failure.reason,
          );
        },
      );
    });
  }
  server.maxConnections = limits.maxConnections;
  const recent = deps.recentHandshakes ?? new RecentHandshakes();
  const drops = maxConnectionsWindow({
    listener: config.name,
    metrics,
    log,
    audit: deps.audit,
    recent,
    clock: deps.clock,
    maxConnections: limits.maxConnections,
  });
  watchMaxConnectionDrops(server, drops);

  return {
    ...listenerHandle(config, server, conns, http),
    applyLive(next, integrity) {
      upstreamTls.setVerify(compileVerify(next.verify));
      http?.apply(next, integrity, () => null);
    },
  };
}
