/** Loopback ports: a free one to hand a child, and waiting until a child listens on it. */
import net from 'node:net';

export const HOST = '127.0.0.1';

/** A port that was free a moment ago (the kernel's choice for port 0, then released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, HOST);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls a TCP connect until it succeeds; throws after timeoutMs or when isDead() says the process is gone. */
export async function waitForPort(port: number, timeoutMs: number, isDead: () => string | null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await tryConnect(port)) return;
    const dead = isDead();
    if (dead !== null) throw new Error(dead);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listened on ${HOST}:${port} within ${timeoutMs} ms`);
}
