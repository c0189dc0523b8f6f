import { Client, Pool } from 'undici';
import type { ServerOptions } from 'node:http';
import type { LimitsConfig } from '../config/types.ts';

/**
 * How a listener's `limits` become settings of the downstream HTTP server and of the upstream
 * pool, shared by inbound and outbound so the two cannot drift apart.
 */

/**
 * How often Node looks for requests whose headers are overdue: at most 1 s, and at most half
 * the headers timeout, so a slow-headers client is cut within 1.5x the timeout (Node's own
 * default of 30 s would let it linger up to 30 s past any shorter timeout).
 */
function headersCheckIntervalMs(limits: LimitsConfig): number {
  return Math.max(50, Math.min(1000, Math.floor((limits.headersTimeoutSeconds * 1000) / 2)));
}

/** Downstream: header size (431 beyond it), slow headers cut, idle keep-alive closed. */
export function httpServerLimits(limits: LimitsConfig): ServerOptions {
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutSeconds * 1000,
    connectionsCheckingInterval: headersCheckIntervalMs(limits),
    // a large upload may take longer than any fixed bound; the idle timeout catches a stalled one
    requestTimeout: 0,
    keepAliveTimeout: limits.idleTimeoutSeconds * 1000,
  };
}

/** Socket idle timeout of the downstream server (server.timeout). */
export function idleTimeoutMs(limits: LimitsConfig): number {
  return limits.idleTimeoutSeconds * 1000;
}

/**
 * Upstream: a bounded keep-alive pool, one request per connection at a time (no pipelining:
 * ingestion POSTs must not queue behind each other), timeouts from upstreamTimeoutSeconds.
 */
export function createUpstreamPool(origin: string, limits: LimitsConfig, keepAliveTimeoutMs: number, connect: Pool.Options['connect']): Pool {
  const timeoutMs = limits.upstreamTimeoutSeconds * 1000;
  return new Pool(origin, {
    connections: limits.maxConnections,
    pipelining: 1,
    keepAliveTimeout: keepAliveTimeoutMs,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connect,
  });
}

/**
 * One new upstream connection for one request sent again (the pool could hand back another
 * connection the upstream is closing): the pool's timeouts and connect, no keep-alive reuse.
 */
export function createRetryConnection(origin: string, limits: LimitsConfig, connect: Pool.Options['connect']): Client {
  const timeoutMs = limits.upstreamTimeoutSeconds * 1000;
  return new Client(origin, { pipelining: 1, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect });
}
