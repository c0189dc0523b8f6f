import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { registerProbeRoutes, type ProbeSources } from './probeRoutes.ts';

/**
 * The health server (`health.listen`, usually the pod IP): read-only `/livez`, `/readyz` and
 * `/metrics` for the kubelet and Prometheus, nothing else — no status, no configuration, no
 * mutation, so it needs no token. Any other method on those paths gets 405; any other path 404.
 */
export function buildHealthApp(opts: ProbeSources & { readonly log: Logger }): FastifyInstance {
  const app: FastifyInstance = Fastify({
    loggerInstance: opts.log.child({ component: 'health' }, { level: 'warn' }) as FastifyBaseLogger,
    bodyLimit: 1024,
    forceCloseConnections: true,
  });
  registerProbeRoutes(app, opts);
  for (const url of ['/livez', '/readyz', '/metrics']) {
    app.route({
      method: ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'],
      url,
      handler: async (_req, reply) => reply.code(405).header('allow', 'GET, HEAD').send({ error: 'method not allowed', allow: 'GET, HEAD' }),
    });
  }
  return app;
}
