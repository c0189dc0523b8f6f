/**
 * One producer → outbound → inbound → app chain on loopback, shared by the scenario tests
 * (test/scenarios/, in the spirit of ghostunnel's tests/common.py): a fresh PKI and key ring,
 * both sidecars in-process or as real `tollgate run` child processes, an app that counts what
 * reaches it, and a producer with a bounded load generator that counts what came back intact.
 *
 *   const pl = await pipeline(t, { volumes: true, inbound: { run: 'process', limits: { idleTimeoutSeconds: 5 } } });
 *   const run = pl.producer.load({ count: 400, concurrency: 8, maxMs: 10_000, bodyBytes: 1024 });
 *   await eventually(() => run.progress().ok >= 50, 10_000, 'load under way');
 *   await pl.inbound.rotate();                                  // a new certificate, `..data` swapped
 *   const r = await run;                                        // { sent, ok, failed, corrupted, byStatus, byCode, byError }
 *   t.same({ failed: r.failed, corrupted: r.corrupted }, { failed: 0, corrupted: 0 }, summary(r));
 *   pl.inbound.signal('SIGTERM'); t.equal((await pl.inbound.exited!).code, 0);
 *
 * Defaults: both sidecars in-process (fresh registry, captured logs, admin on 127.0.0.1:0);
 * the outbound signs with key `k1` and checks the inbound's SPIFFE ID; the inbound allows the
 * producer and verifies signatures; the app answers 200 with the request body echoed.
 * Processes run dist/ (`npx tsc -p tsconfig.build.json` first). Every config is also written
 * to `side.configFile` (absolute paths), so a test can rewrite it and reload.
 */
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { Client, Pool, request as undiciRequest } from 'undici';
import type { SidecarDeps } from '../../src/main.ts';
import type { Issued } from '../../src/certs/issue.ts';
import { INGEST, PRODUCER } from './identities.ts';
import { makeLeaf, writeIdentityDir, type LeafOptions, type Teardownable } from './pki.ts';
import { exitWithin, freePort, startTollgate, type Finished, type Running } from './process.ts';
import { parsePrometheusText, sampleValue } from './prometheusText.ts';
import { secretVolume, type SecretVolume } from './secretVolume.ts';
import { writeKey, type TestKey } from './signing.ts';
import { eventually, startTestSidecar, world, type TestSidecar, type World } from './world.ts';

/** the request header carrying the load generator's id, which the app records bodies under */
export const ID_HEADER = 'x-pipeline-id';
/** set by the default app on its echo, so the producer knows the response body must equal the request body */
export const ECHO_HEADER = 'x-pipeline-echo';
export const KEY_ID = 'k1';
const START_WAIT_MS = 15_000;

/* ------------------------------------------------------------------------------ options */

export type RunAs = 'in-process' | 'process';

export interface SideOptions {
  /** 'in-process' (default): startSidecar in the test's process; 'process': `bin/tollgate.js run --config FILE` */
  readonly run?: RunAs;
  /** the listener's `limits` */
  readonly limits?: Record<string, unknown>;
  /** the listener's `integrity` (default inbound { verify: true }, outbound { sign: true, keyId: 'k1' }) */
  readonly integrity?: Record<string, unknown>;
  /** inbound: the listener's `anomaly` */
  readonly anomaly?: Record<string, unknown>;
  /** inbound: the listener's `allow` (default { spiffe: [PRODUCER] }) */
  readonly allow?: Record<string, unknown>;
  /** outbound: the listener's `verify` (default { spiffe: [INGEST] }) */
  readonly verify?: Record<string, unknown>;
  /** anything else in the listener entry (protocol, rateLimits, …), merged last */
  readonly listener?: Record<string, unknown>;
  /** top-level config keys (integrity profile, tls, drainTimeoutSeconds, log, audit, …), merged last */
  readonly config?: Record<string, unknown>;
  /** the side's certificate (default cn 'ingest'/'producer' with the SPIFFE ID above, dns localhost) */
  readonly leaf?: LeafOptions;
  /** in-process only: extra dependencies (identityTiming, audit sink, requestShutdown) */
  readonly deps?: Omit<SidecarDeps, 'registry' | 'log'>;
}

export interface PipelineOptions {
  readonly inbound?: SideOptions;
  readonly outbound?: SideOptions;
  /** replaces the echoing app; the app still counts connections, requests, bytes and records the bodies of load requests */
  readonly app?: http.RequestListener;
  /** false: no signing or verifying (default true) */
  readonly sign?: boolean;
  /** identity files in Kubernetes-style Secret volumes (`..data` symlink), so rotate() swaps them the kubelet's way */
  readonly volumes?: boolean;
}

/* ------------------------------------------------------------------------------ the app */

export interface App {
  readonly server: http.Server;
  readonly port: number;
  /** "127.0.0.1:port" */
  readonly addr: string;
  /** TCP connections accepted, ever */
  connections(): number;
  /** connections open now */
  open(): number;
  /** `request` events, ever */
  requests(): number;
  /** raw bytes received on every connection, ever */
  bytes(): number;
  /** sha-256 (hex) of each complete body received with this load id (more than one: it arrived more than once) */
  digestsOf(id: string): readonly string[];
  /** how many requests carried each x-tollgate-peer value */
  peers(): ReadonlyMap<string, number>;
  up(): boolean;
  /** stop listening and cut every connection: new connections to the port are refused */
  stop(): Promise<void>;
  /** listen again on the same port */
  start(): Promise<void>;
}

/** The default app: 200 with the request body echoed back, marked with ECHO_HEADER. */
export function echo(req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('error', () => undefined);
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    res
      .writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, [ECHO_HEADER]: '1' })
      .end(body);
  });
}

/** A loopback node:http app that counts and records what reaches it, then hands each request to `handler`. */
export async function startApp(t: Teardownable, handler: http.RequestListener = echo): Promise<App> {
  const server = http.createServer();
  const sockets = new Set<Socket>();
  const digests = new Map<string, string[]>();
  const peers = new Map<string, number>();
  let connections = 0;
  let requests = 0;
  let closedBytes = 0;
  let listening = false;

  server.on('connection', (s: Socket) => {
    connections += 1;
    sockets.add(s);
    s.once('close', () => {
      sockets.delete(s);
      closedBytes += s.bytesRead;
    });
  });
  // registered before the handler, so a body is recorded before the handler answers
  server.on('request', (req: http.IncomingMessage) => {
    requests += 1;
    const peer = req.headers['x-tollgate-peer'];
    if (typeof peer === 'string') peers.set(peer, (peers.get(peer) ?? 0) + 1);
    const id = req.headers[ID_HEADER];
    if (typeof id !== 'string') return;
    const hash = createHash('sha256');
    req.on('data', (c: Buffer) => hash.update(c));
    req.on('end', () => {
      const list = digests.get(id) ?? [];
      list.push(hash.digest('hex'));
      digests.set(id, list);
    });
  });
  server.on('request', handler);

  let port = 0;
  const start = async (): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    port = (server.address() as { port: number }).port;
    listening = true;
  };
  const stop = async (): Promise<void> => {
    if (!listening) return;
    listening = false;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of sockets) s.destroy();
    await closed;
  };
  await start();
  t.teardown(stop);
  return {
    server,
    port,
    addr: `127.0.0.1:${port}`,
    connections: () => connections,
    open: () => sockets.size,
    requests: () => requests,
    bytes: () => closedBytes + [...sockets].reduce((n, s) => n + s.bytesRead, 0),
    digestsOf: (id) => digests.get(id) ?? [],
    peers: () => peers,
    up: () => listening,
    stop,
    start,
  };
}

/* ------------------------------------------------------------------------------ a sidecar */

export interface Side {
  readonly role: 'inbound' | 'outbound';
  readonly run: RunAs;
  /** the config file as last written (absolute paths) */
  readonly configFile: string;
  /** the listener's "host:port" */
  readonly addr: string;
  /** "http://127.0.0.1:port" of the admin API */
  readonly adminUrl: string;
  /** the in-process sidecar, or null */
  readonly sidecar: TestSidecar | null;
  /** the child process, or null */
  readonly process: Running | null;
  /** process only: resolves when the child exits */
  readonly exited: Promise<Finished> | null;
  /** with `volumes`: the Secret volume holding tls.crt, tls.key, ca.crt */
  readonly volume: SecretVolume | null;
  /** the certificate currently written to the identity files */
  leaf(): Issued;
  /** a copy of the config as last written */
  config(): Record<string, unknown>;
  /** rewrite the config file (atomically): `edit` changes the copy it gets or returns a new one; nothing is reloaded */
  rewriteConfig(edit: (raw: Record<string, unknown>) => Record<string, unknown> | void): Promise<void>;
  /** POST /reload on the admin API */
  reload(): Promise<{ status: number; body: unknown }>;
  /** the sum of the samples of a metric whose labels include `labels` (in-process: the registry; process: GET /metrics) */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** the JSON log lines written so far */
  logs(): Array<Record<string, unknown>>;
  /** process only: send a signal */
  signal(sig: NodeJS.Signals): void;
  /**
   * Issue a new certificate from the same CA (the side's leaf options, then `opts`) and write
   * it: one `..data` swap with `volumes`, the three files rewritten in place otherwise. The
   * sidecar picks it up through its directory watch; poll for the effect.
   */
  rotate(opts?: LeafOptions): Promise<Issued>;
  /** in-process: shutdown(); process: SIGTERM and wait for the exit */
  stop(): Promise<void>;
}

interface SideSpec {
  readonly role: 'inbound' | 'outbound';
  readonly opts: SideOptions;
  readonly listener: Record<string, unknown>;
}

async function startSide(t: Teardownable, w: World, keysDir: string, spec: SideSpec, volumes: boolean): Promise<Side> {
  const { role, opts } = spec;
  const name = role === 'inbound' ? 'ingest' : 'producer';
  const leafOpts: LeafOptions = { cn: name, spiffe: [role === 'inbound' ? INGEST : PRODUCER], ...opts.leaf };
  let leaf = await makeLeaf(w.ca, leafOpts);
  const identityDir = join(w.dir, `${role}-tls`);
  const volume = volumes ? await secretVolume(identityDir, identityFiles(leaf, w)) : null;
  const identity =
    volume === null
      ? await writeIdentityDir(identityDir, leaf, w.ca)
      : { certFile: volume.path('tls.crt'), keyFile: volume.path('tls.key'), caFile: volume.path('ca.crt') };

  const run = opts.run ?? 'in-process';
  const adminPort = run === 'process' ? await freePort() : 0;
  let raw: Record<string, unknown> = {
    admin: { listen: `127.0.0.1:${adminPort}` },
    identity,
    keys: { dir: keysDir },
    ...opts.config,
    listeners: [{ ...spec.listener, ...opts.listener }],
  };
  const configFile = join(w.dir, `${role}.json`);
  const write = async (): Promise<void> => {
    await writeFile(`${configFile}.tmp`, JSON.stringify(raw, null, 2));
    await rename(`${configFile}.tmp`, configFile);
  };
  await write();

  let sidecar: TestSidecar | null = null;
  let child: Running | null = null;
  let addr: string;
  let adminUrl: string;
  if (run === 'in-process') {
    sidecar = await startTestSidecar(t, w.dir, raw, opts.deps ?? {}, configFile);
    addr = sidecar.addr();
    adminUrl = `http://127.0.0.1:${sidecar.admin!.port}`;
  } else {
    const p = startTollgate(t, ['run', '--config', configFile]);
    child = p;
    const started = (): Record<string, unknown> | undefined => p.logs().find((l) => l.msg === 'tollgate started');
    await eventually(() => started() !== undefined || !p.running(), START_WAIT_MS, `the ${role} process to start`);
    const line = started();
    if (line === undefined)
      throw new Error(`the ${role} process did not start\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`);
    addr = (line.listeners as Array<{ address: string }>)[0]!.address;
    adminUrl = `http://127.0.0.1:${adminPort}`;
  }

  return {
    role,
    run,
    configFile,
    addr,
    adminUrl,
    sidecar,
    process: child,
    exited: child?.exited ?? null,
    volume,
    leaf: () => leaf,
    config: () => structuredClone(raw),
    async rewriteConfig(edit) {
      const copy = structuredClone(raw);
      raw = edit(copy) ?? copy;
      await write();
    },
    async reload() {
      const res = await undiciRequest(`${adminUrl}/reload`, { method: 'POST' });
      const text = await res.body.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: res.statusCode, body };
    },
    async metric(metricName, labels = {}) {
      if (sidecar !== null) return sidecar.metric(metricName, labels);
      const res = await undiciRequest(`${adminUrl}/metrics`);
      return sampleValue(parsePrometheusText(await res.body.text()), metricName, labels);
    },
    logs: () => (sidecar !== null ? sidecar.logs.lines : child!.logs()),
    signal(sig) {
      if (child === null)
        throw new Error(`the ${role} runs in-process: start it with run: 'process' to send it signals`);
      child.kill(sig);
    },
    async rotate(more = {}) {
      const next = await makeLeaf(w.ca, { ...leafOpts, ...more });
      if (volume !== null) await volume.update(identityFiles(next, w));
      else await writeIdentityDir(identityDir, next, w.ca);
      leaf = next;
      return next;
    },
    async stop() {
      if (sidecar !== null) await sidecar.shutdown();
      else if (child!.running()) {
        child!.kill('SIGTERM');
        await exitWithin(child!, START_WAIT_MS, role);
      }
    },
  };
}

function identityFiles(leaf: Issued, w: World): Record<string, string> {
  return { 'tls.crt': leaf.certPem, 'tls.key': leaf.keyPem, 'ca.crt': w.ca.certPem };
}

/* ------------------------------------------------------------------------------ the producer */

export interface ProducerRequest {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: Record<string, string>;
  readonly body?: Buffer | string;
}

export interface ProducerResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  /** x-tollgate-error, or null */
  readonly code: string | null;
}

export interface LoadOptions {
  /** how many requests at most */
  readonly count: number;
  /** stop starting requests after this long; requests in flight then still finish (or time out) */
  readonly maxMs: number;
  /** requests in flight at once (default 8); with ratePerSecond, the cap on them (default 32) */
  readonly concurrency?: number;
  /** start request i at i / ratePerSecond seconds instead of as fast as the concurrency allows */
  readonly ratePerSecond?: number;
  /** random body bytes per request (default 256; none for GET and HEAD) */
  readonly bodyBytes?: number;
  /** default POST */
  readonly method?: string;
  /** default /load */
  readonly path?: string;
  readonly headers?: Record<string, string>;
  /** headers and body timeout of each request (default 10 s): a request that hangs is counted failed as UND_ERR_*_TIMEOUT */
  readonly requestTimeoutMs?: number;
}

export interface LoadResult {
  /** requests started */
  sent: number;
  /** 2xx, and the body the app got (and any echo) equals the one sent */
  ok: number;
  /** not 2xx, or no response at all, and not corrupted */
  failed: number;
  /** the app got a complete body different from the one sent, or a 2xx echo differs from it */
  corrupted: number;
  /** ids the app received more than once */
  duplicated: number;
  /** responses by status */
  byStatus: Record<string, number>;
  /** responses by x-tollgate-error */
  byCode: Record<string, number>;
  /** requests with no response, by error code */
  byError: Record<string, number>;
  /** the first few failures and corruptions, for assertion messages */
  examples: string[];
  elapsedMs: number;
}

/** A load run: a promise of the result that can also report progress and be stopped early. */
export type LoadRun = Promise<LoadResult> & {
  /** the counts so far */
  progress(): LoadResult;
  /** start no more requests; the promise resolves once those in flight finish */
  stop(): void;
};

export interface Producer {
  /** "http://host:port" of the outbound listener */
  readonly origin: string;
  /** one plain HTTP request to the outbound, read to the end (keep-alive connection shared by calls) */
  request(req?: ProducerRequest): Promise<ProducerResponse>;
  /** bounded load through the whole chain; see LoadOptions */
  load(opts: LoadOptions): LoadRun;
}

const MAX_EXAMPLES = 10;
let loadRuns = 0;

function emptyResult(): LoadResult {
  return {
    sent: 0,
    ok: 0,
    failed: 0,
    corrupted: 0,
    duplicated: 0,
    byStatus: {},
    byCode: {},
    byError: {},
    examples: [],
    elapsedMs: 0,
  };
}

function bump(m: Record<string, number>, k: string): void {
  m[k] = (m[k] ?? 0) + 1;
}

function sha256hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function createProducer(t: Teardownable, outboundAddr: string, app: App): Producer {
  const origin = `http://${outboundAddr}`;
  let client: Client | null = null;
  t.teardown(() => client?.destroy());

  async function request(req: ProducerRequest = {}): Promise<ProducerResponse> {
    client ??= new Client(origin);
    const res = await client.request({
      method: (req.method ?? 'GET') as 'GET',
      path: req.path ?? '/',
      headers: req.headers ?? {},
      body: req.body ?? null,
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    const code = res.headers['x-tollgate-error'];
    return { status: res.statusCode, headers: res.headers, body, code: typeof code === 'string' ? code : null };
  }

  function load(opts: LoadOptions): LoadRun {
    const run = ++loadRuns;
    const method = opts.method ?? 'POST';
    const bodyless = method === 'GET' || method === 'HEAD';
    const bodyBytes = bodyless ? 0 : (opts.bodyBytes ?? 256);
    const concurrency = opts.concurrency ?? (opts.ratePerSecond === undefined ? 8 : 32);
    const timeout = opts.requestTimeoutMs ?? 10_000;
    const pool = new Pool(origin, {
      connections: concurrency,
      pipelining: 1,
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
    const r = emptyResult();
    const sentDigests = new Map<string, string>();
    const corruptedIds = new Set<string>();
    /** how each request was counted when its response (or error) came */
    const counted = new Map<string, 'ok' | 'failed'>();
    const startedAt = Date.now();
    const deadline = startedAt + opts.maxMs;
    let next = 0;
    let stopped = false;

    const example = (s: string): void => {
      if (r.examples.length < MAX_EXAMPLES) r.examples.push(s);
    };
    const markCorrupted = (id: string, why: string): void => {
      if (corruptedIds.has(id)) return;
      corruptedIds.add(id);
      r.corrupted += 1;
      example(`${id}: ${why}`);
    };

    async function one(i: number): Promise<void> {
      const id = `L${run}-${i}`;
      const body = bodyBytes > 0 ? randomBytes(bodyBytes) : Buffer.alloc(0);
      const sent = sha256hex(body);
      sentDigests.set(id, sent);
      r.sent += 1;
      try {
        const res = await pool.request({
          method: method as 'POST',
          path: opts.path ?? '/load',
          headers: {
            ...opts.headers,
            [ID_HEADER]: id,
            ...(bodyless ? {} : { 'content-type': 'application/octet-stream' }),
          },
          body: bodyless ? null : body,
        });
        const got = Buffer.from(await res.body.arrayBuffer());
        bump(r.byStatus, String(res.statusCode));
        const code = res.headers['x-tollgate-error'];
        if (typeof code === 'string') bump(r.byCode, code);
        const echoed = res.headers[ECHO_HEADER] === '1' && method !== 'HEAD';
        const success = res.statusCode >= 200 && res.statusCode < 300;
        if (success && echoed && sha256hex(got) !== sent)
          markCorrupted(id, `echo of ${got.length} bytes differs from the ${body.length} sent`);
        else if (app.digestsOf(id).some((d) => d !== sent)) markCorrupted(id, 'the app got a different body');
        else if (success) {
          r.ok += 1;
          counted.set(id, 'ok');
        } else {
          r.failed += 1;
          counted.set(id, 'failed');
          example(
            `${id}: ${res.statusCode} ${typeof code === 'string' ? code : ''} ${got.subarray(0, 200).toString()}`,
          );
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const code = e.code ?? e.name;
        bump(r.byError, code);
        if (app.digestsOf(id).some((d) => d !== sent))
          markCorrupted(id, `the app got a different body (and the producer ${code})`);
        else {
          r.failed += 1;
          counted.set(id, 'failed');
          example(`${id}: ${code} ${e.message}`);
        }
      }
    }

    async function worker(): Promise<void> {
      while (!stopped && next < opts.count && Date.now() < deadline) {
        const i = next++;
        if (opts.ratePerSecond !== undefined) {
          const wait = startedAt + (i * 1000) / opts.ratePerSecond - Date.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          if (stopped || Date.now() >= deadline) return;
        }
        await one(i);
      }
    }

    const done = (async (): Promise<LoadResult> => {
      try {
        await Promise.all(Array.from({ length: concurrency }, worker));
      } finally {
        await pool.destroy();
      }
      // a body the app finished recording after its response was counted
      for (const [id, sent] of sentDigests) {
        if (corruptedIds.has(id)) continue;
        const seen = app.digestsOf(id);
        if (!seen.some((d) => d !== sent)) continue;
        // counted ok or failed when its response came: move it
        if (counted.get(id) === 'ok') r.ok -= 1;
        else if (counted.get(id) === 'failed') r.failed -= 1;
        markCorrupted(id, 'the app got a different body');
      }
      for (const id of sentDigests.keys()) if (app.digestsOf(id).length > 1) r.duplicated += 1;
      r.elapsedMs = Date.now() - startedAt;
      return r;
    })();
    return Object.assign(done, {
      progress: (): LoadResult => ({
        ...r,
        byStatus: { ...r.byStatus },
        byCode: { ...r.byCode },
        byError: { ...r.byError },
        examples: [...r.examples],
        elapsedMs: Date.now() - startedAt,
      }),
      stop: (): void => {
        stopped = true;
      },
    });
  }

  return { origin, request, load };
}

/** One line for assertion messages: the counts and the first failures. */
export function summary(r: LoadResult): string {
  const parts = [
    `sent ${r.sent}, ok ${r.ok}, failed ${r.failed}, corrupted ${r.corrupted}, duplicated ${r.duplicated} in ${r.elapsedMs} ms`,
  ];
  if (Object.keys(r.byStatus).length > 0) parts.push(`status ${JSON.stringify(r.byStatus)}`);
  if (Object.keys(r.byCode).length > 0) parts.push(`codes ${JSON.stringify(r.byCode)}`);
  if (Object.keys(r.byError).length > 0) parts.push(`errors ${JSON.stringify(r.byError)}`);
  if (r.examples.length > 0) parts.push(`e.g. ${r.examples.slice(0, 3).join(' | ')}`);
  return parts.join('; ');
}

/* ------------------------------------------------------------------------------ the chain */

export interface Pipeline {
  readonly w: World;
  /** the signing key both sidecars read from `keysDir` */
  readonly key: TestKey;
  readonly keysDir: string;
  readonly app: App;
  readonly inbound: Side;
  readonly outbound: Side;
  readonly producer: Producer;
}

/** Start app, inbound, outbound (in that order, each on port 0) and the producer; all torn down with `t`. */
export async function pipeline(t: Teardownable, opts: PipelineOptions = {}): Promise<Pipeline> {
  const w = await world(t);
  const keysDir = join(w.dir, 'keys');
  const key = await writeKey(keysDir, KEY_ID);
  const sign = opts.sign ?? true;
  const app = await startApp(t, opts.app);
  const inOpts = opts.inbound ?? {};
  const outOpts = opts.outbound ?? {};

  const inbound = await startSide(
    t,
    w,
    keysDir,
    {
      role: 'inbound',
      opts: inOpts,
      listener: {
        name: 'ingest',
        mode: 'inbound',
        protocol: 'http',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: inOpts.allow ?? { spiffe: [PRODUCER] },
        integrity: inOpts.integrity ?? { verify: sign },
        ...(inOpts.anomaly === undefined ? {} : { anomaly: inOpts.anomaly }),
        ...(inOpts.limits === undefined ? {} : { limits: inOpts.limits }),
      },
    },
    opts.volumes === true,
  );

  const outbound = await startSide(
    t,
    w,
    keysDir,
    {
      role: 'outbound',
      opts: outOpts,
      listener: {
        name: 'to-ingest',
        mode: 'outbound',
        protocol: 'http',
        listen: '127.0.0.1:0',
        target: inbound.addr,
        serverName: 'localhost',
        verify: outOpts.verify ?? { spiffe: [INGEST] },
        integrity: outOpts.integrity ?? (sign ? { sign: true, keyId: KEY_ID } : { sign: false }),
        ...(outOpts.limits === undefined ? {} : { limits: outOpts.limits }),
      },
    },
    opts.volumes === true,
  );

  return { w, key, keysDir, app, inbound, outbound, producer: createProducer(t, outbound.addr, app) };
}
