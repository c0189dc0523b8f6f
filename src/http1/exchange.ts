import type { ErrorCode } from '../core/errors.ts';
import { requestFraming, type RequestFraming } from './fields.ts';

/**
 * One request and its response on a client connection: every field set here, in the
 * constructor, so each exchange has the same shape (nothing is added to Node's objects).
 * The connection fills the request side from the parser; the request path fills the rest.
 *
 * The body arrives in the inbox as the parser delivers it; it goes to a reader once the
 * request path has chosen what to do with it (stream it upstream, hash it, hold it).
 */

/** Takes a request body as it arrives. */
export interface BodyReader {
  data(chunk: Buffer): void;
  /** the chunks handed over together (one read from the client) are all there: what was held back for them may go */
  flush(): void;
  /** the body is complete (the parser has seen its end) */
  end(): void;
}

/** The clock of a body being read: the client is to blame only for the time tollgate waits for it. */
export interface BodyClock {
  /** tollgate wants the next bytes */
  waiting(): void;
  /** tollgate holds what came (the upstream is slow to take it): the clock stands still */
  holding(): void;
  received(bytes: number): void;
  done(): void;
}

/** The client connection an exchange came on, as the exchange needs it (serverConnection.ts is the one). */
export interface ExchangeHost {
  /** hand the exchange's body, what came so far and the rest as it arrives, to its reader */
  deliver(ex: Exchange): void;
}

/** The protocol an exchange arrived over. */
export type ClientProtocol = 'http/1.1' | 'h2';

/**
 * Where an exchange is answered: an HTTP/1.1 client connection (serverConnection.ts), or one
 * HTTP/2 stream (http2/h2ServerStream.ts), which takes the same response head and body parts.
 */
export interface ClientSide<C = unknown> extends ExchangeHost {
  readonly ctx: C;
  /** part of the response of the exchange being answered: its head (a string), or body bytes */
  write(data: Buffer | string): boolean;
  /** trailer fields after the body (HTTP/2 passes them on; HTTP/1.1 drops them) */
  trailers(fields: Readonly<Record<string, string | string[]>>): void;
  /** parts that leave together (what one read of the upstream produced), in order; false as `write` says it */
  writeParts(parts: ReadonlyArray<Buffer | string>): boolean;
  /** called once when the client can take more (after a write returned false) */
  onWritable: (() => void) | null;
  draining(): boolean;
  pauseReading(reason: number): void;
  resumeReading(reason: number): void;
  /** `Expect: 100-continue`: tell the client to send its body (once) */
  sendContinue(ex: Exchange): void;
  /** the exchange is answered */
  done(ex: Exchange): void;
  /** a response under way cannot be finished: cut it (the connection, or the stream) */
  cut(): void;
}

export class Exchange {
  /** the client connection */
  readonly host: ExchangeHost;
  readonly method: string;
  /** the request target as sent (rewritten to origin-form by the request path when absolute-form) */
  target: string;
  readonly versionMinor: number;
  readonly rawHeaders: string[];
  readonly framing: RequestFraming;
  /** the client asked to keep the connection (llhttp's view: version and Connection) */
  readonly keepAlive: boolean;
  /** llhttp's upgrade flag: an Upgrade request, or CONNECT */
  readonly upgrade: boolean;
  /** a body follows the head (a length above zero, or chunked) */
  readonly hasBody: boolean;
  readonly chunked: boolean;
  /** monotonic ns at the head */
  readonly startedAt: bigint;
  /** a parser refusal queued in order with the requests before it, or null for a request */
  readonly parserRefusal: ErrorCode | null;
  /** HTTP/1.1, or a stream of an HTTP/2 connection */
  readonly protocol: ClientProtocol;
  /** a gRPC call (Content-Type application/grpc…): answered with gRPC statuses, carried over HTTP/2 only */
  readonly grpc: boolean;

  // the body as it arrives
  inbox: Buffer[] = [];
  inboxBytes = 0;
  bodyBytes = 0;
  bodyComplete = false;
  reader: BodyReader | null = null;
  readerEnded = false;
  /** bytes after the head of an upgrade request (the tunnel's first bytes), kept aside */
  tunnelBytes: Buffer | null = null;

  // progress
  /** execute() returned without error for the bytes that carried the head */
  headAccepted = false;
  /** the request path has taken it */
  started = false;
  /** `Expect: 100-continue` not answered yet */
  continuePending: boolean;
  /** the response head (or a refusal) was written to the client */
  responded = false;
  finished = false;
  /** the client connection closes after this response */
  closeAfter = false;
  /** the client went away first */
  clientGone = false;

  // what the request path learnt and decided
  peer = '';
  /** the peer as the x-tollgate-peer value */
  peerHeader = '';
  keyId: string | null = null;
  /** the verified signature's nonce (a shared replay store claims it next) */
  nonce: string | null = null;
  status = 0;
  responseBytes = 0;
  /** the refusal's code, or null */
  code: ErrorCode | null = null;
  /** monotonic ns: the request went upstream, and the upstream's final response head came (0: not yet; set only for the access log) */
  upstreamAt = 0n;
  upstreamHeadAt = 0n;
  /** a connection of the upstream pool carries it (set by the pool), or null */
  upstream: unknown = null;
  /** sent upstream (so it is counted as proxied) */
  forwarded = false;
  retried = false;
  /** the head sent upstream, and the whole body when it is held, for one retry on a fresh connection */
  sentHead = '';
  /** the fields sent upstream (an HTTP/2 upstream builds its HEADERS frame from them) */
  sentFields: readonly string[] | null = null;
  /** a gRPC call's own deadline (grpc-timeout), in ms; 0: none */
  deadlineMs = 0;
  heldBody: readonly Buffer[] | null = null;
  /** what the stages leave for the body strategy (expected digests, or fields already signed) */
  strategy: unknown = null;
  /** the request path that took it (a config reload may swap the listener's path; an exchange stays on its own) */
  owner: unknown = null;
  /** the header-phase stage it is at (one that answers later resumes the chain after it) */
  stage = 0;
  /** fields a refusal answer adds (Retry-After) */
  extraFields = '';
  /** the size anomaly that blocked it, for the refusal's audit event */
  anomaly: { readonly kind: string; readonly value: number; readonly expected: number } | null = null;
  bodyClock: BodyClock | null = null;

  constructor(
    host: ExchangeHost,
    method: string,
    target: string,
    versionMinor: number,
    rawHeaders: string[],
    keepAlive: boolean,
    upgrade: boolean,
    startedAt: bigint,
    parserRefusal: ErrorCode | null,
    protocol: ClientProtocol = 'http/1.1',
    bodyOfUnknownLength = false,
  ) {
    this.host = host;
    this.method = method;
    this.target = target;
    this.versionMinor = versionMinor;
    this.rawHeaders = rawHeaders;
    this.framing = requestFraming(rawHeaders);
    this.keepAlive = keepAlive;
    this.upgrade = upgrade;
    // an HTTP/2 body with no content-length: its size is known at its end, as for chunked
    this.chunked = this.framing.transferEncoding !== '' || bodyOfUnknownLength;
    this.hasBody = this.chunked || this.framing.contentLength > 0;
    this.startedAt = startedAt;
    this.parserRefusal = parserRefusal;
    this.protocol = protocol;
    this.grpc = this.framing.grpc;
    this.continuePending = this.framing.expectContinue;
    // a request without a body is complete with its head
    this.bodyComplete = !this.hasBody;
  }

  /** Hand the body to `reader` (what came so far, then the rest as it arrives). */
  read(reader: BodyReader): void {
    this.reader = reader;
    this.host.deliver(this);
  }
}
