import http from 'node:http';
import type { Server, Socket, AddressInfo } from 'node:net';
import type { Dispatcher } from 'undici';
import type { ListenerConfig } from '../config/types.ts';
import type { Gauge } from 'prom-client';
import { contextOf } from './connectionContext.ts';

/** A running listener: what main starts, reports on, drains and stops. */
export interface Listener {
  readonly name: string;
  readonly mode: 'inbound' | 'outbound';
  readonly protocol: 'http' | 'tcp';
  /**
   * bind; rejects (EADDRINUSE, EACCES…) if the address cannot be had. `reusePort`: bind with
   * SO_REUSEPORT, so the listeners of every worker share the port (the kernel spreads connections).
   */
  start(options?: ListenOptions): Promise<void>;
  /** the bound address (port 0 in config becomes the real port) */
  address(): { host: string; port: number };
  /** open downstream connections */
  connections(): number;
  /**
   * Stop accepting, let in-flight work finish until `deadline` (epoch ms), then cut what is
   * left. Resolves true when nothing in flight had to be cut.
   */
  drain(deadline: number): Promise<boolean>;
  /** true from the moment drain() was called */
  draining(): boolean;
}

const DRAIN_POLL_MS = 25;

/**
 * What every listener shares: the set of open downstream connections (for the gauge and for
 * draining), binding, and the drain loop. `busy` says whether a connection has work in flight
 * (an HTTP request, or any open TCP pipe); `closeIdle` lets HTTP close keep-alive
 * connections that have nothing in flight.
 */
export class ConnectionSet {
  readonly sockets = new Set<Socket>();
  readonly gauge: ReturnType<Gauge['labels']>;
  isDraining = false;

  constructor(gauge: ReturnType<Gauge['labels']>) {
    this.gauge = gauge;
  }

  add(socket: Socket): void {
    this.sockets.add(socket);
    this.gauge.inc();
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.gauge.dec();
    });
  }

  async drain(server: Server, deadline: number, busy: (s: Socket) => boolean, closeIdle: () => void): Promise<boolean> {
    this.isDraining = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    while (this.sockets.size > 0 && Date.now() < deadline) {
      closeIdle();
      await delay(Math.min(DRAIN_POLL_MS, Math.max(1, deadline - Date.now())));
    }
    let cut = 0;
    for (const s of this.sockets) {
      if (busy(s)) cut += 1;
      s.destroy();
    }
    await closed;
    return cut === 0;
  }
}

export function httpBusy(s: Socket): boolean {
  const ctx = contextOf(s);
  return ctx !== undefined && ctx.inFlight > 0;
}

export interface ListenOptions {
  readonly reusePort?: boolean;
}

export function listen(server: Server, host: string, port: number, options: ListenOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options.reusePort === true ? { host, port, reusePort: true } : { host, port }, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
}

export function boundAddress(server: Server): { host: string; port: number } {
  const a = server.address() as AddressInfo | null;
  if (a === null) throw new Error('listener is not bound');
  return { host: a.address, port: a.port };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The Listener handle both listener kinds return: bind, address, connection count, and a
 * drain that stops accepting, lets in-flight work finish (HTTP: requests; TCP: any open pipe),
 * closes idle keep-alive connections as they appear, then closes the upstream pool.
 */
export function listenerHandle(config: ListenerConfig, server: Server, conns: ConnectionSet, pool: Dispatcher | null): Listener {
  const busy = config.protocol === 'http' ? httpBusy : alwaysBusy;
  // https.Server extends tls.Server, which is not an http.Server; both have closeIdleConnections
  const closeIdle = 'closeIdleConnections' in server ? () => (server as http.Server).closeIdleConnections() : () => undefined;
  return {
    name: config.name,
    mode: config.mode,
    protocol: config.protocol,
    start: (options) => listen(server, config.listen.host, config.listen.port, options),
    address: () => boundAddress(server),
    connections: () => conns.sockets.size,
    draining: () => conns.isDraining,
    async drain(deadline) {
      const clean = await conns.drain(server, deadline, busy, closeIdle);
      await pool?.close().catch(() => undefined);
      return clean;
    },
  };
}

function alwaysBusy(): boolean {
  return true;
}
