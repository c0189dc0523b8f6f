import type { Socket } from 'node:net';
import type { ErrorCode } from '../core/errors.ts';
import { Exchange, type ClientSide } from './exchange.ts';
import type { HttpParserBinding, LlhttpParser, ParseError } from './parserBinding.ts';
import type { ParserClient, ParserPool } from './parserPool.ts';
import { deliverInbox, PAUSE_PIPELINE, PAUSE_UPSTREAM } from './inbox.ts';

/**
 * One client connection of an HTTP listener, on Node's llhttp: the bytes the client sends are
 * parsed into exchanges, taken one at a time in arrival order (RFC 9112 §9.3.2: a pipelined
 * request goes upstream only when the one before it has been answered), and answered in that
 * order on this socket.
 *
 * Nothing the parser reports is acted on until `execute` returned without error for the
 * bytes that carried it: llhttp may report a head and refuse the same message a moment
 * later (a request `Transfer-Encoding: gzip`), and a refused message must never reach the app.
 */

/**
 * The per-connection state the listener attached at accept, as far as the connection keeps it up
 * to date: how many exchanges were read and not yet answered (drain tells idle from busy by it).
 * The rest of it (peer, logger, …) is the listener's; `ctx` hands it back typed as given.
 */
export interface ConnectionActivity {
  inFlight: number;
}

/** What handles the exchanges of a connection (the listener's request path). */
export interface ExchangeHandler<C extends ConnectionActivity = ConnectionActivity> {
  /** the exchange at the head of the queue, in order; a parser refusal has `parserRefusal` set */
  start(ex: Exchange, conn: ServerConnection<C>): void;
  /** the client left while the exchange was in flight (the handler stops its upstream work) */
  abandoned(ex: Exchange, conn: ServerConnection<C>): void;
  /** the parser refused the body of an exchange already under way (its upstream request must be cut) */
  bodyRefused(ex: Exchange, conn: ServerConnection<C>, code: ErrorCode): void;
  /** the last response is out and nothing is queued: the connection waits for its next request */
  idle(conn: ServerConnection<C>): void;
  /** the listener is draining: responses close their connections */
  draining(): boolean;
}

/** Per-connection settings, read when the connection is made. */
export interface ConnectionSettings {
  readonly maxHeaderBytes: number;
  readonly maxHeaderPairs: number;
  readonly idleTimeoutMs: number;
}

/** what kOnHeadersComplete returns to have llhttp end the message with its head and stop there, as for an upgrade */
const SKIP_BODY_AND_PAUSE = 2;

/** the most writeParts joins into one buffer: a TLS record's plaintext */
const JOIN_BYTES = 16 * 1024;

export class ServerConnection<C extends ConnectionActivity = ConnectionActivity>
  implements ClientSide<C>, ParserClient
{
  readonly socket: Socket;
  readonly ctx: C;
  readonly handler: ExchangeHandler<C>;
  readonly binding: HttpParserBinding;
  readonly parsers: ParserPool;
  /** the parser lent by the pool while a request is being read; null while the connection waits between requests */
  parser: LlhttpParser | null = null;
  /** llhttp is inside a message (its first byte came, its end not yet) */
  messageBegun = false;
  readonly settings: ConnectionSettings;
  readonly clock: () => bigint;
  readonly queue: Exchange[] = [];
  /** the exchange whose message the parser is in, until its end */
  parsing: Exchange | null = null;
  /** exchanges whose heads came in the current execute (accepted when it returns cleanly) */
  fresh: Exchange[] = [];
  /** bytes of the current request's body (of known length) still to come, taken without the parser */
  bodyLeft = 0;
  /** an upgrade request (or CONNECT) just ended: llhttp returned where its tunnel's bytes begin */
  upgradeEnded: Exchange | null = null;
  /** a head that came in pieces (llhttp hands over 32 fields at a time) */
  partialHeaders: string[] | null = null;
  partialUrl = '';
  /** monotonic ms when the current head began, 0 when none is in progress */
  headStartedMs: number;
  paused = 0;
  /** no more requests are read: a refusal that closes, a close asked for, an upgrade */
  stopped = false;
  closed = false;
  /** the socket is handed over to a tunnel: the connection no longer reads or writes it */
  tunnelled = false;
  /** called once when the client's socket drains (the upstream side paused for it) */
  onWritable: (() => void) | null = null;

  constructor(
    socket: Socket,
    ctx: C,
    handler: ExchangeHandler<C>,
    parsers: ParserPool,
    settings: ConnectionSettings,
    clock: () => bigint,
  ) {
    this.socket = socket;
    this.ctx = ctx;
    this.handler = handler;
    this.binding = parsers.binding;
    this.parsers = parsers;
    this.settings = settings;
    this.clock = clock;
    this.headStartedMs = this.nowMs();
    // the socket's listeners are shared by every connection and find theirs on the socket: no bound functions per connection
    (socket as Owned)[kConnection] = this;
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('close', onSocketClose);
    socket.on('error', onSocketError);
    socket.on('drain', onSocketDrain);
    socket.setTimeout(settings.idleTimeoutMs, onSocketIdle);
  }

  /** a cheap monotonic reading (ms) for the headers timeout: no BigInt per request */
  nowMs(): number {
    return performance.now();
  }

  /* ------------------------------------------------------------------ parser callbacks */

  onMessageBegin(): number {
    this.messageBegun = true;
    this.headStartedMs = this.nowMs();
    return 0;
  }

  onHeaders(headers: string[], url: string): void {
    if (this.partialHeaders === null) this.partialHeaders = headers;
    else for (const h of headers) this.partialHeaders.push(h);
    this.partialUrl += url;
  }

  onHeadersComplete(
    _major: number,
    minor: number,
    rawHeaders: string[] | undefined,
    method: number,
    url: string | undefined,
    _status: number,
    _message: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    let raw = rawHeaders ?? [];
    let target = url ?? '';
    if (this.partialHeaders !== null) {
      for (const h of raw) this.partialHeaders.push(h);
      raw = this.partialHeaders;
      target = this.partialUrl + target;
      this.partialHeaders = null;
      this.partialUrl = '';
    }
    this.headStartedMs = 0;
    const tooMany = raw.length > this.settings.maxHeaderPairs * 2;
    const ex = new Exchange(
      this,
      this.binding.methods[method] ?? '',
      target,
      minor,
      raw,
      keepAlive,
      upgrade,
      this.clock(),
      tooMany ? 'ERR_HEADERS_TOO_LARGE' : null,
    );
    this.ctx.inFlight += 1;
    this.parsing = ex;
    this.fresh.push(ex);
    this.queue.push(ex);
    if (ex.framing.contentLength > 0 && !ex.chunked && !upgrade) {
      // a body of known length is taken straight from the bytes read (no copy per chunk, as the
      // binding's body callback makes): llhttp is told the message ends with its head (2, as for
      // an upgrade) and goes on parsing once the body's bytes are counted off (onData)
      this.bodyLeft = ex.framing.contentLength;
      return SKIP_BODY_AND_PAUSE;
    }
    return 0;
  }

  onBody(chunk: Buffer): void {
    const ex = this.parsing;
    if (ex === null) return;
    ex.bodyBytes += chunk.length;
    ex.inbox.push(chunk);
    ex.inboxBytes += chunk.length;
  }

  onMessageComplete(): void {
    this.messageBegun = false;
    const ex = this.parsing;
    // a body of known length is still to come (see onHeadersComplete)
    if (ex === null || this.bodyLeft > 0) return;
    ex.bodyComplete = true;
    this.parsing = null;
    if (ex.upgrade) this.upgradeEnded = ex;
  }

  /* ------------------------------------------------------------------ reading */

  onData(chunk: Buffer): void {
    if (this.stopped || this.tunnelled) return;
    let data: Buffer | null = this.bodyLeft > 0 ? this.takeBody(chunk, 0) : chunk;
    while (data !== null) {
      const r = (this.parser ??= this.parsers.acquire(this, this.settings.maxHeaderBytes)).execute(data);
      if (typeof r !== 'number') return this.parseFailed(r);
      if (this.fresh.length > 0) {
        for (const ex of this.fresh) {
          ex.headAccepted = true;
          if (ex.parserRefusal !== null) this.stop();
        }
        this.fresh = [];
      }
      if (this.bodyLeft > 0) {
        // a head whose body is counted off here, then the parser goes on after it
        data = this.takeBody(data, r);
        continue;
      }
      const upgraded = this.upgradeEnded;
      if (upgraded === null) break;
      // llhttp stops at the end of an upgrade request (or CONNECT): what follows is not HTTP
      this.upgradeEnded = null;
      const rest = r < data.length ? data.subarray(r) : null;
      if (upgraded.framing.upgrade === 'h2c' && upgraded.method !== 'CONNECT') {
        // an h2c upgrade is not taken (RFC 9110 §7.8 lets a server ignore it): what follows is HTTP/1.1 again
        if (rest === null) break;
        data = rest;
        continue;
      }
      upgraded.tunnelBytes = rest;
      this.stop();
      break;
    }
    this.pump();
  }

  /**
   * Count the next body bytes of `data` (from `offset`) off the body of known length being read;
   * what follows it, if anything, is for the parser (null: nothing).
   */
  takeBody(data: Buffer, offset: number): Buffer | null {
    const ex = this.parsing!;
    const n = Math.min(this.bodyLeft, data.length - offset);
    if (n > 0) {
      const part = offset === 0 && n === data.length ? data : data.subarray(offset, offset + n);
      ex.bodyBytes += n;
      ex.inbox.push(part);
      ex.inboxBytes += n;
      this.bodyLeft -= n;
    }
    if (this.bodyLeft > 0) return null;
    ex.bodyComplete = true;
    this.parsing = null;
    const end = offset + n;
    return end < data.length ? data.subarray(end) : null;
  }

  /**
   * The parser refused the stream. Requests it completed before the error are answered in
   * order; the message it was in is dropped unseen (its head may have been reported in this
   * very execute), or, when its head went on already, cut; then a refusal, then the close.
   * Bytes after a request that asked to close the connection are not an error of that
   * request: they are ignored (RFC 9112 §9.6).
   */
  parseFailed(err: ParseError): void {
    const broken = this.parsing;
    this.parsing = null;
    for (const ex of this.fresh) {
      if (ex !== broken) ex.headAccepted = true;
      else this.drop(ex);
    }
    this.fresh = [];
    if (err.code === 'HPE_CLOSED_CONNECTION') {
      this.stop();
      this.pump();
      return;
    }
    const code: ErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'ERR_HEADERS_TOO_LARGE' : 'ERR_BAD_REQUEST';
    if (broken !== null && broken.headAccepted && !broken.finished) {
      // its head went on already: the body turned out malformed
      this.stop();
      this.handler.bodyRefused(broken, this, code);
      this.pump();
      return;
    }
    this.refuseStream(code, err.code);
  }

  /** Queue a refusal of the stream itself (a malformed or oversized head, a slow one), after the exchanges before it. */
  refuseStream(code: ErrorCode, cause: string): void {
    this.stop();
    const ex = new Exchange(this, '', '', 1, [cause], false, false, this.clock(), code);
    ex.headAccepted = true;
    this.ctx.inFlight += 1;
    this.queue.push(ex);
    this.pump();
  }

  drop(ex: Exchange): void {
    const i = this.queue.indexOf(ex);
    if (i >= 0) this.queue.splice(i, 1);
    this.ctx.inFlight -= 1;
  }

  /** read no further requests from this connection */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.headStartedMs = 0;
  }

  /** Start the exchange at the head of the queue, and hand its body over. */
  pump(): void {
    const ex = this.queue[0];
    if (ex === undefined || ex.clientGone) return;
    if (!ex.started && ex.headAccepted) {
      ex.started = true;
      this.handler.start(ex, this);
    }
    const head = this.queue[0];
    if (head !== undefined) this.deliver(head);
    // a request waiting behind another is not read further until its turn
    if (this.queue.length > 1) this.pauseReading(PAUSE_PIPELINE);
    else this.resumeReading(PAUSE_PIPELINE);
  }

  /** Hand the inbox to the exchange's reader, or hold it (up to a bound) until there is one. */
  deliver(ex: Exchange): void {
    deliverInbox(ex, this);
  }

  pauseReading(reason: number): void {
    if (this.paused === 0) this.socket.pause();
    this.paused |= reason;
    if (reason === PAUSE_UPSTREAM) this.queue[0]?.bodyClock?.holding();
  }

  resumeReading(reason: number): void {
    if ((this.paused & reason) === 0) return;
    this.paused &= ~reason;
    if (reason === PAUSE_UPSTREAM) this.queue[0]?.bodyClock?.waiting();
    if (this.paused === 0 && !this.closed) this.socket.resume();
  }

  draining(): boolean {
    return this.handler.draining();
  }

  /** `Expect: 100-continue`: the client is told to send its body, once, when the body is wanted. */
  sendContinue(ex: Exchange): void {
    if (!ex.continuePending) return;
    ex.continuePending = false;
    if (!ex.bodyComplete) this.socket.write(CONTINUE);
  }

  /* ------------------------------------------------------------------ writing */

  /** Write part of the response of the exchange at the head of the queue. */
  write(data: Buffer | string): boolean {
    if (this.closed) return true;
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }

  /** HTTP/1.1 carries no trailers tollgate passes on (a chunked response's trailer section is not relayed) */
  trailers(): void {}

  /**
   * Parts that leave together: up to JOIN_BYTES joined into one buffer and written once, more
   * than that corked. Several parts written corked reach a TLS socket as a writev, for which Node
   * allocates twice (a store for the strings, then one buffer of the whole, which TLS encrypts as
   * one record) and builds an array of the parts; for a small response (a head and a short body)
   * that costs more than the copy here.
   */
  writeParts(parts: ReadonlyArray<Buffer | string>): boolean {
    if (parts.length === 1) return this.write(parts[0]!);
    if (this.closed) return true;
    const joined = joinedSmall(parts);
    if (joined !== null) return this.socket.write(joined);
    this.socket.cork();
    let ok = true;
    for (const part of parts) ok = this.write(part);
    this.socket.uncork();
    return ok;
  }

  /** a response under way that cannot be finished: the connection is cut */
  cut(): void {
    this.socket.destroy();
  }

  /** The exchange at the head of the queue is answered: the next one's turn, or the end of the connection. */
  done(ex: Exchange): void {
    if (ex.finished) return;
    ex.finished = true;
    const i = this.queue.indexOf(ex);
    if (i >= 0) this.queue.splice(i, 1);
    this.ctx.inFlight -= 1;
    if (ex.tunnelBytes !== null && !this.tunnelled) ex.tunnelBytes = null;
    if (this.tunnelled) return;
    if (ex.closeAfter || !ex.keepAlive || (!ex.bodyComplete && !ex.clientGone)) return this.close();
    if (this.queue.length === 0) {
      if (this.stopped) return this.close();
      this.returnParser();
      this.handler.idle(this);
    }
    this.pump();
  }

  /**
   * Waiting for the next request with nothing of it read: the parser goes back to the pool (an
   * idle keep-alive connection holds none). Called only from `done` once the queue is empty and
   * the connection goes on: what ends the stream (`Connection: close`, an upgrade, a refusal, a
   * body not read to its end) closed it there already, so that the parser's state keeps the bytes
   * after it from being read as a new request. Not while llhttp is inside the next message.
   */
  returnParser(): void {
    const p = this.parser;
    if (p === null || this.messageBegun) return;
    this.parser = null;
    this.parsers.release(p);
  }

  /**
   * End the connection once what was written is out (a half-close first, so the client reads
   * the answer). Requests read after the one that closes it are never answered, nor is what is
   * left of an unread body parsed.
   */
  close(): void {
    this.stop();
    for (const rest of this.queue.splice(0)) {
      rest.finished = true;
      this.ctx.inFlight -= 1;
    }
    if (!this.closed) this.endSocket();
  }

  /** the half-close, once: the answer may have ended the socket already, and end() on an ended socket only builds an error (with a stack) */
  endSocket(): void {
    if (!this.socket.writableEnded) this.socket.end();
  }

  /* ------------------------------------------------------------------ events */

  /**
   * The client closed its side. As node:http does (without httpAllowHalfOpen), that ends what
   * it had in flight: a client that leaves (a destroyed socket sends the same FIN) must not
   * keep upstream work going. The connection then closes.
   */
  onEnd(): void {
    if (this.tunnelled) return;
    this.stop();
    this.parsing = null;
    this.abandonAll();
    this.endSocket();
  }

  /** every exchange not answered yet is given up */
  abandonAll(): void {
    const pending = this.queue.slice();
    for (const ex of pending) ex.clientGone = true;
    for (const ex of pending) {
      if (ex.finished) continue;
      if (ex.started) this.handler.abandoned(ex, this);
      else this.drop(ex);
    }
    this.queue.length = 0;
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.tunnelled) this.abandonAll();
    // closed: nothing more is read, and a parser lent again is initialised afresh
    const p = this.parser;
    this.parser = null;
    if (p !== null) this.parsers.release(p);
  }

  onDrain(): void {
    const resume = this.onWritable;
    if (resume === null) return;
    this.onWritable = null;
    resume();
  }

  /** no byte either way for the idle timeout: a keep-alive connection between requests, or a stalled one */
  onIdle(): void {
    if (this.tunnelled) return;
    this.socket.destroy();
  }

  /** The headers timeout (checked by the listener's sweep): a head begun and not finished in time. */
  headOverdue(nowMs: number, timeoutMs: number): boolean {
    return this.headStartedMs > 0 && !this.stopped && nowMs - this.headStartedMs > timeoutMs;
  }

  /** Give the socket to a tunnel: from now on this connection neither reads nor writes it. */
  handOver(): void {
    this.tunnelled = true;
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('end');
    this.socket.removeAllListeners('drain');
    this.socket.setTimeout(0);
    this.paused = 0;
  }
}

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';

/** the connection a client socket belongs to */
const kConnection = Symbol('tollgate.serverConnection');

type Owned = Socket & { [kConnection]: ServerConnection };

function onSocketData(this: Owned, chunk: Buffer): void {
  this[kConnection].onData(chunk);
}

function onSocketEnd(this: Owned): void {
  this[kConnection].onEnd();
}

function onSocketClose(this: Owned): void {
  this[kConnection].onClose();
}

function onSocketDrain(this: Owned): void {
  this[kConnection].onDrain();
}

function onSocketIdle(this: Owned): void {
  this[kConnection].onIdle();
}

/** a socket error ends the connection ('close' follows); the error itself needs no answer */
function onSocketError(): void {}

/** `parts` as one buffer (strings as latin1, as `write` sends them), or null when they add up to more than JOIN_BYTES */
function joinedSmall(parts: ReadonlyArray<Buffer | string>): Buffer | null {
  let size = 0;
  for (const part of parts) size += part.length;
  if (size > JOIN_BYTES) return null;
  const joined = Buffer.allocUnsafe(size);
  let at = 0;
  for (const part of parts) at += typeof part === 'string' ? joined.write(part, at, 'latin1') : part.copy(joined, at);
  return joined;
}
