/**
 * What reached a server, counted where it arrives: TCP connections accepted, TLS handshakes
 * completed, HTTP `request` events begun, and application bytes read (after decryption on a TLS
 * server, raw on a plain one). "Nothing reached the far end" is then `requests() === 0 &&
 * bytes() === 0`, which neither a body-end event nor a metric on our side can show.
 *
 *   const far = farEnd(app.server);
 *   ... a request tollgate must refuse ...
 *   t.same(far.snapshot(), { connections: 0, secureConnections: 0, requests: 0, bytes: 0 });
 */
import type net from 'node:net';
import tls from 'node:tls';

export interface FarEndCounts {
  readonly connections: number;
  readonly secureConnections: number;
  readonly requests: number;
  readonly bytes: number;
}

export interface FarEnd {
  connections(): number;
  secureConnections(): number;
  requests(): number;
  /** application bytes read so far on every connection, open or closed */
  bytes(): number;
  snapshot(): FarEndCounts;
}

/** Start counting on `server` (before the traffic to count). */
export function farEnd(server: net.Server): FarEnd {
  const isTls = server instanceof tls.Server;
  // bytesRead stays readable after a socket closes, so keeping the sockets is enough to sum
  const carriers: net.Socket[] = [];
  let connections = 0;
  let secureConnections = 0;
  let requests = 0;
  server.on('connection', (socket: net.Socket) => {
    connections += 1;
    if (!isTls) carriers.push(socket);
  });
  if (isTls) {
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      secureConnections += 1;
      carriers.push(socket);
    });
  }
  server.on('request', () => {
    requests += 1;
  });
  const bytes = (): number => carriers.reduce((sum, s) => sum + s.bytesRead, 0);
  return {
    connections: () => connections,
    secureConnections: () => secureConnections,
    requests: () => requests,
    bytes,
    snapshot: () => ({ connections, secureConnections, requests, bytes: bytes() }),
  };
}
