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
  lastActivity = Date.now();
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
  downstream.on('data', countDown);
  upstream.on('data', countUp);
  downstream.pipe(upstream);
  upstream.pipe(downstream);
}

function countDown(this: PipedSocket, chunk: Buffer): void {
  const st = this[kPipe]!;
  st.stats.bytesDown += chunk.length;
  st.lastActivity = Date.now();
}

function countUp(this: PipedSocket, chunk: Buffer): void {
  const st = this[kPipe]!;
  st.stats.bytesUp += chunk.length;
  st.lastActivity = Date.now();
}

/** A socket's own timer fired; the pair is idle only if the other direction was quiet too. */
function onIdle(this: PipedSocket): void {
  const st = this[kPipe]!;
  const quiet = Date.now() - st.lastActivity;
  if (quiet < st.idleMs) {
    // A socket's 'timeout' fires once and is not re-armed by itself; without this, a timer
    // that fired a few ms early (or before the other direction's last byte) left the pair open forever.
    this.setTimeout(st.idleMs - quiet);
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
  if (st.open === 0) st.hooks.closed(st.stats);
}
