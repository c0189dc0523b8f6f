import type { Socket } from 'node:net';

/**
 * HTTP/2 over cleartext with prior knowledge begins with the connection preface (RFC 9113
 * §3.4); an HTTP/1.1 request cannot (no method is `PRI`). The first bytes of a connection from
 * the local app tell which it speaks; they are put back for whichever reads them.
 */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Wait for enough of the first bytes to tell (at most the idle timeout), then `then(true)` for h2c, `then(false)` for HTTP/1.1 (or a closed socket). */
export function sniffH2cPreface(socket: Socket, idleTimeoutMs: number, then: (h2c: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  // a connection that says nothing is closed as an idle one would be
  const onSilent = (): void => {
    socket.destroy();
  };
  socket.setTimeout(idleTimeoutMs, onSilent);
  let settled = false;
  const settle = (h2c: boolean): void => {
    if (settled) return;
    settled = true;
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.pause();
    socket.setTimeout(0);
    socket.removeListener('timeout', onSilent);
    if (seen.length > 0) socket.unshift(seen);
    then(h2c);
    // HTTP/2: the session read what was put back; HTTP/1.1: the core's data listener takes it from here
    if (!h2c) socket.resume();
  };
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, PREFACE.length);
    if (!seen.subarray(0, n).equals(PREFACE.subarray(0, n))) return settle(false);
    if (n === PREFACE.length) settle(true);
  };
  const onEnd = (): void => settle(false);
  socket.on('data', onData);
  socket.once('end', onEnd);
}
