import type * as Http2Module from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { TollgateError } from '../core/errors.ts';
import type { ClientSide, Exchange } from '../http1/exchange.ts';
import { PAUSE_UPSTREAM } from '../http1/inbox.ts';
import type { RequestFraming, UpstreamEvents, UpstreamLink } from '../http1/upstreamConnection.ts';
import type { Acquired, Upstream } from '../http1/upstreamPool.ts';
import { REASON_PHRASES } from '../http1/fields.ts';
import { H2_NO_ERROR } from './errorCodes.ts';

/**
 * An upstream that speaks HTTP/2: the local app over h2c (gRPC servers), or a remote tollgate
 * over h2 (ALPN). Exchanges are streams of a few long-lived sessions: one session until it has as
 * many streams open as the peer allows, then another. Each stream relays its response to the
 * client side as the HTTP/1.1 core does (head, body, and the trailers HTTP/2 carries).
 */

/** Opens one HTTP/2 session to the upstream (connected, or failed with the error). */
export type SessionDial = (done: (err: Error | null, session: ClientHttp2Session | null) => void) => void;

export interface H2UpstreamSettings {
  /** the longest the upstream may stay silent in an exchange */
  readonly timeoutMs: number;
  /** a session with no stream this long is closed */
  readonly keepAliveMs: number;
  /** `:scheme` of the requests sent */
  readonly scheme: 'http' | 'https';
  /** monotonic ns, the clock exchanges' start times are read on (what is left of a gRPC deadline) */
  readonly monotonic: () => bigint;
}

/** fields of an HTTP/1.1 request that mean nothing on a stream (RFC 9113 §8.2.2); Host becomes :authority */
const NOT_ON_A_STREAM: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'host',
]);

export class H2Upstream implements Upstream {
  readonly dial: SessionDial;
  readonly settings: H2UpstreamSettings;
  readonly events: UpstreamEvents;
  readonly sessions: ClientHttp2Session[] = [];
  /** exchanges waiting for the session being dialled */
  readonly waiting: Acquired[] = [];
  dialling = false;
  closed = false;

  constructor(dial: SessionDial, settings: H2UpstreamSettings, events: UpstreamEvents) {
    this.dial = dial;
    this.settings = settings;
    this.events = events;
  }

  acquire(done: Acquired, _ex?: Exchange): void {
    if (this.closed) return done(lost('the upstream pool is closed'), null);
    const session = this.usable();
    if (session !== null) return done(null, new H2Link(session, this));
    this.waiting.push(done);
    this.connect();
  }

  /** an exchange sent again: on a new session */
  fresh(done: Acquired, _ex?: Exchange): void {
    if (this.closed) return done(lost('the upstream pool is closed'), null);
    this.waiting.push(done);
    this.connect(true);
  }

  /** a session that can take one more stream, or null */
  usable(): ClientHttp2Session | null {
    for (const s of this.sessions) {
      if (s.closed || s.destroyed) continue;
      const max = s.remoteSettings.maxConcurrentStreams ?? 100;
      if (openStreams(s) < max) return s;
    }
    return null;
  }

  connect(force = false): void {
    if (this.dialling && !force) return;
    this.dialling = true;
    this.dial((err, session) => {
      this.dialling = false;
      const waiting = this.waiting.splice(0);
      if (err !== null || session === null) {
        for (const done of waiting) done(err ?? lost('no session'), null);
        return;
      }
      if (this.closed) {
        session.close();
        for (const done of waiting) done(lost('the upstream pool is closed'), null);
        return;
      }
      this.keep(session);
      for (const done of waiting) done(null, new H2Link(session, this));
    });
  }

  keep(session: ClientHttp2Session): void {
    this.sessions.push(session);
    session.on('error', () => undefined);
    session.once('close', () => {
      const i = this.sessions.indexOf(session);
      if (i >= 0) this.sessions.splice(i, 1);
    });
    // the peer's GOAWAY: no new streams on it (those open finish)
    session.once('goaway', () => {
      const i = this.sessions.indexOf(session);
      if (i >= 0) this.sessions.splice(i, 1);
    });
    session.setTimeout(this.settings.keepAliveMs, () => {
      if (openStreams(session) === 0) session.close();
    });
  }

  /** exchanges on the way: streams of ours open, and those waiting for a session */
  outstanding(): number {
    let n = this.waiting.length;
    for (const s of this.sessions) n += openStreams(s);
    return n;
  }

  /** a stream ends by itself: nothing to give back */
  release(): void {}

  answered(): void {}

  failedOn(): void {}

  close(): Promise<void> {
    this.closed = true;
    const all = this.sessions.splice(0);
    return Promise.all(
      all.map((s) => new Promise<void>((resolve) => (s.closed ? resolve() : s.close(() => resolve())))),
    ).then(() => undefined);
  }
}

/** streams of ours open on a session (kept on the session, so every link of it sees one count) */
const kOpen = Symbol('tollgate.h2OpenStreams');

function openStreams(session: ClientHttp2Session): number {
  return (session as unknown as { [kOpen]?: number })[kOpen] ?? 0;
}

function countStream(session: ClientHttp2Session, delta: number): void {
  const s = session as unknown as { [kOpen]?: number };
  s[kOpen] = (s[kOpen] ?? 0) + delta;
}

/** One exchange as one stream of an HTTP/2 session. */
export class H2Link implements UpstreamLink {
  readonly session: ClientHttp2Session;
  readonly owner: H2Upstream;
  /** a session carries many exchanges; a stream one (a retry goes on a new session) */
  readonly uses: number = 1;
  gotResponseBytes = false;
  ex: Exchange | null = null;
  client: ClientSide | null = null;
  stream: ClientHttp2Stream | null = null;
  /** the response body goes to an HTTP/1.1 client chunked (it has no length) */
  rechunk = false;
  done = false;
  /** a gRPC call's deadline, or null */
  deadline: NodeJS.Timeout | null = null;

  constructor(session: ClientHttp2Session, owner: H2Upstream) {
    this.session = session;
    this.owner = owner;
  }

  begin(
    ex: Exchange,
    client: ClientSide,
    _head: string,
    body: readonly Buffer[] | null,
    framing: RequestFraming,
  ): void {
    this.ex = ex;
    this.client = client;
    ex.upstream = this;
    ex.forwarded = true;
    const headers: OutgoingHttpHeaders = {
      ':method': ex.method,
      ':path': ex.target,
      ':scheme': this.owner.settings.scheme,
    };
    const fields = ex.sentFields ?? [];
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i]!.toLowerCase();
      if (name === 'host') headers[':authority'] = fields[i + 1]!;
      if (NOT_ON_A_STREAM.has(name)) continue;
      const had = headers[name];
      if (had === undefined) headers[name] = fields[i + 1]!;
      else if (Array.isArray(had)) had.push(fields[i + 1]!);
      else headers[name] = [String(had), fields[i + 1]!];
    }
    // gRPC needs to say it takes trailers; it is the one TE HTTP/2 allows
    if (ex.grpc) headers.te = 'trailers';
    // a call's deadline counts from its arrival: the app is told what is left of it, and the call is ended when it passes
    let deadlineMs = 0;
    if (ex.deadlineMs > 0) {
      const spentMs = Number(this.owner.settings.monotonic() - ex.startedAt) / 1e6;
      deadlineMs = Math.max(1, Math.ceil(ex.deadlineMs - spentMs));
      headers['grpc-timeout'] = `${deadlineMs}m`;
    }
    let stream: ClientHttp2Stream;
    try {
      stream = this.session.request(headers, { endStream: framing === 'none' });
    } catch (err) {
      queueMicrotask(() => this.fail(err as Error));
      return;
    }
    this.stream = stream;
    countStream(this.session, 1);
    const timeoutMs = this.owner.settings.timeoutMs;
    stream.setTimeout(timeoutMs, () => {
      this.fail(new TollgateError('ERR_UPSTREAM_TIMEOUT', `no frame from the upstream for ${timeoutMs} ms`));
    });
    if (deadlineMs > 0)
      this.deadline = setTimeout(() => {
        this.fail(new TollgateError('ERR_UPSTREAM_TIMEOUT', `the call's deadline (grpc-timeout) passed`));
      }, deadlineMs);
    stream.on('response', this.onResponse.bind(this));
    stream.on('data', this.onData.bind(this));
    stream.on('trailers', this.onTrailers.bind(this));
    stream.on('end', this.onEnd.bind(this));
    stream.on('close', this.onClose.bind(this));
    stream.on('error', () => undefined);
    if (body !== null) {
      for (const chunk of body) stream.write(chunk);
      stream.end();
    }
  }

  /* ------------------------------------------------------------------ request body */

  data(chunk: Buffer): void {
    const stream = this.stream;
    if (stream === null || this.done || chunk.length === 0) return;
    if (!stream.write(chunk) && this.client !== null) {
      const client = this.client;
      client.pauseReading(PAUSE_UPSTREAM);
      stream.once('drain', () => client.resumeReading(PAUSE_UPSTREAM));
    }
  }

  flush(): void {}

  end(): void {
    if (this.stream !== null && !this.done) this.stream.end();
  }

  /* ------------------------------------------------------------------ response */

  onResponse(headers: IncomingHttpHeaders): void {
    const ex = this.ex;
    const client = this.client;
    if (ex === null || client === null) return;
    const status = Number(headers[':status']);
    this.gotResponseBytes = true;
    ex.status = status;
    this.owner.events.answered(ex);
    const bodyless = ex.method === 'HEAD' || status === 204 || status === 304;
    const hasLength = headers['content-length'] !== undefined;
    const toHttp1 = ex.protocol === 'http/1.1';
    this.rechunk = toHttp1 && !bodyless && !hasLength && ex.versionMinor >= 1;
    if (toHttp1 && !bodyless && !hasLength && !this.rechunk) ex.closeAfter = true;
    if (toHttp1 && (!ex.keepAlive || client.draining())) ex.closeAfter = true;
    let head = `HTTP/1.1 ${status} ${REASON_PHRASES[status] ?? ''}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      if (name.charCodeAt(0) === 0x3a || value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) head += `${name}: ${v}\r\n`;
      else head += `${name}: ${value}\r\n`;
    }
    if (this.rechunk) head += 'transfer-encoding: chunked\r\n';
    if (toHttp1 && ex.closeAfter) head += 'connection: close\r\n';
    ex.responded = true;
    client.write(`${head}\r\n`);
  }

  onData(chunk: Buffer): void {
    const ex = this.ex;
    const client = this.client;
    if (ex === null || client === null) return;
    ex.responseBytes += chunk.length;
    let ok: boolean;
    if (this.rechunk) {
      ok = client.writeParts([`${chunk.length.toString(16)}\r\n`, chunk, '\r\n']);
    } else ok = client.write(chunk);
    if (!ok) {
      // the client reads slower than the upstream sends: the stream's window closes until it drains
      const stream = this.stream!;
      stream.pause();
      client.onWritable = () => stream.resume();
    }
  }

  onTrailers(headers: IncomingHttpHeaders): void {
    const fields: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(headers)) {
      if (name.charCodeAt(0) === 0x3a || value === undefined) continue;
      fields[name] = value;
    }
    this.client?.trailers(fields);
  }

  onEnd(): void {
    const ex = this.ex;
    if (ex === null || this.done || !this.gotResponseBytes) return;
    this.over();
    if (this.rechunk) this.client!.write('0\r\n\r\n');
    this.ex = null;
    this.client = null;
    // an upstream that answered before taking the whole body gets no more of it
    if (!ex.readerEnded) ex.reader = null;
    this.owner.events.completed(ex, this);
  }

  onClose(): void {
    if (this.done) return;
    const code = this.stream?.rstCode ?? H2_NO_ERROR;
    // a stream the upstream refused before it did anything may be sent again (RFC 9113 §8.7)
    this.fail(lost(`the upstream closed the stream (HTTP/2 error ${code})`));
  }

  fail(err: Error): void {
    if (this.done) return;
    this.over();
    const ex = this.ex;
    this.ex = null;
    this.client = null;
    this.cancel();
    if (ex !== null) this.owner.events.failed(ex, this, err);
  }

  /** the client left, or the request was refused mid-body: the stream is cancelled */
  abort(): void {
    if (this.done) return;
    this.over();
    this.ex = null;
    this.client = null;
    this.cancel();
  }

  /** the stream's exchange is over (answered, failed or cut): its count and deadline go */
  over(): void {
    this.done = true;
    if (this.stream !== null) countStream(this.session, -1);
    if (this.deadline !== null) clearTimeout(this.deadline);
    this.deadline = null;
  }

  /** RST_STREAM without END_STREAM first: the upstream never takes a request cut short for a whole one */
  cancel(): void {
    if (this.stream !== null && !this.stream.destroyed) this.stream.destroy(new Error('cancelled by tollgate'));
  }
}

/** the upstream went away under an exchange (code ECONNRESET, as a reset would say) */
function lost(message: string): Error {
  return Object.assign(new Error(message), { code: 'ECONNRESET' });
}

/** h2c with prior knowledge to host:port (an app on loopback), connected within `timeoutMs`. */
export function dialH2c(host: string, port: number, timeoutMs: number): SessionDial {
  const authority = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return (done) =>
    connectSession((http2) => http2.connect(authority, { settings: { enablePush: false } }), timeoutMs, done);
}

/** a session over a connection made elsewhere (verified mTLS that chose h2 by ALPN) */
export function sessionOver(
  authority: string,
  socket: Socket,
  timeoutMs: number,
  done: (err: Error | null, session: ClientHttp2Session | null) => void,
): void {
  connectSession(
    (http2) => http2.connect(authority, { createConnection: () => socket, settings: { enablePush: false } }),
    timeoutMs,
    done,
  );
}

/** node:http2 is loaded with the first HTTP/2 upstream session (a process that never makes one does not pay for it) */
function connectSession(
  make: (http2: typeof Http2Module) => ClientHttp2Session,
  timeoutMs: number,
  done: (err: Error | null, session: ClientHttp2Session | null) => void,
): void {
  import('node:http2').then(
    (http2) => {
      let session: ClientHttp2Session;
      try {
        session = make(http2);
      } catch (err) {
        return done(err as Error, null);
      }
      connectWith(session, timeoutMs, done);
    },
    (err: Error) => done(err, null),
  );
}

function connectWith(
  session: ClientHttp2Session,
  timeoutMs: number,
  done: (err: Error | null, session: ClientHttp2Session | null) => void,
): void {
  let settled = false;
  const timer = setTimeout(() => settle(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), timeoutMs);
  const settle = (err: Error | null): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    session.removeListener('error', settle);
    if (err !== null) {
      session.destroy();
      done(err, null);
    } else done(null, session);
  };
  session.once('error', settle);
  session.once('connect', () => settle(null));
}
