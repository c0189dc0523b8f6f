import { Registry } from './telemetry/promClient.ts';
import type { Logger } from 'pino';
import type { Config } from './config/types.ts';
import { createReloader, type SidecarReloadOutcome } from './reload.ts';
import { systemClock, type Clock } from './core/clock.ts';
import { StartupError } from './core/errors.ts';
import { createReadiness, type Readiness } from './core/readiness.ts';
import { createLifecycle, type Lifecycle } from './lifecycle.ts';
import { watchFileContents } from './core/fileContentWatch.ts';
import { VERSION } from './version.ts';
import { createLogger } from './telemetry/logger.ts';
import { collectRuntimeMetrics, createMetrics, type Metrics } from './telemetry/metrics.ts';
import { logAuditSink, type AuditSink } from './telemetry/audit.ts';
import { startAuditLog, type AuditLog } from './telemetry/auditLog.ts';
import { initialiseSeries } from './telemetry/metricSeries.ts';
import { RecentHandshakes } from './telemetry/recentHandshakes.ts';
import { RecentAnomalies } from './anomaly/recentAnomalies.ts';
import {
  startIdentity,
  type IdentityRuntime,
  type IdentityTiming,
  type ReloadOutcome,
  type ReloadTrigger,
} from './certs/identityRuntime.ts';
import { tlsPolicy, type TlsPolicy } from './tls/policy.ts';
import type { TlsMaterial } from './tls/contexts.ts';
import { startDataPlane, type DataPlane, type DataPlaneDeps } from './proxy/dataPlane.ts';
import type { Listener } from './proxy/listener.ts';
import { loadHttpParser, ParserUnavailableError } from './http1/parserBinding.ts';
import type { StatusSources } from './admin/statusView.ts';
import type { AdminAuditHead } from './admin/app.ts';
import type { ServerAddresses } from './admin/servers.ts';
import { resolveWorkers, reusePortSupported } from './workers/cpuQuota.ts';
import { rotateTicketKeys, type TicketKeys } from './workers/ticketKeys.ts';
import { AggregateRegistry } from './workers/aggregateRegistry.ts';
import { sharedReplayFor, startWorkers } from './workers/startWorkers.ts';
import type { SharedReplayCache } from './integrity/sharedReplayCache.ts';
import type { WorkerPool } from './workers/pool.ts';

/**
 * The composition root: config + dependencies -> a running sidecar. Creates the registry,
 * logger and clock unless handed them (tests pass fresh ones), starts the admin server (so a
 * probe sees /readyz 503 while starting), loads and validates the identity, starts the data
 * plane of every thread, and returns the handle main's callers drive: ready, reload(), shutdown().
 */
export interface SidecarDeps {
  readonly log?: Logger;
  readonly registry?: Registry;
  readonly clock?: Clock;
  readonly audit?: AuditSink;
  /** identity watch debounce and check intervals (tests shorten them) */
  readonly identityTiming?: IdentityTiming;
  /**
   * POST /shutdown calls this (once) after answering: the CLI passes what a SIGTERM does, so
   * the process drains and exits with its usual code. Without it, the sidecar shuts itself
   * down in-process (the process stays).
   */
  readonly requestShutdown?: () => void;
  /** the audit log's head for /audit/head; absent or null: 404 "no audit log configured" */
  readonly auditHead?: () => AdminAuditHead | null;
  /**
   * With workers: a worker thread died. The CLI drains what is left and exits 1 (fail closed);
   * without it, the sidecar shuts itself down in-process.
   */
  readonly workerFailed?: (problem: string) => void;
  /** how the main thread's gateway listeners resolve their targets' names (tests bring a DNS server); the system's otherwise */
  readonly resolverFor?: DataPlaneDeps['resolverFor'];
}

export interface Sidecar {
  /** the config in use: the one started with, or the last one a reload applied */
  readonly config: Config;
  /** event loops serving the listeners: the main thread and workers - 1 worker threads */
  readonly workers: number;
  readonly log: Logger;
  /** the main thread's metrics (with workers, /metrics serves the aggregate of every thread) */
  readonly metrics: Metrics;
  readonly listeners: readonly Listener[];
  /** the admin server's address, when one is configured */
  readonly admin: { host: string; port: number } | null;
  /** the health server's address, when one is configured */
  readonly health: { host: string; port: number } | null;
  readonly readiness: Readiness;
  ready(): boolean;
  /**
   * Reload: the config file (when started from one; its live settings swapped as one snapshot,
   * or nothing at all when it has a problem or a change that needs a restart), keys and
   * certificates. On any problem the old ones stay; ignored while draining.
   */
  reload(trigger?: ReloadTrigger): Promise<SidecarReloadOutcome>;
  /**
   * Start draining (readiness 503, inbound listeners stop accepting at once, outbound ones once
   * inbound is drained, in-flight requests finish until drainTimeoutSeconds); the admin server
   * stays up. Repeating it changes nothing. Resolves with shutdown()'s `clean` once drained.
   */
  drain(trigger?: string): Promise<boolean>;
  /** drain every listener (inbound first, outbound after, so the app can finish sending), then stop; true when nothing in flight was cut */
  shutdown(): Promise<boolean>;
  /** failed handshakes and refused peers, for /handshakes/recent */
  readonly recentHandshakes: RecentHandshakes;
  /** flagged payload anomalies of every inbound listener, for /anomalies/recent */
  readonly recentAnomalies: RecentAnomalies;
  /** find a listener by name */
  listener(name: string): Listener | undefined;
}

export type { SidecarReloadOutcome } from './reload.ts';

/** The sidecar's parts as startup fills them in: the admin API answers from whatever is there. */
interface Parts {
  /** the config in use; a reload replaces it whole (its live parts only: config/reloadPlan.ts) */
  config: Config;
  identity: IdentityRuntime | null;
  plane: DataPlane | null;
  pool: WorkerPool | null;
  /** set once everything has started */
  reload: ((trigger: ReloadTrigger) => Promise<SidecarReloadOutcome>) | null;
}

/** What the steps of one start share: made once in startSidecar, handed to each step. */
interface Scope {
  /** the config started with */
  readonly config: Config;
  readonly deps: SidecarDeps;
  /** the main thread and workers - 1 worker threads */
  readonly eventLoops: number;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly audit: Audit;
  readonly policy: TlsPolicy;
  readonly readiness: Readiness;
  readonly recentHandshakes: RecentHandshakes;
  readonly recentAnomalies: RecentAnomalies;
  readonly lifecycle: Lifecycle;
  readonly parts: Parts;
  /** one set of session ticket keys for every thread, rotated (workers/ticketKeys.ts) */
  readonly tickets: TicketKeys;
}

const STARTING: ReloadOutcome = Object.freeze({
  ok: false,
  problems: Object.freeze(['tollgate is starting; reload is not available yet']),
  changed: false,
  ignored: 'starting',
});

export async function startSidecar(config: Config, deps: SidecarDeps = {}): Promise<Sidecar> {
  const eventLoops = eventLoopsFor(config);
  const log = deps.log ?? createLogger({ level: config.log.level });
  const registry = deps.registry ?? new Registry();
  const metrics = startMetrics(registry, config);
  const audit = await startAudit(config, deps.audit, log, metrics);
  const readiness = createReadiness();
  const parts: Parts = { config, identity: null, plane: null, pool: null, reload: null };
  const drainTimeoutMs = (): number => parts.config.drainTimeoutSeconds * 1000;
  const lifecycle = createLifecycle({ readiness, audit: audit.sink, log, drainTimeoutMs, closeAudit: audit.close });
  const scope: Scope = {
    config,
    deps,
    eventLoops,
    clock: deps.clock ?? systemClock,
    log,
    metrics,
    audit,
    policy: tlsPolicy(config.tls.minVersion),
    readiness,
    recentHandshakes: new RecentHandshakes(),
    recentAnomalies: new RecentAnomalies(),
    lifecycle,
    parts,
    tickets: sharedTicketKeys(parts, lifecycle),
  };
  // with workers, /metrics and the health server serve every thread's registry merged
  const served =
    eventLoops > 1 ? new AggregateRegistry(registry, () => parts.pool?.metrics() ?? Promise.resolve([])) : registry;
  let servers: ServerAddresses;
  try {
    // the admin and health servers first, so a probe sees /readyz 503 while the rest starts
    servers = await startServersIfConfigured(scope, served);
    const identity = await startIdentityOf(scope);
    const replay = sharedReplayFor(config, eventLoops, scope.clock);
    const plane = await startMainDataPlane(scope, identity, replay);
    const pool = eventLoops > 1 ? await startWorkerThreads(scope, identity, plane, replay) : null;
    // from now on a new identity reaches every inbound listener of every thread
    identity.activate([
      ...plane.inbound,
      ...(pool === null ? [] : [{ setTlsMaterial: (m: TlsMaterial) => pool.setMaterial(m) }]),
    ]);
    readiness.markListenersBound();
  } catch (err) {
    await lifecycle.abort();
    throw err;
  }
  const sidecar = runningSidecar(scope, servers);
  audit.sink.record('start', { version: VERSION, listeners: sidecar.listeners.map((l) => l.name) });
  const listening = parts
    .plane!.status()
    .map(({ name, mode, protocol, address }) => ({ name, mode, protocol, address }));
  log.info({ listeners: listening, postQuantum: scope.policy.postQuantum, workers: eventLoops }, 'tollgate started');
  return sidecar;
}

/** Event loops that will serve the listeners, once this Node.js is known to run them (a StartupError if not). */
function eventLoopsFor(config: Config): number {
  const eventLoops = resolveWorkers(config.workers);
  if (eventLoops > 1 && !reusePortSupported()) {
    const problem = `workers: ${eventLoops} event loops share their ports with reusePort, which needs Node.js 22.12+ (this is ${process.versions.node})`;
    throw new StartupError('configuration asks for what this Node.js cannot do', [problem], true);
  }
  if (config.listeners.some((l) => l.protocol === 'http')) {
    // the HTTP/1.1 core runs on Node's own llhttp binding, internal to Node: a wrong runtime is refused in one line
    try {
      loadHttpParser();
    } catch (err) {
      if (err instanceof ParserUnavailableError)
        throw new StartupError('this Node.js cannot run the HTTP listeners', [err.message], false);
      throw err;
    }
  }
  return eventLoops;
}

/** The metrics, every series at 0 from the start, and the process_ and nodejs_ runtime metrics. */
function startMetrics(registry: Registry, config: Config): Metrics {
  const metrics = createMetrics(registry);
  initialiseSeries(metrics, config, VERSION);
  collectRuntimeMetrics(registry);
  return metrics;
}

interface Audit {
  readonly sink: AuditSink;
  /** the hash-chained file, when audit.file is set (and no sink was handed in) */
  readonly file: AuditLog | null;
  /** written and fsync'd before the process exits: no event is lost on SIGTERM */
  close(): Promise<void>;
}

/** The sink handed in (tests), else with audit.file the hash-chained, MACed file, else one log line per event. */
async function startAudit(config: Config, given: AuditSink | undefined, log: Logger, metrics: Metrics): Promise<Audit> {
  if (given !== undefined) return { sink: given, file: null, close: () => given.flush() };
  const count = (type: Parameters<AuditSink['record']>[0]): void => void metrics.auditEvents.labels(type).inc();
  const started = await startAuditLog(config.audit, {
    log: log.child({ component: 'audit' }),
    count,
    countDropped: () => metrics.auditDropped.inc(),
  });
  if (!started.ok) throw new StartupError('the audit log cannot start', started.problems, true);
  const file = started.log;
  if (file !== null) return { sink: file, file, close: () => file.close() };
  const sink = logAuditSink(log.child({ component: 'audit' }), count);
  return { sink, file: null, close: () => sink.flush() };
}

/** Session ticket keys made now and rotated on every thread's inbound listeners; the rotation stops with the sidecar. */
function sharedTicketKeys(parts: Parts, lifecycle: Lifecycle): TicketKeys {
  const tickets = rotateTicketKeys((keys) => {
    parts.plane?.setTicketKeys(keys);
    parts.pool?.setTicketKeys(keys);
  });
  lifecycle.onStop(() => tickets.stop());
  return tickets;
}

/** Without a CLI to ask (tests, the demo), POST /shutdown and a dead worker stop the sidecar in-process, once it has started. */
function shutdownInProcess(scope: Scope): void {
  if (scope.parts.reload !== null) void scope.lifecycle.shutdown();
}

/** The admin and health servers when configured: only then are src/admin/ and fastify loaded. */
async function startServersIfConfigured(scope: Scope, registry: Registry): Promise<ServerAddresses> {
  const { config, log, readiness, metrics, lifecycle } = scope;
  if (config.admin.listen === null && config.health.listen === null) return { admin: null, health: null };
  const [{ startServers }, { statusView }] = await Promise.all([
    import('./admin/servers.ts'),
    import('./admin/statusView.ts'),
  ]);
  const view = statusView(statusSources(scope));
  return startServers(config, {
    log,
    registry,
    readiness,
    view,
    metrics,
    audit: scope.audit.sink,
    onStop: (stop) => lifecycle.onStop(stop),
  });
}

/** What the admin API's view (admin/statusView.ts) reads: the parts as they are when asked. */
function statusSources(scope: Scope): StatusSources {
  const { parts, deps, lifecycle } = scope;
  return {
    version: VERSION,
    startedAt: scope.clock.now(),
    clock: scope.clock,
    log: scope.log,
    readiness: scope.readiness,
    workers: scope.eventLoops,
    identityFiles: scope.config.identity,
    recentHandshakes: scope.recentHandshakes,
    recentAnomalies: scope.recentAnomalies,
    config: () => parts.config,
    identity: () => parts.identity,
    listeners: () => parts.plane?.status() ?? [],
    workerListeners: () => parts.pool?.status() ?? Promise.resolve([]),
    routes: () => parts.plane?.routes() ?? [],
    workerRoutes: () => parts.pool?.routes() ?? Promise.resolve([]),
    auditHead: () => deps.auditHead?.() ?? scope.audit.file?.head() ?? null,
    reload: () => (parts.reload === null ? Promise.resolve(STARTING) : parts.reload('admin')),
    drain: (trigger) => lifecycle.drain(trigger),
    shutdown: () => (deps.requestShutdown ?? (() => shutdownInProcess(scope)))(),
  };
}

/** Load and validate the identity (a StartupError naming every problem if it does not load); readiness then knows it loaded. */
async function startIdentityOf(scope: Scope): Promise<IdentityRuntime> {
  const { readiness, deps } = scope;
  const started = await startIdentity({
    files: scope.config.identity,
    policy: scope.policy,
    log: scope.log.child({ component: 'identity' }),
    metrics: scope.metrics,
    audit: scope.audit.sink,
    clock: scope.clock,
    isDraining: () => readiness.draining(),
    ...(deps.identityTiming === undefined ? {} : { timing: deps.identityTiming }),
  });
  if (!started.ok) throw new StartupError('identity does not load', started.problems, true);
  const identity = started.runtime;
  scope.parts.identity = identity;
  scope.lifecycle.onStop(() => identity.close());
  readiness.markIdentityLoaded();
  return identity;
}

/** The main thread's data plane (proxy/dataPlane.ts), drained and stopped by the lifecycle. */
async function startMainDataPlane(
  scope: Scope,
  identity: IdentityRuntime,
  replay: SharedReplayCache | null,
): Promise<DataPlane> {
  const { parts, lifecycle } = scope;
  const plane = await startDataPlane(scope.config, {
    log: scope.log,
    metrics: scope.metrics,
    audit: scope.audit.sink,
    clock: scope.clock,
    policy: scope.policy,
    ticketKeys: scope.tickets.current(),
    recentHandshakes: scope.recentHandshakes,
    recentAnomalies: scope.recentAnomalies,
    material: identity.material(),
    clientContext: () => identity.clientContext(),
    // the main thread watches keys.dir; with workers, every new ring goes to them
    keys: { onKeys: (ring) => parts.pool?.setKeys(ring), ...(replay === null ? {} : { replay }) },
    listen: { reusePort: scope.eventLoops > 1 },
    ...(scope.deps.resolverFor === undefined ? {} : { resolverFor: scope.deps.resolverFor }),
  });
  parts.plane = plane;
  lifecycle.drains(plane);
  lifecycle.onStop(() => plane.close());
  return plane;
}

/** The worker threads on the ports the main thread bound, drained and stopped by the lifecycle; one that dies stops the instance. */
async function startWorkerThreads(
  scope: Scope,
  identity: IdentityRuntime,
  plane: DataPlane,
  replay: SharedReplayCache | null,
): Promise<WorkerPool> {
  const { parts, deps, lifecycle } = scope;
  const pool = await startWorkers(scope.eventLoops, scope.config, plane.listeners, {
    material: identity.material(),
    keys: plane.integrity.keys(),
    ticketKeys: scope.tickets.current(),
    replay: replay?.handle ?? null,
    log: scope.log,
    audit: scope.audit.sink,
    recentHandshakes: scope.recentHandshakes,
    recentAnomalies: scope.recentAnomalies,
    onFailure: (problem) => {
      if (parts.reload === null) return; // a start that fails reports it
      if (deps.workerFailed !== undefined) deps.workerFailed(problem);
      else shutdownInProcess(scope);
    },
  });
  parts.pool = pool;
  lifecycle.drains(pool);
  lifecycle.onStop(() => pool.stop());
  return pool;
}

/** how long a burst of events in the config file's directory settles before the file is read */
const CONFIG_SETTLE_MS = 500;

/** The handle of a sidecar that has started: reload swaps a new config's live settings into every thread. */
function runningSidecar(scope: Scope, servers: ServerAddresses): Sidecar {
  const { parts, log, readiness, lifecycle } = scope;
  const identity = parts.identity!;
  const plane = parts.plane!;
  const pool = parts.pool;
  /** Swap in a new config's live settings: every listener of every thread, the signing keys the key ring must hold, the log level. */
  const apply = (next: Config): void => {
    parts.config = next;
    // a route a reload added has its series at 0 from now on, as the others had from the start
    initialiseSeries(scope.metrics, next, VERSION);
    plane.applyConfig(next);
    pool?.setConfig(next);
    log.level = next.log.level;
  };
  const draining = (): boolean => readiness.draining();
  const reloadNow = createReloader({
    log,
    audit: scope.audit.sink,
    draining,
    keys: plane.integrity,
    identity,
    current: () => parts.config,
    apply,
  });
  // the config file, when started from one: a change of its bytes is a reload, as SIGHUP is (once per change,
  // whoever reloaded first)
  const source = parts.config.source;
  const watching =
    source === null
      ? null
      : watchFileContents({
          files: [source],
          log,
          what: 'config directory',
          keeping: 'the config in use',
          // a SIGHUP or POST /reload sent right after a write usually reads (and syncs) first
          settleMs: CONFIG_SETTLE_MS,
          onChange: () => void reload('watch'),
        });
  if (watching !== null) lifecycle.onStop(() => void watching.then((w) => w.close()));
  const reload = async (trigger: ReloadTrigger): Promise<SidecarReloadOutcome> => {
    const outcome = await reloadNow(trigger);
    await (await watching)?.sync();
    return outcome;
  };
  parts.reload = reload;
  return {
    get config() {
      return parts.config;
    },
    workers: scope.eventLoops,
    log,
    metrics: scope.metrics,
    listeners: plane.listeners,
    admin: servers.admin,
    health: servers.health,
    readiness,
    recentHandshakes: scope.recentHandshakes,
    recentAnomalies: scope.recentAnomalies,
    ready: () => readiness.ready(),
    listener: (name) => plane.listeners.find((l) => l.name === name),
    reload: (trigger = 'api') => reload(trigger),
    drain: (trigger = 'api') => lifecycle.drain(trigger).done,
    shutdown: () => lifecycle.shutdown(),
  };
}
