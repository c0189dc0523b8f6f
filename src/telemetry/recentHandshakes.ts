import type { TLSSocket } from 'node:tls';
import type { HandshakeFailureReason } from '../core/handshakeFailureReasons.ts';

/**
 * The most recent failed handshakes (and refused peers), for the admin API
 * (`/handshakes/recent`): a fixed-size ring, oldest first, one per sidecar, shared by every
 * listener. Peer identities live here and in logs, never in metric labels.
 *
 * - `kind: "handshake_failure"` — the TLS handshake did not complete (`reason` is one of
 *   HANDSHAKE_FAILURE_REASONS, listed in README.md), on either side: `side: "server"` for inbound
 *   (a client connected to us), `"client"` for outbound (we dialled a server).
 * - `kind: "authz_deny"` — the handshake succeeded but the peer's identity or pin is not
 *   allowed (inbound); `reason` is null, `detail` says what did not match. Kept here because
 *   "why was my connection refused" is the question this list answers.
 * - `kind: "connection_dropped"` — refused at accept before any TLS because the listener was
 *   at limits.maxConnections (`reason` null, `code` MAX_CONNECTIONS).
 * - Connections refused in bulk before TLS (the handshake cap, the ClientHello deadline,
 *   maxConnections) are aggregated: one entry per listener, code and 10-second window, with
 *   `count` the number refused (never one entry per socket); see proxy/refusalWindow.ts.
 */
export interface HandshakeRecord {
  /** when it happened (for an aggregated entry: the first one) */
  readonly at: string;
  /** for an aggregated entry, the last one */
  lastAt: string;
  readonly listener: string;
  readonly side: 'server' | 'client';
  readonly kind: 'handshake_failure' | 'authz_deny' | 'connection_dropped';
  readonly reason: HandshakeFailureReason | null;
  /** the remote address (server side: the client; client side: the server dialled), host:port */
  readonly remote: string | null;
  /** the peer's certificate subject and SPIFFE ID, when a certificate was seen */
  readonly peer: { readonly subject: string; readonly spiffe: string | null } | null;
  readonly tlsVersion: string | null;
  /** the error or verification code (ERR_SSL_…, CERT_HAS_EXPIRED, ERR_UPSTREAM_IDENTITY, HANDSHAKE_CAP…) */
  readonly code: string | null;
  /** a short human explanation (no secrets) */
  readonly detail: string | null;
  /** how many events this entry stands for (1 except for aggregated refusals at accept) */
  count: number;
}

export type NewHandshakeRecord = Omit<HandshakeRecord, 'lastAt' | 'count'> & { readonly count?: number };

export const RECENT_HANDSHAKES = 256;

export class RecentHandshakes {
  readonly capacity: number;
  private readonly ring: Array<HandshakeRecord | undefined>;
  private next = 0;
  private total = 0;

  constructor(capacity = RECENT_HANDSHAKES) {
    this.capacity = capacity;
    this.ring = new Array<HandshakeRecord | undefined>(capacity);
  }

  /** add an entry; returns it so an aggregating caller can bump its count */
  add(record: NewHandshakeRecord): HandshakeRecord {
    const entry: HandshakeRecord = { ...record, lastAt: record.at, count: record.count ?? 1 };
    this.ring[this.next] = entry;
    this.next = (this.next + 1) % this.ring.length;
    this.total++;
    return entry;
  }

  /** one more event folded into an entry added earlier (aggregation) */
  bump(entry: HandshakeRecord, at: string): void {
    entry.count++;
    entry.lastAt = at;
    this.total++;
  }

  /** oldest first, as copies */
  list(): HandshakeRecord[] {
    const out: HandshakeRecord[] = [];
    for (let i = 0; i < this.ring.length; i++) {
      const r = this.ring[(this.next + i) % this.ring.length];
      if (r !== undefined) out.push({ ...r });
    }
    return out;
  }

  /** events seen since start (aggregated ones counted one by one) */
  get count(): number {
    return this.total;
  }
}

/**
 * The negotiated TLS version of a socket, when there is one. Never asked of a destroyed
 * socket: OpenSSL's state may be gone under the handle (reading it can crash the process).
 */
export function tlsVersionOf(socket: TLSSocket): string | null {
  if (socket.destroyed) return null;
  try {
    const v = socket.getProtocol();
    return typeof v === 'string' && v !== 'unknown' ? v : null;
  } catch {
    return null;
  }
}

/** host:port of an address pair, or null */
export function formatRemote(address: string | undefined, port: number | undefined): string | null {
  if (address === undefined) return null;
  const host = address.includes(':') ? `[${address}]` : address;
  return port === undefined ? host : `${host}:${port}`;
}
