import http from 'node:http';
import net, { type Server, type Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Pool } from 'undici';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { ListenerConfig } from '../config/types.ts';
import { formatHostPort } from '../config/hostPort.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { compileVerify } from '../policy/authz.ts';
import { attachContext, type ConnectionContext } from './connectionContext.ts';
import { HttpPath, type IntegrityStage } from './httpPath.ts';
import { attachLivePath, type LivePath, type LiveSettable } from './liveSettings.ts';
import { rateLimiterFor } from './requestLimits.ts';
import { attachClientErrorHandler } from './clientError.ts';
import { pipeSockets } from './tcpPipe.ts';
import { createRetryConnection, createUpstreamPool, httpServerLimits, idleTimeoutMs } from './httpLimits.ts';
import { createUpstreamTls } from './upstreamTls.ts';
import { upstreamErrorCode } from './upstreamError.ts';
import { ERRORS } from '../core/errors.ts';
import { ConnectionSet, listenerHandle, type Listener } from './listener.ts';
import { RecentHandshakes } from '../telemetry/recentHandshakes.ts';
import { maxConnectionsWindow, watchMaxConnectionDrops } from './acceptRefusals.ts';

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
    telemetry: { listener: config.name, metrics, recent: deps.recentHandshakes ?? new RecentHandshakes(), clock: deps.clock },
  });
  let nextId = 0;
  const newContext = (socket: Socket): ConnectionContext => {
    const id = ++nextId;
    const ctx: ConnectionContext = { id, log: log.child({ conn: id }), peer: null, allowed: true, inFlight: 0 };
    attachContext(socket, ctx);
    conns.add(socket);
    return ctx;
  };

  let pool: Pool | null = null;
  let server: Server;
  // HTTP: the request path behind one reference, swapped by a config reload (applyLive)
  let livePath: LivePath | null = null;
  if (config.protocol === 'http') {
    // a remote peer: verified connections are worth keeping longer
    const origin = `https://${formatHostPort(config.target)}`;
    const connect = upstreamTls.undiciConnect as unknown as Pool.Options['connect'];
    pool = createUpstreamPool(origin, limits, 30_000, connect);
    const httpServer = http.createServer(httpServerLimits(limits));
    httpServer.timeout = idleTimeoutMs(limits);
    attachClientErrorHandler(httpServer, { listener: config.name, metrics, log, audit: deps.audit });
    httpServer.on('connection', newContext);
    livePath = attachLivePath(
      httpServer,
      new HttpPath({
        listener: config,
        dispatcher: pool,
        metrics,
        audit: deps.audit,
        log,
        clock: deps.clock,
        hostOverride: formatHostPort(config.target),
        setPeerHeader: false,
        isDraining: () => conns.isDraining,
        integrity: deps.integrity,
        anomaly: null,
        rateLimiter: rateLimiterFor(config),
        freshConnection: () => createRetryConnection(origin, limits, connect),
      }),
    );
    server = httpServer;
  } else {
    server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (downstream) => {
      const ctx = newContext(downstream);
      upstreamTls.connect(config.target.host, config.target.port, true).then(
        ({ socket: upstream }) => {
          pipeSockets(downstream, upstream, limits.idleTimeoutSeconds * 1000, {
            closed: (stats) => ctx.log.debug({ ...stats, error: stats.error?.message }, 'tcp connection closed'),
          });
          downstream.resume();
        },
        (err: Error) => {
          const code = upstreamErrorCode(err);
          metrics.upstreamErrors.labels(config.name, ERRORS[code].reason).inc();
          ctx.log.warn({ code, err: err.message }, 'upstream connect failed');
          if (code === 'ERR_UPSTREAM_IDENTITY') deps.audit.record('upstream_identity', { listener: config.name, reason: err.message });
          downstream.destroy();
        },
      );
    });
  }
  server.maxConnections = limits.maxConnections;
  const recent = deps.recentHandshakes ?? new RecentHandshakes();
  const drops = maxConnectionsWindow({ listener: config.name, metrics, log, audit: deps.audit, recent, clock: deps.clock, maxConnections: limits.maxConnections });
  watchMaxConnectionDrops(server, drops);

  return {
    ...listenerHandle(config, server, conns, pool),
    applyLive(next, integrity) {
      upstreamTls.setVerify(compileVerify(next.verify));
      livePath?.apply(next, integrity, () => null);
    },
  };
}
