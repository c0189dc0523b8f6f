import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { registerProbeRoutes, type ProbeSources } from './probeRoutes.ts';
import { installGuard, sendAdminError, type GuardRefused } from './requestGuard.ts';

/**
 * The health server (`health.listen`, usually the pod IP): read-only `/livez`, `/readyz` and
 * `/metrics` for the kubelet and Prometheus, nothing else — no status, no configuration, no
 * mutation, so it needs no token. Any other method on those paths gets 405; any other path 404.
 *
 * Browser requests (`Origin`, `Sec-Fetch-Site: cross-site|same-site`) are refused as on the admin
 * server, but the Host is not checked: the kubelet sends the pod IP, Prometheus whatever
 * address or Service name it was given, and what this server answers is what it answers any
 * client on the network anyway (no secrets, no mutation), so a DNS-rebinding page gains nothing.
 */
export function buildHealthApp(
  opts: ProbeSources & { readonly log: Logger; readonly onRefused?: GuardRefused },
): FastifyInstance {
  const app: FastifyInstance = Fastify({
    loggerInstance: opts.log.child({ component: 'health' }, { level: 'warn' }) as FastifyBaseLogger,
    bodyLimit: 1024,
    forceCloseConnections: true,
  });
  installGuard(app, {
    hosts: null,
    token: null,
    ...(opts.onRefused === undefined ? {} : { onRefused: opts.onRefused }),
  });
  registerProbeRoutes(app, opts);
  for (const url of ['/livez', '/readyz', '/metrics']) {
    app.route({
      method: ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'],
      url,
      handler: async (_req, reply) =>
        sendAdminError(reply.header('allow', 'GET, HEAD'), 'ERR_ADMIN_METHOD_NOT_ALLOWED', 'read-only', {
          allow: 'GET, HEAD',
        }),
    });
  }
  return app;
}
