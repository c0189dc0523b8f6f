import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, type FastifyReply } from 'fastify';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

/**
 * The admin API as a fastify app that main starts (it never listens by itself).
 * This is the first cut: liveness, readiness, metrics and status; the observability
 * issue adds the rest of INTERFACE.md's endpoints.
 */
export interface AdminView {
  ready(): boolean;
  status(): Record<string, unknown>;
}

export interface AdminOptions {
  readonly log: Logger;
  readonly registry: Registry;
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
  app.get('/livez', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const ready = opts.view.ready();
    return reply.code(ready ? 200 : 503).send({ ready });
  });
  app.get('/metrics', async (_req, reply) => {
    const body = await opts.registry.metrics();
    return reply.header('content-type', opts.registry.contentType).send(body);
  });
  app.get('/status', async () => opts.view.status());
  return app;
}

/** Compare fixed-length digests so the comparison time does not depend on the token's length. */
function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
