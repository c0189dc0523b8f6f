import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Counter, Histogram } from 'prom-client';
import type { Logger } from 'pino';
import { ERRORS, TollgateError, type ErrorCode } from '../core/errors.ts';
import type { Clock } from '../core/clock.ts';
import type { ListenerConfig } from '../config/types.ts';
import { statusClass, type Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { contextOf, type ConnectionContext } from './connectionContext.ts';
import { refuse } from './refuse.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { ForwardExchange, type ForwardResult } from './forward.ts';
import { upstreamErrorCode } from './upstreamError.ts';

/**
 * The HTTP request path of one listener, in order:
 *
 *   connection authorized? -> body within limits? -> [signature, replay, size watch: later stages]
 *   -> forward upstream (undici dispatch, streamed both ways)
 *
 * Authorization was decided once per connection, at the handshake, before any upstream
 * was dialled; here a denied connection only gets its 403. Cheap checks come first.
 */
export interface HttpPathDeps {
  readonly listener: ListenerConfig;
  readonly dispatcher: Dispatcher;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  readonly log: Logger;
  readonly clock: Clock;
  /** outbound: the Host to send (the target's authority); inbound: null (keep the client's) */
  readonly hostOverride: string | null;
  /** whether to set x-tollgate-peer (inbound) */
  readonly setPeerHeader: boolean;
  /** true once the listener is draining: responses then close their connection */
  readonly isDraining: () => boolean;
}

const ROUTE = 'default';
type CounterChild = ReturnType<Counter['labels']>;
type HistogramChild = ReturnType<Histogram['labels']>;
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

const kStart = Symbol('tollgate.requestStart');
const kPath = Symbol('tollgate.httpPath');
const kConn = Symbol('tollgate.requestConnection');
/** what a response carries so its finish/close listeners (module functions, no per-request closures) can find their way back */
type TimedResponse = ServerResponse & { [kStart]?: bigint; [kPath]?: HttpPath; [kConn]?: ConnectionContext };

export class HttpPath implements ForwardResult {
  readonly deps: HttpPathDeps;
  readonly timeoutMs: number;
  readonly maxBodyBytes: number;
  /** metric children resolved once, so the hot path does no label hashing */
  readonly requestsByClass: Record<string, CounterChild>;
  readonly duration: HistogramChild;
  readonly upstreamErrors: Partial<Record<ErrorCode, CounterChild>> = {};

  constructor(deps: HttpPathDeps) {
    this.deps = deps;
    this.timeoutMs = deps.listener.limits.upstreamTimeoutSeconds * 1000;
    this.maxBodyBytes = deps.listener.limits.maxBodyBytes;
    const name = deps.listener.name;
    this.requestsByClass = Object.fromEntries(STATUS_CLASSES.map((c) => [c, deps.metrics.requests.labels(name, ROUTE, c)]));
    this.duration = deps.metrics.requestDuration.labels(name, ROUTE);
    this.handle = this.handle.bind(this);
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const ctx = contextOf(req.socket);
    const timed = res as TimedResponse;
    timed[kStart] = this.deps.clock.monotonic();
    timed[kPath] = this;
    timed[kConn] = ctx;
    res.once('finish', onResponseFinish);
    res.once('close', onResponseClose);
    if (ctx === undefined) {
      // cannot happen for a connection our listener accepted; fail closed if it does
      this.refuse(req, res, 'ERR_PEER_NOT_ALLOWED', true);
      return;
    }
    ctx.inFlight += 1;
    if (this.deps.isDraining()) res.shouldKeepAlive = false;

    // 1. the peer (decided at the handshake)
    if (!ctx.allowed) return this.refuse(req, res, 'ERR_PEER_NOT_ALLOWED', true);

    // 2. body size: a declared length is checked before anything else; a chunked body is counted as it arrives
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > this.maxBodyBytes) return this.refuse(req, res, 'ERR_PAYLOAD_TOO_LARGE', true);
    const chunked = declared === undefined && req.headers['transfer-encoding'] !== undefined;
    const body = chunked ? countedBody(req, this.maxBodyBytes) : declared === undefined || declared === '0' ? null : req;

    // 3. forward
    const exchange = new ForwardExchange(req, res, this);
    this.deps.dispatcher.dispatch(
      {
        path: req.url ?? '/',
        method: req.method ?? 'GET',
        headers: upstreamRequestHeaders(req.rawHeaders, req.headers.connection, this.deps.setPeerHeader ? ctx.peer?.display ?? null : null, this.deps.hostOverride),
        // undici streams an async iterable body with backpressure; its types only name Readable
        body: body as Readable | null,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      },
      exchange,
    );
  }

  /** ForwardResult: the upstream exchange is over */
  done(err: Error | null, exchange: ForwardExchange): void {
    if (err === null) return;
    const ctx = contextOf(exchange.req.socket);
    if (exchange.downstreamClosed) {
      (ctx?.log ?? this.deps.log).debug({ method: exchange.req.method }, 'client closed before the response completed; upstream request aborted');
      return;
    }
    const code = upstreamErrorCode(err);
    if (code !== 'ERR_PAYLOAD_TOO_LARGE') this.countUpstreamError(code);
    (ctx?.log ?? this.deps.log).warn({ code, err: err.message, cause: causeCode(err), method: exchange.req.method }, 'request refused');
    if (code === 'ERR_UPSTREAM_IDENTITY') this.deps.audit.record('upstream_identity', { listener: this.deps.listener.name, reason: err.message });
    else if (code === 'ERR_PAYLOAD_TOO_LARGE') this.auditRefusal(ctx, code);
    if (exchange.res.headersSent) exchange.res.destroy();
    else refuse(exchange.res, code, true);
  }

  /**
   * Refuse a request before it goes upstream: one log line, one audit event (the metric is
   * the request's status class, counted when the response finishes). A denied peer was
   * logged and audited once, at its handshake, so its per-request 403s are not repeated.
   */
  refuse(req: IncomingMessage, res: ServerResponse, code: ErrorCode, close: boolean): void {
    if (code !== 'ERR_PEER_NOT_ALLOWED') {
      const ctx = contextOf(req.socket);
      (ctx?.log ?? this.deps.log).warn({ code, method: req.method }, 'request refused');
      this.auditRefusal(ctx, code);
    }
    refuse(res, code, close);
  }

  auditRefusal(ctx: ConnectionContext | undefined, code: ErrorCode): void {
    this.deps.audit.record('request_refused', { listener: this.deps.listener.name, code, peer: ctx?.peer?.display ?? null });
  }

  countUpstreamError(code: ErrorCode): void {
    let child = this.upstreamErrors[code];
    if (child === undefined) {
      child = this.deps.metrics.upstreamErrors.labels(this.deps.listener.name, ERRORS[code].reason);
      this.upstreamErrors[code] = child;
    }
    child.inc();
  }

  record(res: TimedResponse): void {
    this.requestsByClass[statusClass(res.statusCode)]!.inc();
    const start = res[kStart];
    if (start !== undefined) this.duration.observe(Number(this.deps.clock.monotonic() - start) / 1e9);
  }
}

/** Wire a path to its server once. */
export function attachHttpPath(server: { on(event: 'request', fn: (req: IncomingMessage, res: ServerResponse) => void): unknown }, path: HttpPath): void {
  server.on('request', path.handle);
}

function onResponseFinish(this: TimedResponse): void {
  this[kPath]?.record(this);
}

function onResponseClose(this: TimedResponse): void {
  const ctx = this[kConn];
  if (ctx !== undefined && ctx.inFlight > 0) ctx.inFlight -= 1;
}

/** A chunked request body, passed through while counted; over the limit it fails with ERR_PAYLOAD_TOO_LARGE. */
async function* countedBody(req: IncomingMessage, limit: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw new TollgateError('ERR_PAYLOAD_TOO_LARGE', `chunked body over ${limit} bytes`);
    yield chunk;
  }
}

function causeCode(err: Error): string | undefined {
  const cause = (err as { cause?: { code?: string } }).cause;
  return cause?.code ?? (err as { code?: string }).code;
}
