/**
 * Slow clients (issue 14, item 6): a client that trickles its request body below the minimum
 * data rate (`limits.bodyTimeoutSeconds`, `limits.minBodyBytesPerSecond`) gets 408
 * ERR_BODY_TIMEOUT and its connection closed, on the inbound (a real mTLS client) and on the
 * outbound; the app never sees that body complete, even when the request was already streaming
 * upstream. A client trickling its headers still gets ERR_HEADERS_TIMEOUT; a client that is slow
 * but above the minimum, or pauses for less than the gap, gets through intact.
 *
 * Short configured limits instead of the defaults (bodyTimeoutSeconds 0.5, 200 bytes/s); no
 * assertion bounds elapsed time from above.
 */
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import { createHash, randomBytes } from 'node:crypto';
import { ID_HEADER, pipeline, type Pipeline } from '../helpers/pipeline.ts';
import { signedHeaders } from '../helpers/signing.ts';
import { eventually, mtlsClient, sha256, type Test } from '../helpers/world.ts';

const LIMITS = { bodyTimeoutSeconds: 0.5, minBodyBytesPerSecond: 200, headersTimeoutSeconds: 1 };

interface Trickle {
  /** bytes of the body written before the connection closed or the body ended */
  readonly written: number;
  /** everything the server sent */
  readonly response: string;
}

/**
 * Write `head`, then `body` in `chunk`-byte pieces every `everyMs`, until all is written or the
 * server closes the connection; resolve with what came back once the connection has closed (or
 * the body is complete and a full response is in). Bounded by the body's length.
 */
function trickle(
  socket: net.Socket,
  head: string,
  body: Buffer,
  chunk: number,
  everyMs: number,
  pauseAfter?: { bytes: number; ms: number },
): Promise<Trickle> {
  return new Promise((resolve) => {
    let written = 0;
    let response = '';
    let timer: NodeJS.Timeout | null = null;
    let closed = false;
    const finish = (): void => {
      if (timer !== null) clearTimeout(timer);
      resolve({ written, response });
    };
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      response += d;
      // a complete answer to a complete body: done (the connection may stay open)
      if (written === body.length && /\r\n\r\n/.test(response)) {
        const length = /content-length: (\d+)/i.exec(response);
        if (length !== null && response.length - response.indexOf('\r\n\r\n') - 4 >= Number(length[1])) {
          socket.destroy();
        }
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      finish();
    });
    const next = (): void => {
      timer = null;
      if (closed || socket.destroyed || written >= body.length) return;
      const piece = body.subarray(written, written + chunk);
      written += piece.length;
      socket.write(piece);
      const pause = pauseAfter !== undefined && written === pauseAfter.bytes ? pauseAfter.ms : 0;
      timer = setTimeout(next, everyMs + pause);
    };
    socket.write(head, () => {
      timer = setTimeout(next, everyMs);
    });
  });
}

function requestHead(method: string, path: string, headers: Record<string, string>): string {
  return (
    `${method} ${path} HTTP/1.1\r\n` +
    Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    '\r\n'
  );
}

/** An mTLS connection to the inbound as the producer (the outbound's identity). */
async function producerTls(pl: Pipeline): Promise<tls.TLSSocket> {
  const [host, port] = splitAddr(pl.inbound.addr);
  const leaf = pl.outbound.leaf();
  const socket = tls.connect({
    host,
    port,
    ca: pl.w.ca.certPem,
    cert: leaf.certPem,
    key: leaf.keyPem,
    servername: 'localhost',
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

async function plainTo(addr: string): Promise<net.Socket> {
  const [host, port] = splitAddr(addr);
  const socket = net.connect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

/** A signed request head for the inbound, with Content-Length and Content-Digest of `body`. */
function signedHead(pl: Pipeline, id: string, body: Buffer): string {
  const fields = { [ID_HEADER]: id, 'content-type': 'application/octet-stream' };
  const headers = signedHeaders({
    method: 'POST',
    path: '/slow',
    authority: pl.inbound.addr,
    headers: fields,
    body,
    key: pl.key,
  });
  return requestHead('POST', '/slow', headers);
}

function statusOf(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0);
}

function errorCodeOf(response: string): { header: string | null; body: string | null } {
  const header = /x-tollgate-error: (\S+)/i.exec(response)?.[1] ?? null;
  const json = response.slice(response.indexOf('\r\n\r\n') + 4);
  let body: string | null = null;
  try {
    body = (JSON.parse(json) as { error?: string }).error ?? null;
  } catch {
    body = null;
  }
  return { header, body };
}

async function expectBodyTimeout(
  t: Test,
  pl: Pipeline,
  side: 'inbound' | 'outbound',
  r: Trickle,
  id: string,
  bodyLength: number,
): Promise<void> {
  t.equal(statusOf(r.response), 408, `408 (got ${JSON.stringify(r.response.slice(0, 200))})`);
  t.same(
    errorCodeOf(r.response),
    { header: 'ERR_BODY_TIMEOUT', body: 'ERR_BODY_TIMEOUT' },
    'ERR_BODY_TIMEOUT in x-tollgate-error and the JSON body',
  );
  t.match(r.response, /connection: close/i, 'the response closes the connection');
  t.ok(
    r.written < bodyLength,
    `the connection closed before the whole body was sent (${r.written} of ${bodyLength} bytes)`,
  );
  const sideOf = side === 'inbound' ? pl.inbound : pl.outbound;
  await eventually(
    () => sideOf.logs().some((l) => l.msg === 'request refused' && l.code === 'ERR_BODY_TIMEOUT'),
    5_000,
    'the refusal log line',
  );
  t.equal(
    sideOf.logs().filter((l) => l.msg === 'request refused' && l.code === 'ERR_BODY_TIMEOUT').length,
    1,
    'one log line',
  );
  t.equal(
    sideOf.logs().filter((l) => l.audit === true && l.event === 'request_refused' && l.code === 'ERR_BODY_TIMEOUT')
      .length,
    1,
    'one audit event',
  );
  const listener = side === 'inbound' ? 'ingest' : 'to-ingest';
  t.equal(
    await sideOf.metric('tollgate_requests_total', { listener, status_class: '4xx' }),
    1,
    'counted once as a 4xx request',
  );
  t.same(pl.app.digestsOf(id), [], 'the app never saw the trickled body complete');
}

t.test(
  'inbound: a body trickled below the minimum rate gets 408 ERR_BODY_TIMEOUT and its connection closed (buffer mode)',
  async (t) => {
    const pl = await pipeline(t, { inbound: { limits: LIMITS } });
    const body = randomBytes(400);
    const socket = await producerTls(pl);
    // 1 byte every 50 ms: 20 bytes/s, a tenth of the minimum
    const r = await trickle(socket, signedHead(pl, 'slow-buffer', body), body, 1, 50);
    await expectBodyTimeout(t, pl, 'inbound', r, 'slow-buffer', body.length);
    t.equal(pl.app.requests(), 0, 'buffer mode: nothing went upstream');
  },
);

t.test(
  'inbound, stream mode: the upstream request already under way is aborted, the app never gets the body complete',
  async (t) => {
    let aborted = 0;
    const pl = await pipeline(t, {
      inbound: { limits: LIMITS, config: { integrity: { bodyMode: 'stream' } } },
      app: (req, res) => {
        req.on('close', () => {
          if (!req.complete) aborted += 1;
        });
        req.on('end', () => res.end('whole'));
        req.resume();
      },
    });
    const body = randomBytes(400);
    const socket = await producerTls(pl);
    // a fast first 100 bytes (streamed upstream at once), then 1 byte every 50 ms
    const head = signedHead(pl, 'slow-stream', body);
    const r = await trickle(socket, head + body.subarray(0, 100).toString('latin1'), body.subarray(100), 1, 50);
    await expectBodyTimeout(t, pl, 'inbound', r, 'slow-stream', body.length - 100);
    t.equal(pl.app.requests(), 1, 'the request had gone upstream while it streamed');
    await eventually(() => aborted === 1, 5_000, 'the upstream request to be aborted');
    t.pass('the app saw the request aborted, never complete');
  },
);

t.test(
  'outbound: a body trickled below the minimum rate gets 408 ERR_BODY_TIMEOUT; nothing reaches the inbound',
  async (t) => {
    const pl = await pipeline(t, { outbound: { limits: LIMITS } });
    const body = randomBytes(400);
    const socket = await plainTo(pl.outbound.addr);
    const fields = {
      host: pl.outbound.addr,
      [ID_HEADER]: 'slow-out',
      'content-type': 'application/octet-stream',
      'content-length': String(body.length),
    };
    const head = requestHead('POST', '/slow', fields);
    const r = await trickle(socket, head, body, 1, 50);
    await expectBodyTimeout(t, pl, 'outbound', r, 'slow-out', body.length);
    t.equal(pl.app.requests(), 0, 'the app got nothing');
    t.equal(await pl.inbound.metric('tollgate_requests_total'), 0, 'the inbound got no request');
  },
);

t.test('a client trickling its headers still gets 408 ERR_HEADERS_TIMEOUT', async (t) => {
  const pl = await pipeline(t, { inbound: { limits: LIMITS } });
  const socket = await producerTls(pl);
  // a request line, then a header field one byte every 50 ms: the head is never complete
  const r = await trickle(
    socket,
    `POST /slow HTTP/1.1\r\nhost: ${pl.inbound.addr}\r\n`,
    Buffer.from('x-padding: ' + 'p'.repeat(400)),
    1,
    50,
  );
  t.equal(statusOf(r.response), 408, `408 (got ${JSON.stringify(r.response.slice(0, 200))})`);
  t.equal(errorCodeOf(r.response).header, 'ERR_HEADERS_TIMEOUT', 'ERR_HEADERS_TIMEOUT, not ERR_BODY_TIMEOUT');
  t.equal(pl.app.requests(), 0, 'nothing went upstream');
});

t.test(
  'a slow body above the minimum rate, with a pause shorter than bodyTimeoutSeconds, gets through intact',
  async (t) => {
    const pl = await pipeline(t, { inbound: { limits: LIMITS } });
    const body = randomBytes(600);
    const socket = await producerTls(pl);
    // 20 bytes every 50 ms: 400 bytes/s, twice the minimum; a 300 ms pause (gap 500 ms) halfway
    const r = await trickle(socket, signedHead(pl, 'slow-ok', body), body, 20, 50, { bytes: 300, ms: 300 });
    t.equal(statusOf(r.response), 200, `200 (got ${JSON.stringify(r.response.slice(0, 200))})`);
    t.same(pl.app.digestsOf('slow-ok'), [sha256(body)], 'the app got the body once, intact');
    t.notOk(
      pl.inbound.logs().some((l) => l.code === 'ERR_BODY_TIMEOUT'),
      'no body timeout',
    );
  },
);

t.test(
  'a body that stops for longer than bodyTimeoutSeconds after a fast start gets 408 ERR_BODY_TIMEOUT',
  async (t) => {
    const pl = await pipeline(t, { inbound: { limits: { ...LIMITS, minBodyBytesPerSecond: 0 } } });
    const body = randomBytes(400);
    const socket = await producerTls(pl);
    // minBodyBytesPerSecond 0: only the gap applies; 200 bytes at once, then nothing for 5 s
    const r = await trickle(socket, signedHead(pl, 'stalled', body), body, 200, 20, { bytes: 200, ms: 5_000 });
    await expectBodyTimeout(t, pl, 'inbound', r, 'stalled', body.length);
  },
);

t.test(
  'time the body waits on a slow upstream (backpressure, stream mode) is not counted against the client',
  async (t) => {
    const APP_STALL_MS = 1_500;
    let stalled = 0;
    const pl = await pipeline(t, {
      inbound: { limits: { ...LIMITS, maxBodyBytes: 64 * 1024 * 1024 }, config: { integrity: { bodyMode: 'stream' } } },
      // reads nothing for 1.5 s (three times bodyTimeoutSeconds), then the whole body; answers with its digest
      app: (req, res) => {
        req.pause();
        const hash = createHash('sha256');
        setTimeout(() => {
          stalled += 1;
          req.on('data', (c: Buffer) => hash.update(c));
          req.on('end', () => res.end(hash.digest('hex')));
          req.resume();
        }, APP_STALL_MS);
      },
    });
    // far more than the socket buffers between here and the app hold, so the body must wait on the app
    const body = randomBytes(16 * 1024 * 1024);
    const client = mtlsClient(t, pl.inbound.addr, pl.w.ca, pl.outbound.leaf());
    const fields = { 'content-type': 'application/octet-stream' };
    const headers = signedHeaders({
      method: 'POST',
      path: '/big',
      authority: pl.inbound.addr,
      headers: fields,
      body,
      key: pl.key,
    });
    const res = await client.request({ method: 'POST', path: '/big', headers, body });
    const text = await res.body.text();
    t.equal(res.statusCode, 200, `200 (got ${res.statusCode} ${text.slice(0, 200)})`);
    t.equal(text, sha256(body), 'the app got the whole body, intact');
    t.equal(stalled, 1, 'the app did stall');
    t.notOk(
      pl.inbound.logs().some((l) => l.code === 'ERR_BODY_TIMEOUT'),
      'no body timeout',
    );
  },
);
