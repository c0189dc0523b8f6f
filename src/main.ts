import { readFile } from 'node:fs/promises';
import { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Config, HostPort } from './config/types.ts';
import { formatHostPort } from './config/hostPort.ts';
import { notYetBuilt } from './config/notYetBuilt.ts';
import { createReloader, type SidecarReloadOutcome } from './reload.ts';
import type { LiveSettable } from './proxy/liveSettings.ts';
import { systemClock, type Clock } from './core/clock.ts';
import { createReadiness, type Readiness } from './core/readiness.ts';
import { createLogger } from './telemetry/logger.ts';
import { collectRuntimeMetrics, createMetrics, type Metrics } from './telemetry/metrics.ts';
import { logAuditSink, type AuditSink } from './telemetry/audit.ts';
import { startAuditLog } from './telemetry/auditLog.ts';
import { startIdentity, type IdentityRuntime, type IdentityTiming, type ReloadOutcome, type ReloadTrigger } from './certs/identityRuntime.ts';
import { tlsPolicy, type TlsPolicy } from './tls/policy.ts';
import { createInboundListener, type InboundListener } from './proxy/inboundListener.ts';
import { createOutboundListener } from './proxy/outboundListener.ts';
import type { Listener } from './proxy/listener.ts';
import { loadHttpParser, ParserUnavailableError } from './http1/parserBinding.ts';
import { buildAdminApp, type AdminAuditHead, type AdminDrainResult, type AdminView } from './admin/app.ts';
import type { GuardRefused } from './admin/requestGuard.ts';
import { ERRORS } from './core/errors.ts';
import { certReport } from './admin/certReport.ts';
import { configView } from './admin/configView.ts';
import { RecentAnomalies } from './anomaly/recentAnomalies.ts';
import { AccessLog } from './telemetry/accessLog.ts';
import { RecentHandshakes } from './telemetry/recentHandshakes.ts';
import { initialiseSeries } from './telemetry/metricSeries.ts';
import { notAfter, notBefore } from './certs/pem.ts';
import { buildHealthApp } from './admin/healthApp.ts';
import { startIntegrity, type IntegrityRuntime } from './integrity/integrityRuntime.ts';
import { createSharedReplayCache, type SharedReplayCache } from './integrity/sharedReplayCache.ts';
import { resolveWorkers, reusePortSupported } from './workers/cpuQuota.ts';
import { rotateTicketKeys } from './workers/ticketKeys.ts';
import { AggregateRegistry } from './workers/aggregateRegistry.ts';
import { startWorkerPool, type WorkerPool, type WorkerPoolOptions } from './workers/pool.ts';
import type { ListenOptions } from './proxy/listener.ts';

/**
 * The composition root: config + dependencies -> a running sidecar. Creates the registry,
 * logger and clock unless handed them (tests pass fresh ones), starts the admin server (so a
 * probe sees /readyz 503 while starting), loads and validates the identity, starts every
 * listener, and returns the handle main's callers drive: ready, reload(), shutdown().
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

/** Startup failures that are the configuration's fault (exit 2), as opposed to runtime ones (exit 1). */
export class StartupError extends Error {
  readonly problems: readonly string[];
  readonly usage: boolean;
  constructor(message: string, problems: readonly string[], usage: boolean) {
    super(message);
    this.name = 'StartupError';
    this.problems = problems;
    this.usage = usage;
  }
}

const STARTING: ReloadOutcome = Object.freeze({ ok: false, problems: Object.freeze(['tollgate is starting; reload is not available yet']), changed: false, ignored: 'starting' });

export async function startSidecar(config: Config, deps: SidecarDeps = {}): Promise<Sidecar> {
  const unavailable = notYetBuilt(config);
  if (unavailable.length > 0) throw new StartupError('configuration asks for what this build cannot do', unavailable.map((p) => `${p.path}: ${p.message}`), true);
  const workerCount = resolveWorkers(config.workers);
  if (workerCount > 1 && !reusePortSupported()) {
    throw new StartupError('configuration asks for what this Node.js cannot do', [`workers: ${workerCount} event loops share their ports with reusePort, which needs Node.js 22.12+ (this is ${process.versions.node})`], true);
  }
  if (config.listeners.some((l) => l.protocol === 'http')) {
    // the HTTP/1.1 core runs on Node's own llhttp binding, internal to Node: a wrong runtime is refused in one line
    try {
      loadHttpParser();
    } catch (err) {
      if (err instanceof ParserUnavailableError) throw new StartupError('this Node.js cannot run the HTTP listeners', [err.message], false);
      throw err;
    }
  }
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? createLogger({ level: config.log.level });
  const registry = deps.registry ?? new Registry();
  const metrics = createMetrics(registry);
  initialiseSeries(metrics, config, VERSION);
  collectRuntimeMetrics(registry);
  const countAudit = (type: Parameters<AuditSink['record']>[0]): void => void metrics.auditEvents.labels(type).inc();
  // with audit.file: the hash-chained, MACed file; without: one log line per event
  const auditStart = deps.audit === undefined ? await startAuditLog(config.audit, { log: log.child({ component: 'audit' }), count: countAudit, countDropped: () => metrics.auditDropped.inc() }) : { ok: true as const, log: null };
  if (!auditStart.ok) throw new StartupError('the audit log cannot start', auditStart.problems, true);
  const auditLog = auditStart.log;
  const audit = deps.audit ?? auditLog ?? logAuditSink(log.child({ component: 'audit' }), countAudit);
  const policy: TlsPolicy = tlsPolicy(config.tls.minVersion);
  const readiness = createReadiness();
  const startedAt = clock.now();
  // the config in use; a reload replaces it whole (its live parts only: reloadPlan.ts)
  let current: Config = config;
  const recentHandshakes = new RecentHandshakes();
  const recentAnomalies = new RecentAnomalies();
  const accessLog = new AccessLog(config.log.access);

  // filled in as startup proceeds; the admin API answers from whatever is there
  let identity: IdentityRuntime | null = null;
  let listeners: Listener[] = [];
  let sidecar: Sidecar | null = null;
  let pool: WorkerPool | null = null;
  // one set of session ticket keys for every thread, rotated (workers/ticketKeys.ts)
  const tickets = rotateTicketKeys((k) => {
    for (const l of listeners) if (l.mode === 'inbound') (l as InboundListener).setTicketKeys(k);
    pool?.setTicketKeys(k);
  });
  // with workers, /metrics and the health server serve every thread's registry merged
  const served: Registry = workerCount > 1 ? new AggregateRegistry(registry, () => (pool === null ? Promise.resolve([]) : pool.metrics())) : registry;

  // draining: started once (POST /drain, shutdown), awaited by shutdown
  let drainState: { readonly deadline: number; readonly done: Promise<boolean> } | null = null;
  function startDrain(trigger: string): { readonly started: boolean; readonly deadline: number; readonly done: Promise<boolean> } {
    if (drainState !== null) return { started: false, ...drainState };
    readiness.markDraining();
    const deadline = Date.now() + current.drainTimeoutSeconds * 1000;
    audit.record('drain', { deadline: new Date(deadline).toISOString(), trigger });
    log.info({ trigger, deadline: new Date(deadline).toISOString() }, 'draining');
    const draining = listeners;
    const threads = pool;
    const done = (async () => {
      const inboundClean = await Promise.all([...draining.filter((l) => l.mode === 'inbound').map((l) => l.drain(deadline)), ...(threads === null ? [] : [threads.drain('inbound', deadline)])]);
      const outboundClean = await Promise.all([...draining.filter((l) => l.mode === 'outbound').map((l) => l.drain(deadline)), ...(threads === null ? [] : [threads.drain('outbound', deadline)])]);
      return [...inboundClean, ...outboundClean].every(Boolean);
    })();
    drainState = { deadline, done };
    return { started: true, deadline, done };
  }
  function drainResult(started: boolean, deadline: number): AdminDrainResult {
    return {
      started,
      draining: true,
      ready: readiness.ready(),
      deadline: new Date(deadline).toISOString(),
      listeners: listeners.map((l) => ({ name: l.name, accepting: !l.draining(), connections: l.connections() })),
    };
  }
  let shutdownRequested = false;
  const view: AdminView = {
    reload: () => (sidecar === null ? Promise.resolve(STARTING) : sidecar.reload('admin')),
    status: async () => {
      // with workers, each thread's open connections (a thread that does not answer counts none)
      const threads = pool === null ? [] : await pool.status();
      const leaf = identity?.current().leaf;
      const now = clock.now();
      return {
        version: VERSION,
        node: process.versions.node,
        openssl: process.versions.openssl,
        startedAt: new Date(startedAt).toISOString(),
        uptimeSeconds: Math.round((now - startedAt) / 1000),
        ready: readiness.ready(),
        reasons: readiness.reasons(),
        draining: readiness.draining(),
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
        listeners: listeners.map((l) => ({
          name: l.name,
          mode: l.mode,
          protocol: l.protocol,
          address: addressOf(l),
          accepting: !l.draining(),
          connections: l.connections() + threads.reduce((n, t) => n + (t.find((w) => w.name === l.name)?.connections ?? 0), 0),
        })),
        workers: workerCount,
      };
    },
    certs: () => (identity === null ? { loadedAt: null, files: null, certificates: [] } : certReport(identity.current(), { certFile: config.identity.certFile, caFile: config.identity.caFile, crlFile: config.identity.crlFile }, clock.now())),
    config: () => configView(current),
    handshakes: () => ({ capacity: recentHandshakes.capacity, total: recentHandshakes.count, entries: recentHandshakes.list() }),
    anomalies: () => ({ total: recentAnomalies.count, entries: recentAnomalies.list() }),
    auditHead: () => deps.auditHead?.() ?? auditLog?.head() ?? null,
    drain: () => {
      const d = startDrain('admin');
      return drainResult(d.started, d.deadline);
    },
    shutdown: () => {
      if (shutdownRequested) return;
      shutdownRequested = true;
      log.info('shutdown requested through the admin API');
      if (deps.requestShutdown !== undefined) deps.requestShutdown();
      else void sidecar?.shutdown();
    },
  };
  // a request the admin or health guard refused: one metric and one audit event (the admin log has the line)
  const guardRefused = (server: 'admin' | 'health') => (code: 'ERR_ADMIN_FORBIDDEN' | 'ERR_ADMIN_UNAUTHORIZED', why: string, remote: string | null): void => {
    metrics.adminRefusals.labels(ERRORS[code].reason).inc();
    audit.record('request_refused', { listener: server, code, why, remote });
  };
  const adminApp = await startAdmin(config, { log, registry: served, readiness, view, onRefused: guardRefused('admin') });

  let health: StartedApp | null = null;
  let integrity: IntegrityRuntime | null = null;
  try {
    if (config.health.listen !== null) {
      health = await listenApp(buildHealthApp({ log, registry: served, readiness, onRefused: guardRefused('health') }), config.health.listen, 'health.listen', 'health server');
    }
    const identityStart = await startIdentity({
      files: config.identity,
      policy,
      log: log.child({ component: 'identity' }),
      metrics,
      audit,
      clock,
      isDraining: () => readiness.draining(),
      ...(deps.identityTiming === undefined ? {} : { timing: deps.identityTiming }),
    });
    if (!identityStart.ok) throw new StartupError('identity does not load', identityStart.problems, true);
    const id = identityStart.runtime;
    identity = id;
    readiness.markIdentityLoaded();

    // with workers, one replay cache in shared memory: a nonce is accepted once per instance
    const p = config.integrity;
    const sharedReplay: SharedReplayCache | null =
      workerCount > 1 && config.keys.dir !== null && config.listeners.some((l) => l.integrity.verify)
        ? createSharedReplayCache({ ttlMs: (p.maxAgeSeconds + p.skewSeconds) * 1000, maxEntries: p.replayCacheEntries, clock })
        : null;
    const integrityStart = await startIntegrity(config, {
      log,
      metrics,
      audit,
      clock,
      ...(sharedReplay === null ? {} : { replay: sharedReplay }),
      onKeys: (ring) => pool?.setKeys(ring),
    });
    if (!integrityStart.ok) throw new StartupError('keys do not load', integrityStart.problems, true);
    const keys = integrityStart.runtime;
    integrity = keys;

    listeners = config.listeners.map((l) =>
      l.mode === 'inbound'
        ? createInboundListener({ config: l, policy, material: id.material(), metrics, audit, log: log.child({ listener: l.name }), clock, integrity: keys.stageFor(l), recentAnomalies, recentHandshakes, ticketKeys: tickets.current(), accessLog })
        : createOutboundListener({ config: l, clientContext: () => id.clientContext(), metrics, audit, log: log.child({ listener: l.name }), clock, integrity: keys.stageFor(l), recentHandshakes, accessLog }),
    );
    await startListeners(config, listeners, { reusePort: workerCount > 1 });
    if (workerCount > 1) {
      pool = await startWorkers(workerCount - 1, config, listeners, {
        material: id.material(),
        keys: keys.keys(),
        ticketKeys: tickets.current(),
        replay: sharedReplay?.handle ?? null,
        log,
        audit,
        recentHandshakes,
        recentAnomalies,
        onFailure: (problem) => {
          if (sidecar === null) return; // a start that fails reports it
          if (deps.workerFailed !== undefined) deps.workerFailed(problem);
          else void sidecar.shutdown();
        },
      });
    }
    const inbound = listeners.filter((l): l is InboundListener => l.mode === 'inbound');
    const threads = pool;
    id.activate(threads === null ? inbound : [...inbound, { setTlsMaterial: (m) => threads.setMaterial(m) }]);
    readiness.markListenersBound();
  } catch (err) {
    tickets.stop();
    await pool?.stop();
    identity?.close();
    integrity?.close();
    await health?.app.close();
    await adminApp?.app.close();
    await auditLog?.close().catch(() => undefined);
    throw err;
  }
  const id: IdentityRuntime = identity;
  const keys: IntegrityRuntime = integrity;

  /** Swap in a new config's live settings: every listener of every thread, the signing keys the key ring must hold, the log level. */
  function applyConfig(next: Config): void {
    current = next;
    keys.useListeners(next.listeners);
    listeners.forEach((l, i) => (l as Listener & LiveSettable).applyLive(next.listeners[i]!, keys.stageFor(next.listeners[i]!)));
    pool?.setConfig(next);
    log.level = next.log.level;
    accessLog.enabled = next.log.access;
  }

  const reload = createReloader({ log, audit, draining: () => readiness.draining(), keys, identity: id, current: () => current, apply: applyConfig });

  const started: Sidecar = {
    get config() {
      return current;
    },
    workers: workerCount,
    log,
    metrics,
    listeners,
    admin: adminApp?.address ?? null,
    health: health?.address ?? null,
    readiness,
    recentHandshakes,
    recentAnomalies,
    ready: () => readiness.ready(),
    listener: (name) => listeners.find((l) => l.name === name),
    reload: (trigger = 'api') => reload(trigger),
    drain: (trigger = 'api') => startDrain(trigger).done,
    async shutdown() {
      const clean = await startDrain('shutdown').done;
      tickets.stop();
      await pool?.stop();
      await health?.app.close();
      await adminApp?.app.close();
      id.close();
      keys.close();
      audit.record('stop', { clean });
      // written and fsync'd before the process exits: no event is lost on SIGTERM
      await (audit === auditLog ? auditLog.close() : audit.flush());
      log.info({ clean }, 'stopped');
      return clean;
    },
  };
  sidecar = started;
  audit.record('start', { version: VERSION, listeners: listeners.map((l) => l.name) });
  log.info({ listeners: listeners.map((l) => ({ name: l.name, mode: l.mode, protocol: l.protocol, address: formatHostPort(l.address()) })), postQuantum: policy.postQuantum, workers: workerCount }, 'tollgate started');
  return started;
}

/** "host:port" a listener is bound to; once drained (closed) it has none and the bound one is remembered */
const boundAddresses = new WeakMap<Listener, string>();
function addressOf(l: Listener): string | null {
  try {
    const a = formatHostPort(l.address());
    boundAddresses.set(l, a);
    return a;
  } catch {
    return boundAddresses.get(l) ?? null;
  }
}

/** The worker threads, on the ports the main thread bound (port 0 resolved); if they cannot start, neither does the sidecar. */
async function startWorkers(count: number, config: Config, listeners: readonly Listener[], opts: Omit<WorkerPoolOptions, 'count' | 'config'>): Promise<WorkerPool> {
  const bound: Config = { ...config, listeners: config.listeners.map((l, i) => ({ ...l, listen: { host: l.listen.host, port: listeners[i]!.address().port } })) };
  try {
    return await startWorkerPool({ ...opts, count, config: bound });
  } catch (err) {
    await Promise.all(listeners.map((l) => l.drain(Date.now())));
    const problems = (err as { problems?: readonly string[] }).problems;
    throw new StartupError('worker threads cannot start', problems !== undefined && problems.length > 0 ? problems : [`workers: ${(err as Error).message}`], false);
  }
}

/** Bind every listener in order; the first that cannot bind stops the others and fails the start. */
async function startListeners(config: Config, listeners: readonly Listener[], options: ListenOptions): Promise<void> {
  let started = 0;
  try {
    for (const l of listeners) {
      await l.start(options);
      started += 1;
      addressOf(l);
    }
  } catch (err) {
    const failed = config.listeners[started]!;
    await Promise.all(listeners.slice(0, started).map((l) => l.drain(Date.now())));
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new StartupError(`listener ${failed.name} cannot listen`, [`listeners[${started}].listen: ${formatHostPort(failed.listen)}: ${code}`], false);
  }
}

interface AdminDeps {
  readonly log: Logger;
  readonly registry: Registry;
  readonly readiness: Readiness;
  readonly view: AdminView;
  readonly onRefused: GuardRefused;
}

interface StartedApp {
  readonly app: FastifyInstance;
  readonly address: { host: string; port: number };
}

/** The admin server, listening before anything else starts (null when admin.listen is null). */
async function startAdmin(config: Config, deps: AdminDeps): Promise<StartedApp | null> {
  if (config.admin.listen === null) return null;
  const token = config.admin.tokenFile === null ? null : (await readFile(config.admin.tokenFile, 'utf8')).trim();
  // an empty token would let `Authorization: Bearer` with nothing after it in
  if (token === '') throw new StartupError('the admin token is empty', [`admin.tokenFile: ${config.admin.tokenFile}: holds no token`], true);
  const hosts = [config.admin.listen.host];
  const app = buildAdminApp({ log: deps.log, registry: deps.registry, token, hosts, readiness: deps.readiness, view: deps.view, onRefused: deps.onRefused });
  return listenApp(app, config.admin.listen, 'admin.listen', 'admin server');
}

/** Listen, or close the app and fail start naming the config path. */
async function listenApp(app: FastifyInstance, at: HostPort, path: string, what: string): Promise<StartedApp> {
  try {
    await app.listen({ host: at.host, port: at.port });
  } catch (err) {
    await app.close();
    throw new StartupError(`${what} cannot listen`, [`${path}: ${formatHostPort(at)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`], false);
  }
  const a = app.server.address();
  const address = a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : { host: at.host, port: at.port };
  return { app, address };
}

export const VERSION = '0.1.0';
