import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Counter, Histogram } from 'prom-client';
import type { Logger } from 'pino';
import { ERRORS, type ErrorCode } from '../core/errors.ts';
import type { Clock } from '../core/clock.ts';
import type { BodyMode, ListenerConfig } from '../config/types.ts';
import { statusClass, type Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { contextOf, markIdle, type ConnectionContext } from './connectionContext.ts';
import { refuse } from './refuse.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { ForwardExchange, exchangeOf, type ForwardResult } from './forward.ts';
import { upstreamErrorCode } from './upstreamError.ts';
import { BodyMeter, ClientClosedError, collectBody, countedBody, digestCheckedBody, type DigestVerified } from './requestBody.ts';
import { BodyDeadline } from './bodyDeadline.ts';
import type { AnomalyStage, Flagged } from '../anomaly/anomalyStage.ts';
import type { PeerRateLimiter } from '../limits/tokenBucket.ts';
import { HeaderIndex, type MessageView } from '../integrity/signatureBase.ts';
import { verifyRequest, type VerifierDeps } from '../integrity/verifier.ts';
import { signRequest, type NonceSource } from '../integrity/signer.ts';
import { contentDigestOf, DigestCheck, digestsMatch, isAcceptableContentDigest } from '../integrity/contentDigest.ts';
import type { KeyRing } from '../integrity/keyRing.ts';
import type { MacKeys } from '../integrity/hmac.ts';

/**
 * The HTTP request path of one listener, in order:
 *
 *   connection authorized? -> declared body within limits?
 *   -> inbound with verify: signature (parse, tag, key, window, coverage, MAC, nonce)
 *        -> body: buffered up to the cap and digest-checked before forwarding (buffer mode),
 *           or streamed while hashed with the tail held back (stream mode)
 *   -> outbound with sign: Content-Digest (the app's, or computed over the buffered body)
 *        -> Signature-Input + Signature added
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
  /** message integrity: verify (inbound), sign (outbound), or none */
  readonly integrity: IntegrityStage | null;
  /** payload-size and volume anomalies (inbound), or none */
  readonly anomaly: AnomalyStage | null;
  /** per-peer rate limit, or none */
  readonly rateLimiter: PeerRateLimiter | null;
  /**
   * Outbound: a new single-connection dispatcher to the same upstream. When given, a request
   * whose body is held whole (or absent) and that is signed or idempotent is sent once more on
   * a new connection if its connection was lost before any response byte (see `retry`).
   */
  readonly freshConnection?: () => Dispatcher;
}

export type IntegrityStage =
  | { readonly kind: 'verify'; readonly verifier: VerifierDeps; readonly bodyMode: BodyMode; readonly maxBufferedBytes: number }
  | { readonly kind: 'sign'; readonly keyId: string; readonly keys: () => KeyRing; readonly macs: MacKeys; readonly nonces: NonceSource; readonly tag: string; readonly maxBufferedBytes: number };

/** Errors of the request body that are the client's doing, not the upstream's. */
const BODY_REFUSALS: ReadonlySet<ErrorCode> = new Set(['ERR_PAYLOAD_TOO_LARGE', 'ERR_DIGEST_MISMATCH', 'ERR_PAYLOAD_ANOMALY', 'ERR_BODY_TIMEOUT']);

const ROUTE = 'default';
type CounterChild = ReturnType<Counter['labels']>;
type HistogramChild = ReturnType<Histogram['labels']>;
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

const kStart = Symbol('tollgate.requestStart');
const kPath = Symbol('tollgate.httpPath');
const kConn = Symbol('tollgate.requestConnection');
const kMeter = Symbol('tollgate.requestBodyMeter');
const kPeer = Symbol('tollgate.requestPeer');
const kContinue = Symbol('tollgate.expectsContinue');
const kKeyId = Symbol('tollgate.verifiedKeyId');
/** what a response carries so its finish/close listeners (module functions, no per-request closures) can find their way back */
type TimedResponse = ServerResponse & { [kStart]?: bigint; [kPath]?: HttpPath; [kConn]?: ConnectionContext; [kMeter]?: BodyMeter; [kPeer]?: string; [kContinue]?: boolean; [kKeyId]?: string };

/** the peer key of a connection without an identity (outbound: the local app) */
const LOCAL_PEER = 'local';

function peerOf(ctx: ConnectionContext): string {
  return ctx.peer?.display ?? LOCAL_PEER;
}

export class HttpPath implements ForwardResult {
  readonly deps: HttpPathDeps;
  readonly timeoutMs: number;
  readonly maxBodyBytes: number;
  /** metric children resolved once, so the hot path does no label hashing */
  readonly requestsByClass: Record<string, CounterChild>;
  readonly duration: HistogramChild;
  readonly requestBytes: HistogramChild;
  readonly responseBytes: HistogramChild;
  readonly upstreamErrors: Partial<Record<ErrorCode, CounterChild>> = {};
  readonly signatureChecks: Partial<Record<string, CounterChild>> = {};
  /** the most body bytes held in memory for a check or a signature */
  readonly bufferLimit: number;
  /** the minimum body data rate: the longest wait for body bytes (and grace), and bytes per second after it */
  readonly bodyGapMs: number;
  readonly minBodyRate: number;

  constructor(deps: HttpPathDeps) {
    this.deps = deps;
    this.timeoutMs = deps.listener.limits.upstreamTimeoutSeconds * 1000;
    this.maxBodyBytes = deps.listener.limits.maxBodyBytes;
    const name = deps.listener.name;
    this.requestsByClass = Object.fromEntries(STATUS_CLASSES.map((c) => [c, deps.metrics.requests.labels(name, ROUTE, c)]));
    this.duration = deps.metrics.requestDuration.labels(name, ROUTE);
    this.requestBytes = deps.metrics.payloadBytes.labels(name, ROUTE, 'request');
    this.responseBytes = deps.metrics.payloadBytes.labels(name, ROUTE, 'response');
    this.bufferLimit = Math.min(this.maxBodyBytes, deps.integrity?.maxBufferedBytes ?? this.maxBodyBytes);
    this.bodyGapMs = deps.listener.limits.bodyTimeoutSeconds * 1000;
    this.minBodyRate = deps.listener.limits.minBodyBytesPerSecond;
    this.handle = this.handle.bind(this);
    this.handleExpectingContinue = this.handleExpectingContinue.bind(this);
  }

  /** A request with `Expect: 100-continue`: handled like any other; 100 is sent only when its body is wanted. */
  handleExpectingContinue(req: IncomingMessage, res: ServerResponse): void {
    (res as TimedResponse)[kContinue] = true;
    this.handle(req, res);
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

    // 1. the peer (decided at the handshake), then its rate
    if (!ctx.allowed) return this.refuse(req, res, 'ERR_PEER_NOT_ALLOWED', true);
    const peer = peerOf(ctx);
    const declared = req.headers['content-length'];
    const chunked = declared === undefined && req.headers['transfer-encoding'] !== undefined;
    const hasContent = chunked || (declared !== undefined && declared !== '0');
    const limiter = this.deps.rateLimiter;
    if (limiter !== null) {
      const rate = limiter.take(peer, this.deps.clock.now());
      if (!rate.ok) return this.refuse(req, res, 'ERR_RATE_LIMITED', hasContent, { 'retry-after': String(rate.retryAfterSeconds) });
    }

    // 2. body size: a declared length against the limit and the learned sizes before anything
    //    else; a chunked body is counted against both as it arrives
    const meter = new BodyMeter(this.maxBodyBytes);
    timed[kMeter] = meter;
    timed[kPeer] = peer;
    if (declared !== undefined) {
      const length = Number(declared);
      if (length > this.maxBodyBytes) return this.refuse(req, res, 'ERR_PAYLOAD_TOO_LARGE', true);
      meter.bytes = length;
      if (hasContent && this.judgeSize(req, res, peer, length)) return;
    } else if (chunked && this.deps.anomaly !== null) {
      const anomaly = this.deps.anomaly;
      meter.watch(anomaly.upperBound(ROUTE, peer), (bytes) => this.sizeFlagged(req, peer, { kind: 'too_large', value: bytes, expected: anomaly.sizes.typicalSize(ROUTE, peer) }));
    }

    // 3. message integrity, then 4. forward; a body is read no slower than the minimum data rate
    const deadline = hasContent ? new BodyDeadline(this.bodyGapMs, this.minBodyRate, this.deps.clock, req) : null;
    const integrity = this.deps.integrity;
    if (integrity === null) {
      if (hasContent && !chunked) meter.bytes = 0; // counted again as it streams
      return this.forward(req, res, hasContent ? countedBody(req, meter, deadline) : null, this.upstreamHeaders(req, ctx));
    }
    if (integrity.kind === 'verify') {
      // a declared body that cannot fit the check buffer is refused before its signature spends a nonce
      if (integrity.bodyMode === 'buffer' && declared !== undefined && Number(declared) > this.bufferLimit) return this.refuse(req, res, 'ERR_PAYLOAD_TOO_LARGE', true);
      return this.verifyThenForward(req, res, ctx, hasContent, integrity.verifier, integrity.bodyMode, meter, chunked, deadline);
    }
    return this.signThenForward(req, res, ctx, hasContent, integrity, meter, deadline);
  }

  /**
   * Judge a body size known before forwarding. Observe mode flags and goes on; block mode
   * refuses with ERR_PAYLOAD_ANOMALY (true = refused, stop).
   */
  judgeSize(req: IncomingMessage, res: ServerResponse, peer: string, bytes: number): boolean {
    const anomaly = this.deps.anomaly;
    if (anomaly === null) return false;
    const f = anomaly.judge(ROUTE, peer, bytes);
    if (f === null) return false;
    if (!this.sizeFlagged(req, peer, f)) return false;
    this.refuse(req, res, 'ERR_PAYLOAD_ANOMALY', true, undefined, { kind: f.kind, bytes: f.value, expected: f.expected });
    return true;
  }

  /** Count one size anomaly; true when it must be blocked (the refusal then logs and audits it). */
  sizeFlagged(req: IncomingMessage, peer: string, f: Flagged): boolean {
    const anomaly = this.deps.anomaly!;
    const log = contextOf(req.socket)?.log ?? this.deps.log;
    anomaly.flagged(ROUTE, peer, f, anomaly.block ? 'blocked' : 'observed', log);
    return anomaly.block;
  }

  upstreamHeaders(req: IncomingMessage, ctx: ConnectionContext): string[] {
    return upstreamRequestHeaders(req.rawHeaders, req.headers.connection, this.deps.setPeerHeader ? ctx.peer?.display ?? null : null, this.deps.hostOverride);
  }

  forward(req: IncomingMessage, res: ServerResponse, body: Buffer | AsyncIterable<Buffer> | IncomingMessage | null, headers: string[]): void {
    if (body !== null) continueIfAsked(res);
    const exchange = new ForwardExchange(req, res, this);
    const method = req.method ?? 'GET';
    const options: Dispatcher.DispatchOptions = {
      path: req.url ?? '/',
      method,
      headers,
      // undici streams an async iterable body with backpressure; its types only name Readable
      body: body as Readable | Buffer | null,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    };
    const heldWhole = body === null || Buffer.isBuffer(body);
    if (this.deps.freshConnection !== undefined && heldWhole && (this.deps.integrity?.kind === 'sign' || IDEMPOTENT.has(method))) exchange.replayable = options;
    this.deps.dispatcher.dispatch(options, exchange);
  }

  /** ForwardResult: responses close their connection while the listener drains */
  draining(): boolean {
    return this.deps.isDraining();
  }

  /**
   * ForwardResult: the upstream connection was lost under a replayable request before any
   * response byte, typically an idle keep-alive connection the upstream closed (a draining
   * tollgate) as the request was on its way. Sent once more, on a new connection. A signed
   * request goes again with the same signature and nonce, so the receiving tollgate's replay
   * cache lets it through at most once: if the first copy was read after all, the second is
   * refused (ERR_SIG_REPLAYED) rather than delivered twice. That holds within one replay
   * cache (one instance with all its workers, or a sharedState cluster); an unsigned request
   * is resent only when its method is idempotent (RFC 9110, 9.2.2).
   */
  retry(exchange: ForwardExchange, err: Error): void {
    const options = exchange.replayable!;
    const log = connectionOf(exchange.req, exchange.res)?.log ?? this.deps.log;
    log.info({ method: options.method, cause: causeCode(err) }, 'upstream connection lost before a response: retrying once on a new connection');
    const fresh = this.deps.freshConnection!();
    fresh.dispatch(options, exchange);
    // closes once this one request is done
    void fresh.close().catch(() => undefined);
  }

  /** Inbound: the signature first (headers only), then the body against its Content-Digest. */
  verifyThenForward(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: ConnectionContext,
    hasContent: boolean,
    verifier: VerifierDeps,
    mode: BodyMode,
    meter: BodyMeter,
    chunked: boolean,
    deadline: BodyDeadline | null,
  ): void {
    const view: MessageView = { method: req.method ?? 'GET', target: req.url ?? '/', scheme: 'https', headers: HeaderIndex.fromRaw(req.rawHeaders) };
    const v = verifyRequest(view, hasContent, verifier);
    if (!v.ok) return this.refuseSignature(req, res, v.code, v.detail, v.keyId, hasContent);
    const headers = this.upstreamHeaders(req, ctx);
    const digests = v.digests ?? [];
    if (!hasContent) {
      // no content: a Content-Digest, if sent, must still be the digest of nothing
      if (!digestsMatch(digests, EMPTY)) return this.refuseSignature(req, res, 'ERR_DIGEST_MISMATCH', 'Content-Digest does not match an empty body', v.keyId, false);
      this.countSignature('ok');
      return this.forward(req, res, null, headers);
    }
    if (mode === 'stream') {
      if (!chunked) meter.bytes = 0; // counted again as it streams
      (res as TimedResponse)[kKeyId] = v.keyId; // for the audit event of a digest refused mid-stream
      return this.forward(req, res, digestCheckedBody(req, new DigestCheck(digests), meter, this as DigestVerified, deadline), headers);
    }
    continueIfAsked(res);
    collectBody(req, this.bufferLimit, deadline).then(
      (body) => {
        if (!digestsMatch(digests, body)) return this.refuseSignature(req, res, 'ERR_DIGEST_MISMATCH', 'Content-Digest does not match the body', v.keyId, false);
        this.countSignature('ok');
        meter.bytes = body.length;
        // a chunked body's size is known only now: judged whole, before any byte goes upstream
        if (chunked && this.judgeSize(req, res, peerOf(ctx), body.length)) return;
        this.forward(req, res, body, headers);
      },
      (err: unknown) => this.bodyFailed(req, res, err),
    );
  }

  /** DigestVerified: a streamed body matched its digest. */
  digestVerified(): void {
    this.countSignature('ok');
  }

  /**
   * Outbound: sign what goes out. A body with an acceptable Content-Digest from the app is
   * streamed as is (the digest is covered and the receiver checks it); any other body is
   * held up to the cap, digested, and sent with its exact length.
   */
  signThenForward(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: ConnectionContext,
    hasContent: boolean,
    stage: IntegrityStage & { kind: 'sign' },
    meter: BodyMeter,
    deadline: BodyDeadline | null,
  ): void {
    const appDigest = req.headers['content-digest'];
    if (!hasContent || (typeof appDigest === 'string' && isAcceptableContentDigest(appDigest))) {
      const headers = this.upstreamHeaders(req, ctx);
      if (!this.sign(req, res, headers, stage)) return;
      if (hasContent && req.headers['content-length'] !== undefined) meter.bytes = 0; // counted again as it streams
      return this.forward(req, res, hasContent ? countedBody(req, meter, deadline) : null, headers);
    }
    continueIfAsked(res);
    collectBody(req, this.bufferLimit, deadline).then(
      (body) => {
        meter.bytes = body.length;
        const headers = withoutFields(this.upstreamHeaders(req, ctx), CONTENT_FIELDS);
        headers.push('content-digest', contentDigestOf(body), 'content-length', String(body.length));
        if (this.sign(req, res, headers, stage)) this.forward(req, res, body, headers);
      },
      (err: unknown) => this.bodyFailed(req, res, err),
    );
  }

  /** Add Signature-Input and Signature to the outgoing headers; false (and refused) when the signing key is gone. */
  sign(req: IncomingMessage, res: ServerResponse, headers: string[], stage: IntegrityStage & { kind: 'sign' }): boolean {
    const key = stage.keys().get(stage.keyId);
    if (key === undefined) {
      this.refuse(req, res, 'ERR_SIG_UNKNOWN_KEY', true);
      return false;
    }
    const view: MessageView = { method: req.method ?? 'GET', target: req.url ?? '/', scheme: 'https', headers: HeaderIndex.fromRaw(headers) };
    const fields = signRequest(view, { keyId: stage.keyId, key, macs: stage.macs, nonces: stage.nonces, tag: stage.tag, created: Math.floor(this.deps.clock.now() / 1000) });
    headers.push('signature-input', fields.signatureInput, 'signature', fields.signature);
    return true;
  }

  /** The body could not be read within its bound, or the client left. */
  bodyFailed(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    if (err instanceof ClientClosedError || res.destroyed) {
      connectionOf(req, res)?.log.debug({ method: req.method }, 'client closed before its body was complete');
      return;
    }
    const code = upstreamErrorCode(err);
    this.refuse(req, res, code, true);
  }

  /** ForwardResult: the upstream exchange is over */
  done(err: Error | null, exchange: ForwardExchange): void {
    if (err === null) return;
    const ctx = connectionOf(exchange.req, exchange.res);
    if (exchange.downstreamClosed) {
      (ctx?.log ?? this.deps.log).debug({ method: exchange.req.method }, 'client closed before the response completed; upstream request aborted');
      return;
    }
    const code = upstreamErrorCode(err);
    if (BODY_REFUSALS.has(code)) {
      // the body was refused while streaming: the upstream request was aborted before it was complete
      if (code === 'ERR_DIGEST_MISMATCH') return this.refuseSignature(exchange.req, exchange.res, code, err.message, (exchange.res as TimedResponse)[kKeyId] ?? null, true);
      return this.refuse(exchange.req, exchange.res, code, true, undefined, { detail: err.message });
    }
    this.countUpstreamError(code);
    const fields = { code, err: err.message, cause: causeCode(err), method: exchange.req.method, retried: exchange.retried };
    (ctx?.log ?? this.deps.log).warn(fields, 'request refused');
    if (code === 'ERR_UPSTREAM_IDENTITY') this.deps.audit.record('upstream_identity', { listener: this.deps.listener.name, reason: err.message });
    if (exchange.res.headersSent) exchange.res.destroy();
    else refuse(exchange.res, code, true);
  }

  /**
   * A signature or digest refusal: one count under tollgate_signature_checks_total, one log
   * line with the reason, one audit event. A body left unread closes the connection.
   */
  refuseSignature(req: IncomingMessage, res: ServerResponse, code: ErrorCode, detail: string, keyId: string | null, bodyUnread: boolean): void {
    this.countSignature(ERRORS[code].reason);
    const ctx = connectionOf(req, res);
    (ctx?.log ?? this.deps.log).warn({ code, detail, keyId, method: req.method }, 'request refused');
    this.deps.audit.record(code === 'ERR_SIG_REPLAYED' ? 'replay' : 'signature_failure', {
      listener: this.deps.listener.name,
      code,
      detail,
      keyId,
      peer: ctx?.peer?.display ?? null,
    });
    refuse(res, code, bodyUnread || this.deps.isDraining());
  }

  countSignature(result: string): void {
    let child = this.signatureChecks[result];
    if (child === undefined) {
      child = this.deps.metrics.signatureChecks.labels(this.deps.listener.name, result);
      this.signatureChecks[result] = child;
    }
    child.inc();
  }

  /**
   * Refuse a request before it goes upstream: one log line, one audit event (the metric is
   * the request's status class, counted when the response finishes). A denied peer was
   * logged and audited once, at its handshake, so its per-request 403s are not repeated.
   */
  refuse(req: IncomingMessage, res: ServerResponse, code: ErrorCode, close: boolean, headers?: Record<string, string>, detail?: Record<string, unknown>): void {
    if (code !== 'ERR_PEER_NOT_ALLOWED') {
      const ctx = connectionOf(req, res);
      (ctx?.log ?? this.deps.log).warn({ code, method: req.method, ...detail }, 'request refused');
      this.deps.audit.record(code === 'ERR_PAYLOAD_ANOMALY' ? 'anomaly' : 'request_refused', {
        listener: this.deps.listener.name,
        code,
        peer: ctx?.peer?.display ?? null,
        ...(code === 'ERR_PAYLOAD_ANOMALY' ? { route: ROUTE, action: 'blocked' } : {}),
        ...detail,
      });
    }
    refuse(res, code, close || this.deps.isDraining(), headers);
  }

  countUpstreamError(code: ErrorCode): void {
    let child = this.upstreamErrors[code];
    if (child === undefined) {
      child = this.deps.metrics.upstreamErrors.labels(this.deps.listener.name, ERRORS[code].reason);
      this.upstreamErrors[code] = child;
    }
    child.inc();
  }

  /** The response is complete: request metrics, payload sizes, and — for accepted requests — what the size and volume models learn. */
  record(res: TimedResponse): void {
    this.requestsByClass[statusClass(res.statusCode)]!.inc();
    const start = res[kStart];
    if (start !== undefined) this.duration.observe(Number(this.deps.clock.monotonic() - start) / 1e9);
    const meter = res[kMeter];
    if (meter === undefined) return;
    // payload sizes of what was proxied: a request refused before forwarding has no upstream exchange
    const exchange = exchangeOf(res);
    if (exchange !== undefined) {
      this.requestBytes.observe(meter.bytes);
      this.responseBytes.observe(exchange.responseBytes);
    }
    const anomaly = this.deps.anomaly;
    if (anomaly !== null && res.statusCode < 400) {
      anomaly.accepted(ROUTE, res[kPeer] ?? LOCAL_PEER, meter.bytes > 0 ? meter.bytes : null, res[kConn]?.log ?? this.deps.log);
    }
  }
}

/** Wire a path to its server once. */
export function attachHttpPath(server: { on(event: 'request' | 'checkContinue', fn: (req: IncomingMessage, res: ServerResponse) => void): unknown }, path: HttpPath): void {
  server.on('request', path.handle);
  // `Expect: 100-continue`: the client waits for our word before sending its body, so a refusal
  // decided from the headers (size, rate, anomaly, signature) costs it no upload at all
  server.on('checkContinue', path.handleExpectingContinue);
}

/** Tell a client that sent `Expect: 100-continue` to send its body now, once, right before the body is read. */
function continueIfAsked(res: TimedResponse): void {
  if (res[kContinue] !== true) return;
  res[kContinue] = false;
  res.writeContinue();
}

/**
 * The connection a request came on. Taken from its response, where `handle` left it: once a
 * streamed body was abandoned (a refusal mid-stream), Node detaches the request from its
 * socket (`req.socket` is null) although the connection is still there to carry the answer.
 */
function connectionOf(req: IncomingMessage, res: ServerResponse): ConnectionContext | undefined {
  return (res as TimedResponse)[kConn] ?? contextOf(req.socket);
}

function onResponseFinish(this: TimedResponse): void {
  this[kPath]?.record(this);
}

function onResponseClose(this: TimedResponse): void {
  const ctx = this[kConn];
  if (ctx === undefined || ctx.inFlight === 0) return;
  ctx.inFlight -= 1;
  if (ctx.inFlight > 0) return;
  // from here on, any byte read is the start of a next request (drain must not take it for idle);
  // a body answered before it was complete is still being read (and dropped) by node:http
  if (this.req.complete || this.req.destroyed) markIdle(ctx);
  else this.req.once('end', onDroppedBodyEnd);
}

function onDroppedBodyEnd(this: IncomingMessage): void {
  const ctx = contextOf(this.socket);
  if (ctx !== undefined && ctx.inFlight === 0) markIdle(ctx);
}

const EMPTY = Buffer.alloc(0);
/** RFC 9110, 9.2.2 */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'TRACE']);
const CONTENT_FIELDS: ReadonlySet<string> = new Set(['content-digest', 'content-length']);

/** A flat header list without the named fields. */
function withoutFields(headers: string[], names: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (!names.has(headers[i]!.toLowerCase())) out.push(headers[i]!, headers[i + 1]!);
  return out;
}

function causeCode(err: Error): string | undefined {
  const cause = (err as { cause?: { code?: string } }).cause;
  return cause?.code ?? (err as { code?: string }).code;
}
