import { readFile } from 'node:fs/promises';
import type { SecureContext } from 'node:tls';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config/types.ts';
import { formatHostPort } from './config/hostPort.ts';
import { notYetBuilt } from './config/notYetBuilt.ts';
import { systemClock, type Clock } from './core/clock.ts';
import { createLogger } from './telemetry/logger.ts';
import { createMetrics, type Metrics } from './telemetry/metrics.ts';
import { logAuditSink, type AuditSink } from './telemetry/audit.ts';
import { loadIdentity, type IdentityBundle } from './certs/identityBundle.ts';
import { notAfter } from './certs/pem.ts';
import { tlsPolicy, type TlsPolicy } from './tls/policy.ts';
import { clientSecureContext } from './tls/contexts.ts';
import { spkiPinOf } from './tls/peerIdentity.ts';
import { createInboundListener, type InboundListener } from './proxy/inboundListener.ts';
import { createOutboundListener } from './proxy/outboundListener.ts';
import type { Listener } from './proxy/listener.ts';
import { buildAdminApp } from './admin/app.ts';
import { startIntegrity } from './integrity/integrityRuntime.ts';

/**
 * The composition root: config + dependencies -> a running sidecar. Creates the registry,
 * logger and clock unless handed them (tests pass fresh ones), loads and validates the
 * identity, starts every listener and the admin server, and returns the handle main's
 * callers drive: ready, reload(), shutdown().
 */
export interface SidecarDeps {
  readonly log?: Logger;
  readonly registry?: Registry;
  readonly clock?: Clock;
  readonly audit?: AuditSink;
}

export interface Sidecar {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly listeners: readonly Listener[];
  /** the admin server's address, when one is configured */
  readonly admin: { host: string; port: number } | null;
  ready(): boolean;
  /** reload identity files; on any problem the old identity stays */
  reload(): Promise<{ ok: boolean; problems: readonly string[] }>;
  /** drain every listener (inbound first, outbound after, so the app can finish sending), then stop; true when nothing in flight was cut */
  shutdown(): Promise<boolean>;
  /** find a listener by name */
  listener(name: string): Listener | undefined;
}

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

export async function startSidecar(config: Config, deps: SidecarDeps = {}): Promise<Sidecar> {
  const unavailable = notYetBuilt(config);
  if (unavailable.length > 0) throw new StartupError('configuration asks for what this build cannot do', unavailable.map((p) => `${p.path}: ${p.message}`), true);
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? createLogger({ level: config.log.level });
  const registry = deps.registry ?? new Registry();
  const metrics = createMetrics(registry);
  collectDefaultMetrics({ register: registry, prefix: 'tollgate_' });
  const audit = deps.audit ?? logAuditSink(log.child({ component: 'audit' }), (type) => metrics.auditEvents.labels(type).inc());
  const policy: TlsPolicy = tlsPolicy(config.tls.minVersion);

  const loaded = await loadIdentity(config.identity, new Date(clock.now()));
  if (!loaded.ok) throw new StartupError('identity does not load', loaded.problems.map((p) => `identity.${p}`), true);
  for (const w of loaded.warnings) log.warn({ warning: w }, 'certificate expires soon');
  let identity: IdentityBundle = loaded.bundle;
  let clientContext: SecureContext = clientSecureContext(identity, policy);
  publishExpiry(metrics, identity);

  const integrityStart = await startIntegrity(config, { log, metrics, audit, clock });
  if (!integrityStart.ok) throw new StartupError('keys do not load', integrityStart.problems, true);
  const integrity = integrityStart.runtime;

  const listeners: Listener[] = config.listeners.map((l) =>
    l.mode === 'inbound'
      ? createInboundListener({ config: l, policy, material: identity, metrics, audit, log: log.child({ listener: l.name }), clock, integrity: integrity.stageFor(l) })
      : createOutboundListener({ config: l, clientContext: () => clientContext, metrics, audit, log: log.child({ listener: l.name }), clock, integrity: integrity.stageFor(l) }),
  );

  let started = 0;
  try {
    for (const l of listeners) {
      await l.start();
      started += 1;
    }
  } catch (err) {
    const failed = config.listeners[started]!;
    await Promise.all(listeners.slice(0, started).map((l) => l.drain(Date.now())));
    integrity.close();
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new StartupError(`listener ${failed.name} cannot listen`, [`listeners[${started}].listen: ${formatHostPort(failed.listen)}: ${code}`], false);
  }

  let ready = true;
  let lastReload: { at: string; ok: boolean } | null = null;
  const startedAt = clock.now();

  async function reloadIdentity(): Promise<{ ok: boolean; problems: readonly string[] }> {
    const next = await loadIdentity(config.identity, new Date(clock.now()));
    if (!next.ok) {
      metrics.certReloads.labels('failure').inc();
      log.error({ problems: next.problems }, 'certificate reload failed; keeping the current identity');
      audit.record('reload', { ok: false, problems: next.problems });
      lastReload = { at: new Date(clock.now()).toISOString(), ok: false };
      return { ok: false, problems: next.problems };
    }
    try {
      const nextClient = clientSecureContext(next.bundle, policy);
      for (const l of listeners) if (l.mode === 'inbound') (l as InboundListener).setTlsMaterial(next.bundle);
      clientContext = nextClient;
    } catch (err) {
      const problems = [`identity: ${(err as Error).message}`];
      metrics.certReloads.labels('failure').inc();
      audit.record('reload', { ok: false, problems });
      return { ok: false, problems };
    }
    identity = next.bundle;
    publishExpiry(metrics, identity);
    metrics.certReloads.labels('success').inc();
    log.info({ subject: identity.leaf.subject, notAfter: identity.leaf.validTo }, 'certificates reloaded');
    audit.record('reload', { ok: true, spkiPin: spkiPinOf(identity.leaf) });
    lastReload = { at: new Date(clock.now()).toISOString(), ok: true };
    return { ok: true, problems: [] };
  }

  const sidecar: Sidecar = {
    config,
    log,
    metrics,
    listeners,
    admin: null,
    ready: () => ready,
    listener: (name) => listeners.find((l) => l.name === name),
    async reload() {
      // keys and certificates reload independently: a bad key file must not hold back a certificate rotation
      const keys = await integrity.reloadKeys();
      const certs = await reloadIdentity();
      return { ok: keys.ok && certs.ok, problems: [...keys.problems, ...certs.problems] };
    },
    async shutdown() {
      ready = false;
      const deadline = Date.now() + config.drainTimeoutSeconds * 1000;
      audit.record('drain', { deadline: new Date(deadline).toISOString() });
      const inbound = listeners.filter((l) => l.mode === 'inbound');
      const outbound = listeners.filter((l) => l.mode === 'outbound');
      const inboundClean = await Promise.all(inbound.map((l) => l.drain(deadline)));
      const outboundClean = await Promise.all(outbound.map((l) => l.drain(deadline)));
      await adminApp?.close();
      integrity.close();
      const clean = [...inboundClean, ...outboundClean].every(Boolean);
      audit.record('stop', { clean });
      await audit.flush();
      log.info({ clean }, 'stopped');
      return clean;
    },
  };

  let adminApp: FastifyInstance | null = null;
  let adminAddress: { host: string; port: number } | null = null;
  if (config.admin.listen !== null) {
    const token = config.admin.tokenFile === null ? null : (await readFile(config.admin.tokenFile, 'utf8')).trim();
    adminApp = buildAdminApp({
      log,
      registry,
      token,
      view: {
        ready: () => ready,
        status: () => ({
          version: VERSION,
          uptimeSeconds: Math.round((clock.now() - startedAt) / 1000),
          ready,
          draining: listeners.some((l) => l.draining()),
          identity: { subject: identity.leaf.subject, notAfter: identity.leaf.validTo, spkiPin: spkiPinOf(identity.leaf) },
          lastReload,
          listeners: listeners.map((l) => ({ name: l.name, mode: l.mode, protocol: l.protocol, address: formatHostPort(l.address()), connections: l.connections() })),
        }),
      },
    });
    try {
      await adminApp.listen({ host: config.admin.listen.host, port: config.admin.listen.port });
    } catch (err) {
      await sidecar.shutdown();
      throw new StartupError('admin server cannot listen', [`admin.listen: ${formatHostPort(config.admin.listen)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`], false);
    }
    const a = adminApp.server.address();
    if (a !== null && typeof a === 'object') adminAddress = { host: a.address, port: a.port };
  }

  audit.record('start', { version: VERSION, listeners: listeners.map((l) => l.name) });
  log.info({ listeners: listeners.map((l) => ({ name: l.name, mode: l.mode, protocol: l.protocol, address: formatHostPort(l.address()) })), postQuantum: policy.postQuantum }, 'tollgate started');
  return { ...sidecar, admin: adminAddress };
}

export const VERSION = '0.1.0';

function publishExpiry(metrics: Metrics, identity: IdentityBundle): void {
  metrics.certExpiration.reset();
  metrics.certExpiration.labels('identity').set(notAfter(identity.leaf).getTime() / 1000);
  identity.cas.forEach((ca, i) => metrics.certExpiration.labels(i === 0 ? 'ca' : `ca_${i}`).set(notAfter(ca).getTime() / 1000));
}
