import net, { type Server, type Socket, type AddressInfo } from 'node:net';
import type { ListenerConfig, ListenerMode } from '../config/types.ts';
import type { RouteStatus } from './pathSet.ts';
import type { Gauge } from 'prom-client';
import { trulyIdle } from './connectionContext.ts';

/** A running listener: what main starts, reports on, drains and stops. */
export interface Listener {
  readonly name: string;
  readonly mode: ListenerMode;
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
  /** a gateway: its routes, their endpoints and health; undefined for any other listener */
  routes(): RouteStatus[] | undefined;
}

const DRAIN_POLL_MS = 25;
/**
 * During a drain, an HTTP connection with nothing in flight is closed only once it has stayed
 * truly idle this long. A client's pool hands a connection its next request within a
 * millisecond or so of the last response; closing sooner would race that request on the wire
 * (HTTP/1.1 has no way to say "closing" to an idle connection), while a request that arrives
 * in time is answered with `Connection: close`. HAProxy's idle-close-on-response and Envoy's
 * drain period make the same trade.
 */
export const DRAIN_IDLE_QUIET_MS = 500;

/**
 * What every listener shares: the set of open downstream connections (for the gauge and for
 * draining), binding, and the drain loop. `idle` says whether a connection can be closed
 * without cutting anything (HTTP: nothing in flight and no byte of a next request; TCP: never,
 * an open pipe is always busy).
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

  /**
   * Stop accepting; then, every DRAIN_POLL_MS, after the event loop has read what the sockets
   * hold, close each connection that has been truly idle for DRAIN_IDLE_QUIET_MS; at the
   * deadline, close the rest. Resolves true when none of those was busy.
   */
  async drain(server: Server, deadline: number, idle: (s: Socket) => boolean): Promise<boolean> {
    this.isDraining = true;
    // net.Server's close only stops accepting. http.Server's also destroys every connection
    // node:http thinks idle: between messages by its parser, even with the next request
    // already in the TLS layer or the kernel, unread (it then goes out as a reset).
    const closed = new Promise<void>((resolve) => net.Server.prototype.close.call(server, () => resolve()));
    const idleSince = new Map<Socket, number>();
    while (this.sockets.size > 0 && Date.now() < deadline) {
      await delay(Math.min(DRAIN_POLL_MS, Math.max(1, deadline - Date.now())));
      // timers run before the poll phase: look only after this turn's reads were parsed
      await afterPendingReads();
      const now = Date.now();
      for (const s of this.sockets) {
        if (!idle(s)) {
          idleSince.delete(s);
          continue;
        }
        const since = idleSince.get(s);
        if (since === undefined) idleSince.set(s, now);
        else if (now - since >= DRAIN_IDLE_QUIET_MS) s.destroy();
      }
    }
    let cut = 0;
    for (const s of this.sockets) {
      if (!idle(s)) cut += 1;
      s.destroy();
    }
    await closed;
    return cut === 0;
  }
}

export interface ListenOptions {
  readonly reusePort?: boolean;
  /** the kernel's queue of connections not yet accepted (capped by net.core.somaxconn); Node's default is 511 */
  readonly backlog?: number;
}

export function listen(server: Server, host: string, port: number, options: ListenOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    const backlog = options.backlog === undefined ? {} : { backlog: options.backlog };
    server.listen(
      options.reusePort === true ? { host, port, reusePort: true, ...backlog } : { host, port, ...backlog },
      () => {
        server.removeListener('error', onError);
        resolve();
      },
    );
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

function afterPendingReads(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The Listener handle both listener kinds return: bind, address, connection count, and a
 * drain that stops accepting, lets in-flight work finish (HTTP: requests, answered with
 * `Connection: close`; TCP: any open pipe), closes truly idle keep-alive connections, then
 * closes the upstream pool.
 */
export function listenerHandle(
  config: ListenerConfig,
  server: Server,
  conns: ConnectionSet,
  pool: {
    close(): Promise<unknown>;
    ready?(): Promise<void> | undefined;
    routes?(): RouteStatus[] | undefined;
    /** a drain begins: HTTP/2 connections are told to open no new stream */
    goAway?(): void;
  } | null,
): Listener {
  const idle = config.protocol === 'http' ? trulyIdle : neverIdle;
  return {
    name: config.name,
    mode: config.mode,
    protocol: config.protocol,
    // a backlog of maxConnections, as HAProxy sizes it: a burst of connects (a flood of silent
    // ones) overflowing Node's 511 makes the kernel drop everyone's SYNs, and a legitimate
    // client then waits for its retransmit (1 s, 3 s, 7 s) before the handshake gate sees it
    // a gateway serves once each route's targets got a first answer (or failed)
    start: (options) => {
      const bind = (): Promise<void> =>
        listen(server, config.listen.host, config.listen.port, { ...options, backlog: config.limits.maxConnections });
      const ready = pool?.ready?.();
      return ready === undefined ? bind() : ready.then(bind);
    },
    address: () => boundAddress(server),
    connections: () => conns.sockets.size,
    draining: () => conns.isDraining,
    routes: () => pool?.routes?.(),
    async drain(deadline) {
      pool?.goAway?.();
      const clean = await conns.drain(server, deadline, idle);
      await pool?.close().catch(() => undefined);
      return clean;
    },
  };
}

function neverIdle(): boolean {
  return false;
}
