import type { RouteConfig, ListenerConfig } from '../config/types.ts';
import type { IntegrityStage } from '../integrity/integrityStage.ts';
import type { AnomalyStage } from '../anomaly/anomalyStage.ts';
import type { HttpParserBinding } from '../http1/parserBinding.ts';
import type { UpstreamEvents } from '../http1/upstreamConnection.ts';
import type { EndpointStatus } from '../gateway/routeUpstream.ts';
import type { TargetStatus } from '../gateway/targetResolver.ts';
import type { RequestPath } from './requestPath.ts';

/**
 * What a listener's HTTP service holds: its request paths (one path and pool for an inbound or
 * outbound listener, proxy/httpService.ts; a gateway's own path and its routes,
 * proxy/gatewayPaths.ts), replaced whole by a config reload.
 */
/** A listener's request paths, replaced whole by a config reload. */
export interface PathSet {
  /** where every exchange starts (a gateway's own chain hands it to the route's path) */
  readonly entry: RequestPath;
  /** the set for a reloaded listener config: what did not change (pools, buckets, learned sizes) carried over */
  next(config: ListenerConfig, integrity: IntegrityStage | null, anomaly: () => AnomalyStage | null): PathSet;
  /** close every upstream pool (idle connections now, busy ones when their exchange ends) */
  close(): Promise<void>;
  /** a gateway: every route's targets got a first answer (or failed) */
  ready?(): Promise<void>;
  /** a gateway: its routes, their endpoints and health */
  routes?(): RouteStatus[];
}

/** The upstream side every path set is built with: the parser binding and the events of its pools. */
export interface PathContext {
  readonly binding: HttpParserBinding;
  readonly events: UpstreamEvents;
}

/** an upstream's response head may be this large (the local app's framework decides, not our client limit) */
export const MIN_RESPONSE_HEAD_BYTES = 64 * 1024;

/** One route as GET /routes shows it. */
export interface RouteStatus {
  readonly name: string;
  readonly match: RouteConfig['match'];
  readonly allow: RouteConfig['allow'];
  readonly integrity: RouteConfig['integrity'];
  readonly upstreamTls: boolean;
  /** how the route speaks to its targets: http1, h2c or h2 */
  readonly targetProtocol: string;
  readonly targets: readonly TargetStatus[];
  readonly endpoints: readonly EndpointStatus[];
}
