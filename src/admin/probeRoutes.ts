import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Readiness } from '../core/readiness.ts';

/** What the admin and the health server both answer: liveness, readiness and Prometheus metrics. */
export interface ProbeSources {
  readonly registry: Registry;
  readonly readiness: Pick<Readiness, 'ready' | 'reasons'>;
}

export function registerProbeRoutes(app: FastifyInstance, sources: ProbeSources): void {
  app.get('/livez', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    if (sources.readiness.ready()) return reply.code(200).send({ ready: true });
    return reply.code(503).send({ ready: false, reasons: sources.readiness.reasons() });
  });
  app.get('/metrics', async (_req, reply) => {
    const body = await sources.registry.metrics();
    return reply.header('content-type', sources.registry.contentType).send(body);
  });
}
