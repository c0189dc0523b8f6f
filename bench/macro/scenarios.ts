/** The load scenarios and how long each runs in each mode (smoke, quick, full). */
import type { TargetInfo } from './targets.ts';

/**
 * The request target the load generators send, by method: the upstream answers any path, and the
 * gateway targets' route tables (targets.ts, gatewayRoutes) are built to match these.
 */
export const REQUEST_PATHS = { GET: '/bench?q=1', POST: '/ingest' } as const;

export type ScenarioName =
  | 'get-keepalive'
  | 'get-keepalive-ab'
  | 'post-16k'
  | 'post-1m'
  | 'handshake-full'
  | 'handshake-resumed'
  | 'latency-1000rps'
  | 'idle-rss'
  | 'churn-rss'
  | 'h2-get-keepalive'
  | 'h2-post-16k';

export interface Scenario {
  readonly name: ScenarioName;
  readonly description: string;
  /** idle and churn: memory scenarios, each measured on a process of its own, started for it */
  readonly mode: 'keepalive' | 'new' | 'resume' | 'idle' | 'churn';
  readonly method: 'GET' | 'POST';
  readonly bodyBytes: number;
  readonly connections: number;
  /** open loop at this rate; null = closed loop */
  readonly rate: number | null;
  /** the per-CPU-second figure counts requests or MiB of request body */
  readonly unit: 'req' | 'MiB' | 'bytes';
  /** new TLS connections per request, or idle TLS connections: mTLS targets only */
  readonly tlsOnly: boolean;
  /** the load generator: the Node client (wrk for plain HTTP when installed), or ab */
  readonly generator: 'default' | 'ab';
  /** run only when named in --scenarios */
  readonly optIn: boolean;
  /**
   * HTTP/2 (ALPN h2): `connections` × `streams` streams in flight, for the HTTP/2 targets only
   * (h2load.ts, or h2LoadClient.ts for a target that verifies signatures); absent: HTTP/1.1
   */
  readonly http2?: { readonly streams: number };
}

/** The HTTP/2 scenarios' shape: 8 connections with 10 streams in flight on each. */
export const H2_CONNECTIONS = 8;
export const H2_STREAMS = 10;

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'get-keepalive',
    description: 'GET, 3-byte response, keep-alive, closed loop',
    mode: 'keepalive',
    method: 'GET',
    bodyBytes: 0,
    connections: 16,
    rate: null,
    unit: 'req',
    tlsOnly: false,
    generator: 'default',
    optIn: false,
  },
  {
    name: 'post-16k',
    description: 'POST 16 KiB, keep-alive, closed loop',
    mode: 'keepalive',
    method: 'POST',
    bodyBytes: 16 * 1024,
    connections: 16,
    rate: null,
    unit: 'req',
    tlsOnly: false,
    generator: 'default',
    optIn: false,
  },
  {
    name: 'post-1m',
    description: 'POST 1 MiB, keep-alive, closed loop (MiB of request body)',
    mode: 'keepalive',
    method: 'POST',
    bodyBytes: 1024 * 1024,
    connections: 4,
    rate: null,
    unit: 'MiB',
    tlsOnly: false,
    generator: 'default',
    optIn: false,
  },
  {
    name: 'handshake-full',
    description: 'GET on a new mTLS connection per request (full handshake), closed loop',
    mode: 'new',
    method: 'GET',
    bodyBytes: 0,
    connections: 8,
    rate: null,
    unit: 'req',
    tlsOnly: true,
    generator: 'default',
    optIn: false,
  },
  {
    name: 'handshake-resumed',
    description: 'GET on a new mTLS connection per request resuming the previous session, closed loop',
    mode: 'resume',
    method: 'GET',
    bodyBytes: 0,
    connections: 8,
    rate: null,
    unit: 'req',
    tlsOnly: true,
    generator: 'default',
    optIn: false,
  },
  {
    name: 'latency-1000rps',
    description: 'GET keep-alive at a fixed 1,000 req/s (open loop), latency percentiles',
    mode: 'keepalive',
    method: 'GET',
    bodyBytes: 0,
    connections: 16,
    rate: 1000,
    unit: 'req',
    tlsOnly: false,
    generator: 'default',
    optIn: false,
  },
  {
    name: 'idle-rss',
    description: 'RSS of the proxy with 1,000 idle keep-alive mTLS connections open (one request each)',
    mode: 'idle',
    method: 'GET',
    bodyBytes: 0,
    connections: 1000,
    rate: null,
    unit: 'bytes',
    tlsOnly: true,
    generator: 'default',
    optIn: false,
  },
  {
    name: 'churn-rss',
    description:
      'RSS of the proxy at start, then after a bounded churn of full mTLS handshakes (GET on a new connection each, closed loop) has settled',
    mode: 'churn',
    method: 'GET',
    bodyBytes: 0,
    connections: 8,
    rate: null,
    unit: 'bytes',
    tlsOnly: true,
    generator: 'default',
    optIn: false,
  },
  {
    name: 'get-keepalive-ab',
    description:
      'GET keep-alive driven by ab -k -E (C client, HTTP/1.0 keep-alive): the mTLS ceiling cross-check; opt-in, needs ab',
    mode: 'keepalive',
    method: 'GET',
    bodyBytes: 0,
    connections: 16,
    rate: null,
    unit: 'req',
    tlsOnly: true,
    generator: 'ab',
    optIn: true,
  },
  {
    name: 'h2-get-keepalive',
    description: `HTTP/2 GET, 3-byte response, ${H2_CONNECTIONS} connections × ${H2_STREAMS} streams in flight, closed loop`,
    mode: 'keepalive',
    method: 'GET',
    bodyBytes: 0,
    connections: H2_CONNECTIONS,
    rate: null,
    unit: 'req',
    tlsOnly: true,
    generator: 'default',
    optIn: false,
    http2: { streams: H2_STREAMS },
  },
  {
    name: 'h2-post-16k',
    description: `HTTP/2 POST 16 KiB, ${H2_CONNECTIONS} connections × ${H2_STREAMS} streams in flight, closed loop`,
    mode: 'keepalive',
    method: 'POST',
    bodyBytes: 16 * 1024,
    connections: H2_CONNECTIONS,
    rate: null,
    unit: 'req',
    tlsOnly: true,
    generator: 'default',
    optIn: false,
    http2: { streams: H2_STREAMS },
  },
];

export function applies(scenario: Scenario, target: TargetInfo): boolean {
  if (scenario.tlsOnly && target.client !== 'mtls') return false;
  // an HTTP/2 target runs the HTTP/2 scenarios, every other target the HTTP/1.1 ones
  return (scenario.http2 !== undefined) === (target.http2 === true);
}

export interface Durations {
  /** extra warm-up of a target's first scenario after it starts: JIT and pools settle */
  targetWarmupMs: number;
  /** load before each measured window */
  warmupMs: number;
  durationMs: number;
  latencyMs: number;
  idleConnections: number;
  reps: number;
  idleReps: number;
  /** idle-rss only for these targets (null: every mTLS target): 1,000 handshakes per target take seconds */
  idleTargets: readonly string[] | null;
  /** a fresh target settles this long before its RSS "at start" is read (workers start, start-up garbage goes) */
  startSettleMs: number;
  /** churn-rss: full handshakes churned, then how long RSS is left to settle before it is read */
  churnHandshakes: number;
  churnSettleMs: number;
  churnReps: number;
  /** churn-rss only for these targets (null: every mTLS target): 20,000 handshakes take ~30 s per target */
  churnTargets: readonly string[] | null;
}

export const DURATIONS: Record<'smoke' | 'quick' | 'full', Durations> = {
  smoke: {
    targetWarmupMs: 0,
    warmupMs: 100,
    durationMs: 300,
    latencyMs: 400,
    idleConnections: 50,
    reps: 1,
    idleReps: 1,
    idleTargets: null,
    startSettleMs: 200,
    churnHandshakes: 100,
    churnSettleMs: 200,
    churnReps: 1,
    churnTargets: null,
  },
  quick: {
    targetWarmupMs: 400,
    warmupMs: 100,
    durationMs: 400,
    latencyMs: 800,
    idleConnections: 1000,
    reps: 2,
    idleReps: 1,
    // the rows of issue 17 need the trivial TLS server and the two-thread tollgate as well
    idleTargets: ['tollgate-l7-checks', 'tollgate-l7-checks-w2', 'baseline-l4', 'baseline-l7', 'haproxy-l7'],
    startSettleMs: 1_000,
    churnHandshakes: 20_000,
    churnSettleMs: 5_000,
    churnReps: 1,
    churnTargets: ['tollgate-l7-checks', 'baseline-l7'],
  },
  full: {
    // a path run once per batch, not per request (the Redis target's ioredis calls, ~800 a second),
    // reaches its steady speed late: perf put ~7% of that target's samples in V8's compilers in a
    // window after 2 s, and its GET per CPU-second kept rising for ~15 s of load (bench/README.md,
    // "Warm-up"); every target gets the same, so the windows measure processes that have settled
    targetWarmupMs: 20_000,
    warmupMs: 1_000,
    durationMs: 4_000,
    latencyMs: 6_000,
    idleConnections: 1000,
    reps: 2,
    idleReps: 2,
    idleTargets: null,
    startSettleMs: 1_000,
    churnHandshakes: 20_000,
    churnSettleMs: 10_000,
    churnReps: 1,
    churnTargets: ['tollgate-l7-checks', 'baseline-l7', 'baseline-l4'],
  },
};
