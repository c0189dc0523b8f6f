import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import type { ClientSide } from '../http1/exchange.ts';

/**
 * Per-connection state, made once when a connection is accepted (and, for TLS, once
 * the handshake has been authorized) and read by every request on that connection.
 */
export interface ConnectionContext {
  readonly id: number;
  readonly log: Logger;
  /** the verified peer, null on plaintext (outbound) listeners */
  peer: PeerIdentity | null;
  /** authorization happens once per connection, before any upstream is dialled */
  allowed: boolean;
  /** requests on this connection whose responses have not finished */
  inFlight: number;
  /**
   * Set by attachContext (so every context has it, whoever made it): the connection, and how many
   * bytes it had read when it last had nothing in flight. More bytes since then means a request
   * has begun arriving, parsed or not: the connection is busy (drain never closes it as idle).
   */
  socket?: Socket;
  idleBytes?: number;
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
