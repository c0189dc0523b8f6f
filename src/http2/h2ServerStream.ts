import type { OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { H2_NO_ERROR } from './errorCodes.ts';
import type { ClientSide, Exchange } from '../http1/exchange.ts';
import type { ConnectionActivity } from '../http1/serverConnection.ts';
import { deliverInbox, PAUSE_UPSTREAM } from '../http1/inbox.ts';
import { grpcMessage, grpcStatusOf } from './grpc.ts';

/**
 * One HTTP/2 stream of a client connection, answering one exchange: the same client side as
 * an HTTP/1.1 connection (the request path and the upstream write the same response head and
 * body parts to it), turned into HEADERS and DATA frames. A refusal of a gRPC call is
 * answered as a gRPC status instead (HTTP 200, `grpc-status`, the ERR_ code in `grpc-message`).
 */

/** What handles the exchanges of a connection's streams (the listener's request path). */
export interface StreamHandler<C extends ConnectionActivity> {
  start(ex: Exchange, side: H2ServerStream<C>): void;
  /** the client reset the stream (or the connection went) while the exchange was in flight */
  abandoned(ex: Exchange, side: H2ServerStream<C>): void;
  draining(): boolean;
}

/** fields of HTTP/1.1 that mean nothing per stream (RFC 9113 §8.2.2) */
const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

export class H2ServerStream<C extends ConnectionActivity = ConnectionActivity> implements ClientSide<C> {
  readonly stream: ServerHttp2Stream;
  readonly ctx: C;
  readonly handler: StreamHandler<C>;
  /** the exchange this stream carries (set right after both are made) */
  ex: Exchange | null = null;
  onWritable: (() => void) | null = null;
  paused = 0;
  /** the response's end was sent (or the stream reset) */
  ended = false;
  /** trailer fields from the upstream, sent once the body is out */
  pendingTrailers: OutgoingHttpHeaders | null = null;

  constructor(stream: ServerHttp2Stream, ctx: C, handler: StreamHandler<C>) {
    this.stream = stream;
    this.ctx = ctx;
    this.handler = handler;
    stream.on('data', this.onData.bind(this));
    stream.on('end', this.onEnd.bind(this));
    stream.on('close', this.onClose.bind(this));
    stream.on('drain', this.onDrain.bind(this));
    stream.on('wantTrailers', this.onWantTrailers.bind(this));
    stream.on('error', onStreamError);
  }

  /* ------------------------------------------------------------------ the request body */

  onData(chunk: Buffer): void {
    const ex = this.ex!;
    ex.bodyBytes += chunk.length;
    ex.inbox.push(chunk);
    ex.inboxBytes += chunk.length;
    this.deliver(ex);
  }

  onEnd(): void {
    const ex = this.ex!;
    ex.bodyComplete = true;
    this.deliver(ex);
  }

  /** Hand the inbox to the exchange's reader, or hold it (up to a bound: the stream's window then closes) until there is one. */
  deliver(ex: Exchange): void {
    deliverInbox(ex, this);
  }

  pauseReading(reason: number): void {
    if (this.paused === 0) this.stream.pause();
    this.paused |= reason;
    // the body waits on a slow upstream: the client is not to blame for that time
    if (reason === PAUSE_UPSTREAM) this.ex?.bodyClock?.holding();
  }

  resumeReading(reason: number): void {
    if ((this.paused & reason) === 0) return;
    this.paused &= ~reason;
    if (reason === PAUSE_UPSTREAM) this.ex?.bodyClock?.waiting();
    if (this.paused === 0 && !this.stream.destroyed) this.stream.resume();
  }

  /* ------------------------------------------------------------------ the response */

  /** A response head (as the HTTP/1.1 core writes it, maybe with a refusal's body after it), or body bytes. */
  write(data: Buffer | string): boolean {
    if (this.ended || this.stream.destroyed) return true;
    if (typeof data !== 'string') return this.stream.write(data);
    this.head(data);
    return true;
  }

  head(text: string): void {
    const stream = this.stream;
    const ex = this.ex!;
    const endOfHead = text.indexOf('\r\n\r\n');
    const lines = text.slice(0, endOfHead < 0 ? text.length : endOfHead).split('\r\n');
    const status = Number(lines[0]!.slice(9, 12));
    if (status < 200) {
      // 103 Early Hints are passed on; 100 is sent by sendContinue, 102 is HTTP/1.1's own
      if (status === 103 && !stream.headersSent) stream.additionalHeaders(headersOf(lines, 103));
      return;
    }
    if (stream.headersSent) return;
    if (ex.code !== null && ex.grpc) return this.grpcRefusal(ex);
    const headers = headersOf(lines, status);
    // a gRPC answer whose response HEADERS carry grpc-status is Trailers-Only (PROTOCOL-HTTP2.md, an
    // upstream's immediate error or a refusal relayed): it ends the stream with these HEADERS, or the
    // client, finding no status in trailers, ends the call INTERNAL
    const trailersOnly = ex.grpc && headers['grpc-status'] !== undefined;
    try {
      stream.respond(headers, trailersOnly ? { endStream: true } : { waitForTrailers: ex.grpc });
    } catch {
      // a field HTTP/2 cannot carry (Node checks names and values): the answer cannot be given as it came
      this.cut();
      return;
    }
    if (trailersOnly) {
      this.ended = true;
      return;
    }
    if (endOfHead >= 0 && endOfHead + 4 < text.length) stream.write(Buffer.from(text.slice(endOfHead + 4), 'latin1'));
  }

  /** A refused gRPC call: a trailers-only response with the status and the code (PROTOCOL-HTTP2.md) */
  grpcRefusal(ex: Exchange): void {
    const code = ex.code!;
    this.ended = true;
    this.stream.respond(
      {
        ':status': 200,
        'content-type': 'application/grpc',
        'grpc-status': String(grpcStatusOf(code)),
        'grpc-message': grpcMessage(code),
      },
      { endStream: true },
    );
  }

  trailers(fields: Readonly<Record<string, string | string[]>>): void {
    this.pendingTrailers = { ...fields };
  }

  onWantTrailers(): void {
    this.stream.sendTrailers(this.pendingTrailers ?? {});
  }

  /** frames go out as the session writes them: nothing to gather */
  writeParts(parts: ReadonlyArray<Buffer | string>): boolean {
    let ok = true;
    for (const part of parts) ok = this.write(part);
    return ok;
  }

  onDrain(): void {
    const resume = this.onWritable;
    if (resume === null) return;
    this.onWritable = null;
    resume();
  }

  draining(): boolean {
    return this.handler.draining();
  }

  sendContinue(ex: Exchange): void {
    if (!ex.continuePending) return;
    ex.continuePending = false;
    if (!ex.bodyComplete && !this.stream.headersSent) this.stream.additionalHeaders({ ':status': 100 });
  }

  /** The exchange is answered: the stream ends (its trailers follow when asked for). */
  done(ex: Exchange): void {
    if (ex.finished) return;
    ex.finished = true;
    this.ctx.inFlight -= 1;
    if (this.ended || this.stream.destroyed) return;
    this.ended = true;
    if (!this.stream.headersSent) {
      // nothing was answered (the client left): the stream is reset, not answered empty
      this.reset();
      return;
    }
    this.stream.end();
    // answered before the whole request came (a refusal, an early answer): once the answer is out, the client is told to
    // stop sending, without error (RFC 9113 §8.1)
    if (!ex.bodyComplete) this.stream.close(H2_NO_ERROR);
  }

  /**
   * A response under way that cannot be finished. A gRPC call ends with its status in trailers (the
   * refusal's code); anything else is reset, so the client never takes a cut body for a whole one.
   */
  cut(): void {
    const ex = this.ex;
    if (this.ended || this.stream.destroyed) return;
    this.ended = true;
    if (ex !== null && ex.grpc && ex.code !== null && this.stream.headersSent) {
      this.pendingTrailers = { 'grpc-status': String(grpcStatusOf(ex.code)), 'grpc-message': grpcMessage(ex.code) };
      this.stream.end();
      return;
    }
    this.reset();
  }

  /** RST_STREAM without ending the stream first (close() would send END_STREAM before it, making a cut look whole) */
  reset(): void {
    this.ended = true;
    if (!this.stream.destroyed) this.stream.destroy(new Error('stream reset by tollgate'));
  }

  /** the stream closed: the client reset it, or the connection went, before its exchange was answered */
  onClose(): void {
    const ex = this.ex;
    if (ex === null || ex.finished) return;
    ex.clientGone = true;
    if (ex.started) this.handler.abandoned(ex, this);
    else {
      ex.finished = true;
      this.ctx.inFlight -= 1;
    }
  }
}

/** the response fields of an HTTP/1.1-style head's lines, for a HEADERS frame */
function headersOf(lines: readonly string[], status: number): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ':status': status };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (CONNECTION_SPECIFIC.has(name)) continue;
    const value = line.slice(colon + 1).trim();
    const had = headers[name];
    if (had === undefined) headers[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else headers[name] = [String(had), value];
  }
  return headers;
}

/** a stream error ends the stream ('close' follows); the error itself needs no answer */
function onStreamError(): void {}
