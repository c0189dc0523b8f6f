import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import type { ClientSide } from '../http1/exchange.ts';

/** what a connection's log lines carry besides the listener's own fields */
export interface ConnectionBindings {
  readonly conn: number;
  readonly [field: string]: unknown;
}

/**
 * Per-connection state, made once when a connection is accepted (and, for TLS, once
 * the handshake has been authorized) and read by every request on that connection.
 */
export class ConnectionContext {
  readonly id: number;
  /** the verified peer, null on plaintext (outbound) listeners */
  peer: PeerIdentity | null;
  /** authorization happens once per connection, before any upstream is dialled */
  allowed: boolean;
  /** requests on this connection whose responses have not finished */
  inFlight = 0;
  /**
   * Set by attachContext: the connection, and how many bytes it had read when it last had
   * nothing in flight. More bytes since then means a request has begun arriving, parsed or not:
   * the connection is busy (drain never closes it as idle).
   */
  socket: Socket | undefined = undefined;
  idleBytes = 0;
  readonly #listenerLog: Logger;
  readonly #bindings: ConnectionBindings;
  #log: Logger | null = null;

  constructor(listenerLog: Logger, bindings: ConnectionBindings, peer: PeerIdentity | null, allowed: boolean) {
    this.id = bindings.conn;
    this.peer = peer;
    this.allowed = allowed;
    this.#listenerLog = listenerLog;
    this.#bindings = bindings;
  }

  /**
   * The connection's logger (the listener's, with the connection's fields), made when the
   * connection first logs: most never do, and a child logger is ~0.4 KiB and ~1 µs per handshake.
   */
  get log(): Logger {
    return (this.#log ??= this.#listenerLog.child(this.#bindings));
  }
}

/** Where an exchange of an HTTP listener is answered (an HTTP/1.1 connection or an HTTP/2 stream), with the listener's context. */
export type ClientConnection = ClientSide<ConnectionContext>;

const kContext = Symbol('tollgate.connection');

type WithContext = Socket & { [kContext]?: ConnectionContext };

export function attachContext(socket: Socket, ctx: ConnectionContext): void {
  ctx.socket = socket;
  ctx.idleBytes = bytesReadOf(socket);
  (socket as WithContext)[kContext] = ctx;
}

/**
 * Every byte a connection has read: for TLS, the records taken from the TCP socket (a partial
 * record counts before it can be decrypted) plus the cleartext handed to the HTTP parser.
 */
export function bytesReadOf(socket: Socket): number {
  const raw = (socket as Socket & { _parent?: Socket | null })._parent;
  return socket.bytesRead + (raw?.bytesRead ?? 0);
}

/** The connection's last response closed and nothing else is in flight: remember how far it had read. */
export function markIdle(ctx: ConnectionContext): void {
  if (ctx.socket !== undefined) ctx.idleBytes = bytesReadOf(ctx.socket);
}

/**
 * Nothing in flight, no byte of a next request arrived (parsed or not), nothing left to write:
 * the connection can be closed without cutting anything.
 */
export function trulyIdle(socket: Socket): boolean {
  const ctx = contextOf(socket);
  if (ctx === undefined) return socket.writableLength === 0;
  return ctx.inFlight === 0 && socket.writableLength === 0 && bytesReadOf(socket) === ctx.idleBytes;
}

/** the context of a connection; undefined for none (a server request's `socket` is null once its stream was destroyed) */
export function contextOf(socket: Socket | null | undefined): ConnectionContext | undefined {
  return (socket as WithContext | null | undefined)?.[kContext];
}
