import type { Socket } from 'node:net';

/**
 * Join two connected sockets into one L4 pipe: bytes flow both ways with backpressure
 * (stream.pipe pauses the source when the destination is full), an end in one direction
 * is passed on as a half-close (FIN / close_notify) while the other direction keeps
 * flowing, and the pair is torn down together on an error, when both directions have
 * ended, or when neither side has moved a byte for `idleMs`.
 */
export interface PipeHooks {
  /** called once, when both sockets are closed */
  closed(stats: PipeStats): void;
}

export interface PipeStats {
  bytesDown: number; // downstream -> upstream
  bytesUp: number; // upstream -> downstream
  idleTimedOut: boolean;
  error: Error | null;
}

const kPipe = Symbol('tollgate.pipe');

class PipeState {
  readonly a: Socket;
  readonly b: Socket;
  readonly idleMs: number;
  readonly hooks: PipeHooks;
  open = 2;
  readonly stats: PipeStats = { bytesDown: 0, bytesUp: 0, idleTimedOut: false, error: null };

  constructor(a: Socket, b: Socket, idleMs: number, hooks: PipeHooks) {
    this.a = a;
    this.b = b;
    this.idleMs = idleMs;
    this.hooks = hooks;
  }

  teardown(err: Error | null): void {
    if (err !== null && this.stats.error === null) this.stats.error = err;
    this.a.destroy();
    this.b.destroy();
  }
}

type PipedSocket = Socket & { [kPipe]?: PipeState };

/**
 * No per-chunk work of our own: bytes are counted by Node's sockets and read once at close,
 * and idleness comes from each socket's own timer, which Node re-arms on every read and
 * write — and since every byte piped is read on one socket and written on the other, both
 * timers see traffic in either direction.
 */
export function pipeSockets(downstream: Socket, upstream: Socket, idleMs: number, hooks: PipeHooks): void {
  const state = new PipeState(downstream, upstream, idleMs, hooks);
  for (const s of [downstream, upstream] as PipedSocket[]) {
    s[kPipe] = state;
    s.setNoDelay(true);
    s.setTimeout(idleMs);
    s.on('timeout', onIdle);
    s.on('error', onError);
    s.once('close', onClose);
  }
  downstream.pipe(upstream);
  upstream.pipe(downstream);
}

/**
 * A socket's timer fired: nothing was read from or written to it for idleMs. Every byte
 * piped is read on one socket and written on the other, so the other direction was quiet
 * too — unless bytes are still queued on a socket (a slow reader under backpressure drains
 * them without this socket reading anything); then the pair is busy and the timer is armed
 * again (a 'timeout' fires once and is not re-armed by itself).
 */
function onIdle(this: PipedSocket): void {
  const st = this[kPipe]!;
  if (st.a.writableLength > 0 || st.b.writableLength > 0) {
    this.setTimeout(st.idleMs);
    return;
  }
  st.stats.idleTimedOut = true;
  st.teardown(null);
}

function onError(this: PipedSocket, err: Error): void {
  this[kPipe]!.teardown(err);
}

function onClose(this: PipedSocket): void {
  const st = this[kPipe]!;
  // one side closed entirely (not just half-closed): nothing more can cross in either direction
  st.teardown(null);
  st.open -= 1;
  if (st.open === 0) {
    st.stats.bytesDown = st.a.bytesRead;
    st.stats.bytesUp = st.b.bytesRead;
    st.hooks.closed(st.stats);
  }
}
