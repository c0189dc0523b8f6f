/**
 * The data plane of one event loop, composed in this one place for the main thread and for
 * every worker thread: the integrity stages, then every configured listener, built and bound in
 * config order. A listener that cannot bind undoes the ones bound before it and stops the
 * integrity runtime: a data plane is all there or not there. What differs per thread is handed
 * in: where the key ring comes from and which replay cache to use, the TLS material and client
 * context, the lists failed handshakes and anomalies go to, whether ports are shared.
 */
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Config, ListenerMode } from '../config/types.ts';
import { formatHostPort } from '../config/hostPort.ts';
import type { Clock } from '../core/clock.ts';
import { StartupError } from '../core/errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { AccessLog } from '../telemetry/accessLog.ts';
import type { RecentHandshakes } from '../telemetry/recentHandshakes.ts';
import type { RecentAnomalies } from '../anomaly/recentAnomalies.ts';
import type { TlsMaterial } from '../tls/contexts.ts';
import type { TlsPolicy } from '../tls/policy.ts';
import { startIntegrity, type IntegrityDeps, type IntegrityRuntime } from '../integrity/integrityRuntime.ts';
import { createInboundListener, type InboundDeps, type InboundListener } from './inboundListener.ts';
import type { RouteStatus } from './pathSet.ts';
import { openSharedStore } from '../sharedState/sharedStore.ts';
import { createOutboundListener } from './outboundListener.ts';
import type { ListenOptions, Listener } from './listener.ts';
import type { LiveSettable } from './liveSettings.ts';

export interface DataPlaneDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  readonly clock: Clock;
  readonly policy: TlsPolicy;
  /** what inbound listeners start with; a later identity is set on each of `inbound` */
  readonly material: TlsMaterial;
  /** the client context (our certificate, the CA bundle, the policy) for an outbound listener's next upstream connection */
  readonly clientContext: () => SecureContext;
  /** the instance's session ticket keys (workers/ticketKeys.ts) */
  readonly ticketKeys: Buffer;
  readonly recentHandshakes: RecentHandshakes;
  readonly recentAnomalies: RecentAnomalies;
  /** where the key ring comes from and which replay cache to use (integrity/integrityRuntime.ts) */
  readonly keys: Pick<IntegrityDeps, 'replay' | 'keysFrom' | 'onKeys'>;
  /** with workers, every thread binds with reusePort */
  readonly listen: ListenOptions;
  /** named in a bind problem: the thread that could not bind (`worker 2`); nothing for the main thread */
  readonly thread?: string;
  /** how a gateway resolves its targets' names (tests bring their own DNS server); the system's when not given */
  readonly resolverFor?: InboundDeps['resolverFor'];
}

/** One listener of one thread, for /status and POST /drain. */
export interface ListenerStatus {
  readonly name: string;
  readonly mode: ListenerMode;
  readonly protocol: 'http' | 'tcp';
  /** "host:port" as bound (kept once the listener has closed) */
  readonly address: string;
  readonly connections: number;
  readonly accepting: boolean;
}

export interface DataPlane {
  /** in config order */
  readonly listeners: readonly Listener[];
  /** the inbound ones: what a new identity (TLS material) is set on */
  readonly inbound: readonly InboundListener[];
  readonly integrity: IntegrityRuntime;
  /** a reloaded config (validated): the keys a ring must hold, every listener's live settings, the access log switch */
  applyConfig(next: Config): void;
  setTicketKeys(keys: Buffer): void;
  /**
   * stop accepting on the listeners of one side (inbound: inbound and gateway listeners, which take requests from
   * peers; outbound: those of the local app) and finish what is in flight until `deadline`; true when nothing was cut
   */
  drain(side: 'inbound' | 'outbound', deadline: number): Promise<boolean>;
  /** every gateway listener's routes, their endpoints and health (GET /routes) */
  routes(): GatewayRoutes[];
  status(): ListenerStatus[];
  /** after drain: stop the integrity runtime (the key ring's watcher) */
  close(): void;
}

/** Start the integrity stages, build every listener and bind them all; a StartupError names what failed. */
export async function startDataPlane(config: Config, deps: DataPlaneDeps): Promise<DataPlane> {
  const { log, metrics, audit, clock, recentHandshakes } = deps;
  const integrityStart = await startIntegrity(config, { log, metrics, audit, clock, ...deps.keys });
  if (!integrityStart.ok) throw new StartupError('keys do not load', integrityStart.problems, true);
  const integrity = integrityStart.runtime;
  // the replicas' shared replay cache and buckets: one client per thread, connecting in the background (a request
  // that needs it before it answers is refused or answered locally, as onUnavailable says)
  const shared =
    config.sharedState === null
      ? null
      : await openSharedStore(config.sharedState, {
          log: log.child({ component: 'shared-state' }),
          metrics,
          audit,
          clock,
        });
  // the access log's switch: one per thread, flipped by a reload
  const accessLog = new AccessLog(config.log.access);
  let listeners: Array<Listener & LiveSettable>;
  let addresses: readonly string[];
  try {
    listeners = config.listeners.map((l) => {
      const common = {
        config: l,
        metrics,
        audit,
        log: log.child({ listener: l.name }),
        clock,
        integrity: integrity.stageFor(l),
        accessLog,
        recentHandshakes,
      };
      if (l.mode === 'outbound') return createOutboundListener({ ...common, clientContext: deps.clientContext });
      const { policy, material, recentAnomalies, ticketKeys, clientContext, resolverFor } = deps;
      // a gateway is an inbound listener whose requests are routed: it also originates (upstreamTls) and resolves names
      return createInboundListener({
        ...common,
        shared,
        policy,
        material,
        recentAnomalies,
        ticketKeys,
        ...(l.mode === 'gateway'
          ? { integrityFor: (settings) => integrity.stageFor({ integrity: settings }), clientContext, resolverFor }
          : {}),
      });
    });
    addresses = await bindAll(config, listeners, deps);
  } catch (err) {
    integrity.close();
    await shared?.close();
    throw err;
  }
  const inbound = listeners.filter((l): l is InboundListener => l.mode === 'inbound');

  return {
    listeners,
    inbound,
    integrity,
    applyConfig(next) {
      integrity.useListeners(next.listeners);
      listeners.forEach((l, i) => {
        // a reload never changes the set of listeners (that needs a restart: config/reloadPlan.ts)
        const c = next.listeners[i];
        if (c !== undefined) l.applyLive(c, integrity.stageFor(c));
      });
      accessLog.enabled = next.log.access;
    },
    setTicketKeys(keys) {
      for (const l of inbound) l.setTicketKeys(keys);
    },
    async drain(side, deadline) {
      const results = await Promise.all(
        listeners.filter((l) => (l.mode === 'outbound') === (side === 'outbound')).map((l) => l.drain(deadline)),
      );
      return results.every(Boolean);
    },
    status: () =>
      listeners.map((l, i) => ({
        ...identify(l),
        address: addresses[i]!,
        connections: l.connections(),
        accepting: !l.draining(),
      })),
    routes: () =>
      listeners.flatMap((l) => {
        const routes = l.routes();
        return routes === undefined ? [] : [{ listener: l.name, routes }];
      }),
    close: () => {
      integrity.close();
      void shared?.close();
    },
  };
}

/** One gateway listener's routes, as GET /routes lists them. */
export interface GatewayRoutes {
  readonly listener: string;
  readonly routes: readonly RouteStatus[];
}

function identify(l: Listener): Pick<ListenerStatus, 'name' | 'mode' | 'protocol'> {
  return { name: l.name, mode: l.mode, protocol: l.protocol };
}

/**
 * Bind every listener in config order and return the addresses they got (port 0 resolved); the
 * first that cannot bind closes those bound before it and fails the start.
 */
async function bindAll(config: Config, listeners: readonly Listener[], deps: DataPlaneDeps): Promise<string[]> {
  const addresses: string[] = [];
  try {
    for (const l of listeners) {
      await l.start(deps.listen);
      addresses.push(formatHostPort(l.address()));
    }
    return addresses;
  } catch (err) {
    const bound = addresses.length;
    await Promise.all(listeners.slice(0, bound).map((l) => l.drain(Date.now())));
    const failed = config.listeners[bound]!;
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    const where = deps.thread === undefined ? '' : ` (${deps.thread})`;
    throw new StartupError(
      `listener ${failed.name} cannot listen`,
      [`listeners[${bound}].listen: ${formatHostPort(failed.listen)}: ${code}${where}`],
      false,
    );
  }
}
