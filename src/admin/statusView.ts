/**
 * The admin API's view of a sidecar (admin/app.ts answers from it): /status, /certs, /config,
 * the recent lists, /audit/head, and what POST /reload, /drain and /shutdown do. It reads the
 * sidecar's parts when asked: while the sidecar starts, the identity and the listeners are not
 * there yet and the view says so (no identity, no listeners, not ready).
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import type { Readiness } from '../core/readiness.ts';
import type { Config } from '../config/types.ts';
import type { IdentityRuntime } from '../certs/identityRuntime.ts';
import { notAfter, notBefore } from '../certs/pem.ts';
import type { RecentHandshakes } from '../telemetry/recentHandshakes.ts';
import type { RecentAnomalies } from '../anomaly/recentAnomalies.ts';
import type { AdminAuditHead, AdminDrainResult, AdminReloadResult, AdminView } from './app.ts';
import { certReport } from './certReport.ts';
import { configView } from './configView.ts';
import { routesView, type GatewayState } from './routesView.ts';

/** One listener of one thread as its data plane reports it. */
export interface ListenerState {
  readonly name: string;
  readonly mode: 'inbound' | 'outbound' | 'gateway';
  readonly protocol: 'http' | 'tcp';
  /** "host:port" as bound */
  readonly address: string;
  readonly connections: number;
  readonly accepting: boolean;
}

export interface StatusSources {
  readonly version: string;
  /** epoch ms */
  readonly startedAt: number;
  readonly clock: Clock;
  readonly log: Logger;
  readonly readiness: Readiness;
  /** event loops serving the listeners: the main thread and workers - 1 worker threads */
  readonly workers: number;
  /** the identity files named at start (they cannot change while running) */
  readonly identityFiles: Pick<Config['identity'], 'certFile' | 'caFile' | 'crlFile'>;
  readonly recentHandshakes: RecentHandshakes;
  readonly recentAnomalies: RecentAnomalies;
  /** the config in use */
  config(): Config;
  /** null until the identity has loaded */
  identity(): IdentityRuntime | null;
  /** the main thread's listeners, in config order (none until they are bound) */
  listeners(): readonly ListenerState[];
  /** the main thread's gateway routes (none without a gateway listener) */
  routes(): readonly GatewayState[];
  /** each worker thread's gateway routes */
  workerRoutes(): Promise<ReadonlyArray<readonly GatewayState[]>>;
  /** each worker thread's listeners (a thread that does not answer reports none) */
  workerListeners(): Promise<ReadonlyArray<ReadonlyArray<Pick<ListenerState, 'name' | 'connections'>>>>;
  auditHead(): AdminAuditHead | null;
  reload(): Promise<AdminReloadResult>;
  /** start draining (or see the drain under way) */
  drain(trigger: 'admin'): { readonly started: boolean; readonly deadline: number };
  /** stop the process as SIGTERM does (asked at most once) */
  shutdown(): void;
}

export function statusView(s: StatusSources): AdminView {
  let shutdownRequested = false;
  return {
    status: () => status(s),
    reload: () => s.reload(),
    certs: () => {
      const identity = s.identity();
      return identity === null
        ? { loadedAt: null, files: null, certificates: [] }
        : certReport(identity.current(), s.identityFiles, s.clock.now());
    },
    config: () => configView(s.config()),
    handshakes: () => ({
      capacity: s.recentHandshakes.capacity,
      total: s.recentHandshakes.count,
      entries: s.recentHandshakes.list(),
    }),
    anomalies: () => ({ total: s.recentAnomalies.count, entries: s.recentAnomalies.list() }),
    auditHead: () => s.auditHead(),
    routes: async () => routesView(s.routes(), await s.workerRoutes()),
    drain: (): AdminDrainResult => {
      const d = s.drain('admin');
      return {
        started: d.started,
        draining: true,
        ready: s.readiness.ready(),
        deadline: new Date(d.deadline).toISOString(),
        listeners: s.listeners().map((l) => ({ name: l.name, accepting: l.accepting, connections: l.connections })),
      };
    },
    shutdown: () => {
      if (shutdownRequested) return;
      shutdownRequested = true;
      s.log.info('shutdown requested through the admin API');
      s.shutdown();
    },
  };
}

/** GET /status: versions, uptime, readiness and why, the identity and its certificate, every listener with every thread's connections. */
async function status(s: StatusSources): Promise<Record<string, unknown>> {
  const threads = await s.workerListeners();
  const identity = s.identity();
  const leaf = identity?.current().leaf;
  const now = s.clock.now();
  return {
    version: s.version,
    node: process.versions.node,
    openssl: process.versions.openssl,
    startedAt: new Date(s.startedAt).toISOString(),
    uptimeSeconds: Math.round((now - s.startedAt) / 1000),
    ready: s.readiness.ready(),
    reasons: s.readiness.reasons(),
    draining: s.readiness.draining(),
    identity: identity?.status() ?? null,
    certificate:
      leaf === undefined
        ? null
        : {
            notBefore: notBefore(leaf).toISOString(),
            notAfter: notAfter(leaf).toISOString(),
            daysLeft: Math.round(((notAfter(leaf).getTime() - now) / 86_400_000) * 100) / 100,
            valid: notBefore(leaf).getTime() <= now && now < notAfter(leaf).getTime(),
          },
    lastReload: identity?.status().lastReload ?? null,
    listeners: s.listeners().map((l) => ({
      name: l.name,
      mode: l.mode,
      protocol: l.protocol,
      address: l.address,
      accepting: l.accepting,
      connections:
        l.connections + threads.reduce((n, t) => n + (t.find((w) => w.name === l.name)?.connections ?? 0), 0),
    })),
    workers: s.workers,
  };
}
