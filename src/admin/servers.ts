/**
 * The admin and health servers (fastify apps): built and listening, or the start fails naming
 * the config path. main imports this module only when admin.listen or health.listen is set, so
 * a sidecar without them never loads fastify.
 */
import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config, HostPort } from '../config/types.ts';
import { formatHostPort } from '../config/hostPort.ts';
import { ERRORS, StartupError } from '../core/errors.ts';
import type { Readiness } from '../core/readiness.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { buildAdminApp, type AdminView } from './app.ts';
import { buildHealthApp } from './healthApp.ts';
import type { GuardRefused } from './requestGuard.ts';

export interface ServerDeps {
  readonly log: Logger;
  /** what /metrics serves (with workers, every thread's registry merged) */
  readonly registry: Registry;
  readonly readiness: Readiness;
  readonly view: AdminView;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  /** how a started server stops (the sidecar's lifecycle calls it at shutdown, or when the start fails later) */
  readonly onStop: (stop: () => Promise<void>) => void;
}

export interface ServerAddresses {
  readonly admin: { host: string; port: number } | null;
  readonly health: { host: string; port: number } | null;
}

/** The admin server first, then the health server (each when configured). */
export async function startServers(config: Config, deps: ServerDeps): Promise<ServerAddresses> {
  const admin = await startAdmin(config.admin, deps);
  let health: { host: string; port: number } | null = null;
  if (config.health.listen !== null) {
    const app = buildHealthApp({
      log: deps.log,
      registry: deps.registry,
      readiness: deps.readiness,
      onRefused: guardRefused('health', deps),
    });
    health = await listenApp(app, config.health.listen, 'health.listen', 'health server', deps);
  }
  return { admin, health };
}

/** The admin server (null when admin.listen is null). */
async function startAdmin(admin: Config['admin'], deps: ServerDeps): Promise<{ host: string; port: number } | null> {
  if (admin.listen === null) return null;
  const token = admin.tokenFile === null ? null : (await readFile(admin.tokenFile, 'utf8')).trim();
  // an empty token would let `Authorization: Bearer` with nothing after it in
  if (token === '')
    throw new StartupError('the admin token is empty', [`admin.tokenFile: ${admin.tokenFile}: holds no token`], true);
  const hosts = [admin.listen.host];
  const { log, registry, readiness, view } = deps;
  const app = buildAdminApp({ log, registry, token, hosts, readiness, view, onRefused: guardRefused('admin', deps) });
  return listenApp(app, admin.listen, 'admin.listen', 'admin server', deps);
}

/** A request the admin or health guard refused: one metric and one audit event (the admin log has the line). */
function guardRefused(server: 'admin' | 'health', deps: ServerDeps): GuardRefused {
  return (code, why, remote) => {
    deps.metrics.adminRefusals.labels(ERRORS[code].reason).inc();
    deps.audit.record('request_refused', { listener: server, code, why, remote });
  };
}

/** Listen (and hand the lifecycle its stop), or close the app and fail the start naming the config path. */
async function listenApp(
  app: FastifyInstance,
  at: HostPort,
  path: string,
  what: string,
  deps: ServerDeps,
): Promise<{ host: string; port: number }> {
  try {
    await app.listen({ host: at.host, port: at.port });
  } catch (err) {
    await app.close();
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new StartupError(`${what} cannot listen`, [`${path}: ${formatHostPort(at)}: ${code}`], false);
  }
  deps.onStop(() => app.close());
  const a = app.server.address();
  return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : { host: at.host, port: at.port };
}
