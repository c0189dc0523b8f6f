import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, type FastifyReply } from 'fastify';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Readiness } from '../core/readiness.ts';
import { registerProbeRoutes } from './probeRoutes.ts';

/**
 * The admin API as a fastify app that main starts (it never listens by itself).
 * Liveness, readiness, metrics, status and reload; the observability issue adds the rest of
 * INTERFACE.md's endpoints. Mutating routes are POST only: any other method gets 405.
 */
export interface AdminReloadResult {
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly changed: boolean;
  /** nothing was attempted: draining (or still starting) */
  readonly ignored: 'draining' | 'starting' | null;
}

export interface AdminView {
  status(): Record<string, unknown>;
  /** reload certificates and keys now */
  reload(): Promise<AdminReloadResult>;
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
  app.get('/status', async () => opts.view.status());
  postOnly(app, '/reload', async (_req, reply) => {
    const r = await opts.view.reload();
    if (r.ignored === 'draining') return reply.code(409).send({ ok: false, error: 'ERR_DRAINING', message: 'draining: reload ignored', problems: r.problems });
    if (r.ignored === 'starting') return reply.code(409).send({ ok: false, message: 'still starting: reload not available yet', problems: r.problems });
    return reply.code(r.ok ? 200 : 500).send({ ok: r.ok, changed: r.changed, problems: r.problems });
  });
  return app;
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
