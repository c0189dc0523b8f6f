/**
 * The targets under test, each started as real processes on loopback (pids recorded, so the
 * proxy's CPU and memory can be read from /proc): direct (no proxy), the trivial Node L4 and
 * L7 baselines, tollgate in its configurations, and HAProxy when installed.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { machine } from 'node:os';
import { readFile, writeFile } from 'node:fs/promises';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { startChild, stopChild, type Child } from './children.ts';
import { freePort, HOST, waitForPort } from './net.ts';
import { scrapeMetrics } from './promHistogram.ts';
import { REQUEST_PATHS } from './scenarios.ts';
import { deadCheck } from './upstream.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = join(HERE, '..', '..');
const TOLLGATE = join(ROOT, 'bin', 'tollgate.js');
/**
 * The Node.js flags of tollgate's documented start: bin/tollgate.js's `#!/usr/bin/env -S node
 * FLAGS` line, which `npx tollgate` and `./bin/tollgate.js` run it with (the Dockerfile's
 * ENTRYPOINT passes the same flags, test/dockerfile-rules.test.ts checks it). Given to every
 * Node process measured here, tollgate and the trivial baselines alike, so the comparison is
 * between the code, not the heap settings.
 */
export const NODE_FLAGS: readonly string[] = shebangNodeFlags(readFileSync(TOLLGATE, 'utf8'));

/**
 * The allocator of tollgate's container image (its runtime stage's ENV; test/dockerfile-rules.test.ts
 * checks they agree): jemalloc, preloaded, with two arenas. Under a churn of full handshakes it
 * keeps RSS 2–9% lower than glibc's malloc after 20,000 and 9% after 60,000, for ~4 MiB more at
 * start (bench/README.md, "Memory").
 */
export const IMAGE_ALLOCATOR = { library: 'libjemalloc.so.2', env: { MALLOC_CONF: 'narenas:2' } } as const;

/** Where Debian puts the image's allocator on this machine, or null when it is not installed (`apt-get install libjemalloc2`). */
export function localAllocator(): string | null {
  const candidates = [
    `/usr/lib/${machine()}-linux-gnu/${IMAGE_ALLOCATOR.library}`,
    `/usr/lib/${IMAGE_ALLOCATOR.library}`,
  ];
  return candidates.find((path) => existsSync(path)) ?? null;
}

/** The environment of a Node target: the image's allocator preloaded, or nothing added when this machine lacks it. */
export function allocatorEnvOf(library: string | null): Record<string, string> {
  return library === null ? {} : { LD_PRELOAD: library, ...IMAGE_ALLOCATOR.env };
}

/** The flags after `node` on a script's first line (`#!/usr/bin/env -S node --a --b`); none for a plain `#!/usr/bin/env node`. */
export function shebangNodeFlags(script: string): string[] {
  const first = script.slice(0, script.indexOf('\n'));
  const m = /^#!\/usr\/bin\/env (?:-S )?node((?: +\S+)*) *$/.exec(first);
  if (m === null) throw new Error(`not a "#!/usr/bin/env [-S] node [flags]" line: ${first}`);
  return m[1]!.split(' ').filter(Boolean);
}

export type TargetName =
  | 'direct'
  | 'baseline-l4'
  | 'baseline-l7'
  | 'baseline-h2'
  | 'tollgate-l4'
  | 'tollgate-l7'
  | 'tollgate-l7-checks'
  | 'tollgate-l7-checks-redis'
  | 'tollgate-gw50'
  | 'tollgate-gw50-checks'
  | 'tollgate-e2e'
  | 'tollgate-e2e-pass'
  | 'tollgate-l7-checks-w2'
  | 'tollgate-h2'
  | 'tollgate-h2-checks'
  | 'haproxy-l4'
  | 'haproxy-l7'
  | 'haproxy-h2'
  | 'raw-l7'
  | 'raw-l7-llhttp'
  | 'raw-l7-checks';

/**
 * Every target a run measures by default (--only picks some). raw-l7 and raw-l7-checks are
 * bench instruments, not proxies (bench/macro/baselines/l7-raw.ts): an HTTP/1.1 path written by
 * hand on Node's TLS and net sockets, without and with tollgate's checks. They run by default
 * because issue 15's speed targets are ratios to them. raw-l7-llhttp is raw-l7 with its heads
 * parsed by Node's llhttp (the parser issue 15 chose) instead of by hand: what the parser alone
 * costs the instrument, in the same run.
 */
export const ALL_TARGETS: readonly TargetName[] = [
  'direct',
  'baseline-l4',
  'baseline-l7',
  'baseline-h2',
  'raw-l7',
  'raw-l7-llhttp',
  'raw-l7-checks',
  'tollgate-l4',
  'tollgate-l7',
  'tollgate-l7-checks',
  'tollgate-l7-checks-redis',
  'tollgate-gw50',
  'tollgate-gw50-checks',
  'tollgate-e2e',
  'tollgate-e2e-pass',
  'tollgate-l7-checks-w2',
  'tollgate-h2',
  'tollgate-h2-checks',
  'haproxy-l4',
  'haproxy-l7',
  'haproxy-h2',
];

/** How many routes the gateway targets carry (issue 18: a gateway with 50 routes against one inbound listener). */
export const GATEWAY_ROUTE_COUNT = 50;

export interface TargetInfo {
  readonly name: TargetName;
  /** what the client speaks to it */
  readonly client: 'plain' | 'mtls';
  /** the load client signs every request */
  readonly sign: boolean;
  readonly layer: 'none' | 'l4' | 'l7';
  readonly description: string;
  /** the client speaks HTTP/2 to it (ALPN h2): it runs the HTTP/2 scenarios, and only those */
  readonly http2?: true;
}

export const TARGET_INFO: Record<TargetName, TargetInfo> = {
  direct: {
    name: 'direct',
    client: 'plain',
    sign: false,
    layer: 'none',
    description: 'client → upstream, plain HTTP (the ceiling; no proxy)',
  },
  'baseline-l4': {
    name: 'baseline-l4',
    client: 'mtls',
    sign: false,
    layer: 'l4',
    description: 'trivial Node tls.createServer (mTLS) → net pipe',
  },
  'baseline-l7': {
    name: 'baseline-l7',
    client: 'mtls',
    sign: false,
    layer: 'l7',
    description: 'trivial Node https.createServer (mTLS) → undici Pool.stream',
  },
  'baseline-h2': {
    name: 'baseline-h2',
    client: 'mtls',
    sign: false,
    layer: 'l7',
    http2: true,
    description: 'trivial Node http2.createSecureServer (mTLS, h2) → undici Pool.stream (HTTP/1.1 to the app)',
  },
  'tollgate-l4': {
    name: 'tollgate-l4',
    client: 'mtls',
    sign: false,
    layer: 'l4',
    description: 'tollgate inbound, protocol tcp',
  },
  'tollgate-l7': {
    name: 'tollgate-l7',
    client: 'mtls',
    sign: false,
    layer: 'l7',
    description: 'tollgate inbound HTTP, mTLS only (anomaly off, no signatures)',
  },
  'tollgate-l7-checks': {
    name: 'tollgate-l7-checks',
    client: 'mtls',
    sign: true,
    layer: 'l7',
    description: 'tollgate inbound HTTP: mTLS + signature verification + replay cache + anomaly observe',
  },
  'tollgate-l7-checks-redis': {
    name: 'tollgate-l7-checks-redis',
    client: 'mtls',
    sign: true,
    layer: 'l7',
    description:
      'tollgate-l7-checks with sharedState: every verified nonce also claimed in a redis-server on loopback (SET NX PX), rate limits local',
  },
  'tollgate-gw50': {
    name: 'tollgate-gw50',
    client: 'mtls',
    sign: false,
    layer: 'l7',
    description: `tollgate-l7 as a gateway listener with ${GATEWAY_ROUTE_COUNT} routes, the measured requests' routes last in the table`,
  },
  'tollgate-gw50-checks': {
    name: 'tollgate-gw50-checks',
    client: 'mtls',
    sign: true,
    layer: 'l7',
    description: `tollgate-l7-checks as a gateway listener with ${GATEWAY_ROUTE_COUNT} routes, the measured requests' routes last in the table`,
  },
  'tollgate-e2e': {
    name: 'tollgate-e2e',
    client: 'plain',
    sign: false,
    layer: 'l7',
    description:
      'plain HTTP → tollgate outbound (signs, mTLS) → tollgate inbound (verifies, anomaly observe) → upstream; CPU of both',
  },
  'tollgate-e2e-pass': {
    name: 'tollgate-e2e-pass',
    client: 'plain',
    sign: false,
    layer: 'l7',
    description:
      'tollgate-e2e with no checks: the outbound does not sign, the inbound neither verifies nor watches sizes (mTLS between them stays); CPU of both',
  },
  'tollgate-l7-checks-w2': {
    name: 'tollgate-l7-checks-w2',
    client: 'mtls',
    sign: true,
    layer: 'l7',
    description: 'tollgate-l7-checks with "workers": 2',
  },
  'tollgate-h2': {
    name: 'tollgate-h2',
    client: 'mtls',
    sign: false,
    layer: 'l7',
    http2: true,
    description:
      'tollgate-l7 over HTTP/2: inbound HTTP, h2 by ALPN, mTLS only (anomaly off, no signatures), HTTP/1.1 to the app',
  },
  'tollgate-h2-checks': {
    name: 'tollgate-h2-checks',
    client: 'mtls',
    sign: true,
    layer: 'l7',
    http2: true,
    description:
      'tollgate-l7-checks over HTTP/2: h2 by ALPN, mTLS + signature verification + replay cache + anomaly observe, HTTP/1.1 to the app; driven by the Node h2 client, which signs every request',
  },
  'haproxy-l4': {
    name: 'haproxy-l4',
    client: 'mtls',
    sign: false,
    layer: 'l4',
    description: 'HAProxy mode tcp, ssl verify required, nbthread 1',
  },
  'haproxy-l7': {
    name: 'haproxy-l7',
    client: 'mtls',
    sign: false,
    layer: 'l7',
    description: 'HAProxy mode http, ssl verify required, nbthread 1',
  },
  'haproxy-h2': {
    name: 'haproxy-h2',
    client: 'mtls',
    sign: false,
    layer: 'l7',
    http2: true,
    description: 'HAProxy mode http, ssl verify required, alpn h2,http/1.1, nbthread 1, HTTP/1.1 to the app',
  },
  'raw-l7': {
    name: 'raw-l7',
    client: 'mtls',
    sign: false,
    layer: 'l7',
    description:
      'bench instrument: Node tls.createServer (mTLS) → HTTP/1.1 heads parsed by hand → one net socket per connection; no node:http, no undici',
  },
  'raw-l7-llhttp': {
    name: 'raw-l7-llhttp',
    client: 'mtls',
    sign: false,
    layer: 'l7',
    description:
      "bench instrument: raw-l7 with its heads parsed by Node's llhttp, strict, as tollgate's core loads it (from dist/), one request and one response parser per connection",
  },
  'raw-l7-checks': {
    name: 'raw-l7-checks',
    client: 'mtls',
    sign: true,
    layer: 'l7',
    description:
      "bench instrument: raw-l7 plus tollgate's verifier and replay cache (from dist/) and a streamed sha-256 Content-Digest check",
  },
};

/** Files and ports every target is started with. */
export interface TargetContext {
  readonly workDir: string;
  readonly upstreamPort: number;
  /** dev PKI layout: pki/{ingest,producer}/{tls.crt,tls.key,ca.crt} */
  readonly pkiDir: string;
  readonly keysDir: string;
  readonly keyId: string;
  readonly haproxy: string | null;
  /** the environment that gives a Node target the image's allocator (IMAGE_ALLOCATOR); empty when this machine lacks it */
  readonly allocatorEnv: Readonly<Record<string, string>>;
  /** the shared state store (redis-server, redis.ts) when a target of the run needs it */
  readonly store?: { readonly url: string; readonly pid: number } | null;
  /**
   * integrity.replayCacheEntries of the tollgate targets (and raw-l7-checks' cache); unset: the
   * default (1,000,000, sized for ~3,000 verified requests a second). A run that keeps one process
   * under load for minutes (interleaved.ts) sets it from its load, or the cache fills and every
   * signed request is refused with 503 ERR_REPLAY_CACHE_FULL, as configured.
   */
  readonly replayCacheEntries?: number;
}

export interface RunningTarget {
  readonly name: TargetName;
  readonly port: number;
  /** the proxy's processes (their descendants are counted too); empty for direct */
  readonly pids: readonly number[];
  readonly children: readonly Child[];
  /** the shared state store's process: its CPU is read apart, never counted as the proxy's */
  readonly storePids?: readonly number[];
  /** the target's Prometheus /metrics (its health listener), when it has one */
  readonly metricsUrl?: string | null;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 20_000;

async function ready(children: Child[], port: number): Promise<void> {
  try {
    await waitForPort(port, START_TIMEOUT_MS, () => {
      for (const c of children) {
        const dead = deadCheck(c)();
        if (dead !== null) return dead;
      }
      return null;
    });
  } catch (err) {
    await Promise.all(children.map((c) => stopChild(c, 1_000)));
    throw err;
  }
}

function running(name: TargetName, port: number, children: Child[]): RunningTarget {
  return {
    name,
    port,
    pids: children.map((c) => c.pid),
    children,
    stop: async () => void (await Promise.all(children.map((c) => stopChild(c)))),
  };
}

/* ---------------------------------------------------------------- tollgate configs */

function tollgateConfig(
  ctx: TargetContext,
  identity: 'ingest' | 'producer',
  listener: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const id = join(ctx.pkiDir, identity);
  return {
    admin: { listen: null },
    identity: { certFile: join(id, 'tls.crt'), keyFile: join(id, 'tls.key'), caFile: join(id, 'ca.crt') },
    keys: { dir: ctx.keysDir },
    log: { level: 'warn' },
    ...(ctx.replayCacheEntries === undefined ? {} : { integrity: { replayCacheEntries: ctx.replayCacheEntries } }),
    ...extra,
    listeners: [listener],
  };
}

const ALLOW_PRODUCER = { spiffe: ['spiffe://example.org/producer'] };

function inboundListener(port: number, ctx: TargetContext, kind: 'tcp' | 'http' | 'checks'): Record<string, unknown> {
  // an HTTP listener offers h2 and http/1.1 by ALPN ("http2" defaults to true): the HTTP/1.1 load
  // clients offer no ALPN and get HTTP/1.1, the HTTP/2 ones ask for h2
  const common = {
    name: 'bench',
    mode: 'inbound',
    listen: `${HOST}:${port}`,
    target: `${HOST}:${ctx.upstreamPort}`,
    allow: ALLOW_PRODUCER,
  };
  if (kind === 'tcp') return { ...common, protocol: 'tcp' };
  if (kind === 'http') return { ...common, protocol: 'http', anomaly: { mode: 'off' } };
  return { ...common, protocol: 'http', integrity: { verify: true }, anomaly: { mode: 'observe' } };
}

/** A request's path without its query: what a route's pathPrefix is matched against. */
function pathOnly(target: string): string {
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/**
 * The gateway targets' route table, all to the same upstream app as tollgate-l7: decoys
 * `/v1/r01` … `/v1/r48` (POST, as ingestion endpoints are), then the route of the POST scenarios'
 * path, then the route of the GET scenarios' path, last. Routes are matched in order and the first
 * match wins, so every measured request is taken by one of the last two routes: the worst place in
 * the table for a matcher that walks it. No route is a catch-all, so nothing else could take them.
 */
export function gatewayRoutes(upstream: string, count = GATEWAY_ROUTE_COUNT): Array<Record<string, unknown>> {
  const route = (name: string, pathPrefix: string, method: string): Record<string, unknown> => ({
    name,
    match: { pathPrefix, host: null, methods: [method] },
    targets: [upstream],
  });
  const measured = [
    route('ingest', pathOnly(REQUEST_PATHS.POST), 'POST'),
    route('bench', pathOnly(REQUEST_PATHS.GET), 'GET'),
  ];
  const decoys = Array.from({ length: count - measured.length }, (_, i) => {
    const n = String(i + 1).padStart(2, '0');
    return route(`r${n}`, `/v1/r${n}`, 'POST');
  });
  return [...decoys, ...measured];
}

/** tollgate-l7 (kind http) or tollgate-l7-checks (kind checks), with the route table in place of the single target. */
function gatewayListener(port: number, ctx: TargetContext, kind: 'http' | 'checks'): Record<string, unknown> {
  const common = {
    name: 'bench',
    mode: 'gateway',
    protocol: 'http',
    listen: `${HOST}:${port}`,
    allow: ALLOW_PRODUCER,
    routes: gatewayRoutes(`${HOST}:${ctx.upstreamPort}`),
  };
  if (kind === 'http') return { ...common, anomaly: { mode: 'off' } };
  return { ...common, integrity: { verify: true }, anomaly: { mode: 'observe' } };
}

async function writeConfig(ctx: TargetContext, file: string, config: Record<string, unknown>): Promise<string> {
  const path = join(ctx.workDir, file);
  await writeFile(path, JSON.stringify(config, null, 2));
  return path;
}

/** `tollgate check --config FILE`: null when the config is accepted, else what it said. */
export async function tollgateRefuses(configPath: string): Promise<string | null> {
  try {
    await promisify(execFile)(process.execPath, [TOLLGATE, 'check', '--config', configPath], { timeout: 20_000 });
    return null;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || e.message;
  }
}

/**
 * A Node process as tollgate's image runs one: its V8 flags, and its allocator when this machine has it.
 * With `BENCH_CPU_PROF_DIR` set, each writes a V8 CPU profile there when it exits (`--cpu-prof`; Node
 * refuses that flag in NODE_OPTIONS): for reading where a target's time goes, never for the figures.
 */
function startNode(name: string, args: readonly string[], ctx: TargetContext): Child {
  const dir = process.env.BENCH_CPU_PROF_DIR;
  const profile = dir === undefined || dir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`];
  return startChild(name, process.execPath, [...NODE_FLAGS, ...profile, ...args], {
    env: { ...process.env, ...ctx.allocatorEnv },
  });
}

function startTollgate(name: string, configPath: string, ctx: TargetContext): Child {
  return startNode(name, [TOLLGATE, 'run', '--config', configPath], ctx);
}

/** Config of tollgate-l7-checks-w2, to ask `tollgate check` whether `workers` is known yet. */
export async function workersConfig(ctx: TargetContext): Promise<string> {
  const port = await freePort();
  return writeConfig(
    ctx,
    'tollgate-w2-check.json',
    tollgateConfig(ctx, 'ingest', inboundListener(port, ctx, 'checks'), { workers: 2 }),
  );
}

/* ---------------------------------------------------------------- baselines */

/**
 * The baselines are written in TypeScript but run as plain JavaScript: Node's type stripping
 * costs a process about 17 MiB of RSS, which tollgate (run from dist/) does not pay. Types
 * are stripped once per run into the work folder, bare imports resolved to absolute URLs.
 */
async function plainJavaScript(ctx: TargetContext, file: string): Promise<string> {
  const out = join(ctx.workDir, file.replace(/\.ts$/, '.mjs'));
  const source = await readFile(join(HERE, 'baselines', file), 'utf8');
  const js = stripTypeScriptTypes(source, { mode: 'strip' })
    .replace(/from '(undici)'/g, (_m, name: string) => `from '${import.meta.resolve(name)}'`)
    .replace('DIST_URL', pathToFileURL(join(ROOT, 'dist')).href);
  await writeFile(out, js);
  return out;
}

/* ---------------------------------------------------------------- HAProxy */

async function haproxyConfig(ctx: TargetContext, port: number, mode: 'tcp' | 'http', h2 = false): Promise<string> {
  const id = join(ctx.pkiDir, 'ingest');
  const pem = join(ctx.workDir, 'haproxy.pem');
  await writeFile(
    pem,
    `${await readFile(join(id, 'tls.crt'), 'utf8')}\n${await readFile(join(id, 'tls.key'), 'utf8')}`,
    { mode: 0o600 },
  );
  const cfg = `global
  nbthread 1
  maxconn 5000
  ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
  mode ${mode}
  timeout connect 5s
  timeout client 300s
  timeout server 300s
${mode === 'http' ? '  timeout http-keep-alive 300s\n' : ''}
frontend fe
  bind ${HOST}:${port} ssl crt ${pem} ca-file ${join(id, 'ca.crt')} verify required${h2 ? ' alpn h2,http/1.1' : ''}
  default_backend be

backend be
  server up ${HOST}:${ctx.upstreamPort}
`;
  const path = join(ctx.workDir, `haproxy-${mode}${h2 ? '-h2' : ''}.cfg`);
  await writeFile(path, cfg);
  return path;
}

/* ---------------------------------------------------------------- start */

export async function startTarget(name: TargetName, ctx: TargetContext): Promise<RunningTarget> {
  if (name === 'direct') return running(name, ctx.upstreamPort, []);
  const port = await freePort();
  const server = join(ctx.pkiDir, 'ingest');
  const tlsFiles = [join(server, 'tls.crt'), join(server, 'tls.key'), join(server, 'ca.crt')];
  let children: Child[];
  let store: Pick<RunningTarget, 'storePids' | 'metricsUrl'> = {};
  switch (name) {
    case 'baseline-l4':
    case 'baseline-l7':
    case 'baseline-h2': {
      const script = await plainJavaScript(ctx, `${name.slice('baseline-'.length)}.ts`);
      children = [startNode(name, [script, String(port), String(ctx.upstreamPort), ...tlsFiles], ctx)];
      break;
    }
    case 'raw-l7':
    case 'raw-l7-llhttp':
    case 'raw-l7-checks': {
      const script = await plainJavaScript(ctx, 'l7-raw.ts');
      const options =
        name === 'raw-l7-checks'
          ? [
              '--verify',
              ctx.keysDir,
              ctx.keyId,
              'tollgate',
              ...(ctx.replayCacheEntries === undefined ? [] : ['--replay-entries', String(ctx.replayCacheEntries)]),
            ]
          : name === 'raw-l7-llhttp'
            ? ['--llhttp']
            : [];
      children = [startNode(name, [script, String(port), String(ctx.upstreamPort), ...tlsFiles, ...options], ctx)];
      break;
    }
    case 'tollgate-l4':
    case 'tollgate-l7':
    case 'tollgate-l7-checks':
    case 'tollgate-l7-checks-w2':
    case 'tollgate-h2':
    case 'tollgate-h2-checks': {
      // the HTTP/2 targets are the HTTP/1.1 ones' configs: only the client's ALPN differs
      const kind =
        name === 'tollgate-l4' ? 'tcp' : name === 'tollgate-l7' || name === 'tollgate-h2' ? 'http' : 'checks';
      const extra = name === 'tollgate-l7-checks-w2' ? { workers: 2 } : {};
      const config = await writeConfig(
        ctx,
        `${name}.json`,
        tollgateConfig(ctx, 'ingest', inboundListener(port, ctx, kind), extra),
      );
      children = [startTollgate(name, config, ctx)];
      break;
    }
    case 'tollgate-l7-checks-redis': {
      if (!ctx.store) throw new Error('the shared state store (redis-server) is not running');
      // the health listener serves /metrics, where the replay round trips are read (latency scenarios only)
      const healthPort = await freePort();
      const config = await writeConfig(
        ctx,
        `${name}.json`,
        tollgateConfig(ctx, 'ingest', inboundListener(port, ctx, 'checks'), {
          health: { listen: `${HOST}:${healthPort}` },
          // replay on (the default); the bench has no rate limit to share
          sharedState: { url: ctx.store.url, rateLimits: false },
        }),
      );
      children = [startTollgate(name, config, ctx)];
      store = { storePids: [ctx.store.pid], metricsUrl: `http://${HOST}:${healthPort}/metrics` };
      break;
    }
    case 'tollgate-gw50':
    case 'tollgate-gw50-checks': {
      const kind = name === 'tollgate-gw50' ? 'http' : 'checks';
      const config = await writeConfig(
        ctx,
        `${name}.json`,
        tollgateConfig(ctx, 'ingest', gatewayListener(port, ctx, kind)),
      );
      children = [startTollgate(name, config, ctx)];
      break;
    }
    case 'tollgate-e2e':
    case 'tollgate-e2e-pass': {
      // -pass: the same two processes and mTLS hop with the checks off, what the chain costs without them
      const checks = name === 'tollgate-e2e';
      const inboundPort = await freePort();
      const inbound = await writeConfig(
        ctx,
        `${name}-inbound.json`,
        tollgateConfig(ctx, 'ingest', inboundListener(inboundPort, ctx, checks ? 'checks' : 'http')),
      );
      const outbound = await writeConfig(
        ctx,
        `${name}-outbound.json`,
        tollgateConfig(ctx, 'producer', {
          name: 'bench-out',
          mode: 'outbound',
          protocol: 'http',
          listen: `${HOST}:${port}`,
          target: `${HOST}:${inboundPort}`,
          serverName: 'ingest',
          verify: { spiffe: ['spiffe://example.org/ingest'] },
          integrity: checks ? { sign: true, keyId: ctx.keyId } : { sign: false },
        }),
      );
      const inboundChild = startTollgate(`${name} inbound`, inbound, ctx);
      await ready([inboundChild], inboundPort);
      children = [startTollgate(`${name} outbound`, outbound, ctx), inboundChild];
      break;
    }
    case 'haproxy-l4':
    case 'haproxy-l7':
    case 'haproxy-h2': {
      if (ctx.haproxy === null) throw new Error('haproxy is not installed');
      const cfg = await haproxyConfig(ctx, port, name === 'haproxy-l4' ? 'tcp' : 'http', name === 'haproxy-h2');
      children = [startChild(name, ctx.haproxy, ['-db', '-f', cfg])];
      break;
    }
  }
  await ready(children, port);
  if (store.metricsUrl) await storeConnected(children, store.metricsUrl);
  return { ...running(name, port, children), ...store };
}

/**
 * Listening is not enough for a target with a shared state store: until its client has
 * connected, every check would be refused (503). Polls the gauge, bounded.
 */
async function storeConnected(children: Child[], metricsUrl: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const text = await scrapeMetrics(metricsUrl, 2_000);
    if (text !== null && /^tollgate_shared_state_up 1$/m.test(text)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  await Promise.all(children.map((c) => stopChild(c, 1_000)));
  throw new Error(`tollgate_shared_state_up did not reach 1 on ${metricsUrl} within ${START_TIMEOUT_MS} ms`);
}
