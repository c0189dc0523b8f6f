import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { TollgateError } from '../core/errors.ts';
import { downstreamResponseHeaders } from './headers.ts';

/**
 * Streams one request to the upstream with undici's `dispatch` and the response back,
 * with backpressure both ways: the request body is read only as fast as the upstream
 * socket drains (undici pauses the source), and the upstream parser is paused while the
 * downstream socket is full. No pipeline(), no AbortSignal per request: a downstream
 * close aborts the upstream through the dispatch controller.
 */
export interface ForwardResult {
  /** called once, when the exchange is over; err is null on success */
  done(err: Error | null, exchange: ForwardExchange): void;
  /** the listener is draining: the response closes its downstream connection */
  draining(): boolean;
  /** send a replayable exchange again, once, on a new upstream connection (it was lost before any response byte) */
  retry(exchange: ForwardExchange, err: Error): void;
}

/**
 * The upstream connection went away under a request before any byte of its response: the
 * request may never have been read (an idle keep-alive connection the server closed as the
 * request was on its way: the race HTTP/1.1 leaves open).
 */
const CONNECTION_LOST: ReadonlySet<string> = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

const kExchange = Symbol('tollgate.exchange');
type ResWithExchange = ServerResponse & { [kExchange]?: ForwardExchange };

export class ForwardExchange implements Dispatcher.DispatchHandler {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly result: ForwardResult;
  controller: Dispatcher.DispatchController | null = null;
  responseBytes = 0;
  finished = false;
  /** the client went away first: not an upstream failure, nothing to answer */
  downstreamClosed = false;
  /** what was dispatched, kept only when it may be sent again (its body is a Buffer or none) */
  replayable: Dispatcher.DispatchOptions | null = null;
  /** a response byte arrived: from then on the exchange is never sent again */
  responded = false;
  retried = false;

  constructor(req: IncomingMessage, res: ServerResponse, result: ForwardResult) {
    this.req = req;
    this.res = res;
    this.result = result;
    (res as ResWithExchange)[kExchange] = this;
    res.once('close', onDownstreamClose);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.res.destroyed) controller.abort(new TollgateError('ERR_UPSTREAM_UNAVAILABLE', 'downstream closed'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    this.responded = true;
    if (this.res.destroyed) return;
    // a response that starts while the listener drains closes its connection (read at writeHead)
    if (this.result.draining()) this.res.shouldKeepAlive = false;
    this.res.writeHead(statusCode, statusMessage, downstreamResponseHeaders(headers));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.responseBytes += chunk.length;
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', onDownstreamDrain);
    }
  }

  onResponseEnd(): void {
    this.res.end();
    this.finish(null);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.mayRetry(err)) {
      this.retried = true;
      this.controller = null;
      this.result.retry(this, err);
      return;
    }
    this.finish(err);
  }

  /** once, for a replayable request whose connection was lost before any response byte, while the client still waits */
  mayRetry(err: Error): boolean {
    if (this.replayable === null || this.retried || this.responded || this.finished || this.downstreamClosed || this.res.destroyed) return false;
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && CONNECTION_LOST.has(code);
  }

  finish(err: Error | null): void {
    if (this.finished) return;
    this.finished = true;
    this.result.done(err, this);
  }
}

/** the exchange a response belongs to, once it was forwarded */
export function exchangeOf(res: ServerResponse): ForwardExchange | undefined {
  return (res as ResWithExchange)[kExchange];
}

function onDownstreamDrain(this: ResWithExchange): void {
  this[kExchange]?.controller?.resume();
}

/** The client went away before the response was complete: stop the upstream work. */
function onDownstreamClose(this: ResWithExchange): void {
  const ex = this[kExchange];
  if (ex === undefined || ex.finished || this.writableFinished) return;
  ex.downstreamClosed = true;
  const err = new TollgateError('ERR_UPSTREAM_UNAVAILABLE', 'downstream closed before the response completed');
  if (ex.controller !== null && !ex.controller.aborted) ex.controller.abort(err);
  ex.finish(err);
}
