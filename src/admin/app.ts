import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, type FastifyReply } from 'fastify';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Readiness } from '../core/readiness.ts';
import { registerProbeRoutes } from './probeRoutes.ts';

/**
 * The admin API as a fastify app that main starts (it never listens by itself): INTERFACE.md's
 * endpoints, answered from the view main hands in. Mutating routes (/reload, /drain,
 * /shutdown) are POST only: any other method gets 405. A part of the view that is not given
 * answers 404 with `{error}` (an in-process app built for one concern need not supply all).
 */
export interface AdminReloadResult {
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly changed: boolean;
  /** nothing was attempted: draining (or still starting) */
  readonly ignored: 'draining' | 'starting' | null;
}

/** What POST /drain (and /shutdown) did. */
export interface AdminDrainResult {
  /** false when a drain was already under way (the call changed nothing) */
  readonly started: boolean;
  readonly draining: true;
  readonly ready: boolean;
  /** when whatever is still in flight is cut */
  readonly deadline: string;
  readonly listeners: ReadonlyArray<{ readonly name: string; readonly accepting: boolean; readonly connections: number }>;
}

export interface AdminAuditHead {
  readonly seq: number;
  readonly hash: string;
  readonly file: string;
}

export interface AdminView {
  status(): Record<string, unknown>;
  /** reload certificates and keys now */
  reload(): Promise<AdminReloadResult>;
  /** every loaded certificate (identity, chain, CAs) */
  certs?(): unknown;
  /** the effective configuration (secrets only as file paths) */
  config?(): unknown;
  /** recent failed handshakes and refused peers, oldest first */
  handshakes?(): { readonly capacity: number; readonly total: number; readonly entries: readonly unknown[] };
  /** recent payload anomalies, oldest first */
  anomalies?(): { readonly total: number; readonly entries: readonly unknown[] };
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
}

export function buildAdminApp(opts: AdminOptions): FastifyInstance {
    // request lines are logged at info by fastify; the admin child logs warnings and above only
  const app: FastifyInstance = Fastify({
    loggerInstance: opts.log.child({ component: 'admin' }, { level: 'warn' }) as FastifyBaseLogger,
    bodyLimit: 4096,
    forceCloseConnections: true,
  });
  if (opts.token !== null) {
    const expected = digest(opts.token);
    app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
      const header = req.headers.authorization ?? '';
      const given = header.startsWith('Bearer ') ? header.slice(7) : '';
      if (!timingSafeEqual(digest(given), expected)) {
        await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized' });
      }
    });
  }
  registerProbeRoutes(app, opts);
  const view = opts.view;
  app.get('/status', async () => view.status());
  app.get('/certs', async (_req, reply) => (view.certs === undefined ? notAvailable(reply, 'certificates') : view.certs()));
  app.get('/config', async (_req, reply) => (view.config === undefined ? notAvailable(reply, 'configuration') : view.config()));
  app.get('/handshakes/recent', async (_req, reply) => (view.handshakes === undefined ? notAvailable(reply, 'handshake telemetry') : view.handshakes()));
  app.get('/anomalies/recent', async (_req, reply) => (view.anomalies === undefined ? notAvailable(reply, 'anomaly telemetry') : view.anomalies()));
  app.get('/audit/head', async (_req, reply) => {
    const head = view.auditHead?.() ?? null;
    if (head === null) return reply.code(404).send({ error: 'no audit log configured' });
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
    if (r.ignored === 'draining') return reply.code(409).send({ ok: false, error: 'ERR_DRAINING', message: 'draining: reload ignored', problems: r.problems });
    if (r.ignored === 'starting') return reply.code(409).send({ ok: false, message: 'still starting: reload not available yet', problems: r.problems });
    return reply.code(r.ok ? 200 : 500).send({ ok: r.ok, changed: r.changed, problems: r.problems });
  });
  return app;
}

function notAvailable(reply: FastifyReply, what: string): FastifyReply {
  return reply.code(404).send({ error: `${what} not available` });
}

const NOT_POST = ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;

/** A mutating route: POST runs it, every other method gets 405 with `Allow: POST`. */
function postOnly(app: FastifyInstance, url: string, handler: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>): void {
  app.post(url, handler);
  app.route({
    method: [...NOT_POST],
    url,
    handler: async (_req, reply) => reply.code(405).header('allow', 'POST').send({ error: 'method not allowed', allow: 'POST' }),
  });
}

/** Compare fixed-length digests so the comparison time does not depend on the token's length. */
function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
