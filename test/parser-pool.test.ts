/**
 * A client connection of the HTTP/1.1 core borrows its llhttp parser from the listener's pool
 * while it reads a request and gives it back when it waits for the next one
 * (src/http1/parserPool.ts): an idle keep-alive connection holds no parser (~10 KiB of native
 * memory each). Real loopback sockets carry the bytes into a `ServerConnection`; the handler
 * here answers every request `200` with its target (a refusal: its status and the close).
 */
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { systemClock } from '../src/core/clock.ts';
import type { Exchange } from '../src/http1/exchange.ts';
import { loadHttpParser, type LlhttpParser } from '../src/http1/parserBinding.ts';
import { ParserPool, type ParserClient } from '../src/http1/parserPool.ts';
import { ServerConnection, type ConnectionActivity, type ExchangeHandler } from '../src/http1/serverConnection.ts';
import type { Teardownable } from './helpers/pki.ts';

const binding = loadHttpParser();

/** a pool that records every parser it lends, in order */
class RecordingPool extends ParserPool {
  readonly lent: LlhttpParser[] = [];
  override acquire(client: ParserClient, maxHeaderBytes: number): LlhttpParser {
    const p = super.acquire(client, maxHeaderBytes);
    this.lent.push(p);
    return p;
  }
}

interface Served {
  readonly pool: RecordingPool;
  readonly port: number;
  /** the server side of each connection, in accept order */
  readonly conns: Array<ServerConnection<ConnectionActivity>>;
  /** every request target the handler started, in order */
  readonly targets: string[];
}

/** A loopback server whose connections run on ServerConnection with `pool`, each request answered at once. */
async function served(t: Teardownable, keep = 64): Promise<Served> {
  const pool = new RecordingPool(binding, keep);
  const conns: Array<ServerConnection<ConnectionActivity>> = [];
  const targets: string[] = [];
  const handler: ExchangeHandler = {
    start(ex: Exchange, conn: ServerConnection) {
      if (ex.parserRefusal !== null) {
        conn.write('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        ex.closeAfter = true;
      } else {
        targets.push(ex.target);
        conn.write(`HTTP/1.1 200 OK\r\ncontent-length: ${ex.target.length}\r\n\r\n${ex.target}`);
      }
      conn.done(ex);
    },
    abandoned: () => {},
    bodyRefused: () => {},
    idle: () => {},
    draining: () => false,
  };
  const server = net.createServer((socket) => {
    conns.push(
      new ServerConnection(
        socket,
        { inFlight: 0 },
        handler,
        pool,
        { maxHeaderBytes: 16 * 1024, maxHeaderPairs: 100, idleTimeoutMs: 10_000 },
        systemClock.monotonic,
      ),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { pool, port: (server.address() as net.AddressInfo).port, conns, targets };
}

/** A client socket that collects what it reads. */
async function client(t: Teardownable, port: number): Promise<{ socket: net.Socket; read: () => string }> {
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => void socket.destroy());
  await once(socket, 'connect');
  let text = '';
  socket.setEncoding('latin1').on('data', (c: string) => (text += c));
  return { socket, read: () => text };
}

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!ok()) throw new Error(`not within 2 s: ${what}`);
}

const get = (target: string): string => `GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`;

t.test(
  'a keep-alive connection waiting for its next request holds no parser; the next request borrows one',
  async (t) => {
    const s = await served(t);
    const c = await client(t, s.port);
    c.socket.write(get('/one'));
    await until('the first answer', () => c.read().endsWith('/one'));
    t.equal(s.conns[0]!.parser, null, 'between requests the connection holds no parser');
    t.equal(s.pool.free.length, 1, 'it is back in the pool');
    c.socket.write(get('/two'));
    await until('the second answer', () => c.read().endsWith('/two'));
    t.same(s.targets, ['/one', '/two']);
    t.equal(s.pool.lent.length, 2, 'each request borrowed a parser');
    t.equal(s.pool.lent[1], s.pool.lent[0], 'the same one, from the pool');
    t.equal(s.pool.free.length, 1);
  },
);

t.test('a connection keeps its parser while llhttp is inside the next message', async (t) => {
  const s = await served(t);
  const c = await client(t, s.port);
  c.socket.write(`${get('/first')}GET /sec`);
  await until('the first answer', () => c.read().endsWith('/first'));
  t.not(s.conns[0]!.parser, null, 'the next head has begun: the parser stays with the connection');
  t.equal(s.pool.free.length, 0);
  c.socket.write('ond HTTP/1.1\r\nHost: a\r\n\r\n');
  await until('the second answer', () => c.read().endsWith('/second'));
  t.same(s.targets, ['/first', '/second'], 'the head split over two writes is one request');
  t.equal(s.conns[0]!.parser, null, 'once answered, the connection waits without one');
  t.equal(s.pool.lent.length, 1, 'one parser read both');
});

t.test('a parser that refused a stream reads the next connection from the start', async (t) => {
  const s = await served(t);
  const bad = await client(t, s.port);
  bad.socket.write('GET /bad HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n');
  await until('the refusal and the close', () => bad.read().startsWith('HTTP/1.1 400') && bad.socket.readableEnded);
  await until('the closed connection gave its parser back', () => s.pool.free.length === 1);
  const good = await client(t, s.port);
  good.socket.write(get('/good'));
  await until('the answer', () => good.read().endsWith('/good'));
  t.equal(s.pool.lent.length, 2);
  t.equal(s.pool.lent[1], s.pool.lent[0], 'the refusing parser was lent again');
  t.same(s.targets, ['/good'], 'and read the new stream as a request of its own');
});

/** a parser client that records the targets of the heads it is told of */
function recordingClient(): ParserClient & { readonly heads: string[] } {
  const heads: string[] = [];
  return {
    heads,
    onMessageBegin: () => 0,
    onHeaders: () => undefined,
    onHeadersComplete: (_major, _minor, _raw, _method, url) => {
      heads.push(url ?? '');
      return 0;
    },
    onBody: () => undefined,
    onMessageComplete: () => undefined,
  };
}

t.test('the pool keeps at most `keep` free parsers and frees the rest', async (t) => {
  const pool = new ParserPool(binding, 1);
  const client = recordingClient();
  const a = pool.acquire(client, 1024);
  const b = pool.acquire(client, 1024);
  t.not(a, b, 'an empty pool makes a new parser');
  pool.release(a);
  pool.release(b);
  t.same(pool.free, [a], 'one kept, the other freed');
  pool.clear();
  t.same(pool.free, []);
});

t.test('a parser reports to the client holding it, and no longer to one that gave it back', async (t) => {
  const pool = new ParserPool(binding, 4);
  const first = recordingClient();
  const second = recordingClient();
  const p = pool.acquire(first, 1024);
  const one = Buffer.from('GET /one HTTP/1.1\r\nhost: x\r\n\r\n');
  t.equal(p.execute(one), one.length, 'the first request parsed whole');
  pool.release(p);
  const again = pool.acquire(second, 1024);
  t.equal(again, p, 'the same parser, lent again');
  const two = Buffer.from('GET /two HTTP/1.1\r\nhost: x\r\n\r\n');
  t.equal(again.execute(two), two.length, 'the second request parsed whole');
  t.same(first.heads, ['/one'], 'the first client heard of its own request only');
  t.same(second.heads, ['/two'], 'the second client heard of its own');
  pool.release(again);
  pool.clear();
});
