import type { IncomingMessage, ServerResponse, Server as HttpServer } from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import type { ListenerConfig } from '../config/types.ts';
import type { AnomalyStage } from '../anomaly/anomalyStage.ts';
import { HttpPath, type IntegrityStage } from './httpPath.ts';
import { rateLimiterFor } from './requestLimits.ts';
import { idleTimeoutMs } from './httpLimits.ts';

/**
 * The swap point of a listener's live settings (config/reloadPlan.ts says which those are):
 * a config reload hands every listener its new ListenerConfig and integrity stage, and the
 * listener swaps what it holds as one step. New requests and connections see the new
 * settings; a request in flight finishes on the path it started on (its response keeps a
 * reference to that HttpPath).
 */
export interface LiveSettable {
  applyLive(next: ListenerConfig, integrity: IntegrityStage | null): void;
}

/**
 * The HTTP servers' own settings that Node reads per connection or per check, so they can change
 * under a running server (`maxHeaderSize` too, though @types/node only knows it as an option).
 */
type LiveServer = Pick<HttpServer, 'headersTimeout' | 'keepAliveTimeout' | 'timeout'> & { maxHeaderSize?: number };

type RequestEvents = { on(event: 'request' | 'checkContinue', fn: (req: IncomingMessage, res: ServerResponse) => void): unknown };

/**
 * One listener's HTTP path behind one reference: the server's 'request' and 'checkContinue'
 * events call whatever path is current, and `apply` builds the next path from the current one's
 * dependencies with the new config (rate limiter and anomaly stage kept when their settings
 * are unchanged, so a reload that does not touch them keeps the learned sizes and the buckets).
 */
export class LivePath {
  current: HttpPath;
  private readonly server: LiveServer;

  constructor(server: LiveServer & RequestEvents, path: HttpPath) {
    this.current = path;
    this.server = server;
    server.on('request', (req, res) => this.current.handle(req, res));
    // `Expect: 100-continue`: the client waits for our word before sending its body, so a refusal
    // decided from the headers (size, rate, anomaly, signature) costs it no upload at all
    server.on('checkContinue', (req, res) => this.current.handleExpectingContinue(req, res));
  }

  apply(next: ListenerConfig, integrity: IntegrityStage | null, anomaly: () => AnomalyStage | null): void {
    const deps = this.current.deps;
    const was = deps.listener;
    const sameRate = was.limits.requestsPerSecond === next.limits.requestsPerSecond && was.limits.burst === next.limits.burst;
    const sameAnomaly = isDeepStrictEqual(was.anomaly, next.anomaly);
    const path = new HttpPath({
      ...deps,
      listener: next,
      integrity,
      rateLimiter: sameRate ? deps.rateLimiter : rateLimiterFor(next),
      anomaly: sameAnomaly ? deps.anomaly : anomaly(),
    });
    const s = this.server;
    s.maxHeaderSize = next.limits.maxHeaderBytes;
    s.headersTimeout = next.limits.headersTimeoutSeconds * 1000;
    s.keepAliveTimeout = next.limits.idleTimeoutSeconds * 1000;
    s.timeout = idleTimeoutMs(next.limits);
    this.current = path;
  }
}

/** Attach a path to its server behind a LivePath (instead of attachHttpPath), for listeners whose settings reload. */
export function attachLivePath(server: ConstructorParameters<typeof LivePath>[0], path: HttpPath): LivePath {
  return new LivePath(server, path);
}
