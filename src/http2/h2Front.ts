import http2, {
  constants,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import type { GoawayReason } from '../core/goawayReasons.ts';
import { Exchange } from '../http1/exchange.ts';
import type { ConnectionActivity } from '../http1/serverConnection.ts';
import { grpcTimeoutMs } from './grpc.ts';
import { H2ServerStream, type StreamHandler } from './h2ServerStream.ts';

/**
 * The HTTP/2 side of a listener: connections that chose `h2` by ALPN (or sent h2c's preface to
 * an outbound listener) become node:http2 sessions, and each stream becomes an exchange on the
 * same request path as an HTTP/1.1 request. The session's own limits (streams, header list,
 * HPACK table, windows) are its SETTINGS; the floods HTTP/2 allows beyond them (streams
 * cancelled as soon as opened, PINGs, SETTINGS) are counted per connection and answered with
 * GOAWAY (ENHANCE_YOUR_CALM). Every GOAWAY tollgate sends is counted by reason.
 */

export interface H2Limits {
  readonly maxConcurrentStreams: number;
  /** a request's header list (RFC 9113 §6.5.2: names, values and 32 bytes a field) beyond this is refused with 431 */
  readonly maxHeaderBytes: number;
  readonly headerTableBytes: number;
  readonly streamWindowBytes: number;
  readonly connectionWindowBytes: number;
  readonly maxResetsPerSecond: number;
  readonly maxPingsPerSecond: number;
  readonly maxSettingsPerSecond: number;
  /** a stream with no frame either way this long is reset; a connection with no stream this long is closed */
  readonly idleTimeoutMs: number;
}

export interface H2FrontEvents {
  goaway(reason: GoawayReason, detail: string | null): void;
}

/** the most header fields of one request, as the HTTP/1.1 core allows */
const MAX_HEADER_PAIRS = 2000;
const HEADER_LIST_SLACK = 16 * 1024;

/** A budget of events per second with a burst of twice that: a flood spends it, ordinary use never does. */
class FloodBudget {
  readonly perSecond: number;
  tokens: number;
  last: number;
  constructor(perSecond: number) {
    this.perSecond = perSecond;
    this.tokens = perSecond * 2;
    this.last = performance.now();
  }

  /** one more event: false once the budget is spent */
  spend(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.perSecond * 2, this.tokens + ((now - this.last) * this.perSecond) / 1000);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** what a session keeps: its connection's context and its flood budgets */
interface SessionState<C> {
  readonly ctx: C;
  readonly resets: FloodBudget;
  readonly pings: FloodBudget;
  readonly settings: FloodBudget;
  /** tollgate sent GOAWAY: the reason is counted once */
  goneAway: boolean;
  /** performance.now() when a stream last ended (or the connection began) */
  lastStreamAt: number;
}

export class H2Front<C extends ConnectionActivity> {
  readonly server: Http2Server;
  readonly handler: StreamHandler<C>;
  readonly limits: H2Limits;
  readonly events: H2FrontEvents;
  readonly clock: () => bigint;
  readonly sessions = new Map<ServerHttp2Session, SessionState<C>>();
  /** the context of the connection being handed to node:http2 (its session is made synchronously) */
  private incoming: C | null = null;
  private emptied: (() => void) | null = null;

  constructor(handler: StreamHandler<C>, limits: H2Limits, events: H2FrontEvents, clock: () => bigint) {
    this.handler = handler;
    this.limits = limits;
    this.events = events;
    this.clock = clock;
    this.server = http2.createServer({
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams,
        // advertised with room above the limit, so a head just over it reaches the 431 of the request path (counted,
        // logged, audited) instead of nghttp2's silent stream reset; far over it, nghttp2 resets the stream
        maxHeaderListSize: limits.maxHeaderBytes * 2 + HEADER_LIST_SLACK,
        headerTableSize: limits.headerTableBytes,
        initialWindowSize: limits.streamWindowBytes,
        enableConnectProtocol: false,
      },
      maxHeaderListPairs: MAX_HEADER_PAIRS,
      // what the peer's HPACK may make us keep for decoding is bounded by headerTableSize above
      maxSendHeaderBlockLength: 64 * 1024,
    });
    this.server.on('session', this.onSession.bind(this));
    this.server.on('stream', this.onStream.bind(this));
    // a session's own 'error' is handled per session; nothing may reach the server unhandled
    this.server.on('sessionError', () => undefined);
  }

  /** A connection whose client speaks HTTP/2 (ALPN h2, or h2c's preface on loopback). */
  accept(socket: Socket, ctx: C): void {
    this.incoming = ctx;
    try {
      this.server.emit('connection', socket);
    } finally {
      this.incoming = null;
    }
  }

  onSession(session: ServerHttp2Session): void {
    const ctx = this.incoming;
    if (ctx === null) {
      session.destroy();
      return;
    }
    const l = this.limits;
    const state: SessionState<C> = {
      ctx,
      resets: new FloodBudget(l.maxResetsPerSecond),
      pings: new FloodBudget(l.maxPingsPerSecond),
      settings: new FloodBudget(l.maxSettingsPerSecond),
      goneAway: false,
      lastStreamAt: performance.now(),
    };
    this.sessions.set(session, state);
    session.once('close', () => {
      this.sessions.delete(session);
      if (this.sessions.size === 0 && this.emptied !== null) this.emptied();
    });
    session.on('error', (err: Error & { code?: string; errno?: number }) => {
      // nghttp2 or node:http2 ended the session: a flood one of them detects itself, or a protocol error
      this.count(state, sessionErrorReason(err), err.message);
    });
    session.on('ping', () => {
      if (!state.pings.spend()) this.goAway(session, state, 'ping_flood');
    });
    session.on('remoteSettings', () => {
      if (!state.settings.spend()) this.goAway(session, state, 'settings_flood');
    });
    // idle: no frame for the idle timeout and no stream for as long (node's timer fires once per silence, so it is listened
    // to with on(), and a connection that was busy is looked at again after the rest of its idle time)
    session.setTimeout(l.idleTimeoutMs);
    session.on('timeout', () => {
      const quietMs = performance.now() - state.lastStreamAt;
      if (ctx.inFlight > 0 || quietMs < l.idleTimeoutMs) {
        if (!session.destroyed) session.setTimeout(ctx.inFlight > 0 ? l.idleTimeoutMs : l.idleTimeoutMs - quietMs);
        return;
      }
      this.count(state, 'idle', null);
      session.close();
    });
    session.once('connect', () => {
      if (l.connectionWindowBytes > 65_535 && !session.destroyed) session.setLocalWindowSize(l.connectionWindowBytes);
    });
  }

  onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]): void {
    const session = stream.session as ServerHttp2Session | undefined;
    const state = session === undefined ? undefined : this.sessions.get(session);
    if (state === undefined) {
      stream.close(constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (stream.destroyed) {
      // the client reset it in the same read that opened it: nothing to start, and it spends the reset budget
      if (!state.goneAway && !state.resets.spend()) this.goAway(session!, state, 'rapid_reset');
      return;
    }
    const side = new H2ServerStream(stream, state.ctx, this.handler);
    // a stream the client cancels before it was answered spends the connection's reset budget
    stream.once('close', () => {
      state.lastStreamAt = performance.now();
      if (stream.rstCode !== constants.NGHTTP2_NO_ERROR && side.ex !== null && !side.ended && !state.goneAway)
        if (!state.resets.spend()) this.goAway(session!, state, 'rapid_reset');
    });
    // no frame either way for the idle timeout (a client that never opens its window, say): the stream is reset, without
    // the END_STREAM close() would send first (a response cut short must not look whole)
    stream.setTimeout(this.limits.idleTimeoutMs, () => side.reset());
    const ex = exchangeOf(side, headers, rawHeaders, stream.endAfterHeaders, this.limits.maxHeaderBytes, this.clock());
    side.ex = ex;
    state.ctx.inFlight += 1;
    ex.headAccepted = true;
    ex.started = true;
    this.handler.start(ex, side);
  }

  /** `then` once no connection of this front is left (a replaced front is forgotten) */
  onEmpty(then: () => void): void {
    if (this.sessions.size === 0) return then();
    this.emptied = then;
  }

  /** Tell every connection to open no new stream (GOAWAY, NO_ERROR); each closes once its streams are done. */
  drain(): void {
    for (const [session, state] of this.sessions) {
      this.count(state, 'drain', null);
      session.close();
    }
  }

  goAway(session: ServerHttp2Session, state: SessionState<C>, reason: GoawayReason): void {
    if (state.goneAway) return;
    this.count(state, reason, null);
    // destroy with the code sends the one GOAWAY (goaway() then destroy() would send a second, NO_ERROR, after it);
    // an error is needed for node to keep the code (destroy(undefined, code) sends NO_ERROR), and this one is counted
    if (!session.destroyed) session.destroy(new Error(`HTTP/2 ${reason}`), constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  count(state: SessionState<C>, reason: GoawayReason, detail: string | null): void {
    if (state.goneAway) return;
    state.goneAway = true;
    this.events.goaway(reason, detail);
  }
}

/** node:http2's status for a callback that failed: its own guard against streams opened faster than it reaps them */
const NGHTTP2_ERR_CALLBACK_FAILURE = -902;

/**
 * Why nghttp2 or node:http2 ended a session. node:http2 keeps a closed stream until the next turn of
 * the event loop and refuses new ones beyond SETTINGS_MAX_CONCURRENT_STREAMS; after 100 refused in a
 * row it fails the session (ERR_HTTP2_ERROR, NGHTTP2_ERR_CALLBACK_FAILURE): streams opened and reset
 * in one burst, a rapid reset faster than the reset budget can see it. nghttp2's own flood checks
 * (CONTINUATION frames, control frames the client does not read) name a flood; the rest are protocol errors.
 */
function sessionErrorReason(err: Error & { code?: string; errno?: number }): GoawayReason {
  if (err.code === 'ERR_HTTP2_ERROR' && err.errno === NGHTTP2_ERR_CALLBACK_FAILURE) return 'rapid_reset';
  return /flood|continuation/i.test(err.message) ? 'flood' : 'protocol_error';
}

/**
 * A stream's request as an exchange: `:method` and `:path` as the request line, `:authority` as
 * Host (a Host field that names another authority makes the request malformed, RFC 9113
 * §8.3.1), the other fields as sent. A body without content-length is sized at its end.
 */
function exchangeOf(
  side: H2ServerStream<ConnectionActivity>,
  headers: IncomingHttpHeaders,
  rawHeaders: readonly string[],
  endAfterHeaders: boolean,
  maxHeaderBytes: number,
  now: bigint,
): Exchange {
  const authority = headers[':authority'];
  const raw: string[] = [];
  let host: string | null = null;
  let hasLength = false;
  let listSize = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    listSize += name.length + rawHeaders[i + 1]!.length + 32;
    if (name.charCodeAt(0) === 0x3a /* : */) continue;
    if (name === 'host') host = rawHeaders[i + 1]!;
    else if (name === 'content-length') hasLength = true;
    raw.push(name, rawHeaders[i + 1]!);
  }
  let refusal: 'ERR_BAD_REQUEST' | 'ERR_HEADERS_TOO_LARGE' | null = null;
  if (authority !== undefined) {
    if (host === null) raw.unshift('host', authority);
    else if (host !== authority) refusal = 'ERR_BAD_REQUEST';
  }
  if (raw.length > MAX_HEADER_PAIRS * 2 || listSize > maxHeaderBytes) refusal = 'ERR_HEADERS_TOO_LARGE';
  const ex = new Exchange(
    side,
    headers[':method'] ?? '',
    headers[':path'] ?? '',
    1,
    raw,
    true,
    false,
    now,
    refusal,
    'h2',
    !endAfterHeaders && !hasLength,
  );
  if (ex.grpc) ex.deadlineMs = grpcTimeoutMs(headers['grpc-timeout'] as string | undefined) ?? 0;
  return ex;
}
