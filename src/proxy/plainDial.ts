import net from 'node:net';

/**
 * One plaintext TCP connection (an inbound listener's local app, a gateway route's endpoint
 * without upstreamTls), given `timeoutMs` to connect: `done` gets the connected socket, or the
 * error (ETIMEDOUT when the time ran out), once.
 */
export function dialPlain(
  host: string,
  port: number,
  timeoutMs: number,
  done: (err: Error | null, socket: net.Socket | null) => void,
): void {
  const socket = net.connect({ host, port });
  let settled = false;
  const fail = (err: Error): void => {
    socket.destroy();
    if (settled) return;
    settled = true;
    done(err, null);
  };
  socket.once('error', fail);
  socket.setTimeout(timeoutMs, () => fail(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })));
  socket.once('connect', () => {
    if (settled) return;
    settled = true;
    socket.removeListener('error', fail);
    socket.setTimeout(0);
    socket.removeAllListeners('timeout');
    done(null, socket);
  });
}
