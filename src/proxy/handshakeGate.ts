import type { Socket } from 'node:net';

/**
 * A cap on TLS handshakes in progress on one listener. Handshakes cost the most CPU a
 * client can make us spend before it has proved anything, so beyond `max` at once new
 * connections are dropped at accept (before any TLS work); a connection leaves the count
 * when its handshake completes or its socket closes, whichever comes first.
 */
const kPending = Symbol('tollgate.handshakePending');
type GatedSocket = Socket & { [kPending]?: HandshakeGate };

export class HandshakeGate {
  readonly max: number;
  inProgress = 0;
  dropped = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** A new TCP connection: counted, or destroyed (false) when the cap is reached. */
  admit(raw: Socket): boolean {
    if (this.inProgress >= this.max) {
      this.dropped++;
      raw.destroy();
      return false;
    }
    this.inProgress++;
    (raw as GatedSocket)[kPending] = this;
    raw.once('close', handshakeOver);
    return true;
  }

  /** The handshake on this connection is over (it succeeded, or the socket is gone). */
  done(raw: Socket | undefined): void {
    if (raw === undefined) return;
    const gated = raw as GatedSocket;
    if (gated[kPending] !== this) return;
    gated[kPending] = undefined;
    this.inProgress--;
  }
}

function handshakeOver(this: GatedSocket): void {
  this[kPending]?.done(this);
}
