import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { PeerIdentity } from '../tls/peerIdentity.ts';

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
}

const kContext = Symbol('tollgate.connection');

type WithContext = Socket & { [kContext]?: ConnectionContext };

export function attachContext(socket: Socket, ctx: ConnectionContext): void {
  (socket as WithContext)[kContext] = ctx;
}

/** the context of a connection; undefined for none (a server request's `socket` is null once its stream was destroyed) */
export function contextOf(socket: Socket | null | undefined): ConnectionContext | undefined {
  return (socket as WithContext | null | undefined)?.[kContext];
}
