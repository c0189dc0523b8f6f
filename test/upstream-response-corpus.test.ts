/**
 * Malformed upstream responses (issue 15, Must 4 and 7): a raw TCP "app" reads each request head
 * and answers with canned bytes, once (the next request after that gets a sane 200 naming its
 * upstream connection). What the client receives through a real mTLS inbound listener is parsed
 * with llhttp in strict mode, so a partial or ambiguous answer cannot pass:
 *
 *   - malformed or ambiguous (CL + TE, two lengths, obs-fold, bare LF, a head over 64 KiB,
 *     `gzip, chunked`, a chunk-size overflow) -> exactly one 502 ERR_UPSTREAM_PROTOCOL, and that
 *     upstream connection is discarded (what follows is served on another one);
 *   - 102 / 103 before the 200 -> relayed or dropped cleanly, the final 200 intact; an unsolicited
 *     100 -> dropped, the final 200 intact;
 *   - no length, closed by the upstream -> the whole body;
 *   - bytes after a complete response (a second, smuggled response) -> never delivered as the
 *     answer to the client's next pipelined request.
 *
 * After each case a normal request on a new connection works. One case runs through an outbound
 * listener (plain socket -> outbound -> inbound -> the upstream) and shows the 502 reaching the
 * local app's client.
 */
import t from 'tap';
import net, { type AddressInfo } from 'node:net';
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
import { rawConnect, type RawConn, type TlsCreds } from './helpers/rawClient.ts';

/** the longest a case waits for an answer or a close */
const WAIT_MS = 4000;
const HOST = 'Host: localhost\r\n';
const SENTINEL = `GET /sentinel HTTP/1.1\r\n${HOST}Connection: close\r\n\r\n`;
const SANE_BODY = /^sane conn=(\d+)$/;

/* ------------------------------------------------------------------ the misbehaving upstream */

interface MisbehavingUpstream {
  readonly addr: string;
  /** the next request head (on any connection) is answered with `bytes`; the connection is ended after them when `close` */
  arm(bytes: Buffer, close: boolean): void;
  /** the upstream connection that got the armed bytes (1, 2, … in accept order), or 0 */
  armedConn(): number;
  /** request lines received, with their connection */
  readonly heads: Array<{ conn: number; line: string }>;
}

function saneAnswer(conn: number): string {
  const body = `sane conn=${conn}`;
  return `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
}

async function misbehavingUpstream(t: Test): Promise<MisbehavingUpstream> {
  let armed: { bytes: Buffer; close: boolean } | null = null;
  let armedConn = 0;
  let accepted = 0;
  const heads: Array<{ conn: number; line: string }> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    const conn = ++accepted;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    let done = false;
    s.setEncoding('latin1');
    s.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 1024 * 1024) s.destroy(); // no request head is this big
      for (let end = buf.indexOf('\r\n\r\n'); end !== -1 && !done; end = buf.indexOf('\r\n\r\n')) {
        heads.push({ conn, line: buf.slice(0, buf.indexOf('\r\n')) });
        buf = buf.slice(end + 4); // the requests in this file have no body
        if (armed !== null) {
          const { bytes, close } = armed;
          armed = null;
          armedConn = conn;
          s.write(bytes);
          if (close) {
            done = true;
            s.end();
          }
        } else {
          s.write(saneAnswer(conn));
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  return {
    addr: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    arm: (bytes, close) => (armed = { bytes, close }),
    armedConn: () => armedConn,
    heads,
  };
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

/** A raw connection to `addr`: mTLS as the producer, or plain TCP when `creds` is null. */
function connect(addr: string, creds: TlsCreds | null): Promise<Conn> {
  return rawConnect(addr, creds, WAIT_MS);
}

/** what the client received up to and including its `count`-th complete final answer, and what came after */
function splitAt(rs: Reply[], count: number): [Reply[], Reply[]] {
  let seen = 0;
  for (const [i, r] of rs.entries()) {
    if (r.status >= 200 && r.complete) seen += 1;
    if (seen === count) return [rs.slice(0, i + 1), rs.slice(i + 1)];
  }
  return [rs, []];
}

const announcesClose = (r: Reply | undefined): boolean => /(^|,)\s*close\s*(,|$)/i.test(header(r, 'connection') ?? '');

/**
 * Write `request`, wait for `finalCount` final answers (or a close), then, unless the connection
 * closed or the last answer announced `Connection: close`, the sentinel (`Connection: close`)
 * and wait for the close: the sentinel's answer shows that nothing else was queued behind the
 * answers under test.
 */
async function exchange(
  t: Test,
  conn: Conn,
  request: string,
  finalCount: number,
): Promise<{ replies: Reply[]; sentinel: Reply | null }> {
  conn.socket.write(request);
  await conn.until(() => conn.replies().replies.filter((r) => r.status >= 200 && r.complete).length >= finalCount);
  const sentinelSent = !conn.closed() && !announcesClose(conn.replies().replies.at(-1));
  if (sentinelSent) conn.socket.write(SENTINEL);
  t.ok(await conn.until(() => false), 'the connection closes (after the sentinel, when it stayed open)');
  const parsed = conn.replies();
  t.equal(parsed.error, null, 'what the client received parses strictly as HTTP/1.1 responses');
  t.ok(
    parsed.replies.every((r) => r.complete),
    'every answer the client received is complete',
  );
  const [replies, rest] = splitAt(parsed.replies, finalCount);
  let sentinel: Reply | null = null;
  if (sentinelSent) {
    sentinel = rest[0] ?? null;
    t.equal(rest.length, 1, 'the connection stayed open: the sentinel is answered, and nothing else came');
    t.equal(sentinel?.status, 200, 'the sentinel is answered 200');
    t.match(sentinel?.body.toString('latin1'), SANE_BODY, 'by the upstream');
  } else {
    t.same(
      rest.map((r) => r.status),
      [],
      'nothing after the answers under test',
    );
  }
  conn.socket.destroy();
  return { replies, sentinel };
}

/* ------------------------------------------------------------------ the corpus */

type Expect =
  /** exactly one 502 ERR_UPSTREAM_PROTOCOL; that upstream connection is never used again */
  | { readonly kind: 'protocol' }
  /** the final answer is a 200 with `body`; before it only these interim statuses (none: every 1xx dropped) */
  | { readonly kind: 'final'; readonly body: string; readonly interim: readonly number[] };

interface ResponseCase {
  readonly name: string;
  /** latin1 */
  readonly bytes: string;
  /** the upstream ends the connection after writing them */
  readonly close?: boolean;
  readonly expect: Expect;
}

const PROTOCOL: Expect = { kind: 'protocol' };
const BIG_BODY = Array.from({ length: 4000 }, (_, i) => `line ${i}\n`).join('');

const CASES: readonly ResponseCase[] = [
  {
    name: 'Content-Length and Transfer-Encoding',
    bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    expect: PROTOCOL,
  },
  {
    name: 'two different Content-Lengths',
    bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
    expect: PROTOCOL,
  },
  { name: 'obs-fold', bytes: 'HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok', expect: PROTOCOL },
  { name: 'bare LF line endings', bytes: 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok', expect: PROTOCOL },
  {
    name: 'a head larger than 64 KiB',
    bytes: `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\nContent-Length: 2\r\n\r\nok`,
    expect: PROTOCOL,
  },
  {
    name: 'Transfer-Encoding: gzip, chunked',
    bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    expect: PROTOCOL,
  },
  {
    name: 'chunk-size overflow',
    bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n',
    expect: PROTOCOL,
  },
  {
    name: '102 Processing, then 200',
    bytes: 'HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
    expect: { kind: 'final', body: 'hello', interim: [102] },
  },
  {
    name: '103 Early Hints, then 200',
    bytes:
      'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
    expect: { kind: 'final', body: 'hello', interim: [103] },
  },
  {
    name: 'an unsolicited 100 Continue, then 200',
    bytes: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
    expect: { kind: 'final', body: 'hello', interim: [] },
  },
  {
    name: 'no length, the body ends when the upstream closes',
    bytes: `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n${BIG_BODY}`,
    close: true,
    expect: { kind: 'final', body: BIG_BODY, interim: [] },
  },
];

/* ------------------------------------------------------------------ fixtures */

interface Bed {
  readonly w: World;
  readonly ingest: TestIdentity;
  readonly producer: TestIdentity;
}

async function inboundTo(t: Test, bed: Bed, target: string): Promise<TestSidecar> {
  return startTestSidecar(t, bed.w.dir, {
    identity: bed.ingest.files,
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        listen: '127.0.0.1:0',
        target,
        allow: { spiffe: [PRODUCER] },
        integrity: { verify: false },
        anomaly: { mode: 'off' },
      },
    ],
  });
}

/** An outbound sidecar with the producer's identity, signing off, dialling `inbound` and checking it is the ingest service. */
async function outboundTo(t: Test, bed: Bed, inbound: TestSidecar): Promise<TestSidecar> {
  return startTestSidecar(t, bed.w.dir, {
    identity: bed.producer.files,
    listeners: [
      {
        name: 'to-ingest',
        mode: 'outbound',
        listen: '127.0.0.1:0',
        target: inbound.addr(),
        serverName: 'localhost',
        verify: { spiffe: [INGEST] },
        integrity: { sign: false },
      },
    ],
  });
}

function checkProtocolRefusal(t: Test, reply: Reply | undefined): void {
  t.equal(reply?.status, 502, 'the client gets 502');
  t.equal(header(reply, 'x-tollgate-error'), 'ERR_UPSTREAM_PROTOCOL', 'x-tollgate-error is ERR_UPSTREAM_PROTOCOL');
  if (reply !== undefined)
    t.match(jsonOf(reply.body), { error: 'ERR_UPSTREAM_PROTOCOL', message: String }, 'with the JSON refusal body');
}

/** What every case ends with: the sidecar still ready, and a normal request on a new connection answered by the upstream. */
async function afterwards(t: Test, sc: TestSidecar, creds: TlsCreds | null): Promise<void> {
  t.ok(sc.ready(), 'the sidecar is still ready');
  t.same(
    sc.logs.lines.filter((l) => typeof l.level === 'number' && l.level >= 50).map((l) => l.msg),
    [],
    'nothing was logged at error level',
  );
  const conn = await connect(sc.addr(), creds);
  conn.socket.write(`GET /after HTTP/1.1\r\n${HOST}Connection: close\r\n\r\n`);
  await conn.until(() => false);
  const reply = conn.replies().replies[0];
  t.equal(reply?.status, 200, 'a normal request on a new connection gets 200');
  t.match(reply?.body.toString('latin1'), SANE_BODY, 'from the upstream');
  conn.socket.destroy();
}

/** the upstream connection that answered a sane request, from its body */
const saneConn = (reply: Reply | null | undefined): number =>
  Number(SANE_BODY.exec(reply?.body.toString('latin1') ?? '')?.[1] ?? 0);

async function runCase(t: Test, bed: Bed, c: ResponseCase): Promise<void> {
  const upstream = await misbehavingUpstream(t);
  const sc = await inboundTo(t, bed, upstream.addr);
  const creds: TlsCreds = { w: bed.w, producer: bed.producer };
  upstream.arm(Buffer.from(c.bytes, 'latin1'), c.close === true);
  const conn = await connect(sc.addr(), creds);
  const { replies, sentinel } = await exchange(t, conn, `GET /case HTTP/1.1\r\n${HOST}\r\n`, 1);
  t.ok(upstream.armedConn() > 0, 'the upstream sent the case’s bytes');
  t.equal(
    upstream.heads.filter((h) => h.line.startsWith('GET /case ')).length,
    1,
    'the upstream got the request once (never retried)',
  );

  if (c.expect.kind === 'protocol') {
    t.equal(replies.length, 1, 'exactly one answer');
    checkProtocolRefusal(t, replies[0]);
    if (sentinel !== null)
      t.not(saneConn(sentinel), upstream.armedConn(), 'the malformed upstream connection was not reused');
  } else {
    const { body, interim } = c.expect;
    const final = replies.at(-1);
    t.equal(final?.status, 200, 'the final answer is 200');
    t.equal(final?.body.length, Buffer.byteLength(body, 'latin1'), 'with the whole body');
    t.ok(final?.body.equals(Buffer.from(body, 'latin1')), 'byte for byte');
    const before = replies.slice(0, -1).map((r) => r.status);
    t.ok(
      before.every((s) => interim.includes(s)),
      `before it, only ${interim.length === 0 ? 'nothing' : interim.join(', ')} (got ${before.join(', ') || 'nothing'})`,
    );
  }
  await eventually(() => sc.listeners[0]!.connections() === 0, WAIT_MS, 'the case connection to be let go');
  await afterwards(t, sc, creds);
}

const w = await world(t);
const bed: Bed = {
  w,
  ingest: await w.identity('ingest', { spiffe: [INGEST] }),
  producer: await w.identity('producer', { spiffe: [PRODUCER] }),
};

for (const c of CASES) t.test(c.name, async (t) => runCase(t, bed, c));

t.test(
  'a complete response followed by a smuggled second one: the next pipelined request never gets the smuggled one',
  async (t) => {
    const upstream = await misbehavingUpstream(t);
    const sc = await inboundTo(t, bed, upstream.addr);
    const creds: TlsCreds = { w: bed.w, producer: bed.producer };
    upstream.arm(
      Buffer.from(
        'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled',
        'latin1',
      ),
      false,
    );
    const conn = await connect(sc.addr(), creds);
    const { replies, sentinel } = await exchange(
      t,
      conn,
      `GET /one HTTP/1.1\r\n${HOST}\r\nGET /two HTTP/1.1\r\n${HOST}\r\n`,
      2,
    );
    t.equal(replies.length, 2, 'two answers for two requests');
    // the first response is complete and well framed; refusing it with the unsolicited bytes that came with it is also safe
    if (replies[0]?.status === 502) checkProtocolRefusal(t, replies[0]);
    else
      t.equal(
        replies[0]?.body.toString('latin1'),
        'first',
        'the first request gets the complete first response, or a 502',
      );
    const second = replies[1];
    t.not(second?.body.toString('latin1'), 'smuggled', 'the second request is never answered with the smuggled bytes');
    if (second?.status === 502) {
      t.equal(header(second, 'x-tollgate-error'), 'ERR_UPSTREAM_PROTOCOL', 'a 502 for it is ERR_UPSTREAM_PROTOCOL');
    } else {
      t.equal(second?.status, 200, 'else it is a 200');
      t.ok(
        saneConn(second) > 0 && saneConn(second) !== upstream.armedConn(),
        `from a new upstream connection (answered by conn ${saneConn(second)})`,
      );
    }
    t.same(
      [...replies, ...(sentinel === null ? [] : [sentinel])].filter((r) => r.body.toString('latin1') === 'smuggled')
        .length,
      0,
      'no answer carries the smuggled response',
    );
    if (sentinel !== null)
      t.not(saneConn(sentinel), upstream.armedConn(), 'the connection with extra bytes was not reused');
    await eventually(() => sc.listeners[0]!.connections() === 0, WAIT_MS, 'the case connection to be let go');
    await afterwards(t, sc, creds);
  },
);

t.test(
  'through outbound -> inbound: a malformed upstream response reaches the local app’s client as 502 ERR_UPSTREAM_PROTOCOL',
  async (t) => {
    const upstream = await misbehavingUpstream(t);
    const inbound = await inboundTo(t, bed, upstream.addr);
    const outbound = await outboundTo(t, bed, inbound);
    upstream.arm(
      Buffer.from(
        'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
        'latin1',
      ),
      false,
    );
    const conn = await connect(outbound.addr(), null);
    const { replies } = await exchange(t, conn, `GET /via-outbound HTTP/1.1\r\n${HOST}\r\n`, 1);
    t.equal(replies.length, 1, 'exactly one answer');
    checkProtocolRefusal(t, replies[0]);
    t.equal(
      upstream.heads.filter((h) => h.line.startsWith('GET /via-outbound ')).length,
      1,
      'the upstream got the request once (never retried)',
    );
    await afterwards(t, outbound, null);
  },
);
