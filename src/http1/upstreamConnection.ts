import type { Socket } from 'node:net';
import { TollgateError } from '../core/errors.ts';
import type { BodyReader, ClientSide, Exchange } from './exchange.ts';
import { fieldValue, forwardedFields, isName, onlyChunked } from './fields.ts';
import { STRICT, type HttpParserBinding, type LlhttpParser, type ParseError } from './parserBinding.ts';
import { PAUSE_UPSTREAM } from './inbox.ts';

/**
 * One keep-alive connection to an upstream (the local app, or a remote tollgate over mTLS),
 * carrying one exchange at a time: the request head and body go out with their framing, the
 * response is parsed by llhttp in strict mode and relayed to the client, with backpressure
 * both ways. Parsed response bytes are written to the client only once `execute` returned
 * without error for them, so a response the parser refuses never reaches the client in part:
 * the client gets 502 ERR_UPSTREAM_PROTOCOL and this connection is discarded.
 */

/** what kOnHeadersComplete returns to have llhttp skip the body (a response to HEAD, 204, 304) */
const SKIP_BODY = 1;
/** … or to end the message with its head and stop there, as for an upgrade (a body of known length is taken by hand) */
const SKIP_BODY_AND_PAUSE = 2;

/** body bytes gathered before they are written at once, without waiting for the end of the turn */
const COALESCE_BYTES = 64 * 1024;

/** What the request path does when an exchange on an upstream connection ends. */
export interface UpstreamEvents {
  /** the upstream's final response head (or its 101) arrived */
  answered(ex: Exchange): void;
  /** the response is complete and relayed */
  completed(ex: Exchange, conn: UpstreamLink): void;
  /** the exchange failed on the upstream side; `conn.gotResponseBytes` says whether any byte of a response came */
  failed(ex: Exchange, conn: UpstreamLink, err: Error): void;
  /** the upstream accepted an upgrade (101): the two sockets are to be joined */
  upgraded(ex: Exchange, conn: UpstreamConnection, upstreamRest: Buffer | null): void;
}

/** How the request body is framed upstream. */
export type RequestFraming = 'none' | 'length' | 'chunked';

/**
 * One exchange's way to its upstream: a connection of the HTTP/1.1 core (below), or a stream of
 * an HTTP/2 session (http2/h2Upstream.ts). The request body follows through the BodyReader side.
 */
export interface UpstreamLink extends BodyReader {
  /** the pool (or HTTP/2 upstream) that made it, which takes it back */
  readonly owner: ConnectionOwner;
  /** exchanges carried so far by the connection under it (more than one: it was reused) */
  readonly uses: number;
  /** some byte of a response came for the current exchange */
  readonly gotResponseBytes: boolean;
  /** the exchange it carries, null between exchanges */
  readonly ex: Exchange | null;
  /** send `ex` upstream: the head (HTTP/1.1 text; an HTTP/2 stream uses `ex.sentFields`), and a body held whole */
  begin(ex: Exchange, client: ClientSide, head: string, body: readonly Buffer[] | null, framing: RequestFraming): void;
  /** the client left, or the request was refused mid-body: the upstream request is cut */
  abort(): void;
}

/** What the pool does with a connection whose exchange is over. */
export interface ConnectionOwner {
  release(conn: UpstreamLink, reusable: boolean): void;
}

export class UpstreamConnection implements UpstreamLink {
  readonly socket: Socket;
  readonly parser: LlhttpParser;
  readonly owner: ConnectionOwner;
  readonly events: UpstreamEvents;
  readonly timeoutMs: number;
  /** exchanges carried so far (more than one: the current one is on a reused connection) */
  uses = 0;
  ex: Exchange | null = null;
  client: ClientSide | null = null;
  requestChunked = false;
  requestSent = false;
  // the response being relayed
  gotResponseBytes = false;
  finalHead = false;
  rechunk = false;
  closeDelimited = false;
  upstreamKeepAlive = true;
  complete = false;
  upgraded = false;
  protocolError: string | null = null;
  out: Array<Buffer | string> = [];
  dead = false;
  /** when it was last put back in the pool (performance.now() ms) */
  idleSince = 0;
  /** bytes of the response body (of known length) still to come, taken without the parser */
  bodyLeft = 0;
  /** bytes came after a complete response */
  trailing = false;
  /** body chunks of the current turn are being gathered for one write */
  corked = false;
  corkedBytes = 0;
  flushScheduled = false;

  constructor(
    socket: Socket,
    binding: HttpParserBinding,
    maxHeaderBytes: number,
    timeoutMs: number,
    owner: ConnectionOwner,
    events: UpstreamEvents,
  ) {
    this.socket = socket;
    this.owner = owner;
    this.events = events;
    this.timeoutMs = timeoutMs;
    const p = binding.create();
    p.initialize(binding.RESPONSE, {}, maxHeaderBytes, STRICT);
    p[binding.kOnHeadersComplete] = this.onHeadersComplete.bind(this);
    p[binding.kOnBody] = this.onBody.bind(this);
    p[binding.kOnMessageComplete] = this.onMessageComplete.bind(this);
    this.parser = p;
    socket.setNoDelay(true);
    socket.on('data', this.onData.bind(this));
    socket.on('end', this.onEnd.bind(this));
    socket.on('close', this.onClose.bind(this));
    socket.on('error', this.onError.bind(this));
    socket.on('timeout', this.onTimeout.bind(this));
    this.flushNow = this.flushNow.bind(this);
    // one timeout for the connection's life (refreshed by every byte either way): no timer set up and torn down per exchange
    socket.setTimeout(timeoutMs);
  }

  /** Send a request head (and a body held whole) for `ex`; a streamed body follows through `data`/`end`. */
  begin(ex: Exchange, client: ClientSide, head: string, body: readonly Buffer[] | null, framing: RequestFraming): void {
    this.uses += 1;
    this.ex = ex;
    this.client = client;
    this.requestChunked = framing === 'chunked';
    this.requestSent = framing === 'none' || body !== null;
    this.gotResponseBytes = false;
    this.finalHead = false;
    this.rechunk = false;
    this.closeDelimited = false;
    this.upstreamKeepAlive = true;
    this.complete = false;
    this.protocolError = null;
    this.bodyLeft = 0;
    ex.upstream = this;
    ex.forwarded = true;
    if (body !== null && body.length > 0) {
      this.socket.cork();
      this.socket.write(head, 'latin1');
      for (const chunk of body) this.socket.write(chunk);
      this.socket.uncork();
    } else if (this.requestSent) {
      this.socket.write(head, 'latin1');
    } else {
      // the body streams after the head: the head is held corked and leaves with the body bytes read
      // in this same turn (flush), in one write, not two
      this.hold(head.length);
      this.socket.write(head, 'latin1');
      this.flush();
    }
  }

  /* ------------------------------------------------------------------ request body */

  /**
   * A body chunk: held in the corked socket, so that the chunks of everything read from the
   * client in one turn of the event loop (several TLS records) leave in one write.
   */
  data(chunk: Buffer): void {
    if (this.ex === null || this.dead || chunk.length === 0) return;
    this.hold(chunk.length);
    if (this.requestChunked) {
      this.socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      this.socket.write(chunk);
      this.socket.write('\r\n', 'latin1');
    } else {
      this.socket.write(chunk);
    }
  }

  /** what is written next is held in the corked socket until flushNow */
  private hold(bytes: number): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
    }
    this.corkedBytes += bytes;
  }

  /** BodyReader: a read's chunks are all there; they go out at the end of this turn (or now, when there are many) */
  flush(): void {
    if (!this.corked) return;
    if (this.corkedBytes < COALESCE_BYTES) {
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.flushNow);
      }
      return;
    }
    this.flushNow();
  }

  /** write what is held now */
  flushNow(): void {
    this.flushScheduled = false;
    if (!this.corked) return;
    this.corked = false;
    this.corkedBytes = 0;
    this.socket.uncork();
    if (this.socket.writableNeedDrain && this.client !== null) {
      const client = this.client;
      client.pauseReading(PAUSE_UPSTREAM);
      this.socket.once('drain', () => client.resumeReading(PAUSE_UPSTREAM));
    }
  }

  end(): void {
    if (this.ex === null || this.dead) return;
    if (this.requestChunked) this.socket.write('0\r\n\r\n', 'latin1');
    this.flushNow();
    this.requestSent = true;
  }

  /* ------------------------------------------------------------------ response */

  onHeadersComplete(
    _major: number,
    minor: number,
    raw: string[],
    _method: number,
    _url: string,
    status: number,
    reason: string,
    _upgrade: boolean,
    keepAlive: boolean,
  ): number {
    const ex = this.ex;
    if (ex === null || this.complete) {
      // bytes after a complete response: a second response nobody asked for
      this.protocolError = 'a response without a request';
      return 0;
    }
    this.gotResponseBytes = true;
    if (status < 200 && status !== 101) {
      // interim: 102 and 103 are passed on to an HTTP/1.1 client; 100 is ours to send (Expect is not forwarded)
      if (status !== 100 && ex.versionMinor >= 1)
        this.out.push(`HTTP/1.1 ${status} ${reason}\r\n${forwardedFields(raw, null)}\r\n`);
      return 0;
    }
    if (status === 101) {
      if (!ex.upgrade || ex.framing.upgrade === '' || ex.framing.upgrade === 'h2c') {
        this.protocolError = 'a 101 for a request that asked for no upgrade';
        return 0;
      }
      this.upgraded = true;
      this.finalHead = true;
      this.events.answered(ex);
      this.out.push(
        `HTTP/1.1 101 ${reason}\r\n${forwardedFields(raw, null)}connection: upgrade\r\nupgrade: ${fieldValue(raw, 'upgrade')}\r\n\r\n`,
      );
      return 0;
    }
    this.finalHead = true;
    ex.status = status;
    this.events.answered(ex);
    let te = '';
    let length = -1;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!;
      if (isName(n, 'transfer-encoding')) te = te === '' ? raw[i + 1]! : `${te}, ${raw[i + 1]}`;
      else if (isName(n, 'content-length')) length = Number(raw[i + 1]);
    }
    const hasLength = length >= 0;
    if (te !== '' && !onlyChunked(te)) {
      this.protocolError = `a transfer-coding other than chunked (${te})`;
      return 0;
    }
    this.upstreamKeepAlive = keepAlive && minor >= 1;
    const bodyless = ex.method === 'HEAD' || status === 204 || status === 304;
    this.closeDelimited = !bodyless && te === '' && !hasLength;
    if (this.closeDelimited) this.upstreamKeepAlive = false;
    const client = this.client!;
    const clientKeepsAlive = ex.keepAlive && !ex.closeAfter && !client.draining();
    // a body of unknown length: chunked to an HTTP/1.1 client, to the close for an HTTP/1.0 one (an HTTP/2 stream frames it itself)
    this.rechunk =
      !bodyless && (te !== '' || this.closeDelimited) && ex.versionMinor >= 1 && ex.protocol === 'http/1.1';
    if (!bodyless && !hasLength && !this.rechunk) ex.closeAfter = true;
    if (!clientKeepsAlive) ex.closeAfter = true;
    let head = `HTTP/1.1 ${status} ${reason}\r\n${forwardedFields(raw, null)}`;
    if (this.rechunk) head += 'transfer-encoding: chunked\r\n';
    if (ex.closeAfter) head += 'connection: close\r\n';
    else if (ex.versionMinor === 0) head += 'connection: keep-alive\r\n';
    this.out.push(`${head}\r\n`);
    if (bodyless) return SKIP_BODY;
    if (length > 0 && te === '') {
      // a body of known length is taken straight from the bytes read (see the client side, serverConnection.ts)
      this.bodyLeft = length;
      return SKIP_BODY_AND_PAUSE;
    }
    return 0;
  }

  onBody(chunk: Buffer): void {
    const ex = this.ex;
    if (ex === null || this.protocolError !== null) return;
    ex.responseBytes += chunk.length;
    if (this.rechunk) this.out.push(`${chunk.length.toString(16)}\r\n`, chunk, '\r\n');
    else this.out.push(chunk);
  }

  onMessageComplete(): void {
    if (this.finalHead && this.ex !== null && this.bodyLeft === 0) this.complete = true;
  }

  onData(chunk: Buffer): void {
    if (this.bodyLeft > 0) {
      this.takeBody(chunk, 0);
    } else {
      const r = this.parser.execute(chunk);
      if (typeof r !== 'number') return this.fail(protocolErrorOf(r));
      if (this.protocolError !== null) return this.fail(new TollgateError('ERR_UPSTREAM_PROTOCOL', this.protocolError));
      if (this.bodyLeft > 0) this.takeBody(chunk, r);
      else if (this.upgraded) {
        this.relay();
        const ex = this.ex!;
        this.detach();
        this.events.upgraded(ex, this, r < chunk.length ? chunk.subarray(r) : null);
        return;
      }
    }
    this.relay();
    if (this.complete) this.finish();
  }

  /**
   * Count the next bytes of a response body of known length off `data` (from `offset`), relayed
   * as they are (views of what was read, no copy). Bytes after the end of the body are a
   * response nobody asked for: the connection is not used again.
   */
  takeBody(data: Buffer, offset: number): void {
    const n = Math.min(this.bodyLeft, data.length - offset);
    if (n > 0) {
      this.out.push(offset === 0 && n === data.length ? data : data.subarray(offset, offset + n));
      this.ex!.responseBytes += n;
      this.bodyLeft -= n;
    }
    if (this.bodyLeft > 0) return;
    this.complete = true;
    if (offset + n < data.length) this.trailing = true;
  }

  /** write what this execute produced to the client, in one go */
  relay(): void {
    const out = this.out;
    if (out.length === 0) return;
    this.out = [];
    const client = this.client;
    if (client === null) return;
    const ex = this.ex!;
    if (this.finalHead) ex.responded = true;
    const ok = client.writeParts(out);
    if (!ok && !this.complete) {
      // the client reads slower than the upstream sends: stop reading the upstream until it drains
      this.socket.pause();
      client.onWritable = () => this.socket.resume();
    }
  }

  finish(): void {
    const ex = this.ex!;
    this.flushNow();
    if (this.rechunk) this.client!.write('0\r\n\r\n');
    // a connection that carried an upgrade the upstream did not take may no longer speak HTTP
    const reusable =
      this.upstreamKeepAlive &&
      this.requestSent &&
      this.protocolError === null &&
      !this.trailing &&
      !(ex.upgrade && ex.framing.upgrade !== 'h2c');
    this.ex = null;
    this.client = null;
    // an upstream that answered before taking the whole body gets no more of it
    if (!ex.readerEnded) ex.reader = null;
    this.owner.release(this, reusable);
    this.events.completed(ex, this);
  }

  /** The exchange failed on this connection: it is discarded and the request path decides what the client gets. */
  fail(err: Error): void {
    const ex = this.ex;
    this.out = [];
    this.kill();
    if (ex === null) return;
    this.ex = null;
    this.client = null;
    this.events.failed(ex, this, err);
  }

  /** The client went away, or the request was refused mid-body: the upstream request is cut. */
  abort(): void {
    this.ex = null;
    this.client = null;
    this.kill();
  }

  kill(): void {
    if (this.dead) return;
    this.dead = true;
    this.socket.destroy();
    this.owner.release(this, false);
  }

  /** an upgrade took the socket: it leaves the pool (and this object) for good */
  detach(): void {
    this.dead = true;
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('end');
    this.socket.removeAllListeners('timeout');
    this.socket.setTimeout(0);
    this.owner.release(this, false);
  }

  onEnd(): void {
    if (this.dead) return;
    // a close-delimited response ends here
    if (this.ex !== null && this.closeDelimited && this.finalHead) {
      const r = this.parser.finish();
      if (r !== undefined) return this.fail(protocolErrorOf(r));
      this.relay();
      this.upstreamKeepAlive = false;
      if (this.complete) return this.finish();
    }
    this.fail(connectionLost('the upstream closed the connection'));
  }

  onClose(): void {
    if (this.dead) return;
    this.fail(connectionLost('the upstream connection closed'));
  }

  onError(err: Error): void {
    if (this.dead) return;
    this.fail(err);
  }

  onTimeout(): void {
    if (this.ex === null) {
      // idle in the pool that long (the pool's sweep closes it sooner, at its keep-alive time)
      this.kill();
      return;
    }
    this.fail(new TollgateError('ERR_UPSTREAM_TIMEOUT', `no byte from the upstream for ${this.timeoutMs} ms`));
  }
}

function protocolErrorOf(err: ParseError): TollgateError {
  return new TollgateError('ERR_UPSTREAM_PROTOCOL', `the upstream response does not parse (${err.code})`);
}

/** the upstream connection went away under an exchange (code ECONNRESET, as a reset would say) */
function connectionLost(message: string): Error {
  return Object.assign(new Error(message), { code: 'ECONNRESET' });
}
