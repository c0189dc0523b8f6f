import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Header filtering for a forwarding proxy (RFC 9110 §7.6.1): hop-by-hop headers, and any
 * header the Connection header names, apply to one hop and are not forwarded. `expect` is
 * handled by this hop (Node answers 100-continue), so it is not forwarded either.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'http2-settings',
]);

export const PEER_HEADER = 'x-tollgate-peer';

/** Lowercased names listed in a Connection header value ("close, X-Foo" -> {close, x-foo}); null when none. */
function connectionTokens(value: string | undefined): Set<string> | null {
  if (value === undefined || value === '' ) return null;
  const tokens = new Set<string>();
  for (const t of value.split(',')) {
    const name = t.trim().toLowerCase();
    if (name !== '') tokens.add(name);
  }
  return tokens;
}

/**
 * The request headers to send upstream, as a flat [name, value, …] list built from
 * `rawHeaders` (order and repeats preserved). Any copy of `x-tollgate-peer` the client
 * sent is dropped; when `peer` is given it is set, so the app can trust it. `host`,
 * when given, replaces the client's Host (outbound: the target's authority).
 */
export function upstreamRequestHeaders(rawHeaders: readonly string[], connection: string | undefined, peer: string | null, host: string | null): string[] {
  const named = connectionTokens(connection);
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === PEER_HEADER || (named !== null && named.has(lower))) continue;
    if (host !== null && lower === 'host') continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  if (host !== null) out.push('host', host);
  if (peer !== null) out.push(PEER_HEADER, peer);
  return out;
}

/** The response headers to send downstream: the upstream's, less hop-by-hop ones. */
export function downstreamResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const connection = headers.connection;
  const named = connectionTokens(Array.isArray(connection) ? connection.join(',') : connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (named !== null && named.has(name))) continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}
