/**
 * Integration-test harness: a fresh PKI and real servers on loopback port 0 per test.
 *
 *   const w = await world(t);                       // CA + temp dir, torn down with t
 *   const id = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] });
 *   const app = await startUpstream(t);             // node:http app echoing what it got
 *   const sc = await startTestSidecar(t, w.dir, { identity: id.files, listeners: [...] });
 *   const client = mtlsClient(t, sc.listeners[0].address(), w.ca, producer);
 */
import http from 'node:http';
import type t from 'tap';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import pino, { type Logger } from 'pino';
import { Client } from 'undici';
import { validateConfig } from '../../src/config/validate.ts';
import { startSidecar, type Sidecar, type SidecarDeps } from '../../src/main.ts';
import { strictJsonProblem } from './strictJson.ts';
import {
  makeCa,
  makeLeaf,
  tempDir,
  writeIdentityDir,
  type LeafOptions,
  type TestCa,
  type Teardownable,
} from './pki.ts';
import type { IdentityFiles } from '../../src/certs/devPki.ts';
import type { Issued } from '../../src/certs/issue.ts';

/** A tap subtest (the last overload of t.test is (cb), so [0] is the callback and its first parameter a subtest). */
export type Test = Parameters<Parameters<typeof t.test>[0]>[0];

export interface TestIdentity {
  readonly leaf: Issued;
  readonly files: IdentityFiles;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface World {
  readonly ca: TestCa;
  readonly dir: string;
  identity(name: string, opts?: LeafOptions, ca?: TestCa): Promise<TestIdentity>;
}

export async function world(t: Teardownable, caOpts?: Parameters<typeof makeCa>[0]): Promise<World> {
  const ca = await makeCa(caOpts);
  const dir = await tempDir(t, 'tollgate-it-');
  return {
    ca,
    dir,
    async identity(name, opts = {}, issuer = ca) {
      const leaf = await makeLeaf(issuer, { cn: name, ...opts });
      const files = await writeIdentityDir(`${dir}/${name}`, leaf, ca);
      return { leaf, files, certPem: leaf.certPem, keyPem: leaf.keyPem };
    },
  };
}

/** Log lines a sidecar wrote, parsed, for asserting on what was logged. */
export interface LogCapture {
  readonly lines: Array<Record<string, unknown>>;
  readonly logger: Logger;
  /** lines that are not strict JSON (a repeated key, say), with why */
  readonly problems: string[];
}

export function captureLogs(level = 'debug'): LogCapture {
  const lines: Array<Record<string, unknown>> = [];
  const problems: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() === '') continue;
        const problem = strictJsonProblem(line);
        if (problem !== null) problems.push(`${problem}: ${line}`);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  return { lines, problems, logger: pino({ level }, sink) };
}

/** Fail the test (from its teardown) when a log line was not strict JSON. */
export function assertStrictLogLines(problems: readonly string[], who: string): void {
  if (problems.length > 0)
    throw new Error(
      `${who} logged ${problems.length} line(s) that are not strict JSON:\n${problems.slice(0, 5).join('\n')}`,
    );
}

export interface TestSidecar extends Sidecar {
  readonly registry: Registry;
  readonly logs: LogCapture;
  /** "host:port" of a listener by index */
  addr(i?: number): string;
  /** the value of a metric sample, or 0 */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

/**
 * Validate a raw config (relative paths against `dir`) and start it in-process with a fresh
 * registry and captured logs; `deps` adds to those (an audit sink, shorter identity timings).
 */
export async function startTestSidecar(
  t: Teardownable,
  dir: string,
  raw: Record<string, unknown>,
  deps: Omit<SidecarDeps, 'registry' | 'log'> = {},
  /** the config file `raw` was written to (Config.source, for a reload that re-reads it); none by default */
  source: string | null = null,
): Promise<TestSidecar> {
  const result = validateConfig({ admin: { listen: null }, ...raw }, { baseDir: dir, source });
  if (!result.ok)
    throw new Error('test config invalid: ' + result.problems.map((p) => `${p.path}: ${p.message}`).join('; '));
  const registry = new Registry();
  const logs = captureLogs();
  const sc = await startSidecar(result.config, { ...deps, registry, log: logs.logger });
  let stopped = false;
  const shutdown = async (): Promise<boolean> => {
    if (stopped) return true;
    stopped = true;
    return sc.shutdown();
  };
  t.teardown(async () => {
    await shutdown();
    assertStrictLogLines(logs.problems, 'the sidecar');
  });
  return {
    ...sc,
    shutdown,
    registry,
    logs,
    addr: (i = 0) => {
      const a = sc.listeners[i]!.address();
      return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
    },
    async metric(name, labels = {}) {
      const m = registry.getSingleMetric(name);
      if (m === undefined) return 0;
      const data = await m.get();
      let sum = 0;
      for (const v of data.values) {
        if (Object.entries(labels).every(([k, val]) => String((v.labels as Record<string, unknown>)[k]) === val))
          sum += v.value;
      }
      return sum;
    },
  };
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  bodyLength: number;
  bodySha256: string;
  aborted: boolean;
}

export interface Upstream {
  readonly server: http.Server;
  readonly port: number;
  readonly addr: string;
  readonly seen: SeenRequest[];
}

/**
 * A loopback app. By default it answers 200 with a JSON summary of the request (method, url,
 * headers, body length and sha256). `handler` replaces that for special behaviour.
 */
export async function startUpstream(t: Teardownable, handler?: http.RequestListener): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  const server = http.createServer(
    handler ??
      ((req, res) => {
        const hash = createHash('sha256');
        let length = 0;
        req.on('data', (c: Buffer) => {
          hash.update(c);
          length += c.length;
        });
        req.on('error', () => undefined);
        req.on('close', () => {
          if (!req.complete) seen.push(summary(req, length, '', true));
        });
        req.on('end', () => {
          const s = summary(req, length, hash.digest('hex'), false);
          seen.push(s);
          const body = JSON.stringify(s);
          res
            .writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
            .end(body);
        });
      }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  const port = (server.address() as AddressInfo).port;
  return { server, port, addr: `127.0.0.1:${port}`, seen };
}

/** An app that holds every request (after reading its body) until the test releases them all; it then answers 200 `done <url>`. */
export interface HeldUpstream {
  readonly addr: string;
  /** requests whose body has arrived */
  received(): number;
  release(): void;
}

export async function heldUpstream(t: Teardownable): Promise<HeldUpstream> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let received = 0;
  const app = await startUpstream(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      received += 1;
      void released.then(() => res.writeHead(200, { 'content-type': 'text/plain' }).end(`done ${req.url}`));
    });
  });
  // a test that fails while requests are held must not leave them hanging at teardown
  t.teardown(release);
  return { addr: app.addr, received: () => received, release };
}

function summary(req: http.IncomingMessage, bodyLength: number, bodySha256: string, aborted: boolean): SeenRequest {
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    bodyLength,
    bodySha256,
    aborted,
  };
}

/** An undici client speaking mTLS to `addr` with `identity` (or no client certificate when null). */
export function mtlsClient(
  t: Teardownable,
  addr: string,
  ca: { certPem: string },
  identity: { certPem: string; keyPem: string } | null,
  servername = 'localhost',
  /** `http1: true` offers only http/1.1 (undici offers h2 first): for tests of HTTP/1.1's own semantics */
  options: { readonly http1?: boolean } = {},
): Client {
  const client = new Client(`https://${addr}`, {
    ...(options.http1 === true ? { allowH2: false } : {}),
    connect: {
      ca: ca.certPem,
      servername,
      ...(identity === null ? {} : { cert: identity.certPem, key: identity.keyPem }),
    },
  });
  t.teardown(() => client.destroy());
  return client;
}

export function plainClient(t: Teardownable, addr: string): Client {
  const client = new Client(`http://${addr}`);
  t.teardown(() => client.destroy());
  return client;
}

export function sha256(buf: Buffer | string): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Poll `check` until it is true (no fixed sleeps); fail after `ms`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 5000,
  what = 'condition',
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
