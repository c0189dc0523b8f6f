import type { Socket } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import type { ErrorCode } from '../core/errors.ts';
import type { ListenerConfig } from '../config/types.ts';
import type { IntegrityStage } from '../integrity/integrityStage.ts';
import type { AnomalyStage } from '../anomaly/anomalyStage.ts';
import type { Exchange } from '../http1/exchange.ts';
import { loadHttpParser, type HttpParserBinding } from '../http1/parserBinding.ts';
import { ServerConnection, type ExchangeHandler } from '../http1/serverConnection.ts';
import type { UpstreamConnection, UpstreamEvents } from '../http1/upstreamConnection.ts';
import { UpstreamPool, type Dial } from '../http1/upstreamPool.ts';
import { markIdle, type ClientConnection, type ConnectionContext } from './connectionContext.ts';
import { RequestPath, type RequestPathDeps } from './requestPath.ts';
import { rateLimiterFor } from './requestLimits.ts';

/**
 * The HTTP side of a listener: its client connections on the HTTP/1.1 core, its upstream
 * pool, and its request path behind one reference that a config reload swaps (an exchange in
 * flight stays on the path it started on). It also runs the headers timeout: one sweep per
 * listener, as node:http does, instead of a timer per connection.
 */
export interface HttpServiceDeps extends Omit<RequestPathDeps, 'pool'> {
  /** opens one upstream connection */
  readonly dial: Dial;
  /** how long an idle upstream connection is kept */
  readonly keepAliveMs: number;
}

/** llhttp limits the pairs of fields of a head to this many, as node:http's maxHeadersCount does */
const MAX_HEADER_PAIRS = 2000;
/** an upstream's response head may be this large (the local app's framework decides, not our client limit) */
const MIN_RESPONSE_HEAD_BYTES = 64 * 1024;

export class HttpService implements ExchangeHandler<ConnectionContext>, UpstreamEvents {
  current: RequestPath;
  readonly binding: HttpParserBinding;
  readonly pool: UpstreamPool;
  readonly connections = new Set<ClientConnection>();
  private sweep: NodeJS.Timeout | null = null;
  private sweepEveryMs = 0;

  constructor(deps: HttpServiceDeps) {
    this.binding = loadHttpParser();
    const limits = deps.listener.limits;
    this.pool = new UpstreamPool(
      deps.dial,
      {
        maxConnections: limits.maxConnections,
        keepAliveMs: deps.keepAliveMs,
        timeoutMs: limits.upstreamTimeoutSeconds * 1000,
        maxHeaderBytes: Math.max(MIN_RESPONSE_HEAD_BYTES, limits.maxHeaderBytes),
      },
      this.binding,
      this,
    );
    this.current = new RequestPath({ ...deps, pool: this.pool });
  }

  /** A client connection (TLS accepted and authorized, or plain on loopback) starts speaking HTTP. */
  accept(socket: Socket, ctx: ConnectionContext): ClientConnection {
    const limits = this.current.deps.listener.limits;
    socket.setNoDelay(true);
    const conn = new ServerConnection(
      socket,
      ctx,
      this,
      this.binding,
      {
        maxHeaderBytes: limits.maxHeaderBytes,
        maxHeaderPairs: MAX_HEADER_PAIRS,
        idleTimeoutMs: limits.idleTimeoutSeconds * 1000,
      },
      this.current.deps.clock.monotonic,
    );
    this.connections.add(conn);
    socket.once('close', () => this.connections.delete(conn));
    this.armSweep();
    return conn;
  }

  /** the headers timeout: a head begun and not complete in time gets 408 and the connection closes */
  private armSweep(): void {
    const timeoutMs = this.current.deps.listener.limits.headersTimeoutSeconds * 1000;
    const every = Math.max(50, Math.min(1000, Math.floor(timeoutMs / 2)));
    if (this.sweep !== null && every === this.sweepEveryMs) return;
    if (this.sweep !== null) clearInterval(this.sweep);
    this.sweepEveryMs = every;
    this.sweep = setInterval(() => {
      const limit = this.current.deps.listener.limits.headersTimeoutSeconds * 1000;
      const now = performance.now();
      for (const c of this.connections)
        if (c.headOverdue(now, limit)) c.refuseStream('ERR_HEADERS_TIMEOUT', 'headers timeout');
    }, every);
    this.sweep.unref();
  }

  /* ExchangeHandler: the exchange's own path, or the current one for a new exchange */
  start(ex: Exchange, conn: ClientConnection): void {
    this.current.start(ex, conn);
  }

  abandoned(ex: Exchange, conn: ClientConnection): void {
    pathOf(ex, this.current).abandoned(ex, conn);
  }

  bodyRefused(ex: Exchange, conn: ClientConnection, code: ErrorCode): void {
    pathOf(ex, this.current).bodyRefused(ex, conn, code, 'the request body does not parse');
  }

  /** drain tells this connection from a busy one by the bytes it has read from here on */
  idle(conn: ClientConnection): void {
    markIdle(conn.ctx);
  }

  draining(): boolean {
    return this.current.deps.isDraining();
  }

  /* UpstreamEvents */
  answered(ex: Exchange): void {
    pathOf(ex, this.current).answered(ex);
  }

  completed(ex: Exchange): void {
    pathOf(ex, this.current).completed(ex);
  }

  failed(ex: Exchange, conn: UpstreamConnection, err: Error): void {
    pathOf(ex, this.current).failed(ex, conn, err);
  }

  upgraded(ex: Exchange, conn: UpstreamConnection, rest: Buffer | null): void {
    pathOf(ex, this.current).upgraded(ex, conn, rest);
  }

  /**
   * A config reload: the next path from the current one's dependencies with the new config
   * (rate limiter and anomaly stage kept when their settings are unchanged, so a reload that
   * does not touch them keeps the learned sizes and the buckets).
   */
  apply(next: ListenerConfig, integrity: IntegrityStage | null, anomaly: () => AnomalyStage | null): void {
    const deps = this.current.deps;
    const was = deps.listener;
    const sameRate =
      was.limits.requestsPerSecond === next.limits.requestsPerSecond && was.limits.burst === next.limits.burst;
    const sameAnomaly = isDeepStrictEqual(was.anomaly, next.anomaly);
    this.current = new RequestPath({
      ...deps,
      listener: next,
      integrity,
      rateLimiter: sameRate ? deps.rateLimiter : rateLimiterFor(next),
      anomaly: sameAnomaly ? deps.anomaly : anomaly(),
    });
    if (this.connections.size > 0) this.armSweep();
  }

  /** Stop the sweep and close the pool (idle upstream connections now, busy ones when their exchange ends). */
  close(): Promise<void> {
    if (this.sweep !== null) clearInterval(this.sweep);
    this.sweep = null;
    return this.pool.close();
  }
}

function pathOf(ex: Exchange, fallback: RequestPath): RequestPath {
  return (ex.owner as RequestPath | null) ?? fallback;
}
