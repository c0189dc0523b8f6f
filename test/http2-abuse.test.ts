/**
 * HTTP/2 abuse (issue 20, item 4): each attack performed with raw frames against the mTLS
 * inbound (test/helpers/h2Frames.ts), and what it may cost bounded: rapid reset, PING and
 * SETTINGS floods, a CONTINUATION flood, a zero-window stall, streams beyond the concurrency
 * limit, header lists beyond the limit, DATA beyond the flow-control window. Each connection
 * tollgate ends is counted in tollgate_http2_goaways_total by reason, and the listener goes on
 * serving new connections.
 */
import t from 'tap';
import type http from 'node:http';
import http2 from 'node:http2';
import { randomBytes } from 'node:crypto';
import {
  FLAG,
  FRAME,
  H2_ERROR,
  PREFACE,
  SETTING,
  continuationFrame,
  dataFrame,
  decodeBlock,
  goawayOf,
  h2Connect,
  headersFrame,
  literalField,
  pingFrame,
  requestBlock,
  rstStreamFrame,
  settingsFrame,
  settingsOf,
  u32Of,
  type Frame,
  type H2Creds,
  type RawH2,
} from './helpers/h2Frames.ts';
import { pipeline, echo, type Pipeline, type PipelineOptions } from './helpers/pipeline.ts';
import { eventually, type Test } from './helpers/world.ts';

const WAIT_MS = 15_000;
const GOAWAYS = 'tollgate_http2_goaways_total';

/* ------------------------------------------------------------------------------ the app */

/** What the app saw of the requests the tests make it hold or answer big. */
interface AbuseApp {
  readonly handler: http.RequestListener;
  /** requests to /hold/… waiting for release() */
  held(): number;
  /** answer every held request (200, body "released <path>") */
  release(): void;
  /** /big: bytes the app's writes were accepted for, whether the response finished, whether it closed first */
  big: { written: number; finished: boolean; closedFirst: boolean; started: boolean };
  /** /sink: a request the app holds without reading its body */
  sinks: http.IncomingMessage[];
}

const BIG_BYTES = 16 * 1024 * 1024;
const BIG_CHUNK = Buffer.alloc(64 * 1024, 0x61);

function abuseApp(): AbuseApp {
  const holding: Array<{ path: string; res: http.ServerResponse }> = [];
  const big = { written: 0, finished: false, closedFirst: false, started: false };
  const sinks: http.IncomingMessage[] = [];
  const handler: http.RequestListener = (req, res) => {
    const path = req.url ?? '/';
    if (path.startsWith('/hold/')) {
      req.resume();
      holding.push({ path, res });
      return;
    }
    if (path === '/sink') {
      sinks.push(req);
      return;
    }
    if (path === '/big') {
      big.started = true;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG_BYTES });
      res.once('finish', () => (big.finished = true));
      res.once('close', () => {
        if (!big.finished) big.closedFirst = true;
      });
      const pump = (): void => {
        while (big.written < BIG_BYTES && !res.destroyed) {
          big.written += BIG_CHUNK.length;
          const more = res.write(BIG_CHUNK);
          if (big.written >= BIG_BYTES) res.end();
          else if (!more) {
            res.once('drain', pump);
            return;
          }
        }
      };
      pump();
      return;
    }
    echo(req, res);
  };
  return {
    handler,
    held: () => holding.length,
    release() {
      for (const { path, res } of holding.splice(0)) res.writeHead(200).end(`released ${path}`);
    },
    big,
    sinks,
  };
}

/* ------------------------------------------------------------------------------ helpers */

async function setup(
  t: Test,
  limits: Record<string, unknown> = {},
  more: Partial<PipelineOptions> = {},
): Promise<{ pl: Pipeline; app: AbuseApp; creds: H2Creds }> {
  const app = abuseApp();
  const pl = await pipeline(t, { sign: false, app: app.handler, inbound: { limits }, ...more });
  const leaf = pl.outbound.leaf();
  return { pl, app, creds: { ca: pl.w.ca.certPem, cert: leaf.certPem, key: leaf.keyPem } };
}

async function raw(t: Test, pl: Pipeline, creds: H2Creds): Promise<RawH2> {
  const c = await h2Connect(pl.inbound.addr, creds, WAIT_MS);
  t.teardown(() => c.close());
  return c;
}

const GET = FLAG.END_STREAM | FLAG.END_HEADERS;

/** the :status of a HEADERS frame (null when not readable without Huffman decoding) */
function statusOf(f: Frame): string | null {
  return decodeBlock(f.payload).find(([n]) => n === ':status')?.[1] ?? null;
}

/** The listener still serves: a new connection (node's own client) gets a 200. */
async function servesNewConnection(t: Test, pl: Pipeline, creds: H2Creds): Promise<void> {
  const session = http2.connect(`https://${pl.inbound.addr}`, { ...creds, servername: 'localhost' });
  session.on('error', () => undefined);
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':method': 'GET', ':path': '/after' });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
    });
    t.equal(status, 200, 'a new connection is served normally afterwards');
  } finally {
    session.close();
  }
}

async function goawayCount(pl: Pipeline, reason: string): Promise<number> {
  return pl.inbound.metric(GOAWAYS, { reason });
}

/* ------------------------------------------------------------------------------ the floods */

/** HEADERS (a GET) and RST_STREAM (CANCEL) for `count` streams from `firstId` on, as one buffer */
function openAndCancel(firstId: number, count: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const id = firstId + 2 * i;
    parts.push(headersFrame(id, requestBlock('GET', `/rr/${id}`), GET), rstStreamFrame(id, H2_ERROR.CANCEL));
  }
  return Buffer.concat(parts);
}

t.test('rapid reset: streams opened and cancelled at once → GOAWAY ENHANCE_YOUR_CALM, the app sees few', async (t) => {
  const { pl, creds } = await setup(t);
  // Paced: 100 streams opened and cancelled, then a PING, the next 100 once it is answered. The
  // reset budget (100 a second, burst 200) runs out in the third batch: GOAWAY at the end of the
  // read that spent it. Bound on what the server took: burst 200 + the batch being read (100) +
  // the refill while the batches came (100 a second; 300 allows 3 s of a slow run) = 600.
  const BATCH = 100;
  const MAX_BATCHES = 20;
  const BOUND = 600;
  const c = await raw(t, pl, creds);
  await c.handshake();
  for (let b = 0; b < MAX_BATCHES && c.goaway() === null && !c.closed(); b++) {
    const opaque = Buffer.from(`batch${String(b).padStart(3, '0')}`);
    c.send(openAndCancel(1 + 2 * BATCH * b, BATCH), pingFrame(opaque));
    await c.waitFor(
      (f) => f.type === FRAME.GOAWAY || (f.type === FRAME.PING && f.payload.equals(opaque)),
      `the answer to batch ${b}`,
    );
  }
  await c.waitClosed('the connection to close');
  const goaways = c.frames.filter((f) => f.type === FRAME.GOAWAY).map(goawayOf);
  t.same(
    goaways.map((g) => g.code),
    [H2_ERROR.ENHANCE_YOUR_CALM],
    'one GOAWAY, ENHANCE_YOUR_CALM (and no NO_ERROR one after it)',
  );
  const accepted = (goaways[0]!.lastStreamId + 1) / 2;
  t.ok(accepted <= BOUND, `the server took ${accepted} of ${BATCH * MAX_BATCHES} streams (≤ ${BOUND})`);
  t.equal(await goawayCount(pl, 'rapid_reset'), 1, 'counted once as rapid_reset');
  const paced = pl.app.requests();
  t.ok(paced <= accepted, `the app received ${paced} of them (≤ ${accepted})`);

  // A burst: 2,000 in one write. node:http2 reaps a closed stream only on the next turn of the
  // event loop and holds at most SETTINGS_MAX_CONCURRENT_STREAMS (100) at once: the streams beyond
  // are refused (RST_STREAM ENHANCE_YOUR_CALM), and after 100 refused in a row it fails the session
  // before the reset budget sees the closes. It is still counted as rapid_reset; node:http2 sends
  // its GOAWAY with INTERNAL_ERROR, often lost as the socket closes with the flood unread.
  const burst = await raw(t, pl, creds);
  await burst.handshake();
  burst.send(openAndCancel(1, 2000));
  await burst.waitClosed('the connection to close');
  t.equal(await goawayCount(pl, 'rapid_reset'), 2, 'the burst is counted as rapid_reset too');
  const codes = burst.frames.filter((f) => f.type === FRAME.GOAWAY).map((f) => goawayOf(f).code);
  t.ok(
    codes.every((code) => code === H2_ERROR.INTERNAL_ERROR || code === H2_ERROR.ENHANCE_YOUR_CALM),
    `burst: GOAWAY codes seen ${JSON.stringify(codes)}`,
  );
  // at most 100 streams a turn reach tollgate, and streams already reset when they do start nothing
  t.ok(pl.app.requests() - paced <= 200, `the app received ${pl.app.requests() - paced} of the burst's 2,000`);
  await servesNewConnection(t, pl, creds);
});

t.test('PING flood → GOAWAY ENHANCE_YOUR_CALM counted as ping_flood; SETTINGS flood → settings_flood', async (t) => {
  const { pl, creds } = await setup(t);
  const pinger = await raw(t, pl, creds);
  await pinger.handshake();
  const PINGS = 5000;
  pinger.send(...Array.from({ length: PINGS }, (_, i) => pingFrame(Buffer.from(`${i}`.padStart(8, '0')))));
  await pinger.waitFor((f) => f.type === FRAME.GOAWAY, 'GOAWAY');
  await pinger.waitClosed('the connection to close');
  t.equal(pinger.goaway()!.code, H2_ERROR.ENHANCE_YOUR_CALM, 'PING flood: GOAWAY ENHANCE_YOUR_CALM');
  const acks = pinger.frames.filter((f) => f.type === FRAME.PING && (f.flags & FLAG.ACK) !== 0).length;
  // budget 20 a second, burst 40: the PING that finds it spent ends the session in the read that brought it, so
  // at most the burst and its refill (3 s of a slow run: 60) are ever answered
  t.ok(acks <= 100, `${acks} of ${PINGS} PINGs were answered before the connection was closed (≤ 100)`);
  t.equal(await goawayCount(pl, 'ping_flood'), 1, 'counted once as ping_flood');

  const settler = await raw(t, pl, creds);
  await settler.handshake();
  const SETTINGS = 2000;
  settler.send(...Array.from({ length: SETTINGS }, () => settingsFrame([[SETTING.ENABLE_PUSH, 0]])));
  await settler.waitFor((f) => f.type === FRAME.GOAWAY, 'GOAWAY');
  await settler.waitClosed('the connection to close');
  t.equal(settler.goaway()!.code, H2_ERROR.ENHANCE_YOUR_CALM, 'SETTINGS flood: GOAWAY ENHANCE_YOUR_CALM');
  const settingsAcks = settler.frames.filter((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) !== 0).length;
  // budget 10 a second, burst 20 (the client's first SETTINGS among them), plus its refill in a slow run
  t.ok(settingsAcks <= 50, `${settingsAcks} of ${SETTINGS + 1} SETTINGS were acknowledged (≤ 50)`);
  t.equal(await goawayCount(pl, 'settings_flood'), 1, 'counted once as settings_flood');
  t.equal(await goawayCount(pl, 'ping_flood'), 1, 'the PING flood was not counted again');
  await servesNewConnection(t, pl, creds);
});

t.test('CONTINUATION flood: a head that never ends → the connection is closed and counted', async (t) => {
  const { pl, creds } = await setup(t);
  const c = await raw(t, pl, creds);
  await c.handshake();
  const FRAMES = 5000;
  const parts: Buffer[] = [headersFrame(1, requestBlock('GET', '/cont'), FLAG.END_STREAM)];
  for (let i = 0; i < FRAMES; i++) parts.push(continuationFrame(1, literalField('x-c', String(i % 10)), false));
  c.send(...parts);
  await c.waitClosed('the connection to close');
  // nghttp2 (1.70) allows a few CONTINUATION frames a head and fails the session past them; node:http2 then
  // closes it with GOAWAY INTERNAL_ERROR, counted as flood ("Too many CONTINUATION frames following a HEADER frame")
  const g = c.goaway();
  t.ok(
    g !== null && (g.code === H2_ERROR.INTERNAL_ERROR || g.code === H2_ERROR.ENHANCE_YOUR_CALM),
    `GOAWAY sent: ${JSON.stringify(g)}`,
  );
  t.equal(await goawayCount(pl, 'flood'), 1, 'counted once as flood');
  t.equal(await goawayCount(pl, 'protocol_error'), 0, 'and not as a protocol error');
  const sent = parts.length - 1;
  t.ok(
    c.frames.every((f) => f.type !== FRAME.HEADERS),
    `no answer to a head that never ended (${sent} CONTINUATION frames sent)`,
  );
  t.equal(pl.app.requests(), 0, 'the app saw nothing');
  await servesNewConnection(t, pl, creds);
});

/* ------------------------------------------------------------------------------ the limits */

t.test('zero-window stall: a stream that never opens its window is reset; tollgate buffers little', async (t) => {
  const { pl, app, creds } = await setup(t, { idleTimeoutSeconds: 1 });
  const c = await raw(t, pl, creds);
  await c.handshake([[SETTING.INITIAL_WINDOW_SIZE, 0]]);
  c.send(headersFrame(1, requestBlock('GET', '/big'), GET));
  const head = await c.waitFor((f) => f.type === FRAME.HEADERS && f.streamId === 1, 'the response head');
  t.equal(statusOf(head), '200', 'the head is sent (HEADERS are not flow-controlled)');
  const rst = await c.waitFor((f) => f.type === FRAME.RST_STREAM && f.streamId === 1, 'RST_STREAM on stream 1');
  t.equal(
    u32Of(rst),
    H2_ERROR.INTERNAL_ERROR,
    'tollgate reset the stalled stream (RST_STREAM without END_STREAM before it)',
  );
  t.notOk(
    c.frames.some((f) => f.type === FRAME.DATA),
    'no DATA was sent into a zero window',
  );
  await eventually(() => app.big.closedFirst, WAIT_MS, "the app's response to be aborted");
  t.notOk(app.big.finished, `the app's response never finished (${app.big.written} of ${BIG_BYTES} bytes accepted)`);
  t.ok(app.big.written < BIG_BYTES, 'tollgate did not take the whole response in');
  t.notOk(c.closed(), 'the connection itself stays open');
  c.send(headersFrame(3, requestBlock('GET', '/next'), GET));
  const next = await c.waitFor((f) => f.type === FRAME.HEADERS && f.streamId === 3, 'the next stream answered');
  t.equal(statusOf(next), '200', 'the connection serves the next stream');
});

t.test('max concurrent streams: the 6th stream is refused, the first five answered once released', async (t) => {
  const { pl, app, creds } = await setup(t, { http2MaxConcurrentStreams: 5 });
  const six = [1, 3, 5, 7, 9, 11].map((id) => headersFrame(id, requestBlock('GET', `/hold/${id}`), GET));
  // A client that opens its streams with its preface, before it has the server's SETTINGS (as
  // clients do): the limit is not yet acknowledged, so nghttp2 refuses the stream beyond it.
  const c = await raw(t, pl, creds);
  c.send(PREFACE, settingsFrame([[SETTING.HEADER_TABLE_SIZE, 0]]), ...six);
  const settings = await c.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0, 'SETTINGS');
  t.equal(settingsOf(settings).get(SETTING.MAX_CONCURRENT_STREAMS), 5, 'SETTINGS_MAX_CONCURRENT_STREAMS 5');
  const refused = await c.waitFor((f) => f.type === FRAME.RST_STREAM && f.streamId === 11, 'RST_STREAM on stream 11');
  t.equal(u32Of(refused), H2_ERROR.REFUSED_STREAM, 'the 6th stream: REFUSED_STREAM');
  await eventually(() => app.held() === 5, WAIT_MS, 'the app to hold five requests');
  t.equal(app.held(), 5, 'five reached the app');
  app.release();
  for (const id of [1, 3, 5, 7, 9]) {
    const head = await c.waitFor((f) => f.type === FRAME.HEADERS && f.streamId === id, `the answer on stream ${id}`);
    t.equal(statusOf(head), '200', `stream ${id} answered 200`);
    await c.waitFor((f) => f.streamId === id && (f.flags & FLAG.END_STREAM) !== 0, `the end of stream ${id}`);
    const body = Buffer.concat(
      c.frames.filter((f) => f.type === FRAME.DATA && f.streamId === id).map((f) => f.payload),
    );
    t.equal(body.toString(), `released /hold/${id}`, `stream ${id} carries the app's answer`);
  }
  t.notOk(
    c.frames.some((f) => f.type === FRAME.RST_STREAM && f.streamId !== 11),
    'no other stream was reset',
  );
  t.equal(c.goaway(), null, 'no GOAWAY');
  t.equal(pl.app.requests(), 5, 'the refused stream never reached the app');

  // A client that acknowledged the limit and still exceeds it: nghttp2 makes that a connection
  // error (RFC 9113 §5.1.2 asks for a stream error), GOAWAY PROTOCOL_ERROR, counted as protocol_error.
  const late = await raw(t, pl, creds);
  await late.handshake();
  late.send(...six);
  const goaway = await late.waitFor((f) => f.type === FRAME.GOAWAY, 'GOAWAY');
  t.equal(goawayOf(goaway).code, H2_ERROR.PROTOCOL_ERROR, `beyond an acknowledged limit: GOAWAY PROTOCOL_ERROR`);
  await late.waitClosed('the connection to close');
  t.equal(await goawayCount(pl, 'protocol_error'), 1, 'counted as protocol_error');
  app.release();
  await servesNewConnection(t, pl, creds);
});

t.test(
  'header list size: just over maxHeaderBytes → 431; far over → the stream is reset; the connection goes on',
  async (t) => {
    const { pl, creds } = await setup(t, { maxHeaderBytes: 4096 });
    const session = http2.connect(`https://${pl.inbound.addr}`, { ...creds, servername: 'localhost' });
    session.on('error', () => undefined);
    t.teardown(() => session.close());
    interface Asked {
      status: number;
      headers: http2.IncomingHttpHeaders;
      rstCode: number;
    }
    const ask = (headers: http2.OutgoingHttpHeaders): Promise<Asked> =>
      new Promise((resolve) => {
        const req = session.request(headers);
        let head: http2.IncomingHttpHeaders = {};
        req.on('response', (h) => (head = h));
        req.on('error', () => undefined);
        req.resume();
        req.on('close', () =>
          resolve({ status: Number(head[':status'] ?? -1), headers: head, rstCode: req.rstCode ?? -1 }),
        );
      });
    const over = await ask({ ':method': 'GET', ':path': '/over', 'x-big': 'a'.repeat(4200) });
    t.equal(over.status, 431, 'a head just over the limit: 431');
    t.equal(over.headers['x-tollgate-error'], 'ERR_HEADERS_TOO_LARGE', 'with x-tollgate-error ERR_HEADERS_TOO_LARGE');
    t.equal(
      await pl.inbound.metric('tollgate_requests_total', { protocol: 'h2', status_class: '4xx' }),
      1,
      'counted as a refusal',
    );
    t.ok(
      pl.inbound.logs().some((l) => l.code === 'ERR_HEADERS_TOO_LARGE'),
      'and logged with its code',
    );
    const far = await ask({ ':method': 'GET', ':path': '/far', 'x-big': 'a'.repeat(40_000) });
    t.equal(far.status, -1, 'a head far over it is not answered');
    t.equal(far.rstCode, H2_ERROR.ENHANCE_YOUR_CALM, 'node:http2 resets its stream (ENHANCE_YOUR_CALM)');
    t.equal(pl.app.requests(), 0, 'neither reached the app');
    const next = await ask({ ':method': 'GET', ':path': '/next' });
    t.equal(next.status, 200, 'the connection serves the next stream');
    t.equal(pl.app.requests(), 1, 'and only it reached the app');
  },
);

t.test(
  'SETTINGS as configured; DATA beyond the advertised window is a flow-control error, never passed on',
  async (t) => {
    const { pl, app, creds } = await setup(t, { http2MaxConcurrentStreams: 7, http2HeaderTableBytes: 4096 });
    const c = await raw(t, pl, creds);
    const settings = await c.handshake();
    t.equal(settings.get(SETTING.MAX_CONCURRENT_STREAMS), 7, 'MAX_CONCURRENT_STREAMS as configured');
    t.equal(settings.get(SETTING.HEADER_TABLE_SIZE), 4096, 'HEADER_TABLE_SIZE 4096');
    t.equal(settings.get(SETTING.INITIAL_WINDOW_SIZE), 262_144, 'INITIAL_WINDOW_SIZE 262144 (the default)');
    const WINDOW = 262_144;
    // a POST the app holds without reading, and DATA well past the window, sent without waiting for WINDOW_UPDATE
    c.send(headersFrame(1, requestBlock('POST', '/sink'), FLAG.END_HEADERS));
    const chunk = randomBytes(16_384);
    // well past what the kernel's socket buffers toward the app can absorb too (tcp_wmem max 4 MiB here): tollgate
    // passes the body on as the app's connection takes it, and opens the window for what it passed on
    const OVER = WINDOW + 12 * 1024 * 1024;
    const data: Buffer[] = [];
    for (let sent = 0; sent < OVER; sent += chunk.length) data.push(dataFrame(1, chunk));
    c.send(...data);
    const error = await c.waitFor(
      (f) => (f.type === FRAME.RST_STREAM && f.streamId === 1) || f.type === FRAME.GOAWAY,
      'RST_STREAM or GOAWAY',
    );
    const code = error.type === FRAME.GOAWAY ? goawayOf(error).code : u32Of(error);
    const kind = error.type === FRAME.GOAWAY ? 'GOAWAY' : 'RST_STREAM';
    t.equal(code, H2_ERROR.FLOW_CONTROL_ERROR, `${kind} FLOW_CONTROL_ERROR (got ${kind} ${code})`);
    // what the server let the client send: the initial window and the increments it gave since
    const granted =
      WINDOW +
      c.frames
        .filter(
          (f) => f.type === FRAME.WINDOW_UPDATE && f.streamId === 1 && c.frames.indexOf(f) < c.frames.indexOf(error),
        )
        .reduce((n, f) => n + u32Of(f), 0);
    await eventually(
      () => app.sinks.length === 1 || c.closed(),
      WAIT_MS,
      'the app to get the request (or the connection to close)',
    );
    const appBytes = pl.app.bytes();
    t.ok(appBytes <= granted + 4096, `the app received ${appBytes} bytes (≤ the ${granted} granted, plus the head)`);
    const connectionGranted = c.frames
      .filter((f) => f.type === FRAME.WINDOW_UPDATE && f.streamId === 0)
      .reduce((n, f) => n + u32Of(f), 0);
    t.ok(
      granted < OVER,
      `the server granted ${granted} of the ${OVER} bytes sent (connection window updates: ${connectionGranted})`,
    );
    if (error.type === FRAME.GOAWAY) {
      await c.waitClosed('the connection to close');
      t.equal(await goawayCount(pl, 'protocol_error'), 1, 'the GOAWAY is counted (protocol_error)');
    }
  },
);
