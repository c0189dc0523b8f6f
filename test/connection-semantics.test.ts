/**
 * Connection semantics: what a proxy must keep intact and how it fails. Large bodies
 * both ways (directly into an inbound listener and through an outbound -> inbound chain),
 * chunked bodies, body limits, hop-by-hop headers, upstream failures (absent, slow, reset),
 * clients that leave, concurrency, upstream keep-alive closes; and for an inbound TCP
 * listener: byte-exact piping, half-close, the idle timeout, and refusing a peer before any
 * upstream is dialled. Real TLS on loopback with a fresh PKI per test.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import type { Client } from 'undici';
import {
  eventually,
  mtlsClient,
  plainClient,
  sha256,
  startTestSidecar,
  startUpstream,
  world,
  type SeenRequest,
  type TestIdentity,
  type TestSidecar,
  type World,
} from './helpers/world.ts';
import { INGEST, PRODUCER } from './helpers/identities.ts';

const INTRUDER = 'spiffe://example.org/intruder';
const MIB = 1024 * 1024;
/** upper bound for any single wait on an event */
const WAIT_MS = 10_000;
/** undici waits 300 s by default; a request under test must fail well before tap's timeout instead */
const BOUNDED = { headersTimeout: WAIT_MS, bodyTimeout: WAIT_MS } as const;

/* ------------------------------------------------------------------ fixtures */

interface Inbound {
  readonly w: World;
  readonly sc: TestSidecar;
  readonly producer: TestIdentity;
}

/** An inbound sidecar (identity spiffe://…/ingest) in front of `target`, allowing only the producer. */
async function inbound(t: Test, target: string, extra: Record<string, unknown> = {}): Promise<Inbound> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { spiffe: [INGEST] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    listeners: [
      { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target, allow: { spiffe: [PRODUCER] }, ...extra },
    ],
  });
  return { w, sc, producer };
}

/** An outbound sidecar with the producer's identity, dialling an inbound sidecar and verifying it is the ingest service. */
async function outboundTo(t: Test, inb: Inbound): Promise<TestSidecar> {
  return startTestSidecar(t, inb.w.dir, {
    identity: inb.producer.files,
    listeners: [
      {
        name: 'to-ingest',
        mode: 'outbound',
        listen: '127.0.0.1:0',
        target: inb.sc.addr(),
        serverName: 'localhost',
        verify: { spiffe: [INGEST] },
      },
    ],
  });
}

/** The two paths a request can take to the app: straight into the inbound listener, or app -> outbound -> inbound. */
interface Path {
  readonly name: string;
  readonly client: Client;
  /** for node:http(s) requests along the same path */
  readonly raw: RawTarget;
}

async function bothPaths(t: Test, target: string): Promise<Path[]> {
  const inb = await inbound(t, target);
  const out = await outboundTo(t, inb);
  return [
    {
      name: 'direct into the inbound listener',
      client: mtlsClient(t, inb.sc.addr(), inb.w.ca, inb.producer),
      raw: { addr: inb.sc.addr(), tls: { ca: inb.w.ca.certPem, cert: inb.producer.certPem, key: inb.producer.keyPem } },
    },
    { name: 'through outbound -> inbound', client: plainClient(t, out.addr()), raw: { addr: out.addr(), tls: null } },
  ];
}

/** Deterministic pseudo-random bytes (xorshift32), different per seed. */
function pattern(size: number, seed: number): Buffer {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return Buffer.from(words.buffer, 0, size);
}

/** A port that nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Wait for one event, failing the wait (not hanging) after WAIT_MS. */
function event(emitter: NodeJS.EventEmitter, name: string): Promise<unknown[]> {
  return once(emitter, name, { signal: AbortSignal.timeout(WAIT_MS) });
}

interface RawTarget {
  readonly addr: string;
  readonly tls: { ca: string; cert: string; key: string } | null;
}

interface RawResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/**
 * One request with node:http(s) on a fresh connection: full control of the headers, and the
 * body written as the given chunks with no content-length (so Node sends it chunked) unless
 * the headers declare one.
 */
function rawRequest(
  target: RawTarget,
  opts: { method: string; path: string; headers?: http.OutgoingHttpHeaders; chunks?: Buffer[] },
): Promise<RawResponse> {
  const [host, port] = splitAddr(target.addr);
  return new Promise((resolve, reject) => {
    const common = {
      host,
      port,
      method: opts.method,
      path: opts.path,
      headers: opts.headers ?? {},
      agent: false as const,
      timeout: WAIT_MS,
    };
    const req =
      target.tls === null
        ? http.request(common)
        : https.request({
            ...common,
            servername: 'localhost',
            ca: target.tls.ca,
            cert: target.tls.cert,
            key: target.tls.key,
          });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    for (const c of opts.chunks ?? []) req.write(c);
    req.end();
  });
}

function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

/** An mTLS connection to `addr`, resolved once the handshake completed. */
function tlsConnect(addr: string, inb: Inbound, identity: TestIdentity = inb.producer): Promise<TLSSocket> {
  const [host, port] = splitAddr(addr);
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host,
      port,
      servername: 'localhost',
      ca: inb.w.ca.certPem,
      cert: identity.certPem,
      key: identity.keyPem,
    });
    s.once('secureConnect', () => {
      s.removeListener('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Everything a socket delivers until it ends, with its sha256. */
function collect(s: net.Socket): Promise<{ length: number; sha: string }> {
  const hash = createHash('sha256');
  let length = 0;
  s.on('data', (c: Buffer) => {
    hash.update(c);
    length += c.length;
  });
  return event(s, 'end').then(() => ({ length, sha: hash.digest('hex') }));
}

interface TcpApp {
  readonly addr: string;
  /** connections the app accepted */
  readonly accepted: net.Socket[];
  /** connections the app saw close */
  closed: number;
}

/** A loopback TCP app; `onConnection` decides what it does with each connection. */
async function startTcpApp(t: Test, onConnection: (s: net.Socket) => void): Promise<TcpApp> {
  const app: TcpApp = { addr: '', accepted: [], closed: 0 };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    app.accepted.push(s);
    s.on('error', () => undefined);
    s.once('close', () => (app.closed += 1));
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of app.accepted) s.destroy();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  (app as { addr: string }).addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return app;
}

/* ---------------------------------------------------------------- HTTP bodies */

t.test('a 5 MiB request body reaches the app byte-exact, directly and through outbound -> inbound', async (t) => {
  const app = await startUpstream(t);
  const body = pattern(5 * MIB, 0xc0ffee);
  for (const path of await bothPaths(t, app.addr)) {
    const before = app.seen.length;
    const res = await path.client.request({
      ...BOUNDED,
      method: 'POST',
      path: '/upload',
      body,
      headers: { 'content-type': 'application/octet-stream' },
    });
    const summary = (await res.body.json()) as SeenRequest;
    t.equal(res.statusCode, 200, `${path.name}: 200`);
    t.equal(app.seen.length, before + 1, `${path.name}: the app saw one request`);
    const seen = app.seen[before]!;
    t.equal(seen.bodyLength, body.length, `${path.name}: the app saw every byte`);
    t.equal(seen.bodySha256, sha256(body), `${path.name}: the app saw the same bytes`);
    t.equal(summary.bodySha256, sha256(body), `${path.name}: the answer came back for this body`);
  }
});

t.test('a 5 MiB response body reaches the client byte-exact, directly and through outbound -> inbound', async (t) => {
  const payload = pattern(5 * MIB, 0xbeef);
  const app = await startUpstream(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      // no content-length: streamed chunked, in 64 KiB writes that respect backpressure
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let offset = 0;
      const pump = (): void => {
        while (offset < payload.length) {
          const chunk = payload.subarray(offset, offset + 64 * 1024);
          offset += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
  });
  for (const path of await bothPaths(t, app.addr)) {
    const res = await path.client.request({ ...BOUNDED, method: 'GET', path: '/download' });
    const got = Buffer.from(await res.body.arrayBuffer());
    t.equal(res.statusCode, 200, `${path.name}: 200`);
    t.equal(got.length, payload.length, `${path.name}: every byte arrived`);
    t.equal(sha256(got), sha256(payload), `${path.name}: the same bytes arrived`);
  }
});

t.test(
  'a chunked request body (no content-length) arrives intact, directly and through outbound -> inbound',
  async (t) => {
    const app = await startUpstream(t);
    const chunks = [pattern(1000, 1), pattern(70_000, 2), pattern(1, 3), pattern(300_000, 4)];
    const whole = Buffer.concat(chunks);
    for (const path of await bothPaths(t, app.addr)) {
      const before = app.seen.length;
      const res = await rawRequest(path.raw, { method: 'POST', path: '/chunked', chunks });
      t.equal(res.status, 200, `${path.name}: 200`);
      const seen = app.seen[before];
      t.ok(seen, `${path.name}: the app saw the request`);
      t.equal(seen?.aborted, false, `${path.name}: the app saw a complete body`);
      t.equal(seen?.bodyLength, whole.length, `${path.name}: every byte arrived`);
      t.equal(seen?.bodySha256, sha256(whole), `${path.name}: the same bytes arrived`);
    }
  },
);

/* ---------------------------------------------------------------- body limits */

t.test(
  'a declared content-length over limits.maxBodyBytes is refused with 413 and never reaches the app',
  async (t) => {
    const app = await startUpstream(t);
    const inb = await inbound(t, app.addr, { limits: { maxBodyBytes: 1024 } });
    const target: RawTarget = {
      addr: inb.sc.addr(),
      tls: { ca: inb.w.ca.certPem, cert: inb.producer.certPem, key: inb.producer.keyPem },
    };
    const big = pattern(4096, 9);
    const res = await rawRequest(target, {
      method: 'POST',
      path: '/too-big',
      headers: { 'content-length': big.length },
      chunks: [big],
    });
    t.equal(res.status, 413, '413');
    t.equal(res.headers['x-tollgate-error'], 'ERR_PAYLOAD_TOO_LARGE', 'the error header names the code');
    t.match(
      JSON.parse(res.body.toString('utf8')),
      { error: 'ERR_PAYLOAD_TOO_LARGE', message: String },
      'a small JSON body names the code',
    );

    // a body within the limit still goes through; the app saw only that one
    const small = pattern(512, 10);
    const ok = await rawRequest(target, {
      method: 'POST',
      path: '/small',
      headers: { 'content-length': small.length },
      chunks: [small],
    });
    t.equal(ok.status, 200, 'a body within the limit is forwarded');
    t.same(
      app.seen.map((s) => s.url),
      ['/small'],
      'the app never saw the oversized request',
    );
  },
);

t.test(
  'a chunked body that grows over limits.maxBodyBytes is refused and the app never sees it complete',
  async (t) => {
    let started = 0;
    const app = await startUpstream(t);
    app.server.on('request', () => (started += 1));
    const inb = await inbound(t, app.addr, { limits: { maxBodyBytes: 1024 } });
    const target: RawTarget = {
      addr: inb.sc.addr(),
      tls: { ca: inb.w.ca.certPem, cert: inb.producer.certPem, key: inb.producer.keyPem },
    };
    const chunks = Array.from({ length: 8 }, (_, i) => pattern(512, 100 + i));
    const outcome = await rawRequest(target, { method: 'POST', path: '/grows', chunks }).then(
      (res) => ({ res, err: null }),
      (err: Error) => ({ res: null, err }),
    );
    if (outcome.res !== null) {
      t.equal(outcome.res.status, 413, 'refused with 413');
      t.equal(outcome.res.headers['x-tollgate-error'], 'ERR_PAYLOAD_TOO_LARGE', 'the error header names the code');
    } else {
      // the 413 can be lost when the connection is reset with request bytes still unread; only a reset or a broken pipe counts
      t.match(
        (outcome.err as NodeJS.ErrnoException).code,
        /^(ECONNRESET|EPIPE)$/,
        `the connection was reset instead (${outcome.err.message})`,
      );
    }
    // either way, refused for the body limit and nothing else: one refusal, with that code
    await eventually(
      () => inb.sc.logs.lines.some((l) => l.msg === 'request refused'),
      WAIT_MS,
      'the refusal to be logged',
    );
    t.same(
      inb.sc.logs.lines.filter((l) => l.msg === 'request refused').map((l) => l.code),
      ['ERR_PAYLOAD_TOO_LARGE'],
      'refused as ERR_PAYLOAD_TOO_LARGE',
    );
    // whatever part reached the app was cut off: every request the app started has ended, none complete
    await eventually(() => app.seen.length === started, WAIT_MS, 'the app to finish with every request it started');
    t.same(
      app.seen.filter((s) => !s.aborted),
      [],
      'the app never saw a complete oversized body',
    );
    t.ok(
      app.seen.every((s) => s.bodyLength <= 1024),
      'the app never saw more than the limit',
    );
  },
);

/* ---------------------------------------------------------------- headers */

t.test(
  'hop-by-hop headers, and headers the Connection header names, are not forwarded to the app; others are',
  async (t) => {
    const app = await startUpstream(t);
    const inb = await inbound(t, app.addr);
    const target: RawTarget = {
      addr: inb.sc.addr(),
      tls: { ca: inb.w.ca.certPem, cert: inb.producer.certPem, key: inb.producer.keyPem },
    };
    const res = await rawRequest(target, {
      method: 'GET',
      path: '/headers',
      headers: {
        Connection: 'X-Custom',
        'X-Custom': 'per-hop secret',
        'Keep-Alive': 'timeout=5',
        'Proxy-Authorization': 'Basic dXNlcjpwYXNz',
        TE: 'trailers',
        Upgrade: 'h2c',
        'X-Normal': 'kept',
        Accept: 'application/json',
      },
    });
    t.equal(res.status, 200, '200');
    t.equal(app.seen.length, 1, 'the app saw the request');
    const h = app.seen[0]!.headers;
    t.equal(h['x-custom'], undefined, 'a header named by Connection is dropped');
    t.notMatch(String(h.connection ?? ''), /x-custom/i, "the client's Connection header is not passed on");
    t.equal(h['keep-alive'], undefined, 'Keep-Alive is dropped');
    t.equal(h['proxy-authorization'], undefined, 'Proxy-Authorization is dropped');
    t.equal(h.te, undefined, 'TE is dropped');
    t.equal(h.upgrade, undefined, 'Upgrade is dropped');
    t.equal(h['x-normal'], 'kept', 'an end-to-end header is forwarded');
    t.equal(h.accept, 'application/json', 'Accept is forwarded');
    t.equal(h['x-tollgate-peer'], PRODUCER, 'the peer header is set');
  },
);

/* ---------------------------------------------------------------- upstream failures */

t.test('no backend listening: 502 ERR_UPSTREAM_UNAVAILABLE with a JSON body', async (t) => {
  const inb = await inbound(t, `127.0.0.1:${await closedPort()}`);
  const client = mtlsClient(t, inb.sc.addr(), inb.w.ca, inb.producer);
  const res = await client.request({ ...BOUNDED, method: 'GET', path: '/anything' });
  const text = await res.body.text();
  t.equal(res.statusCode, 502, '502');
  t.equal(res.headers['x-tollgate-error'], 'ERR_UPSTREAM_UNAVAILABLE', 'the error header names the code');
  t.match(String(res.headers['content-type']), /^application\/json/, 'JSON');
  const body = JSON.parse(text) as { error: string; message: string };
  t.equal(body.error, 'ERR_UPSTREAM_UNAVAILABLE', 'the body names the code');
  t.type(body.message, 'string', 'and says what happened');
  t.equal(
    await inb.sc.metric('tollgate_upstream_errors_total', { listener: 'ingest', reason: 'upstream_refused' }),
    1,
    'counted as an upstream error: refused',
  );
  t.match(
    inb.sc.logs.lines.filter((l) => l.code === 'ERR_UPSTREAM_UNAVAILABLE'),
    [
      {
        level: 40,
        reason: 'upstream_refused',
        msg: 'the upstream refused the connection (nothing listens on its port)',
      },
    ],
    'one log line that says the connection was refused',
  );
});

t.test('a backend that never answers: 504 ERR_UPSTREAM_TIMEOUT after limits.upstreamTimeoutSeconds', async (t) => {
  let received = 0;
  const app = await startUpstream(t, (req) => {
    received += 1;
    req.resume(); // read the request, never answer
  });
  const inb = await inbound(t, app.addr, { limits: { upstreamTimeoutSeconds: 1 } });
  const client = mtlsClient(t, inb.sc.addr(), inb.w.ca, inb.producer);
  const start = Date.now();
  const res = await client.request({ ...BOUNDED, method: 'GET', path: '/slow' });
  const body = JSON.parse(await res.body.text()) as { error: string };
  const elapsed = Date.now() - start;
  t.equal(received, 1, 'the app got the request');
  t.equal(res.statusCode, 504, '504');
  t.equal(res.headers['x-tollgate-error'], 'ERR_UPSTREAM_TIMEOUT', 'the error header names the code');
  t.equal(body.error, 'ERR_UPSTREAM_TIMEOUT', 'the body names the code');
  t.ok(elapsed >= 900, `waited for the timeout (${elapsed} ms)`);
  t.equal(
    await inb.sc.metric('tollgate_upstream_errors_total', { listener: 'ingest', reason: 'upstream_timeout' }),
    1,
    'counted as an upstream timeout',
  );
});

t.test(
  'a backend that resets mid-response: the client sees a broken response, never a clean complete one',
  async (t) => {
    const app = await startUpstream(t, (req, res) => {
      req.resume();
      // /sized declares its length; /chunked does not (a clean end would look complete)
      res.writeHead(200, req.url === '/sized' ? { 'content-length': String(MIB) } : {});
      res.write(pattern(64 * 1024, 7), () => res.socket?.destroy());
    });
    const inb = await inbound(t, app.addr);
    for (const path of ['/sized', '/chunked']) {
      const client = mtlsClient(t, inb.sc.addr(), inb.w.ca, inb.producer);
      const outcome = await client.request({ ...BOUNDED, method: 'GET', path }).then(
        async (res) => {
          const got = await res.body.arrayBuffer().then(
            (b) => ({ length: b.byteLength, err: null }),
            (err: Error) => ({ length: -1, err }),
          );
          return { status: res.statusCode, ...got };
        },
        (err: Error) => ({ status: 0, length: -1, err }),
      );
      t.ok(
        outcome.err !== null || outcome.status >= 500,
        `${path}: the truncation is reported (status ${outcome.status}, ${outcome.err?.message ?? 'no error'})`,
      );
      t.not(
        outcome.status === 200 && outcome.err === null,
        true,
        `${path}: not a clean complete 200 (got ${outcome.length} bytes)`,
      );
    }
    await eventually(
      async () =>
        (await inb.sc.metric('tollgate_upstream_errors_total', { listener: 'ingest', reason: 'upstream_reset' })) === 2,
      WAIT_MS,
      'both resets to be counted',
    );
  },
);

t.test('a client that goes away mid-request aborts the upstream request, and the sidecar keeps serving', async (t) => {
  const requests: Array<{ url: string; complete: () => boolean; closedEarly: boolean }> = [];
  const app = await startUpstream(t, (req, res) => {
    const r = { url: req.url ?? '', complete: () => req.complete, closedEarly: false };
    requests.push(r);
    req.resume();
    res.on('close', () => {
      if (!res.writableFinished) r.closedEarly = true;
    });
    if (req.url === '/ok') req.on('end', () => res.end('fine'));
    // anything else: never answered
  });
  const inb = await inbound(t, app.addr);
  const tlsOpts = { ca: inb.w.ca.certPem, cert: inb.producer.certPem, key: inb.producer.keyPem };

  // 1. half-sent body: the client leaves while the upstream is still reading it
  const half = await tlsConnect(inb.sc.addr(), inb);
  half.on('error', () => undefined);
  half.write(`POST /half-sent HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${MIB}\r\n\r\n`);
  half.write(pattern(16 * 1024, 5));
  await eventually(() => requests.some((r) => r.url === '/half-sent'), WAIT_MS, 'the app to get the half-sent request');
  half.destroy();
  await eventually(
    () => requests.find((r) => r.url === '/half-sent')!.closedEarly,
    WAIT_MS,
    'the upstream request to be aborted',
  );
  t.notOk(requests.find((r) => r.url === '/half-sent')!.complete(), 'the app never got the whole body');

  // 2. whole request sent, the client leaves while waiting for the answer
  const waiting = await tlsConnect(inb.sc.addr(), inb);
  waiting.on('error', () => undefined);
  waiting.write('GET /waiting HTTP/1.1\r\nHost: localhost\r\n\r\n');
  await eventually(() => requests.some((r) => r.url === '/waiting'), WAIT_MS, 'the app to get the waiting request');
  waiting.destroy();
  await eventually(
    () => requests.find((r) => r.url === '/waiting')!.closedEarly,
    WAIT_MS,
    'the upstream request to be aborted',
  );

  // 3. still healthy
  const res = await rawRequest(
    { addr: inb.sc.addr(), tls: tlsOpts },
    { method: 'POST', path: '/ok', chunks: [Buffer.from('hello')] },
  );
  t.equal(res.status, 200, 'the next request works');
  t.equal(res.body.toString(), 'fine', 'with the answer of the app');
  t.ok(inb.sc.ready(), 'the sidecar is ready');
  t.equal(
    await inb.sc.metric('tollgate_upstream_errors_total'),
    0,
    'a client going away is not counted as an upstream failure',
  );
  await eventually(() => inb.sc.listeners[0]!.connections() === 0, WAIT_MS, 'the abandoned connections to be gone');
});

/* ---------------------------------------------------------------- concurrency and keep-alive */

t.test('20 concurrent clients x 10 requests each all get their own correct answers', async (t) => {
  const app = await startUpstream(t);
  const inb = await inbound(t, app.addr);
  const CLIENTS = 20;
  const REQUESTS = 10;
  const failures: string[] = [];
  let ok = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      const client = mtlsClient(t, inb.sc.addr(), inb.w.ca, inb.producer);
      for (let r = 0; r < REQUESTS; r++) {
        const body = pattern(1000 + c * 97 + r * 13, c * 1000 + r + 1);
        const res = await client.request({ ...BOUNDED, method: 'POST', path: `/c/${c}/r/${r}`, body });
        const summary = (await res.body.json()) as SeenRequest;
        if (res.statusCode === 200 && summary.url === `/c/${c}/r/${r}` && summary.bodySha256 === sha256(body)) ok += 1;
        else failures.push(`client ${c} request ${r}: ${res.statusCode} ${summary.url}`);
      }
    }),
  );
  t.same(failures, [], 'no request failed or got another request’s answer');
  t.equal(ok, CLIENTS * REQUESTS, 'every request succeeded');
  t.equal(app.seen.length, CLIENTS * REQUESTS, 'the app saw each request once');
  t.equal(
    await inb.sc.metric('tollgate_requests_total', { listener: 'ingest', status_class: '2xx' }),
    CLIENTS * REQUESTS,
    'all counted as 2xx',
  );
});

t.test('requests keep working when the app closes idle keep-alive connections', async (t) => {
  const app = await startUpstream(t);
  app.server.keepAliveTimeout = 20; // ms: the app closes an idle connection almost at once
  let accepted = 0;
  let open = 0;
  app.server.on('connection', (s: net.Socket) => {
    accepted += 1;
    open += 1;
    s.once('close', () => (open -= 1));
  });
  const inb = await inbound(t, app.addr);
  const client = mtlsClient(t, inb.sc.addr(), inb.w.ca, inb.producer);
  const ROUNDS = 5;
  for (let i = 0; i < ROUNDS; i++) {
    const res = await client.request({ ...BOUNDED, method: 'GET', path: `/round/${i}` });
    const summary = (await res.body.json()) as SeenRequest;
    t.equal(res.statusCode, 200, `round ${i}: 200`);
    t.equal(summary.url, `/round/${i}`, `round ${i}: its own answer`);
    await eventually(() => open === 0, WAIT_MS, `the app to close its keep-alive connection after round ${i}`);
  }
  t.equal(accepted, ROUNDS, 'each round needed (and got) a new upstream connection');
  t.equal(await inb.sc.metric('tollgate_upstream_errors_total', { listener: 'ingest' }), 0, 'no upstream errors');
});

/* ---------------------------------------------------------------- TCP */

t.test('tcp: 1 MiB crosses an inbound tcp listener byte-exact in both directions at once', async (t) => {
  const app = await startTcpApp(t, (s) => s.pipe(s)); // echo
  const inb = await inbound(t, app.addr, { protocol: 'tcp' });
  const client = await tlsConnect(inb.sc.addr(), inb);
  const sent = pattern(MIB, 77);
  const hash = createHash('sha256');
  let received = 0;
  const echoed = new Promise<void>((resolve) => {
    client.on('data', (c: Buffer) => {
      hash.update(c);
      received += c.length;
      if (received >= sent.length) resolve();
    });
  });
  client.write(sent);
  await Promise.race([
    echoed,
    event(client, 'close').then(() => Promise.reject(new Error('closed before the echo was complete'))),
  ]);
  t.equal(received, sent.length, 'as many bytes came back as were sent');
  t.equal(hash.digest('hex'), sha256(sent), 'the same bytes came back');
  client.end();
  await event(client, 'close');
});

t.test(
  'tcp: after the client half-closes, the app still answers with 1 MiB and the client gets all of it; then both sides close',
  async (t) => {
    const request = pattern(MIB, 11);
    const reply = pattern(MIB, 12);
    const appSaw: Array<{ length: number; sha: string; sawEndFirst: boolean }> = [];
    const app = await startTcpApp(t, (s) => {
      void collect(s).then((got) => {
        appSaw.push({ ...got, sawEndFirst: true });
        s.end(reply); // answer only after the client's FIN
      });
    });
    const inb = await inbound(t, app.addr, { protocol: 'tcp' });
    const client = await tlsConnect(inb.sc.addr(), inb);
    const replyReceived = collect(client);
    const clientClosed = event(client, 'close');
    client.end(request);
    const got = await replyReceived;
    t.equal(appSaw.length, 1, 'the app saw the end of the request');
    t.equal(appSaw[0]?.length, request.length, 'the app got every request byte');
    t.equal(appSaw[0]?.sha, sha256(request), 'the app got the same request bytes');
    t.equal(got.length, reply.length, 'the client got every reply byte after its half-close');
    t.equal(got.sha, sha256(reply), 'the client got the same reply bytes');
    await clientClosed;
    await eventually(() => app.closed === 1, WAIT_MS, 'the app side to close');
    await eventually(
      () => inb.sc.listeners[0]!.connections() === 0,
      WAIT_MS,
      'the sidecar to let go of the connection',
    );
  },
);

t.test('tcp: limits.idleTimeoutSeconds closes connections on which nothing moves, and only those', async (t) => {
  const app = await startTcpApp(t, (s) => {
    s.resume();
    s.once('end', () => s.end());
  });
  const inb = await inbound(t, app.addr, { protocol: 'tcp', limits: { idleTimeoutSeconds: 1 } });

  // several idle connections at once: each one's timers must end it, whatever order they fire in
  const IDLE = 5;
  const idle = await Promise.all(Array.from({ length: IDLE }, () => tlsConnect(inb.sc.addr(), inb)));
  const closed = idle.map((c) => {
    c.on('error', () => undefined);
    return event(c, 'close');
  });
  for (const c of idle) c.write('x');
  await eventually(() => app.accepted.length === IDLE, WAIT_MS, 'the app to get every connection');
  const idleSince = Date.now();
  await Promise.all(closed);
  const waited = Date.now() - idleSince;
  t.ok(waited >= 800, `the connections stayed open while idle for about the timeout (${waited} ms)`);
  await eventually(() => app.closed === IDLE, WAIT_MS, 'the upstream sides to be closed too');

  // a connection that sends a byte every 200 ms for 2.2 s outlives the 1 s timeout, then idles out
  const busy = await tlsConnect(inb.sc.addr(), inb);
  busy.on('error', () => undefined);
  let busyClosed = false;
  const busyClose = event(busy, 'close').then(() => (busyClosed = true));
  // the longest silence the connection really had: on 2 busy cores a stalled test process can
  // leave a gap as long as the timeout, and closing it then is right, so that is what decides
  let longestGap = 0;
  let last = performance.now();
  for (let i = 0; i < 11 && !busyClosed; i++) {
    busy.write('.');
    await new Promise((r) => setTimeout(r, 200)); // the traffic pattern under test, not a wait for state
    longestGap = Math.max(longestGap, performance.now() - last);
    last = performance.now();
  }
  t.ok(
    !busyClosed || longestGap >= 1000,
    `a connection with traffic is not closed as idle (longest gap between bytes ${Math.round(longestGap)} ms)`,
  );
  await busyClose;
  t.ok(busyClosed, 'once quiet, it is closed too');
});

t.test('tcp: a peer that is not allowed is closed without the upstream being dialled', async (t) => {
  const app = await startTcpApp(t, (s) => s.pipe(s));
  const inb = await inbound(t, app.addr, { protocol: 'tcp' });
  const intruder = await inb.w.identity('intruder', { spiffe: [INTRUDER] });
  const refused = await tlsConnect(inb.sc.addr(), inb, intruder);
  refused.on('error', () => undefined);
  const refusedData: Buffer[] = [];
  refused.on('data', (c: Buffer) => refusedData.push(c));
  const closed = event(refused, 'close');
  refused.write('let me in');
  await closed;
  t.equal(Buffer.concat(refusedData).length, 0, 'the refused peer got nothing back');
  t.equal(
    await inb.sc.metric('tollgate_authz_decisions_total', { listener: 'ingest', decision: 'deny' }),
    1,
    'one deny decision',
  );

  // an allowed peer after it: the app's only connection is this one
  const allowed = await tlsConnect(inb.sc.addr(), inb);
  const echoed = event(allowed, 'data');
  allowed.write('hello');
  t.equal(String((await echoed)[0]), 'hello', 'the allowed peer is piped through');
  t.equal(app.accepted.length, 1, 'the app was dialled only for the allowed peer');
  allowed.end();
  await event(allowed, 'close');
});
