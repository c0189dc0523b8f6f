/**
 * Request smuggling corpus (issue 15, Must 7): exact bytes written on a raw mTLS socket into a
 * real inbound listener (no signatures required, anomaly detection off) in front of a
 * RECORDING app, a strict node:http server that logs every request it receives. For every case:
 *
 *   (a) the app received nothing, or exactly the requests the client sent as its own well-formed
 *       requests (method, path, body), and never a request hidden inside another one;
 *   (b) the client got well-formed answers (parsed with llhttp in strict mode) and, for a refusal,
 *       the status and x-tollgate-error code of the error table (README.md, "Error codes"), then a close;
 *   (c) tollgate did not crash (still ready, no error-level log line, the connection let go);
 *   (d) a normal request on a NEW connection works afterwards (200 from the app).
 *
 * A case the parser accepts keeps its connection open; that is checked by a sentinel request
 * (`Connection: close`) written after the case's answers: it must be answered next, and it must
 * be the next thing the app sees, so nothing hidden can sit between them unnoticed.
 */
import t from 'tap';
import http from 'node:http';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import {
  eventually,
  startTestSidecar,
  world,
  type Test,
  type TestIdentity,
  type TestSidecar,
  type World,
} from './helpers/world.ts';
import { INGEST, PRODUCER } from './helpers/identities.ts';
import { header, type Reply } from './helpers/strictReplies.ts';
import { rawConnect, type RawConn } from './helpers/rawClient.ts';

/** the longest a case waits for an answer or a close */
const WAIT_MS = 4000;
const HOST = 'Host: localhost\r\n';
/** paths only ever written inside another request's bytes: the app must never see them */
const HIDDEN_PATH = /\/(smuggled|admin)\b/;
const SMUGGLED = `GET /smuggled HTTP/1.1\r\n${HOST}\r\n`;
const ADMIN = `GET /admin HTTP/1.1\r\n${HOST}\r\n`;
const SENTINEL = `GET /sentinel HTTP/1.1\r\n${HOST}Connection: close\r\n\r\n`;

/* ------------------------------------------------------------------ the recording app */

interface Recorded {
  /** which upstream connection carried it (1, 2, … in accept order) */
  readonly conn: number;
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  body: Buffer;
  complete: boolean;
  /** arrived through the server's 'upgrade' event */
  readonly upgrade: boolean;
}

interface RecordingApp {
  readonly addr: string;
  readonly requests: Recorded[];
  /** bytes the app received on a connection after an upgrade request's head (there must be none) */
  readonly afterUpgrade: Buffer[];
  connections: number;
}

function record(conn: number, req: http.IncomingMessage, upgrade: boolean): Recorded {
  return {
    conn,
    method: req.method ?? '',
    url: req.url ?? '',
    rawHeaders: req.rawHeaders,
    body: Buffer.alloc(0),
    complete: false,
    upgrade,
  };
}

/** A strict node:http app that records every request as its head arrives and answers 200 `<METHOD> <url>`. */
async function recordingApp(t: Test): Promise<RecordingApp> {
  const app: RecordingApp = { addr: '', requests: [], afterUpgrade: [], connections: 0 };
  const connIds = new WeakMap<net.Socket, number>();
  const sockets = new Set<net.Socket>();
  const server = http.createServer();
  server.on('connection', (s: net.Socket) => {
    connIds.set(s, ++app.connections);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const r = record(connIds.get(req.socket) ?? 0, req, false);
    app.requests.push(r);
    req.on('data', (c: Buffer) => (r.body = Buffer.concat([r.body, c])));
    req.on('error', () => undefined);
    req.on('end', () => {
      r.complete = true;
      const body = `${r.method} ${r.url}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  });
  // an Upgrade request: recorded, answered 200 without upgrading; whatever follows on that connection is kept as raw bytes
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    app.requests.push({ ...record(connIds.get(socket) ?? 0, req, true), complete: true });
    if (head.length > 0) app.afterUpgrade.push(Buffer.from(head));
    socket.on('data', (c: Buffer) => app.afterUpgrade.push(c));
    socket.on('error', () => undefined);
    const body = `${req.method} ${req.url}`;
    socket.write(
      `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    // upgraded sockets are no longer the server's: closeAllConnections would miss them
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  (app as { addr: string }).addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return app;
}

function jsonOf(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return body.toString('latin1');
  }
}

/* ------------------------------------------------------------------ the raw client */

type Conn = RawConn;

/** a raw mTLS connection as the producer */
function connect(addr: string, w: World, producer: TestIdentity): Promise<Conn> {
  return rawConnect(addr, { w, producer }, WAIT_MS);
}

const completeCount = (c: Conn): number => c.replies().replies.filter((r) => r.complete && r.status >= 200).length;

/* ------------------------------------------------------------------ the corpus */

/** A request the client sent as its own, well-formed: what the app may see of it. */
interface Own {
  readonly method: string;
  readonly path: string;
  readonly body?: string;
}

type Outcome =
  /** the parser accepts every byte: each own request answered 200 in order, the connection stays open */
  | { readonly kind: 'forward' }
  /** each own request answered 200 in order, then the connection is closed (bytes after it are never read as requests) */
  | { readonly kind: 'close' }
  /** refused: `own` (those before the bad one) answered 200, then one refusal, then a close */
  | { readonly kind: 'refuse'; readonly status: readonly number[]; readonly code: readonly string[] };

interface Case {
  readonly name: string;
  /** latin1 */
  readonly bytes: string;
  readonly own: readonly Own[];
  readonly outcome: Outcome;
}

const FORWARD: Outcome = { kind: 'forward' };
const CLOSE: Outcome = { kind: 'close' };
const BAD_REQUEST: Outcome = { kind: 'refuse', status: [400], code: ['ERR_BAD_REQUEST'] };
/** a transfer-coding other than chunked: the parser's 400 or the core's 501, either is a refusal */
const BAD_CODING: Outcome = { kind: 'refuse', status: [400, 501], code: ['ERR_BAD_REQUEST', 'ERR_UNSUPPORTED_CODING'] };
const UNSUPPORTED_CODING: Outcome = { kind: 'refuse', status: [501], code: ['ERR_UNSUPPORTED_CODING'] };

const post = (path: string, headers: string, body: string): string =>
  `POST ${path} HTTP/1.1\r\n${HOST}${headers}\r\n${body}`;
const chunked = (data: string): string => `${data.length.toString(16)}\r\n${data}\r\n0\r\n\r\n`;

const CASES: readonly Case[] = [
  {
    name: 'control: well-formed pipelined GET, POST with Content-Length, chunked POST',
    bytes:
      `GET /one HTTP/1.1\r\n${HOST}\r\n` +
      post('/two', 'Content-Length: 5\r\n', 'hello') +
      post('/three', 'Transfer-Encoding: chunked\r\n', chunked('abc')),
    own: [
      { method: 'GET', path: '/one' },
      { method: 'POST', path: '/two', body: 'hello' },
      { method: 'POST', path: '/three', body: 'abc' },
    ],
    outcome: FORWARD,
  },
  // CL.TE / TE.CL: both framings present, each hiding a request for the other reading
  {
    name: 'CL.TE: Content-Length covers a request after the last chunk',
    bytes: post(
      '/clte',
      `Content-Length: ${5 + SMUGGLED.length}\r\nTransfer-Encoding: chunked\r\n`,
      `0\r\n\r\n${SMUGGLED}`,
    ),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'TE.CL: a chunk carries a request that Content-Length 4 would leave over',
    bytes: post('/tecl', 'Transfer-Encoding: chunked\r\nContent-Length: 4\r\n', chunked(SMUGGLED)),
    own: [],
    outcome: BAD_REQUEST,
  },
  // TE.TE: obfuscated Transfer-Encoding values, each next to a Content-Length that would frame differently
  {
    name: 'TE.TE: "chunked " with a trailing space, plus Content-Length',
    bytes: post('/tete', `Transfer-Encoding: chunked \r\nContent-Length: 5\r\n`, `0\r\n\r\n${ADMIN}`),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'TE.TE: "chunked " with a trailing space alone is chunked',
    bytes: post('/tete', 'Transfer-Encoding: chunked \r\n', chunked('abc')),
    own: [{ method: 'POST', path: '/tete', body: 'abc' }],
    outcome: FORWARD,
  },
  {
    name: 'TE.TE: "xchunked" plus Content-Length',
    bytes: post('/tete', `Transfer-Encoding: xchunked\r\nContent-Length: ${SMUGGLED.length}\r\n`, SMUGGLED),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'TE.TE: "xchunked" alone',
    bytes: post('/tete', 'Transfer-Encoding: xchunked\r\n', `0\r\n\r\n${SMUGGLED}`),
    own: [],
    outcome: BAD_CODING,
  },
  {
    name: 'TE.TE: "chunked, identity"',
    bytes: post('/tete', 'Transfer-Encoding: chunked, identity\r\n', `0\r\n\r\n${SMUGGLED}`),
    own: [],
    outcome: BAD_CODING,
  },
  {
    name: 'TE.TE: "gzip, chunked"',
    bytes: post('/tete', 'Transfer-Encoding: gzip, chunked\r\n', chunked(SMUGGLED)),
    own: [],
    outcome: UNSUPPORTED_CODING,
  },
  {
    name: 'TE.TE: a tab before the value, plus Content-Length',
    bytes: post('/tete', `Transfer-Encoding:\tchunked\r\nContent-Length: 5\r\n`, `0\r\n\r\n${ADMIN}`),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'TE.TE: a tab before the value alone is chunked',
    bytes: post('/tete', 'Transfer-Encoding:\tchunked\r\n', chunked('abc')),
    own: [{ method: 'POST', path: '/tete', body: 'abc' }],
    outcome: FORWARD,
  },
  {
    name: 'TE.TE: "Transfer-Encoding : chunked" (space before the colon)',
    bytes: post('/tete', `Transfer-Encoding : chunked\r\nContent-Length: 5\r\n`, `0\r\n\r\n${ADMIN}`),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'TE.TE: two Transfer-Encoding fields, chunked then identity',
    bytes: post('/tete', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n', `0\r\n\r\n${SMUGGLED}`),
    own: [],
    outcome: BAD_CODING,
  },
  {
    name: 'TE.TE: two Transfer-Encoding fields, identity then chunked',
    bytes: post('/tete', 'Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n', chunked(SMUGGLED)),
    own: [],
    outcome: BAD_CODING,
  },
  {
    name: 'TE.TE: two Transfer-Encoding fields, both chunked',
    bytes: post('/tete', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', chunked(SMUGGLED)),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'TE.TE: "Transfer-encoding" (case variant) plus Content-Length',
    bytes: post('/tete', `Transfer-encoding: chunked\r\nContent-Length: 5\r\n`, `0\r\n\r\n${ADMIN}`),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'TE.TE: "TRANSFER-ENCODING" (case variant) alone is chunked',
    bytes: post('/tete', 'TRANSFER-ENCODING: chunked\r\n', chunked('abc')),
    own: [{ method: 'POST', path: '/tete', body: 'abc' }],
    outcome: FORWARD,
  },
  // Content-Length variants
  {
    name: 'CL.CL: two Content-Length fields with the same value',
    bytes: post('/clcl', 'Content-Length: 5\r\nContent-Length: 5\r\n', 'hello'),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'CL.CL: two Content-Length fields with different values',
    bytes: post('/clcl', `Content-Length: 0\r\nContent-Length: ${ADMIN.length}\r\n`, ADMIN),
    own: [],
    outcome: BAD_REQUEST,
  },
  { name: 'Content-Length: +5', bytes: post('/cl', 'Content-Length: +5\r\n', 'hello'), own: [], outcome: BAD_REQUEST },
  { name: 'Content-Length: -1', bytes: post('/cl', 'Content-Length: -1\r\n', ADMIN), own: [], outcome: BAD_REQUEST },
  {
    name: 'Content-Length: " 5 " (surrounding whitespace is OWS)',
    bytes: post('/cl', 'Content-Length:  5 \r\n', 'hello'),
    own: [{ method: 'POST', path: '/cl', body: 'hello' }],
    outcome: FORWARD,
  },
  {
    name: 'Content-Length: 5, 5',
    bytes: post('/cl', 'Content-Length: 5, 5\r\n', 'hello'),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'Content-Length: 0x5',
    bytes: post('/cl', 'Content-Length: 0x5\r\n', 'hello'),
    own: [],
    outcome: BAD_REQUEST,
  },
  // the head's own syntax
  {
    name: 'obs-fold in a field value',
    bytes: `GET /fold HTTP/1.1\r\n${HOST}X-Long: a\r\n b\r\n\r\n`,
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'obs-fold hiding Transfer-Encoding, plus Content-Length',
    bytes: post('/fold', `X-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: ${SMUGGLED.length}\r\n`, SMUGGLED),
    own: [],
    outcome: BAD_REQUEST,
  },
  { name: 'bare CR ending the request line', bytes: `GET /cr HTTP/1.1\r${HOST}\r\n`, own: [], outcome: BAD_REQUEST },
  {
    name: 'bare CR inside a field value',
    bytes: `GET /cr HTTP/1.1\r\n${HOST}X-A: a\rTransfer-Encoding: chunked\r\n\r\n`,
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'bare LF line endings throughout',
    bytes: `GET /lf HTTP/1.1\nHost: localhost\n\n${SMUGGLED}`,
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'a bare LF between two fields',
    bytes: post('/lf', `X-A: a\nContent-Length: ${ADMIN.length}\r\n`, ADMIN),
    own: [],
    outcome: BAD_REQUEST,
  },
  { name: 'NUL in a field name', bytes: `GET /nul HTTP/1.1\r\n${HOST}X-\0A: a\r\n\r\n`, own: [], outcome: BAD_REQUEST },
  {
    name: 'NUL in a field value',
    bytes: `GET /nul HTTP/1.1\r\n${HOST}X-A: a\0b\r\n\r\n`,
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'a control byte (0x01) in a field value',
    bytes: `GET /ctl HTTP/1.1\r\n${HOST}X-A: a\x01b\r\n\r\n`,
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'non-ASCII bytes in a field name',
    bytes: `GET /na HTTP/1.1\r\n${HOST}X-F\xc3\xb6: a\r\n\r\n`,
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'non-ASCII bytes in a field value (obs-text) are accepted',
    bytes: `GET /na HTTP/1.1\r\n${HOST}X-A: caf\xe9\r\n\r\n`,
    own: [{ method: 'GET', path: '/na' }],
    outcome: FORWARD,
  },
  // chunked framing
  {
    name: 'chunk-size overflow (ffffffffffffffffff)',
    bytes: post('/overflow', 'Transfer-Encoding: chunked\r\n', `ffffffffffffffffff\r\n${SMUGGLED}\r\n0\r\n\r\n`),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'a chunk-size one past 2^64 (10000000000000001)',
    bytes: post('/overflow', 'Transfer-Encoding: chunked\r\n', `10000000000000001\r\n${SMUGGLED}\r\n0\r\n\r\n`),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'chunk data not followed by CRLF',
    bytes: post('/chunk', 'Transfer-Encoding: chunked\r\n', `3\r\nabcXX0\r\n\r\n${SMUGGLED}`),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'last chunk "0\\r\\n" without the final CRLF, another request after it',
    bytes: post('/chunk', 'Transfer-Encoding: chunked\r\n', `0\r\n${SMUGGLED}`),
    own: [],
    outcome: BAD_REQUEST,
  },
  {
    name: 'a request smuggled in a body whose framing the parser refuses (chunk size "0x2c")',
    bytes: post('/outer', 'Transfer-Encoding: chunked\r\n', `0x${ADMIN.length.toString(16)}\r\n${ADMIN}\r\n0\r\n\r\n`),
    own: [],
    outcome: BAD_REQUEST,
  },
  // after the connection's end
  {
    name: 'a request pipelined after Connection: close never reaches the app',
    bytes: `GET /first HTTP/1.1\r\n${HOST}Connection: close\r\n\r\n${ADMIN}`,
    own: [{ method: 'GET', path: '/first' }],
    outcome: CLOSE,
  },
  {
    name: 'a request pipelined after a POST with Connection: close never reaches the app',
    bytes: post('/first', 'Connection: close\r\nContent-Length: 5\r\n', 'hello') + SMUGGLED,
    own: [{ method: 'POST', path: '/first', body: 'hello' }],
    outcome: CLOSE,
  },
  {
    name: 'bytes after an upgrade the app refused (answered 200) are never parsed as a request',
    bytes:
      `GET /ws HTTP/1.1\r\n${HOST}Upgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n${SMUGGLED}`,
    own: [{ method: 'GET', path: '/ws' }],
    outcome: CLOSE,
  },
];

/* ------------------------------------------------------------------ running a case */

interface Bed {
  readonly w: World;
  readonly ingest: TestIdentity;
  readonly producer: TestIdentity;
}

async function sidecarFor(t: Test, bed: Bed, app: RecordingApp): Promise<TestSidecar> {
  return startTestSidecar(t, bed.w.dir, {
    identity: bed.ingest.files,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target: app.addr,
        allow: { spiffe: [PRODUCER] },
        integrity: { verify: false },
        anomaly: { mode: 'off' },
      },
    ],
  });
}

const describe = (r: Recorded): string =>
  `${r.method} ${r.url} body=${JSON.stringify(r.body.toString('latin1'))} complete=${r.complete} conn=${r.conn}`;
const describeOwn = (o: Own): string => `${o.method} ${o.path} body=${JSON.stringify(o.body ?? '')} complete=true`;

/** (a): the app saw exactly `own`, each complete, and nothing hidden. */
function checkApp(t: Test, app: RecordingApp, own: readonly Own[]): void {
  const seen = app.requests.map((r) => describe(r).replace(/ conn=\d+$/, ''));
  t.same(seen, own.map(describeOwn), 'the app saw exactly the requests the client sent as its own');
  t.same(
    app.requests.filter((r) => HIDDEN_PATH.test(r.url)).map(describe),
    [],
    'the app never saw a request that was hidden inside another one',
  );
  const tunnelled = Buffer.concat(app.afterUpgrade).toString('latin1');
  t.equal(tunnelled, '', 'no bytes reached the app after an upgrade request it did not accept');
}

function checkOwnReplies(t: Test, replies: Reply[], own: readonly Own[]): void {
  for (const [i, o] of own.entries()) {
    const r = replies[i];
    t.equal(r?.status, 200, `answer ${i + 1} is the app's 200`);
    t.equal(r?.body.toString('latin1'), `${o.method} ${o.path}`, `answer ${i + 1} is for ${o.method} ${o.path}`);
  }
}

async function runCase(t: Test, bed: Bed, c: Case): Promise<void> {
  const app = await recordingApp(t);
  const sc = await sidecarFor(t, bed, app);
  const conn = await connect(sc.addr(), bed.w, bed.producer);
  conn.socket.write(Buffer.from(c.bytes, 'latin1'));
  const { outcome } = c;

  if (outcome.kind === 'forward') {
    await conn.until(() => completeCount(conn) >= c.own.length);
    t.notOk(conn.closed(), 'the connection stays open after requests that parse');
    conn.socket.write(SENTINEL);
    const closed = await conn.until(() => false);
    t.ok(closed, 'the connection closes after the sentinel (Connection: close)');
    const { replies, error } = conn.replies();
    t.equal(error, null, 'the answers parse strictly');
    t.equal(replies.length, c.own.length + 1, 'one answer per own request, then the sentinel’s');
    checkOwnReplies(t, replies, c.own);
    t.equal(replies.at(-1)?.body.toString('latin1'), 'GET /sentinel', 'the last answer is the sentinel’s');
    checkApp(t, app, [...c.own, { method: 'GET', path: '/sentinel' }]);
  } else {
    const closed = await conn.until(() => false);
    t.ok(closed, 'tollgate closes the connection');
    const { replies, error } = conn.replies();
    t.equal(error, null, 'the answers parse strictly');
    t.ok(
      replies.every((r) => r.complete),
      'every answer is complete',
    );
    checkOwnReplies(t, replies, c.own);
    if (outcome.kind === 'close') {
      // the bytes after the connection's last request may draw one parser refusal, never an answer of the app
      const extra = replies.slice(c.own.length);
      t.ok(
        extra.length === 0 ||
          (extra.length === 1 &&
            extra[0]!.status === 400 &&
            header(extra[0]!, 'x-tollgate-error') === 'ERR_BAD_REQUEST'),
        `nothing after the own answers but at most a 400 refusal (got ${extra.map((r) => r.status).join(', ') || 'nothing'})`,
      );
    } else {
      t.equal(replies.length, c.own.length + 1, 'one refusal after the own answers');
      const refusal = replies[c.own.length];
      const wanted = outcome.status.join(' or ');
      t.ok(
        refusal !== undefined && outcome.status.includes(refusal.status),
        `refused with ${wanted} (got ${refusal?.status ?? 'no answer'})`,
      );
      const code = refusal === undefined ? undefined : header(refusal, 'x-tollgate-error');
      t.ok(
        code !== undefined && outcome.code.includes(code),
        `x-tollgate-error is ${outcome.code.join(' or ')} (got ${code ?? 'none'})`,
      );
      if (refusal !== undefined && code !== undefined)
        t.match(jsonOf(refusal.body), { error: code, message: String }, 'the body is the JSON refusal');
    }
    checkApp(t, app, c.own);
  }
  conn.socket.destroy();

  // (c) still alive and well
  t.ok(sc.ready(), 'the sidecar is still ready');
  t.same(
    sc.logs.lines.filter((l) => typeof l.level === 'number' && l.level >= 50).map((l) => l.msg),
    [],
    'nothing was logged at error level',
  );
  await eventually(() => sc.listeners[0]!.connections() === 0, WAIT_MS, 'the case connection to be let go');

  // (d) a normal request on a new connection
  const before = app.requests.length;
  const after = await connect(sc.addr(), bed.w, bed.producer);
  after.socket.write(`GET /after HTTP/1.1\r\n${HOST}Connection: close\r\n\r\n`);
  await after.until(() => false);
  const { replies } = after.replies();
  t.equal(replies[0]?.status, 200, 'a normal request on a new connection gets 200');
  t.equal(replies[0]?.body.toString('latin1'), 'GET /after', 'from the app');
  t.same(
    app.requests.slice(before).map((r) => `${r.method} ${r.url}`),
    ['GET /after'],
    'and the app saw just that request',
  );
  t.equal(
    Buffer.concat(app.afterUpgrade).toString('latin1'),
    '',
    'nothing was sent down an upstream connection that carried an upgrade request',
  );
  after.socket.destroy();
}

const w = await world(t);
const bed: Bed = {
  w,
  ingest: await w.identity('ingest', { spiffe: [INGEST] }),
  producer: await w.identity('producer', { spiffe: [PRODUCER] }),
};

for (const c of CASES) {
  t.test(c.name, async (t) => runCase(t, bed, c));
}
