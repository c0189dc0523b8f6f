import { isDeepStrictEqual } from 'node:util';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { deny } from '../core/decision.ts';
import { canonicalPath } from '../core/canonicalPath.ts';
import { UNROUTED_ROUTE } from '../core/routeLabels.ts';
import type { ListenerConfig, ListenerIntegrityConfig, RouteConfig } from '../config/types.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import type { RecentHandshakes } from '../telemetry/recentHandshakes.ts';
import type { RecentAnomalies } from '../anomaly/recentAnomalies.ts';
import type { AnomalyStage } from '../anomaly/anomalyStage.ts';
import type { IntegrityStage } from '../integrity/integrityStage.ts';
import { compileAllow, compileVerify } from '../policy/authz.ts';
import { UpstreamPool, type Upstream } from '../http1/upstreamPool.ts';
import { RouteMatcher } from '../gateway/routeMatch.ts';
import { formatHostPort } from '../config/hostPort.ts';
import { RouteUpstream, type EndpointPool } from '../gateway/routeUpstream.ts';
import { dialH2c, H2Upstream, sessionOver } from '../http2/h2Upstream.ts';
import { H2Refused } from '../http2/protocolUpstream.ts';
import { TargetResolver, type ResolvedEndpoint, type TargetResolverDeps } from '../gateway/targetResolver.ts';
import { GATEWAY_CHAIN, RequestPath, routeChain, type RequestPathDeps } from './requestPath.ts';
import { MIN_RESPONSE_HEAD_BYTES, type PathContext, type PathSet, type RouteStatus } from './pathSet.ts';
import { anomalyStageFor, rateLimiterFor } from './requestLimits.ts';
import { dialPlain } from './plainDial.ts';
import { createUpstreamTls, type UpstreamTls } from './upstreamTls.ts';

/**
 * A gateway listener's request paths: its own (authorized at the handshake, well-formed, routed
 * on the canonical path) and one per route, each with the route's policy (allow-list, limits,
 * rate, integrity, anomaly) and its upstream (the endpoints its targets resolve to, balanced,
 * with passive health). A reload builds the next set as a whole: a route whose upstream settings
 * did not change keeps its endpoints (pools, health, DNS answers), its buckets and learned sizes;
 * the upstreams of routes that went away or changed close once their exchanges end.
 */
export interface GatewayDeps extends Pick<
  RequestPathDeps,
  | 'listener'
  | 'metrics'
  | 'log'
  | 'clock'
  | 'refusals'
  | 'setPeerHeader'
  | 'isDraining'
  | 'upgrades'
  | 'accessLog'
  | 'shared'
> {
  readonly audit: AuditSink;
  readonly recentAnomalies?: RecentAnomalies;
  readonly recentHandshakes: RecentHandshakes;
  /** a route's verify or re-sign stage from its integrity settings; none when not given (no keys) */
  readonly integrityFor?: (integrity: ListenerIntegrityConfig) => IntegrityStage | null;
  /** our client certificate for mTLS origination (upstreamTls) */
  readonly clientContext?: () => SecureContext;
  /** name resolution for targets (tests bring their own DNS server); the system's when not given */
  readonly resolverFor?: Pick<TargetResolverDeps, 'resolver' | 'lookup'>;
}

export interface GatewayPathSet extends PathSet {
  routes(): RouteStatus[];
  /** every route's targets got a first answer (or failed) */
  ready(): Promise<void>;
}

/** What a route keeps across a reload when its upstream settings stay the same. */
interface RouteUpstreamState {
  readonly settings: unknown;
  readonly upstream: RouteUpstream;
  readonly resolver: TargetResolver;
  readonly started: Promise<void>;
}

interface RouteState {
  readonly config: RouteConfig;
  readonly path: RequestPath;
  readonly upstream: RouteUpstreamState;
}

export function gatewayPaths(deps: GatewayDeps, context: PathContext): GatewayPathSet {
  return pathSet(deps, context, build(deps, context, deps.listener, new Map()));
}

/** a built set of routes as the PathSet the HTTP service holds; `next` builds the following one from it */
function pathSet(deps: GatewayDeps, context: PathContext, built: Built): GatewayPathSet {
  const { entry, routes } = built;
  return {
    entry,
    next(config) {
      const following = build(deps, context, config, new Map(routes.map((r) => [r.config.name, r])));
      // upstreams no route of the new set uses close once their exchanges end (those in flight finish on this set)
      const kept = new Set(following.routes.map((r) => r.upstream));
      for (const r of routes) if (!kept.has(r.upstream)) void closeUpstream(r.upstream);
      return pathSet(deps, context, following);
    },
    close: async () => {
      await Promise.all(routes.map((r) => closeUpstream(r.upstream)));
    },
    routes: () =>
      routes.map((r) => ({
        name: r.config.name,
        match: r.config.match,
        allow: r.config.allow,
        integrity: r.config.integrity,
        upstreamTls: r.config.upstreamTls !== null,
        targetProtocol: r.config.targetProtocol,
        targets: r.upstream.resolver.status(),
        endpoints: r.upstream.upstream.status(),
      })),
    // bounded: a DNS server that does not answer delays the start by at most this, then its routes answer 502 until it does
    ready: () => within(READY_WAIT_MS, Promise.all(routes.map((r) => r.upstream.started))),
  };
}

interface Built {
  readonly entry: RequestPath;
  readonly routes: readonly RouteState[];
}

function build(
  deps: GatewayDeps,
  context: PathContext,
  listener: ListenerConfig,
  previous: ReadonlyMap<string, RouteState>,
): Built {
  const base = { ...deps, listener, hostOverride: null };
  const routes: RouteState[] = listener.routes.map((config) => {
    const was = previous.get(config.name);
    const settings = upstreamSettings(config);
    const upstream =
      was !== undefined && isDeepStrictEqual(was.upstream.settings, settings)
        ? was.upstream
        : startUpstream(deps, context, listener, config, settings);
    const sameRate =
      was !== undefined &&
      was.config.limits.requestsPerSecond === config.limits.requestsPerSecond &&
      was.config.limits.burst === config.limits.burst;
    const sameAnomaly = was !== undefined && isDeepStrictEqual(was.config.anomaly, config.anomaly);
    const verify = deps.integrityFor?.({ verify: config.integrity.verify, sign: false, keyId: null }) ?? null;
    const resign = config.integrity.sign
      ? (deps.integrityFor?.({ verify: false, sign: true, keyId: config.integrity.keyId }) ?? null)
      : null;
    const path = new RequestPath({
      ...base,
      route: config.name,
      chain: routeChain(verify, deps.shared),
      upstreamHttp2: config.targetProtocol !== 'http1',
      limits: config.limits,
      pool: upstream.upstream,
      integrity: verify,
      resign: resign?.kind === 'sign' ? resign : null,
      allow: config.allow === null ? null : compileAllow(config.allow),
      router: null,
      rateLimiter: sameRate ? was.path.deps.rateLimiter : rateLimiterFor(config.limits),
      anomaly: sameAnomaly ? was.path.deps.anomaly : routeAnomaly(deps, listener, config),
    });
    return { config, path, upstream };
  });

  const matcher = new RouteMatcher(listener.routes.map((r) => r.match));
  const entry = new RequestPath({
    ...base,
    route: UNROUTED_ROUTE,
    shared: null,
    chain: GATEWAY_CHAIN,
    upstreamHttp2: false,
    limits: listener.limits,
    pool: NO_UPSTREAM,
    integrity: null,
    resign: null,
    allow: null,
    anomaly: null,
    rateLimiter: null,
    router(ex) {
      const canonical = canonicalPath(ex.target);
      if (!canonical.ok) return deny('ERR_BAD_PATH', canonical.detail);
      const i = matcher.match(ex.framing.host, canonical.path, ex.method);
      return i < 0 ? DENY_NO_ROUTE : routes[i]!.path;
    },
  });
  return { entry, routes };
}

/** what a route's upstream is made from: a change of any of these makes a new one */
function upstreamSettings(r: RouteConfig): unknown {
  return {
    targets: r.targets,
    dnsRefreshSeconds: r.dnsRefreshSeconds,
    upstreamTls: r.upstreamTls,
    targetProtocol: r.targetProtocol,
    passiveHealth: r.passiveHealth,
    upstreamTimeoutSeconds: r.limits.upstreamTimeoutSeconds,
  };
}

function startUpstream(
  deps: GatewayDeps,
  context: PathContext,
  listener: ListenerConfig,
  route: RouteConfig,
  settings: unknown,
): RouteUpstreamState {
  const log: Logger = deps.log.child({ route: route.name });
  const timeoutMs = route.limits.upstreamTimeoutSeconds * 1000;
  const tlsByName = new Map<string, UpstreamTls>();
  const tlsFor = (serverName: string): UpstreamTls => {
    let t = tlsByName.get(serverName);
    if (t === undefined) {
      const clientContext = deps.clientContext;
      if (clientContext === undefined) throw new Error('upstreamTls needs the client context');
      t = createUpstreamTls({
        serverName,
        verify: compileVerify(route.upstreamTls!.verify),
        secureContext: clientContext,
        connectTimeoutMs: timeoutMs,
        telemetry: { listener: listener.name, metrics: deps.metrics, recent: deps.recentHandshakes, clock: deps.clock },
      });
      tlsByName.set(serverName, t);
    }
    return t;
  };
  const ejections = deps.metrics.endpointEjections.labels(listener.name, route.name);
  const upstream = new RouteUpstream({
    route: route.name,
    health: route.passiveHealth,
    clock: deps.clock,
    log,
    onHealth: (_endpoint, event) => {
      if (event === 'ejected') ejections.inc();
    },
    poolFor: (endpoint: ResolvedEndpoint): EndpointPool => {
      const tls = route.upstreamTls;
      const serverName = tls === null ? null : (tls.serverName ?? endpoint.targetHost);
      // a service behind the gateway (Node's http server keeps idle connections 5 s); a remote tollgate keeps them longer
      const keepAliveMs = serverName === null ? 4_000 : 30_000;
      if (route.targetProtocol !== 'http1') {
        const authority = formatHostPort({ host: endpoint.targetHost, port: endpoint.port });
        return new H2Upstream(
          serverName === null
            ? dialH2c(endpoint.address, endpoint.port, timeoutMs)
            : (done) =>
                tlsFor(serverName).dial(
                  endpoint.address,
                  endpoint.port,
                  (err, socket) => {
                    if (err !== null || socket === null) return done(err ?? new Error('no socket'), null);
                    if (socket.alpnProtocol !== 'h2') {
                      socket.destroy();
                      return done(new H2Refused(socket.alpnProtocol ?? false), null);
                    }
                    sessionOver(`https://${authority}`, socket, timeoutMs, done);
                  },
                  H2_ONLY,
                ),
          { timeoutMs, keepAliveMs, scheme: serverName === null ? 'http' : 'https', monotonic: deps.clock.monotonic },
          context.events,
        );
      }
      return new UpstreamPool(
        serverName === null
          ? (done) => dialPlain(endpoint.address, endpoint.port, timeoutMs, done)
          : (done) => tlsFor(serverName).dial(endpoint.address, endpoint.port, done),
        {
          maxConnections: listener.limits.maxConnections,
          keepAliveMs,
          timeoutMs,
          maxHeaderBytes: Math.max(MIN_RESPONSE_HEAD_BYTES, listener.limits.maxHeaderBytes),
        },
        context.binding,
        context.events,
      );
    },
  });
  const resolver = new TargetResolver({
    targets: route.targets,
    refreshMs: route.dnsRefreshSeconds * 1000,
    log,
    onChange: (endpoints) => upstream.setEndpoints(endpoints),
    ...deps.resolverFor,
  });
  // IP literals are endpoints at once; names join as they resolve
  upstream.setEndpoints(resolver.current());
  const started = resolver.start().then(() => upstream.setEndpoints(resolver.current()));
  return { settings, upstream, resolver, started };
}

function closeUpstream(u: RouteUpstreamState): Promise<void> {
  u.resolver.close();
  return u.upstream.close();
}

function routeAnomaly(deps: GatewayDeps, listener: ListenerConfig, route: RouteConfig): AnomalyStage | null {
  return anomalyStageFor({
    config: { ...listener, anomaly: route.anomaly },
    metrics: deps.metrics,
    audit: deps.audit,
    clock: deps.clock,
    log: deps.log,
    ...(deps.recentAnomalies === undefined ? {} : { recentAnomalies: deps.recentAnomalies }),
  });
}

const DENY_NO_ROUTE = deny('ERR_NO_ROUTE');
/** how long a gateway's start waits for its targets' first answers */
const READY_WAIT_MS = 5_000;
/** a route that says `targetProtocol: "h2"` offers only h2: a target without it fails the handshake */
const H2_ONLY: readonly string[] = ['h2'];

function within(ms: number, work: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    void work.finally(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The gateway's own path never sends upstream: it hands every exchange to a route or refuses it. */
const NO_UPSTREAM: Upstream = {
  acquire: (done) => done(new Error('the gateway path has no upstream'), null),
  fresh: (done) => done(new Error('the gateway path has no upstream'), null),
  release: (conn, reusable) => conn.owner.release(conn, reusable),
  answered: () => undefined,
  failedOn: () => undefined,
  close: () => Promise.resolve(),
};
