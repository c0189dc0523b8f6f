/**
 * HTTP/1.1 semantics of the core, end to end: a real in-process inbound listener (mTLS) in
 * front of a recording node:http app, driven with raw TLS sockets so every byte is exact.
 * Request targets (absolute-form, OPTIONS *), Host rules, transfer-codings, CONNECT,
 * WebSocket tunnels (directly and through outbound -> inbound with signing), h2c upgrades
 * ignored, pipelining in order and one request upstream at a time, framing kept
 * (Content-Length stays Content-Length, chunked stays chunked), 1xx interim responses, and
 * bodiless responses (HEAD, 204, 304) that leave the connection usable.
 *
 * The client side reads responses with Node's strict llhttp binding (the parser pinned in
 * test/http1-parser-binding.test.ts), so an ambiguous or extra byte shows up as a parse error.
 */
import t from 'tap';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import { ERRORS, type ErrorCode } from '../src/core/errors.ts';
import { loadHttpParser, STRICT, type ParseError } from '../src/http1/parserBinding.ts';
import { INGEST, PRODUCER } from './helpers/identities.ts';
import { writeKey } from './helpers/signing.ts';
import {
  eventually,
  startTestSidecar,
  world,
  type Test,
  type TestIdentity,
  type TestSidecar,
  type World,
} from './helpers/world.ts';

/** upper bound for any single wait */
const WAIT_MS = 15_000;
/** how long a refused connection may stay open after its answer (the core closes it at once) */
const CLOSE_MS = 5_000;
const PIPELINED = 1000;
const binding = loadHttpParser();

/* ------------------------------------------------------------------ the recording app */

interface AppRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  /** the app's number for the upstream connection it arrived on */
  readonly conn: number;
  /** arrived through the 'upgrade' event */
  readonly upgrade: boolean;
  body: Buffer;
}

interface RecordingApp {
  readonly addr: string;
  /** every request in arrival order */
  readonly seen: AppRequest[];
  /** upstream connections accepted, ever */
  connections(): number;
  /** requests begun and not yet answered */
  inFlight(): number;
  /** the most requests in flight at once */
  maxInFlight(): number;
  /** WebSocket tunnels accepted (101 answered) */
  tunnels(): number;
}

/** The milliseconds a `?delay=N` query asks the app to wait before answering (at most 100). */
function delayOf(url: string): number {
  const m = /[?&]delay=(\d+)/.exec(url);
  return m === null ? 0 : Math.min(Number(m[1]), 100);
}

/**
 * A node:http app that records what it receives and answers by path: `/204`, `/304`, `/early`
 * (103 Early Hints, then 200 `final`), `/chunked-response` (no length), anything else 200 with
 * the request target as its body and a Content-Length. `?delay=N` answers after N ms. WebSocket
 * upgrades get 101 and an echo of every byte; any other upgrade gets 400.
 */
async function startRecordingApp(t: Test): Promise<RecordingApp> {
  const seen: AppRequest[] = [];
  const connIds = new WeakMap<net.Socket, number>();
  let connections = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let tunnels = 0;
  const sockets = new Set<net.Socket>();

  const answer = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/204') res.writeHead(204).end();
    else if (path === '/304') res.writeHead(304, { etag: '"v1"' }).end();
    else if (path === '/early') {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' }).end('final');
    } else if (path === '/chunked-response') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part1-');
      res.end('part2');
    } else {
      const body = req.url ?? '';
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
    }
  };

  const server = http.createServer((req, res) => {
    const conn = connIds.get(req.socket) ?? -1;
    const rec: AppRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      conn,
      upgrade: false,
      body: Buffer.alloc(0),
    };
    seen.push(rec);
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let done = false;
    const finished = (): void => {
      if (done) return;
      done = true;
      inFlight -= 1;
    };
    res.on('finish', finished);
    res.on('close', finished);
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('error', () => undefined);
    req.on('end', () => {
      rec.body = Buffer.concat(parts);
      const delay = delayOf(rec.url);
      if (delay === 0) answer(req, res);
      else setTimeout(() => answer(req, res), delay);
    });
  });
  server.on('connection', (s: net.Socket) => {
    connections += 1;
    connIds.set(s, connections);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      conn: connIds.get(socket) ?? -1,
      upgrade: true,
      body: Buffer.alloc(0),
    });
    socket.on('error', () => undefined);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    tunnels += 1;
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.on('data', (c: Buffer) => socket.write(c));
    socket.on('end', () => socket.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  return {
    addr: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    connections: () => connections,
    inFlight: () => inFlight,
    maxInFlight: () => maxInFlight,
    tunnels: () => tunnels,
  };
}

/* ------------------------------------------------------------------ the raw client */

interface Message {
  readonly status: number;
  /** lowercased name -> values in order */
  readonly headers: Map<string, string[]>;
  body: Buffer;
}

function header(m: Message | undefined, name: string): string | undefined {
  return m?.headers.get(name)?.join(', ');
}

/**
 * One client connection (TLS or plain) that writes exact bytes and reads every response with a
 * strict llhttp RESPONSE parser. `send` takes the methods of the requests in the bytes so a
 * response to HEAD is read without a body. After a 101, further bytes are tunnel bytes.
 */
class RawConnection {
  /** every response message, interim (1xx) ones included, in order */
  readonly messages: Message[] = [];
  /** bytes after a 101 */
  tunnel = Buffer.alloc(0);
  parseError: string | null = null;
  closed = false;
  private readonly methods: string[] = [];
  private readonly parser = binding.create();
  private current: Message | null = null;
  private upgraded = false;
  private readonly closedPromise: Promise<void>;
  readonly socket: net.Socket;

  constructor(socket: net.Socket) {
    this.socket = socket;
    const p = this.parser;
    p.initialize(binding.RESPONSE, {}, 64 * 1024, STRICT);
    let pending: string[] = [];
    p[binding.kOnHeaders] = (h: string[]) => {
      pending = pending.concat(h);
    };
    p[binding.kOnHeadersComplete] = (
      _a: number,
      _b: number,
      raw: string[],
      _m: unknown,
      _u: unknown,
      status: number,
    ): number => {
      const headers = new Map<string, string[]>();
      const all = pending.concat(raw);
      pending = [];
      for (let i = 0; i + 1 < all.length; i += 2) {
        const name = all[i]!.toLowerCase();
        headers.set(name, [...(headers.get(name) ?? []), all[i + 1]!]);
      }
      this.current = { status, headers, body: Buffer.alloc(0) };
      return status >= 200 && this.methods[0] === 'HEAD' ? 1 : 0;
    };
    p[binding.kOnBody] = (b: Buffer) => {
      if (this.current !== null) this.current.body = Buffer.concat([this.current.body, b]);
    };
    p[binding.kOnMessageComplete] = () => {
      if (this.current === null) return;
      this.messages.push(this.current);
      if (this.current.status >= 200 || this.current.status === 101) this.methods.shift();
      if (this.current.status === 101) this.upgraded = true;
      this.current = null;
    };
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) => {
      socket.on('close', () => {
        this.closed = true;
        resolve();
      });
    });
    socket.on('end', () => {
      if (!this.upgraded && this.parseError === null) {
        const f = p.finish();
        if (f instanceof Error) this.parseError = (f as ParseError).code;
      }
    });
  }

  private onData(chunk: Buffer): void {
    if (this.upgraded) {
      this.tunnel = Buffer.concat([this.tunnel, chunk]);
      return;
    }
    if (this.parseError !== null) return;
    const r = this.parser.execute(chunk);
    if (r instanceof Error) {
      this.parseError = (r as ParseError).code;
      return;
    }
    if (this.upgraded && r < chunk.length) this.tunnel = Buffer.concat([this.tunnel, chunk.subarray(r)]);
  }

  /** write `bytes` (latin1) holding requests with these methods, in order */
  send(bytes: string | Buffer, methods: readonly string[]): void {
    this.methods.push(...methods);
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /** responses with a final status (>= 200, or 101) */
  finals(): Message[] {
    return this.messages.filter((m) => m.status >= 200 || m.status === 101);
  }

  /** wait until `n` final responses arrived, or the connection closed or broke; bounded */
  async responses(n: number, ms = WAIT_MS): Promise<Message[]> {
    await this.until(() => this.finals().length >= n, ms);
    return this.finals();
  }

  /** wait until `check` holds or the connection closed or failed to parse; false on timeout */
  async until(check: () => boolean, ms = WAIT_MS): Promise<boolean> {
    const end = Date.now() + ms;
    while (!check()) {
      if (this.closed || this.parseError !== null || Date.now() > end) return check();
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  /** true once the peer closed the connection, false if it did not within `ms` */
  async closedWithin(ms = WAIT_MS): Promise<boolean> {
    await Promise.race([this.closedPromise, new Promise((r) => setTimeout(r, ms).unref())]);
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
    this.parser.close();
  }
}

function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

async function tlsConnection(t: Test, s: Setup): Promise<RawConnection> {
  const [host, port] = splitAddr(s.sc.addr());
  const socket = tls.connect({
    host,
    port,
    servername: 'localhost',
    ca: s.w.ca.certPem,
    cert: s.producer.certPem,
    key: s.producer.keyPem,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  const c = new RawConnection(socket);
  t.teardown(() => c.destroy());
  return c;
}

async function plainConnection(t: Test, addr: string): Promise<RawConnection> {
  const [host, port] = splitAddr(addr);
  const socket = net.connect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const c = new RawConnection(socket);
  t.teardown(() => c.destroy());
  return c;
}

/* ------------------------------------------------------------------ fixtures */

interface Setup {
  readonly w: World;
  readonly sc: TestSidecar;
  readonly app: RecordingApp;
  readonly producer: TestIdentity;
  /** the outbound sidecar signing towards `sc`, when asked for */
  readonly out: TestSidecar | null;
}

/**
 * An inbound listener 'ingest' (mTLS, producer allowed) in front of a recording app; with
 * `verify`, a key k1 and signature verification on; with `outbound`, also an outbound listener
 * 'to-ingest' signing with k1 towards it.
 */
async function setup(t: Test, opts: { verify?: boolean; outbound?: boolean } = {}): Promise<Setup> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { dns: ['localhost'], spiffe: [INGEST] });
  const producer = await w.identity('producer', { spiffe: [PRODUCER] });
  const signing = opts.verify === true || opts.outbound === true;
  if (signing) await writeKey(join(w.dir, 'keys'), 'k1');
  const app = await startRecordingApp(t);
  const sc = await startTestSidecar(t, w.dir, {
    identity: ingest.files,
    ...(signing ? { keys: { dir: 'keys' } } : {}),
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: [PRODUCER] },
        ...(opts.verify === true ? { integrity: { verify: true } } : {}),
      },
    ],
  });
  const out =
    opts.outbound === true
      ? await startTestSidecar(t, w.dir, {
          identity: producer.files,
          keys: { dir: 'keys' },
          listeners: [
            {
              name: 'to-ingest',
              mode: 'outbound',
              listen: '127.0.0.1:0',
              target: sc.addr(),
              serverName: 'localhost',
              verify: { spiffe: [INGEST] },
              integrity: { sign: true, keyId: 'k1' },
            },
          ],
        })
      : null;
  return { w, sc, app, producer, out };
}

/** Assert one refusal answer: status and x-tollgate-error of `code`, and the JSON body {error, message}. */
function assertRefusal(t: Test, m: Message | undefined, code: ErrorCode, what: string): void {
  t.equal(m?.status, ERRORS[code].status, `${what}: status ${ERRORS[code].status}`);
  t.equal(header(m, 'x-tollgate-error'), code, `${what}: x-tollgate-error ${code}`);
  let body: unknown = null;
  try {
    body = JSON.parse(m?.body.toString('utf8') ?? '');
  } catch {
    // reported below
  }
  t.same(body, { error: code, message: ERRORS[code].message }, `${what}: JSON body`);
}

/** A refused request on a fresh connection: the answer, the connection closed after it, nothing at the app. */
async function expectRefusedRaw(
  t: Test,
  s: Setup,
  bytes: string,
  method: string,
  code: ErrorCode,
  what: string,
): Promise<void> {
  const before = s.app.seen.length;
  const c = await tlsConnection(t, s);
  c.send(bytes, [method]);
  const [answer] = await c.responses(1);
  t.ok(answer !== undefined, `${what}: an answer came (closed ${c.closed}, parse error ${c.parseError})`);
  assertRefusal(t, answer, code, what);
  t.equal(c.parseError, null, `${what}: the answer parses`);
  t.ok(await c.closedWithin(CLOSE_MS), `${what}: the connection is closed after the answer`);
  t.equal(s.app.seen.length, before, `${what}: the app saw nothing`);
}

function wsRequest(authority: string, path = '/ws'): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'
  );
}

/** Bytes through a tunnel: write `payload`, wait until the echo of everything written so far came back. */
async function echoes(c: RawConnection, payload: Buffer): Promise<boolean> {
  const expected = Buffer.concat([c.tunnel, payload]).length;
  c.socket.write(payload);
  return c.until(() => c.tunnel.length >= expected);
}

/* ------------------------------------------------------------------ request targets and Host */

t.test('an absolute-form target whose authority is the Host reaches the app in origin-form', async (t) => {
  const s = await setup(t);
  const port = splitAddr(s.sc.addr())[1];
  const c = await tlsConnection(t, s);
  c.send(`GET http://localhost:${port}/abs HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`, ['GET']);
  const [res] = await c.responses(1);
  t.equal(res?.status, 200, 'answered');
  t.same(
    s.app.seen.map((r) => `${r.method} ${r.url}`),
    ['GET /abs'],
    'the app saw origin-form /abs',
  );
  c.send(`GET http://LOCALHOST:${port}/abs2?q=1 HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`, ['GET']);
  await c.responses(2);
  t.equal(s.app.seen[1]?.url, '/abs2?q=1', 'the authority compares case-insensitively; the query is kept');
});

t.test(
  'an absolute-form target with another authority than Host is 400 ERR_BAD_REQUEST and reaches nothing',
  async (t) => {
    const s = await setup(t);
    const port = splitAddr(s.sc.addr())[1];
    await expectRefusedRaw(
      t,
      s,
      `GET http://evil.example:8080/abs HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`,
      'GET',
      'ERR_BAD_REQUEST',
      'foreign authority',
    );
  },
);

t.test('two Host fields are 400 ERR_BAD_REQUEST', async (t) => {
  const s = await setup(t);
  await expectRefusedRaw(
    t,
    s,
    'GET /two-hosts HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n',
    'GET',
    'ERR_BAD_REQUEST',
    'two Host fields',
  );
});

t.test('an HTTP/1.1 request without Host is 400 ERR_BAD_REQUEST', async (t) => {
  const s = await setup(t);
  await expectRefusedRaw(t, s, 'GET /no-host HTTP/1.1\r\nAccept: */*\r\n\r\n', 'GET', 'ERR_BAD_REQUEST', 'no Host');
});

t.test('OPTIONS * is forwarded as OPTIONS * and answered', async (t) => {
  const s = await setup(t);
  const c = await tlsConnection(t, s);
  c.send(`OPTIONS * HTTP/1.1\r\nHost: ${s.sc.addr()}\r\n\r\n`, ['OPTIONS']);
  const [res] = await c.responses(1);
  t.equal(res?.status, 200, `the client gets 200 (got ${res?.status} ${header(res, 'x-tollgate-error') ?? ''})`);
  t.same(
    s.app.seen.map((r) => `${r.method} ${r.url}`),
    ['OPTIONS *'],
    'the app saw OPTIONS *',
  );
});

/* ------------------------------------------------------------------ codings and CONNECT */

t.test(
  'a request with Transfer-Encoding: gzip, chunked is 501 ERR_UNSUPPORTED_CODING and reaches nothing',
  async (t) => {
    const s = await setup(t);
    const bytes = `POST /coded HTTP/1.1\r\nHost: ${s.sc.addr()}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`;
    await expectRefusedRaw(t, s, bytes, 'POST', 'ERR_UNSUPPORTED_CODING', 'gzip, chunked');
  },
);

t.test('CONNECT is 405 ERR_METHOD_NOT_ALLOWED and reaches nothing', async (t) => {
  const s = await setup(t);
  await expectRefusedRaw(
    t,
    s,
    'CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n',
    'CONNECT',
    'ERR_METHOD_NOT_ALLOWED',
    'CONNECT',
  );
});

/* ------------------------------------------------------------------ upgrades */

t.test(
  'a WebSocket upgrade into the inbound listener is tunnelled: 101, then bytes echo both ways, counted',
  async (t) => {
    const s = await setup(t);
    const c = await tlsConnection(t, s);
    c.send(wsRequest(s.sc.addr()), ['GET']);
    const [res] = await c.responses(1);
    t.equal(res?.status, 101, `101 Switching Protocols (got ${res?.status} ${res?.body.toString('utf8') ?? ''})`);
    t.equal(header(res, 'upgrade')?.toLowerCase(), 'websocket', 'Upgrade: websocket relayed');
    const seen = s.app.seen[0];
    t.equal(seen?.upgrade, true, 'the app got the request as an upgrade');
    t.equal(seen?.headers.upgrade, 'websocket', 'with its Upgrade field');
    t.match(seen?.headers.connection ?? '', /upgrade/i, 'and Connection: Upgrade');
    if (res?.status !== 101) return;

    t.ok(await echoes(c, Buffer.from('\x81\x05hello', 'latin1')), 'a small frame echoes');
    const big = Buffer.alloc(256 * 1024, 0x5a);
    t.ok(await echoes(c, big), 'a 256 KiB write echoes entirely');
    t.equal(c.tunnel.length, 7 + big.length, 'exactly the bytes sent came back');
    t.equal(c.parseError, null, 'nothing parsed as HTTP after the 101');
    t.equal(
      await s.sc.metric('tollgate_upgrades_total', { listener: 'ingest' }),
      1,
      'tollgate_upgrades_total{listener="ingest"} is 1',
    );
    c.socket.end();
    t.ok(await c.closedWithin(), 'closing the client end closes the tunnel');
  },
);

t.test('a WebSocket upgrade through outbound -> inbound is signed, verified and tunnelled', async (t) => {
  const s = await setup(t, { verify: true, outbound: true });
  const out = s.out!;
  const c = await plainConnection(t, out.addr());
  c.send(wsRequest(out.addr(), '/ws/chain'), ['GET']);
  const [res] = await c.responses(1);
  t.equal(res?.status, 101, `101 through both sidecars (got ${res?.status} ${header(res, 'x-tollgate-error') ?? ''})`);
  const seen = s.app.seen[0];
  t.equal(seen?.url, '/ws/chain', 'the app got the upgrade request');
  t.equal(seen?.upgrade, true, 'as an upgrade');
  t.match(seen?.headers['signature-input'] ?? '', /^tollgate=/, 'signed by the outbound');
  t.equal(await s.sc.metric('tollgate_signature_checks_total', { result: 'ok' }), 1, 'verified by the inbound');
  if (res?.status !== 101) return;

  t.ok(await echoes(c, Buffer.from('through-the-chain')), 'bytes echo through both sidecars');
  t.ok(await echoes(c, Buffer.alloc(64 * 1024, 0x33)), 'a 64 KiB write echoes entirely');
  t.equal(await s.sc.metric('tollgate_upgrades_total', { listener: 'ingest' }), 1, 'counted at the inbound');
  t.equal(await out.metric('tollgate_upgrades_total', { listener: 'to-ingest' }), 1, 'counted at the outbound');
});

t.test('an upgrade a stage refuses (unsigned at a verifying inbound) gets 401 and no tunnel', async (t) => {
  const s = await setup(t, { verify: true });
  const c = await tlsConnection(t, s);
  // the bytes after the upgrade request must never be parsed as a request
  c.send(wsRequest(s.sc.addr()) + `GET /smuggled HTTP/1.1\r\nHost: ${s.sc.addr()}\r\n\r\n`, ['GET', 'GET']);
  const [res] = await c.responses(1);
  assertRefusal(t, res, 'ERR_SIG_MISSING', 'unsigned upgrade');
  t.ok(await c.closedWithin(CLOSE_MS), 'the connection is closed after the refusal');
  t.equal(c.finals().length, 1, 'one answer only: the bytes after the upgrade were not answered as a request');
  t.equal(c.tunnel.length, 0, 'no tunnel bytes');
  t.same(s.app.seen, [], 'the app saw nothing');
  t.equal(s.app.tunnels(), 0, 'no tunnel at the app');
  t.equal(await s.sc.metric('tollgate_upgrades_total', { listener: 'ingest' }), 0, 'no upgrade counted');
});

t.test('Upgrade: h2c is ignored: the app gets plain HTTP/1.1 without Upgrade or HTTP2-Settings', async (t) => {
  const s = await setup(t);
  const c = await tlsConnection(t, s);
  c.send(
    `GET /h2c HTTP/1.1\r\nHost: ${s.sc.addr()}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`,
    ['GET'],
  );
  const [res] = await c.responses(1);
  t.equal(res?.status, 200, 'answered over HTTP/1.1');
  t.equal(res?.body.toString('latin1'), '/h2c', 'by the app');
  const seen = s.app.seen[0];
  t.equal(seen?.upgrade, false, 'the app got a plain request, not an upgrade');
  t.equal(seen?.headers.upgrade, undefined, 'no Upgrade field');
  t.equal(seen?.headers['http2-settings'], undefined, 'no HTTP2-Settings field');
  t.notMatch(seen?.headers.connection ?? '', /upgrade|http2-settings/i, 'no Connection tokens naming them');
  c.send(`GET /after-h2c HTTP/1.1\r\nHost: ${s.sc.addr()}\r\n\r\n`, ['GET']);
  const after = await c.responses(2);
  t.equal(after[1]?.body.toString('latin1'), '/after-h2c', 'the connection is still HTTP/1.1');
});

/* ------------------------------------------------------------------ pipelining */

t.test(
  `${PIPELINED} pipelined GETs on one connection: answered in order, one at a time, over a handful of upstream connections`,
  async (t) => {
    const s = await setup(t);
    const c = await tlsConnection(t, s);
    const paths = Array.from({ length: PIPELINED }, (_, i) => (i % 50 === 7 ? `/p/${i}?delay=3` : `/p/${i}`));
    const bytes = paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: ${s.sc.addr()}\r\n\r\n`).join('');
    c.send(
      bytes,
      paths.map(() => 'GET'),
    );
    const got = await c.responses(PIPELINED, 60_000);
    t.equal(got.length, PIPELINED, `${PIPELINED} responses (closed ${c.closed}, parse error ${c.parseError})`);
    const bodies = got.map((m) => m.body.toString('latin1'));
    const firstOutOfOrder = bodies.findIndex((b, i) => b !== paths[i]);
    t.equal(
      firstOutOfOrder,
      -1,
      `responses in request order (first mismatch at ${firstOutOfOrder}: ${bodies[firstOutOfOrder]})`,
    );
    t.ok(
      got.every((m) => m.status === 200),
      'all 200',
    );
    t.ok(s.app.connections() <= 4, `at most 4 upstream connections (saw ${s.app.connections()})`);
    t.equal(s.app.maxInFlight(), 1, 'the app never had two requests of this connection in flight at once');
    t.same(
      s.app.seen.map((r) => r.url),
      paths,
      'the app got them in arrival order',
    );
  },
);

t.test('a GET and a POST pipelined reach the app in order, never overlapping', async (t) => {
  const s = await setup(t);
  const c = await tlsConnection(t, s);
  const host = s.sc.addr();
  c.send(
    `GET /first?delay=50 HTTP/1.1\r\nHost: ${host}\r\n\r\nPOST /second HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\n\r\nhello`,
    ['GET', 'POST'],
  );
  const got = await c.responses(2);
  t.same(
    got.map((m) => m.body.toString('latin1')),
    ['/first?delay=50', '/second'],
    'answers in order',
  );
  t.same(
    s.app.seen.map((r) => `${r.method} ${r.url}`),
    ['GET /first?delay=50', 'POST /second'],
    'the app got them in order',
  );
  t.equal(s.app.seen[1]?.body.toString('latin1'), 'hello', 'with the POST body');
  t.equal(s.app.maxInFlight(), 1, 'the POST reached the app only after the GET was answered');
});

/* ------------------------------------------------------------------ framing */

t.test('Content-Length is forwarded as Content-Length, chunked stays chunked', async (t) => {
  const s = await setup(t);
  const c = await tlsConnection(t, s);
  const host = s.sc.addr();
  c.send(`POST /cl HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\n\r\nhello`, ['POST']);
  await c.responses(1);
  const cl = s.app.seen[0];
  t.equal(cl?.headers['content-length'], '5', 'the app saw Content-Length: 5');
  t.equal(cl?.headers['transfer-encoding'], undefined, 'and no Transfer-Encoding');
  t.equal(cl?.body.toString('latin1'), 'hello', 'and the body');

  c.send(
    `POST /chunked HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n`,
    ['POST'],
  );
  await c.responses(2);
  const ch = s.app.seen[1];
  t.equal(ch?.headers['transfer-encoding'], 'chunked', 'a chunked request stays chunked');
  t.equal(ch?.headers['content-length'], undefined, 'with no Content-Length');
  t.equal(ch?.body.toString('latin1'), 'hello', 'and the body');
});

t.test(
  'a response with Content-Length reaches the client with Content-Length; one without stays chunked',
  async (t) => {
    const s = await setup(t);
    const c = await tlsConnection(t, s);
    c.send(`GET /with-length HTTP/1.1\r\nHost: ${s.sc.addr()}\r\n\r\n`, ['GET']);
    const [res] = await c.responses(1);
    t.equal(header(res, 'content-length'), String('/with-length'.length), 'Content-Length kept');
    t.equal(header(res, 'transfer-encoding'), undefined, 'not re-chunked');
    t.equal(res?.body.toString('latin1'), '/with-length');

    c.send(`GET /chunked-response HTTP/1.1\r\nHost: ${s.sc.addr()}\r\n\r\n`, ['GET']);
    const got = await c.responses(2);
    t.equal(header(got[1], 'transfer-encoding'), 'chunked', 'a response without length is chunked');
    t.equal(got[1]?.body.toString('latin1'), 'part1-part2');
  },
);

/* ------------------------------------------------------------------ interim and bodiless responses */

t.test('an upstream 103 Early Hints then 200: the client gets the final 200 intact', async (t) => {
  const s = await setup(t);
  const c = await tlsConnection(t, s);
  c.send(`GET /early HTTP/1.1\r\nHost: ${s.sc.addr()}\r\n\r\n`, ['GET']);
  const [res] = await c.responses(1);
  t.equal(
    res?.status,
    200,
    `the final 200 (got ${res?.status} ${header(res, 'x-tollgate-error') ?? ''}, closed ${c.closed}, parse error ${c.parseError})`,
  );
  t.equal(res?.body.toString('latin1'), 'final', 'its body intact');
  t.ok(
    c.messages.filter((m) => m.status < 200).every((m) => m.status === 103),
    `interim answers, if relayed, are the 103 (${c.messages.map((m) => m.status).join(',')})`,
  );
  t.equal(c.parseError, null, 'the bytes parse strictly');
  c.send(`GET /after-early HTTP/1.1\r\nHost: ${s.sc.addr()}\r\n\r\n`, ['GET']);
  const got = await c.responses(2);
  t.equal(got[1]?.body.toString('latin1'), '/after-early', 'the connection stays usable');
});

t.test('HEAD, 204 and 304 answers have no body and the connection stays usable', async (t) => {
  const s = await setup(t);
  const c = await tlsConnection(t, s);
  const host = s.sc.addr();
  const steps: Array<[method: string, path: string, status: number]> = [
    ['HEAD', '/head', 200],
    ['GET', '/after-head', 200],
    ['GET', '/204', 204],
    ['GET', '/after-204', 200],
    ['GET', '/304', 304],
    ['GET', '/after-304', 200],
  ];
  for (const [i, [method, path, status]] of steps.entries()) {
    c.send(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`, [method]);
    const got = await c.responses(i + 1);
    const res = got[i];
    t.equal(res?.status, status, `${method} ${path}: ${status}`);
    const body = status === 200 && method === 'GET' ? path : '';
    t.equal(res?.body.toString('latin1'), body, `${method} ${path}: ${body === '' ? 'no body' : 'its body'}`);
  }
  t.equal(
    header(c.finals()[0], 'content-length'),
    String('/head'.length),
    'HEAD keeps the Content-Length of the GET it stands for',
  );
  t.equal(c.parseError, null, 'no stray bytes: the stream parses strictly');
  t.equal(c.closed, false, 'the connection is still open');
  t.equal(c.finals().length, steps.length, 'one answer per request');
  await eventually(() => s.app.inFlight() === 0, WAIT_MS, 'the app done');
});
