import { STRICT, type HttpParserBinding, type LlhttpParser } from './parserBinding.ts';

/** What a parser reports to while a connection holds it: llhttp's callbacks, as the connection's methods. */
export interface ParserClient {
  onMessageBegin(): number;
  onHeaders(headers: string[], url: string): void;
  onHeadersComplete(
    major: number,
    minor: number,
    rawHeaders: string[] | undefined,
    method: number,
    url: string | undefined,
    status: number,
    message: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number;
  onBody(chunk: Buffer): void;
  onMessageComplete(): void;
}

/** the client a parser reports to, kept on the parser object (the binding calls its callbacks with the parser as `this`) */
const kClient = Symbol('tollgate.parserClient');

type Lent = LlhttpParser & { [kClient]: ParserClient };

/**
 * The llhttp parsers of one listener's client connections, lent to a connection while it is
 * inside a request and taken back when it waits for its next one. A parser is ~10 KiB of native
 * memory (heaptrack: 10.2 MiB over 1,008 `Parser::New` with 1,000 idle keep-alive connections), so
 * a parser per connection made an idle connection cost ~10 KiB more than in a plain TLS server.
 * A parser taken from the pool is initialised afresh (`initialize` resets llhttp and the binding's
 * header state), so nothing of one connection's stream reaches another's. Up to `keep` free
 * parsers are kept for reuse; beyond that a returned parser's native memory is freed at once.
 *
 * A parser's callbacks are set once, when it is made: each passes the call on to the client that
 * holds the parser, so a connection needs no bound functions of its own for them.
 */
export class ParserPool {
  readonly binding: HttpParserBinding;
  readonly keep: number;
  readonly free: LlhttpParser[] = [];

  constructor(binding: HttpParserBinding, keep = 64) {
    this.binding = binding;
    this.keep = keep;
  }

  /** a strict REQUEST parser at the start of a message, reporting to `client` */
  acquire(client: ParserClient, maxHeaderBytes: number): LlhttpParser {
    const b = this.binding;
    const p = (this.free.pop() as Lent | undefined) ?? this.made();
    p.initialize(b.REQUEST, {}, maxHeaderBytes, STRICT);
    p[kClient] = client;
    return p;
  }

  /** take a parser back: it no longer reports to the connection that held it (nor keeps it alive) */
  release(p: LlhttpParser): void {
    (p as Lent)[kClient] = UNOWNED;
    if (this.free.length < this.keep) {
      p.free();
      this.free.push(p);
    } else p.close();
  }

  /** a new parser, its callbacks set */
  made(): Lent {
    const b = this.binding;
    const p = b.create() as Lent;
    p[kClient] = UNOWNED;
    p[b.kOnMessageBegin] = onMessageBegin;
    p[b.kOnHeaders] = onHeaders;
    p[b.kOnHeadersComplete] = onHeadersComplete;
    p[b.kOnBody] = onBody;
    p[b.kOnMessageComplete] = onMessageComplete;
    return p;
  }

  /** free every kept parser's native memory (the listener is gone) */
  clear(): void {
    for (const p of this.free.splice(0)) p.close();
  }
}

/** what a parser in the pool reports to: nothing */
const UNOWNED: ParserClient = {
  onMessageBegin: () => 0,
  onHeaders: () => undefined,
  onHeadersComplete: () => 0,
  onBody: () => undefined,
  onMessageComplete: () => undefined,
};

function onMessageBegin(this: Lent): number {
  return this[kClient].onMessageBegin();
}

function onHeaders(this: Lent, headers: string[], url: string): void {
  this[kClient].onHeaders(headers, url);
}

function onHeadersComplete(this: Lent, ...head: Parameters<ParserClient['onHeadersComplete']>): number {
  return this[kClient].onHeadersComplete(...head);
}

function onBody(this: Lent, chunk: Buffer): void {
  this[kClient].onBody(chunk);
}

function onMessageComplete(this: Lent): void {
  this[kClient].onMessageComplete();
}
