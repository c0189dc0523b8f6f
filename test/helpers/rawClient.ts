/**
 * A raw client connection for the corpus tests: exact bytes out, every byte in, the answers
 * read back strictly (strictReplies.ts). mTLS as the given identity, or plain TCP.
 */
import net from 'node:net';
import tls from 'node:tls';
import { parseReplies, type Replies } from './strictReplies.ts';
import type { TestIdentity, World } from './world.ts';

export interface RawConn {
  readonly socket: net.Socket;
  /** every byte received so far */
  received(): Buffer;
  closed(): boolean;
  /** wait until `done()` holds or the connection closed; false after `waitMs` */
  until(done: () => boolean): Promise<boolean>;
  replies(): Replies;
}

/** mTLS credentials: the world's CA and the client's identity */
export interface TlsCreds {
  readonly w: World;
  readonly producer: TestIdentity;
}

/** A raw connection to `addr` ("host:port"): mTLS with `creds`, or plain TCP when `creds` is null; each wait is bounded by `waitMs`. */
export async function rawConnect(addr: string, creds: TlsCreds | null, waitMs: number): Promise<RawConn> {
  const host = addr.slice(0, addr.lastIndexOf(':'));
  const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s =
      creds === null
        ? net.connect({ host, port })
        : tls.connect({
            host,
            port,
            servername: 'localhost',
            ca: creds.w.ca.certPem,
            cert: creds.producer.certPem,
            key: creds.producer.keyPem,
          });
    const timer = setTimeout(() => s.destroy(new Error('not connected in time')), waitMs);
    s.once(creds === null ? 'connect' : 'secureConnect', () => {
      clearTimeout(timer);
      s.removeListener('error', reject);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  const chunks: Buffer[] = [];
  let closed = false;
  const wakers = new Set<() => void>();
  const wake = (): void => {
    for (const f of wakers) f();
  };
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    wake();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    closed = true;
    wake();
  });
  const received = (): Buffer => Buffer.concat(chunks);
  return {
    socket,
    received,
    closed: () => closed,
    replies: () => parseReplies(received(), closed),
    until(done) {
      return new Promise((resolve) => {
        const check = (): void => {
          if (done() || closed) finish(true);
        };
        const timer = setTimeout(() => finish(false), waitMs);
        const finish = (ok: boolean): void => {
          clearTimeout(timer);
          wakers.delete(check);
          resolve(ok);
        };
        wakers.add(check);
        check();
      });
    },
  };
}
