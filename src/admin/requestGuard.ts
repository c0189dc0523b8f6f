import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, type ErrorCode } from '../core/errors.ts';

/**
 * Who may talk to the admin (and health) server, decided from the request head before any
 * route runs. The admin API is for operators' scripts (curl, kubectl exec, a supervisor), never
 * for a browser page, so:
 *
 * - Browser signals are refused outright: any `Origin` header (a browser adds it to every
 *   cross-origin request and to every POST), and `Sec-Fetch-Site: cross-site` or `same-site`
 *   (a page on another port of localhost is "same-site" with us and still a foreign page). `none`
 *   (the operator typed the URL) and `same-origin` pass: the admin serves no pages, and a
 *   same-origin request under a foreign name is caught by the Host check below.
 * - DNS rebinding (a foreign name that resolves to 127.0.0.1 after the page loaded) shows as a
 *   foreign `Host`: the Host must be a loopback name (`localhost`, `127.0.0.1`, `[::1]`), the
 *   configured admin host, or the address the connection actually arrived on, each with the
 *   server's own port. A request without a Host is refused too (fail closed; curl always sends one).
 */
/** The browser signal a request carries, or null when it carries none. */
export function browserSignal(headers: Readonly<Record<string, string | string[] | undefined>>): string | null {
  if (headers.origin !== undefined) return 'an Origin header (a browser request)';
  const site = headers['sec-fetch-site'];
  const value = (Array.isArray(site) ? site.join(',') : (site ?? '')).trim().toLowerCase();
  if (value === 'cross-site' || value === 'same-site')
    return `Sec-Fetch-Site: ${value} (a request made by another site's page)`;
  return null;
}

const LOOPBACK_NAMES: ReadonlySet<string> = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Whether a Host header names this server. `port` is the port the connection arrived on (null
 * when there is no real socket, as with fastify's inject(): no port to compare); `localAddress`
 * the address it arrived on; `names` further host names (the configured listen host).
 */
export function hostAllowed(
  host: string | undefined,
  port: number | null,
  localAddress: string | undefined,
  names: readonly string[],
): boolean {
  if (host === undefined || host === '') return false;
  const split = splitHost(host.trim().toLowerCase());
  if (split === null) return false;
  if (port !== null && split.port !== port) return false;
  if (LOOPBACK_NAMES.has(split.name)) return true;
  if (localAddress !== undefined && split.name === bracketed(unmapped(localAddress.toLowerCase()))) return true;
  return names.some((n) => split.name === bracketed(n.toLowerCase()));
}

/** `name[:port]` or `[v6][:port]`; the port defaults to 80 (http). */
function splitHost(host: string): { name: string; port: number } | null {
  let name = host;
  let portText: string | null = null;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) return null;
    name = host.slice(0, end + 1);
    const rest = host.slice(end + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return null;
      portText = rest.slice(1);
    }
  } else {
    const colon = host.lastIndexOf(':');
    if (colon >= 0) {
      name = host.slice(0, colon);
      portText = host.slice(colon + 1);
    }
    if (name.includes(':')) return null;
  }
  if (portText === null) return { name, port: 80 };
  if (!/^[0-9]{1,5}$/.test(portText)) return null;
  return { name, port: Number(portText) };
}

/** an IPv6 address in the bracket form a Host header uses; anything else as it is */
function bracketed(name: string): string {
  return isIP(name) === 6 ? `[${name}]` : name;
}

/** `::ffff:10.0.0.5` (an IPv4 client on a dual-stack socket) is 10.0.0.5 */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * The credentials of `Authorization: Bearer <token>`, with the scheme matched in any case
 * (RFC 7235 section 2.1: auth-scheme is case-insensitive); null for any other scheme or none.
 */
export function bearerCredentials(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^bearer +(.*)$/is.exec(header.trim());
  return m === null ? null : m[1]!.trim();
}

/**
 * A check of given credentials against the configured token in constant time: both sides are
 * hashed to 32 bytes first, so neither a mismatch's position nor the token's length shows.
 */
export function tokenCheck(token: string): (given: string | null) => boolean {
  const expected = digest(token);
  return (given) => {
    // a missing token still costs one comparison, so it times like a wrong one
    const ok = timingSafeEqual(digest(given ?? ''), expected);
    return given !== null && ok;
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Told of each refused request: main counts, audits (one event each) and the admin log has the line. */
export type GuardRefused = (
  code: 'ERR_ADMIN_FORBIDDEN' | 'ERR_ADMIN_UNAUTHORIZED',
  why: string,
  remote: string | null,
) => void;

export interface GuardOptions {
  /** host names besides the loopback ones and the connection's own address; null: no Host check (the health server) */
  readonly hosts: readonly string[] | null;
  /** the bearer token every request needs; null: none */
  readonly token: string | null;
  readonly onRefused?: GuardRefused;
}

/**
 * The guard as a fastify onRequest hook (it runs for unknown paths too), plus the 404 and error
 * handlers, so that every answer this server gives that is not a success has the data plane's
 * shape. Order: browser signal and Host first (403: a page must not even learn whether a token is
 * set), then the token (401 with `WWW-Authenticate: Bearer`, RFC 6750).
 */
export function installGuard(app: FastifyInstance, opts: GuardOptions): void {
  const tokenOk = opts.token === null ? null : tokenCheck(opts.token);
  const refused = (req: FastifyRequest, code: 'ERR_ADMIN_FORBIDDEN' | 'ERR_ADMIN_UNAUTHORIZED', why: string): void => {
    const remote = req.socket?.remoteAddress ?? null;
    req.log.warn({ code, why, remote, method: req.method, url: req.url.slice(0, 200) }, 'admin request refused');
    opts.onRefused?.(code, why, remote);
  };
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const signal = browserSignal(req.headers);
    const port = typeof req.socket?.localPort === 'number' ? req.socket.localPort : null;
    const foreignHost =
      opts.hosts !== null && !hostAllowed(req.headers.host, port, req.socket?.localAddress, opts.hosts);
    if (signal !== null || foreignHost) {
      const why = signal ?? `Host ${JSON.stringify((req.headers.host ?? '').slice(0, 100))} does not name this server`;
      refused(req, 'ERR_ADMIN_FORBIDDEN', why);
      const message =
        signal !== null
          ? 'browser requests are refused'
          : 'the Host header must name this server (loopback or its own address, with its port)';
      return sendAdminError(reply, 'ERR_ADMIN_FORBIDDEN', message);
    }
    if (tokenOk !== null && !tokenOk(bearerCredentials(req.headers.authorization))) {
      refused(
        req,
        'ERR_ADMIN_UNAUTHORIZED',
        req.headers.authorization === undefined ? 'no Authorization header' : 'wrong scheme or token',
      );
      return sendAdminError(reply.header('www-authenticate', 'Bearer'), 'ERR_ADMIN_UNAUTHORIZED');
    }
    return undefined;
  });
  app.setNotFoundHandler(async (_req, reply) => sendAdminError(reply, 'ERR_ADMIN_NOT_FOUND'));
  app.setErrorHandler(async (err: FastifyError, req, reply) => {
    const status = typeof err.statusCode === 'number' ? err.statusCode : 500;
    if (status === 413) return sendAdminError(reply, 'ERR_PAYLOAD_TOO_LARGE');
    // fastify's own client errors (a body that does not parse, a content type it has no parser for…)
    if (status >= 400 && status < 500) return sendAdminError(reply, 'ERR_BAD_REQUEST', err.message.slice(0, 200));
    req.log.error({ err: err.message, code: err.code }, 'admin request failed');
    return sendAdminError(reply, 'ERR_ADMIN_FAILED');
  });
}

/** An admin error: the table's status, `x-tollgate-error`, and `{error, message}` (plus route-specific fields such as `problems`). */
export function sendAdminError(
  reply: FastifyReply,
  code: ErrorCode,
  message?: string,
  extra: Readonly<Record<string, unknown>> = {},
): FastifyReply {
  return reply
    .code(ERRORS[code].status)
    .header('x-tollgate-error', code)
    .send({ error: code, message: message ?? ERRORS[code].message, ...extra });
}
