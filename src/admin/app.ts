import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Readiness } from '../core/readiness.ts';
import { registerProbeRoutes } from './probeRoutes.ts';
import { LISTENER_NAME } from '../config/listenerName.ts';
import { HANDSHAKE_FAILURE_REASONS, type HandshakeFailureReason } from '../core/handshakeFailureReasons.ts';
import { installGuard, sendAdminError, type GuardRefused } from './requestGuard.ts';

/**
 * The admin API as a fastify app that main starts (it never listens by itself): the endpoints
 * README.md's "Metrics and admin" lists, answered from the view main hands in. Mutating routes
 * (/reload, /drain, /shutdown) are POST only: any other method gets 405. A part of the view that is not given
 * answers 404 (an in-process app built for one concern need not supply all). Every error is
 * the data plane's `{error: ERR_…, message}` (requestGuard.ts), and every request first passes
 * the guard: no browser, a Host that names us, then the token.
 */
export interface AdminReloadResult {
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly changed: boolean;
  /** nothing was attempted: draining (or still starting) */
  readonly ignored: 'draining' | 'starting' | null;
  /** started from a config file: the paths the reload changed and those that need a restart (any of which refuses the whole reload) */
  readonly config?: { readonly changed: readonly string[]; readonly restartRequired: readonly string[] };
}

/** What POST /drain (and /shutdown) did. */
export interface AdminDrainResult {
  /** false when a drain was already under way (the call changed nothing) */
  readonly started: boolean;
  readonly draining: true;
  readonly ready: boolean;
  /** when whatever is still in flight is cut */
  readonly deadline: string;
  readonly listeners: ReadonlyArray<{
    readonly name: string;
    readonly accepting: boolean;
    readonly connections: number;
  }>;
}

export interface AdminAuditHead {
  readonly seq: number;
  readonly hash: string;
  readonly file: string;
}

export interface AdminView {
  status(): Record<string, unknown> | Promise<Record<string, unknown>>;
  /** reload certificates and keys now */
  reload(): Promise<AdminReloadResult>;
  /** every loaded certificate (identity, chain, CAs) */
  certs?(): unknown;
  /** the effective configuration (secrets only as file paths) */
  config?(): unknown;
  /** recent failed handshakes and refused peers, oldest first (the route filters them by `?reason=`, `?listener=`, `?limit=`) */
  handshakes?(): { readonly capacity: number; readonly total: number; readonly entries: readonly unknown[] };
  /** recent payload anomalies, oldest first */
  anomalies?(): { readonly total: number; readonly entries: readonly unknown[] };
  /** every gateway listener's routes, their endpoints and health, merged over the threads */
  routes?(): Promise<unknown>;
  /** the audit log's last seq and hash; null (or absent) when no audit log is configured */
  auditHead?(): AdminAuditHead | null;
  /** readiness 503, listeners stop accepting, in-flight requests finish; harmless when repeated */
  drain?(): AdminDrainResult;
  /** drain, then stop the process with its usual exit code (called once the answer is sent) */
  shutdown?(): void;
}

export interface AdminOptions {
  readonly log: Logger;
  readonly registry: Registry;
  /** what /readyz answers from */
  readonly readiness: Pick<Readiness, 'ready' | 'reasons'>;
  readonly view: AdminView;
  /** when set, every route needs `Authorization: Bearer <token>` */
  readonly token: string | null;
  /** host names the Host header may use besides the loopback names and the connection's own address (the configured admin.listen host) */
  readonly hosts?: readonly string[];
  /** told of every request the guard refused (main counts and audits it; the admin log has its line) */
  readonly onRefused?: GuardRefused;
}

export function buildAdminApp(opts: AdminOptions): FastifyInstance {
  // request lines are logged at info by fastify; the admin child logs warnings and above only
  const app: FastifyInstance = Fastify({
    loggerInstance: opts.log.child({ component: 'admin' }, { level: 'warn' }) as FastifyBaseLogger,
    bodyLimit: 4096,
    forceCloseConnections: true,
  });
  installGuard(app, {
    hosts: opts.hosts ?? [],
    token: opts.token,
    ...(opts.onRefused === undefined ? {} : { onRefused: opts.onRefused }),
  });
  registerProbeRoutes(app, opts);
  const view = opts.view;
  app.get('/status', async () => view.status());
  app.get('/certs', async (_req, reply) =>
    view.certs === undefined ? notAvailable(reply, 'certificates') : view.certs(),
  );
  app.get('/config', async (_req, reply) =>
    view.config === undefined ? notAvailable(reply, 'configuration') : view.config(),
  );
  app.get('/handshakes/recent', async (req, reply) => {
    if (view.handshakes === undefined) return notAvailable(reply, 'handshake telemetry');
    const recent = view.handshakes();
    const query = parseHandshakeQuery(req.query as Record<string, unknown>, recent.capacity);
    if (!query.ok)
      return sendAdminError(reply, 'ERR_BAD_REQUEST', query.problems.join('; '), { problems: query.problems });
    return { ...recent, entries: filterHandshakes(recent.entries, query.filter) };
  });
  app.get('/anomalies/recent', async (_req, reply) =>
    view.anomalies === undefined ? notAvailable(reply, 'anomaly telemetry') : view.anomalies(),
  );
  app.get('/routes', async (_req, reply) =>
    view.routes === undefined ? notAvailable(reply, 'gateway routes') : view.routes(),
  );
  app.get('/audit/head', async (_req, reply) => {
    const head = view.auditHead?.() ?? null;
    if (head === null) return sendAdminError(reply, 'ERR_ADMIN_NOT_FOUND', 'no audit log configured');
    return head;
  });
  postOnly(app, '/drain', async (_req, reply) => {
    if (view.drain === undefined) return notAvailable(reply, 'drain');
    return reply.code(202).send(view.drain());
  });
  postOnly(app, '/shutdown', async (_req, reply) => {
    if (view.shutdown === undefined) return notAvailable(reply, 'shutdown');
    const shutdown = view.shutdown;
    // the answer goes out first: shutting down closes this server
    reply.raw.once('close', () => setImmediate(shutdown));
    const r = view.drain?.();
    return reply.code(202).send({ ...(r ?? {}), shuttingDown: true });
  });
  postOnly(app, '/reload', async (_req, reply) => {
    const r = await opts.view.reload();
    const { ok, changed, problems, ignored, ...details } = r;
    if (ignored === 'draining')
      return sendAdminError(reply, 'ERR_ADMIN_CONFLICT', 'draining: reload ignored', { ok, changed, problems });
    if (ignored === 'starting')
      return sendAdminError(reply, 'ERR_ADMIN_CONFLICT', 'still starting: reload not available yet', {
        ok,
        changed,
        problems,
      });
    const message = `reload refused: ${problems.length} problem(s); see problems`;
    if (!ok) return sendAdminError(reply, 'ERR_ADMIN_FAILED', message, { ok, changed, problems, ...details });
    return reply.code(200).send({ ok, changed, problems, ...details });
  });
  return app;
}

/** `/handshakes/recent?reason=R&listener=L&limit=N`: each optional, each at most once. */
interface HandshakeFilter {
  readonly reason: HandshakeFailureReason | null;
  readonly listener: string | null;
  readonly limit: number | null;
}

const HANDSHAKE_QUERY_KEYS = ['reason', 'listener', 'limit'];

/** Check the query once, reporting every problem together with the parameter at fault. */
function parseHandshakeQuery(
  query: Record<string, unknown>,
  capacity: number,
): { ok: true; filter: HandshakeFilter } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  for (const key of Object.keys(query)) {
    if (!HANDSHAKE_QUERY_KEYS.includes(key))
      problems.push(`${key}: unknown parameter (known: ${HANDSHAKE_QUERY_KEYS.join(', ')})`);
  }
  const one = (key: string): string | null => {
    const v = query[key];
    if (v === undefined) return null;
    if (typeof v !== 'string') {
      problems.push(`${key}: given more than once`);
      return null;
    }
    return v;
  };
  const reason = one('reason');
  if (reason !== null && !(HANDSHAKE_FAILURE_REASONS as readonly string[]).includes(reason))
    problems.push(`reason: expected one of ${HANDSHAKE_FAILURE_REASONS.join(', ')}`);
  const listener = one('listener');
  if (listener !== null && !LISTENER_NAME.test(listener))
    problems.push('listener: expected a listener name (lowercase letters, digits, "_" and "-")');
  const limit = one('limit');
  if (limit !== null && !(/^[1-9][0-9]*$/.test(limit) && Number(limit) <= capacity))
    problems.push(`limit: expected a whole number from 1 to ${capacity}`);
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    filter: { reason: reason as HandshakeFailureReason | null, listener, limit: limit === null ? null : Number(limit) },
  };
}

/** The entries that match, oldest first; with a limit, the newest `limit` of them. */
function filterHandshakes(entries: readonly unknown[], f: HandshakeFilter): unknown[] {
  const matched = entries.filter((e) => {
    const r = e as { readonly reason?: unknown; readonly listener?: unknown };
    return (f.reason === null || r.reason === f.reason) && (f.listener === null || r.listener === f.listener);
  });
  return f.limit === null ? matched : matched.slice(Math.max(0, matched.length - f.limit));
}

function notAvailable(reply: FastifyReply, what: string): FastifyReply {
  return sendAdminError(reply, 'ERR_ADMIN_NOT_FOUND', `${what} not available`);
}

const NOT_POST = ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;

/** A mutating route: POST runs it, every other method gets 405 with `Allow: POST`. */
function postOnly(
  app: FastifyInstance,
  url: string,
  handler: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
): void {
  app.post(url, handler);
  app.route({
    method: [...NOT_POST],
    url,
    handler: async (_req, reply) =>
      sendAdminError(reply.header('allow', 'POST'), 'ERR_ADMIN_METHOD_NOT_ALLOWED', 'POST only', { allow: 'POST' }),
  });
}
