import type { Socket } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import type { ErrorCode } from '../core/errors.ts';
import { HTTP2_LIMIT_KEYS } from '../config/defaults.ts';
import type { ListenerConfig } from '../config/types.ts';
import type { IntegrityStage } from '../integrity/integrityStage.ts';
import type { AnomalyStage } from '../anomaly/anomalyStage.ts';
import type { Exchange } from '../http1/exchange.ts';
import { loadHttpParser, type HttpParserBinding } from '../http1/parserBinding.ts';
import { ServerConnection, type ExchangeHandler } from '../http1/serverConnection.ts';
import { ParserPool } from '../http1/parserPool.ts';
import type { UpstreamConnection, UpstreamEvents, UpstreamLink } from '../http1/upstreamConnection.ts';
import { UpstreamPool, type Dial } from '../http1/upstreamPool.ts';
import { markIdle, type ClientConnection, type ConnectionContext } from './connectionContext.ts';
import { inboundChain, outboundChain, RequestPath, type RequestPathDeps } from './requestPath.ts';
import { rateLimiterFor } from './requestLimits.ts';
import { DEFAULT_ROUTE } from '../core/routeLabels.ts';
import { MIN_RESPONSE_HEAD_BYTES, type PathContext, type PathSet, type RouteStatus } from './pathSet.ts';
import type * as H2FrontModule from '../http2/h2Front.ts';
import type { H2Front } from '../http2/h2Front.ts';
import { H2Upstream, type SessionDial } from '../http2/h2Upstream.ts';
import { ProtocolUpstream } from '../http2/protocolUpstream.ts';
import type { Upstream } from '../http1/upstreamPool.ts';

/**
 * The HTTP side of a listener: its client connections on the HTTP/1.1 core, and the request
 * paths they go through (a PathSet: one path and one upstream pool, or a gateway's routes),
 * behind one reference that a config reload swaps (an exchange in flight stays on the path it
 * started on). It also runs the headers timeout: one sweep per listener, as node:http does,
 * instead of a timer per connection.
 */

/** the limits an HTTP/2 connection takes when it is made */
const H2_LIMIT_KEYS = ['maxHeaderBytes', 'idleTimeoutSeconds', ...HTTP2_LIMIT_KEYS] as const;

/** llhttp limits the pairs of fields of a head to this many, as node:http's maxHeadersCount does */
const MAX_HEADER_PAIRS = 2000;

export class HttpService implements ExchangeHandler<ConnectionContext>, UpstreamEvents {
  paths: PathSet;
  readonly binding: HttpParserBinding;
  /** the client connections' request parsers, lent while a request is read */
  readonly parsers: ParserPool;
  readonly connections = new Set<ServerConnection<ConnectionContext>>();
  /**
   * The listener's HTTP/2 connections, made with the first one (node:http2 costs about 5 MiB, paid
   * only by a process that sees HTTP/2); a reload that changes their limits makes a new one for new
   * connections.
   */
  h2: H2Front<ConnectionContext> | null = null;
  private h2Module: Promise<typeof H2FrontModule> | null = null;
  /** fronts a reload replaced, still serving the connections they took (a drain tells them too) */
  readonly retiredH2 = new Set<H2Front<ConnectionContext>>();
  private sweep: NodeJS.Timeout | null = null;
  private sweepEveryMs = 0;

  /** `paths` builds the listener's first path set with the parser binding and this service as its pools' events. */
  constructor(paths: (context: PathContext) => PathSet) {
    this.binding = loadHttpParser();
    this.parsers = new ParserPool(this.binding);
    this.paths = paths({ binding: this.binding, events: this });
  }

  /** the HTTP/2 side with the current listener's limits */
  h2Front(m: typeof H2FrontModule): H2Front<ConnectionContext> {
    const d = this.current.deps;
    const l = d.listener;
    return new m.H2Front<ConnectionContext>(
      this,
      {
        maxConcurrentStreams: l.limits.http2MaxConcurrentStreams,
        maxHeaderBytes: l.limits.maxHeaderBytes,
        headerTableBytes: l.limits.http2HeaderTableBytes,
        streamWindowBytes: l.limits.http2StreamWindowBytes,
        connectionWindowBytes: l.limits.http2ConnectionWindowBytes,
        maxResetsPerSecond: l.limits.http2MaxResetsPerSecond,
        maxPingsPerSecond: l.limits.http2MaxPingsPerSecond,
        maxSettingsPerSecond: l.limits.http2MaxSettingsPerSecond,
        idleTimeoutMs: l.limits.idleTimeoutSeconds * 1000,
      },
      {
        goaway: (reason, detail) => {
          d.metrics.http2Goaways.labels(l.name, reason).inc();
          if (reason !== 'idle' && reason !== 'drain') d.log.warn({ reason, detail }, 'HTTP/2 connection sent GOAWAY');
        },
      },
      d.clock.monotonic,
    );
  }

  /** A client connection that chose HTTP/2 (ALPN h2, or h2c's preface on an outbound listener). */
  acceptH2(socket: Socket, ctx: ConnectionContext): void {
    socket.setNoDelay(true);
    if (this.h2 !== null) return this.h2.accept(socket, ctx);
    // the first one: what it sends meanwhile waits in the socket (the session reads it when made)
    (this.h2Module ??= import('../http2/h2Front.ts')).then(
      (m) => {
        this.h2 ??= this.h2Front(m);
        if (!socket.destroyed) this.h2.accept(socket, ctx);
      },
      (err: Error) => {
        ctx.log.error({ err: err.message }, 'HTTP/2 is not available in this runtime');
        socket.destroy();
      },
    );
  }

  /** a drain begins: HTTP/2 connections are told (GOAWAY) to open no new stream */
  goAway(): void {
    this.h2?.drain();
    for (const old of this.retiredH2) old.drain();
  }

  get current(): RequestPath {
    return this.paths.entry;
  }

  /** A client connection (TLS accepted and authorized, or plain on loopback) starts speaking HTTP. */
  accept(socket: Socket, ctx: ConnectionContext): ServerConnection<ConnectionContext> {
    const limits = this.current.deps.listener.limits;
    socket.setNoDelay(true);
    const conn = new ServerConnection(
      socket,
      ctx,
      this,
      this.parsers,
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

  failed(ex: Exchange, conn: UpstreamLink, err: Error): void {
    pathOf(ex, this.current).failed(ex, conn, err);
  }

  upgraded(ex: Exchange, conn: UpstreamConnection, rest: Buffer | null): void {
    pathOf(ex, this.current).upgraded(ex, conn, rest);
  }

  /** A config reload: the next path set (exchanges in flight finish on the one they started on). */
  apply(next: ListenerConfig, integrity: IntegrityStage | null, anomaly: () => AnomalyStage | null): void {
    const was = this.current.deps.listener.limits;
    this.paths = this.paths.next(next, integrity, anomaly);
    if (this.connections.size > 0) this.armSweep();
    // HTTP/2 limits are a connection's SETTINGS: new connections get the new ones, open ones keep theirs
    if (this.h2 !== null && H2_LIMIT_KEYS.some((k) => was[k] !== next.limits[k])) {
      const old = this.h2;
      this.retiredH2.add(old);
      old.onEmpty(() => this.retiredH2.delete(old));
      // the next HTTP/2 connection makes a front with the new limits
      this.h2 = null;
    }
  }

  /** a gateway: its routes' targets got a first answer (or failed); undefined for a listener with one upstream */
  ready(): Promise<void> | undefined {
    return this.paths.ready?.();
  }

  /** a gateway: its routes, their endpoints and health; undefined for a listener with one upstream */
  routes(): RouteStatus[] | undefined {
    return this.paths.routes?.();
  }

  /** Stop the sweep, free the idle parsers and close the pools (idle upstream connections now, busy ones when their exchange ends). */
  close(): Promise<void> {
    if (this.sweep !== null) clearInterval(this.sweep);
    this.sweep = null;
    this.parsers.clear();
    return this.paths.close();
  }
}

/** What a listener with one upstream (inbound: the local app; outbound: the remote peer) builds its path from. */
export interface SingleUpstreamDeps extends Omit<
  RequestPathDeps,
  'pool' | 'route' | 'chain' | 'limits' | 'allow' | 'resign' | 'router' | 'upstreamHttp2'
> {
  /** opens one upstream connection */
  readonly dial: Dial;
  /**
   * HTTP/2 to the upstream, or null: `only` (an inbound listener's app over h2c) takes every
   * exchange; otherwise (an outbound listener's remote peer) the exchanges that came over HTTP/2
   */
  readonly h2: { readonly dial: SessionDial; readonly only: boolean; readonly scheme: 'http' | 'https' } | null;
  /** how long an idle upstream connection is kept */
  readonly keepAliveMs: number;
}

/**
 * One path and one pool: an inbound or outbound listener. A reload makes the next path from the
 * current one's dependencies with the new config (the pool kept; rate limiter and anomaly stage
 * kept when their settings are unchanged, so a reload that does not touch them keeps the learned
 * sizes and the buckets).
 */
export function singleUpstreamPaths(deps: SingleUpstreamDeps, context: PathContext): PathSet {
  const limits = deps.listener.limits;
  const timeoutMs = limits.upstreamTimeoutSeconds * 1000;
  const h2 =
    deps.h2 === null
      ? null
      : new H2Upstream(
          deps.h2.dial,
          { timeoutMs, keepAliveMs: deps.keepAliveMs, scheme: deps.h2.scheme, monotonic: deps.clock.monotonic },
          context.events,
        );
  const h1 = (): UpstreamPool =>
    new UpstreamPool(
      deps.dial,
      {
        maxConnections: limits.maxConnections,
        keepAliveMs: deps.keepAliveMs,
        timeoutMs,
        maxHeaderBytes: Math.max(MIN_RESPONSE_HEAD_BYTES, limits.maxHeaderBytes),
      },
      context.binding,
      context.events,
    );
  const pool: Upstream =
    h2 === null ? h1() : deps.h2!.only ? h2 : new ProtocolUpstream(h1(), h2, () => deps.clock.now());
  const pathFor = (base: Omit<RequestPathDeps, 'chain' | 'limits'>): RequestPath =>
    new RequestPath({
      ...base,
      chain:
        base.listener.mode === 'outbound' ? outboundChain(base.integrity) : inboundChain(base.integrity, base.shared),
      limits: base.listener.limits,
    });
  const set = (path: RequestPath): PathSet => ({
    entry: path,
    next(next, integrity, anomaly) {
      const d = path.deps;
      const was = d.listener;
      const sameRate =
        was.limits.requestsPerSecond === next.limits.requestsPerSecond && was.limits.burst === next.limits.burst;
      const sameAnomaly = isDeepStrictEqual(was.anomaly, next.anomaly);
      return set(
        pathFor({
          ...d,
          listener: next,
          integrity,
          rateLimiter: sameRate ? d.rateLimiter : rateLimiterFor(next.limits),
          anomaly: sameAnomaly ? d.anomaly : anomaly(),
        }),
      );
    },
    close: () => pool.close(),
  });
  return set(
    pathFor({
      ...deps,
      pool,
      route: DEFAULT_ROUTE,
      allow: null,
      resign: null,
      router: null,
      upstreamHttp2: h2 !== null,
    }),
  );
}

function pathOf(ex: Exchange, fallback: RequestPath): RequestPath {
  return (ex.owner as RequestPath | null) ?? fallback;
}
