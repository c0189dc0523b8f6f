/**
 * The injector's HTTPS server: `POST /mutate` (an AdmissionReview in, one out), `GET /livez`,
 * `GET /readyz` (503 while draining), `GET /metrics` (Prometheus text: webhookMetrics.ts, and
 * whatever else the command registered on the registry, such as the process metrics). Bodies
 * are bounded; a malformed review is answered 400 with what is wrong; nothing a client sends
 * can crash the process. The serving certificate is swapped for new connections with
 * setSecureContext, open connections keep theirs.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { HostPort } from '../config/types.ts';
import { formatHostPort } from '../config/hostPort.ts';
import type { TlsPolicy } from '../tls/policy.ts';
import type { InjectorSettings } from './injectorSettings.ts';
import { parseAdmissionReview, reviewAdmission } from './review.ts';
import type { ServingCert } from './servingCert.ts';
import { checkServingContext, servingContextOptions } from './servingTls.ts';
import {
  createWebhookMetrics,
  type AdmissionFailure,
  type AdmissionResult,
  type WebhookMetrics,
} from './webhookMetrics.ts';

export interface WebhookServerOptions {
  readonly cert: ServingCert;
  readonly policy: TlsPolicy;
  readonly injector: InjectorSettings;
  readonly log: Logger;
  /** the webhook's own registry: its metrics are created on it and `GET /metrics` serves it */
  readonly registry: Registry;
  /** the largest AdmissionReview accepted (default 4 MiB: a pod is at most ~1.5 MiB in etcd, and the review wraps it) */
  readonly maxBodyBytes?: number;
}

export interface WebhookServer {
  /** bind and start serving; resolves with the address bound (`127.0.0.1:41234`) */
  listen(address: HostPort): Promise<string>;
  /** new connections use this certificate; throws (and changes nothing) when the TLS stack refuses it */
  setCertificate(cert: ServingCert): void;
  /** readiness 503, stop accepting, let in-flight reviews finish; resolves true when none had to be cut */
  drain(timeoutMs: number): Promise<boolean>;
}

export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
const ROUTES = 'POST /mutate, GET /livez, GET /readyz, GET /metrics';
const HANDSHAKE_TIMEOUT_MS = 10_000;
const HEADERS_TIMEOUT_MS = 10_000;
/** the API server's webhook timeout is at most 30 s */
const REQUEST_TIMEOUT_MS = 30_000;
/**
 * Longer than the API server's idle-connection timeout (90 s), so the client closes idle
 * connections first: a POST on a connection the server is just closing is not retried, and
 * with failurePolicy Fail that would fail a pod creation.
 */
const KEEP_ALIVE_TIMEOUT_MS = 120_000;

interface State {
  readonly injector: InjectorSettings;
  readonly log: Logger;
  readonly metrics: WebhookMetrics;
  readonly maxBodyBytes: number;
  serving: boolean;
  draining: boolean;
}

export function createWebhookServer(options: WebhookServerOptions): WebhookServer {
  const state: State = {
    injector: options.injector,
    log: options.log,
    metrics: createWebhookMetrics(options.registry),
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    serving: false,
    draining: false,
  };
  const tlsOptions = servingContextOptions(options.cert, options.policy);
  checkServingContext(tlsOptions);
  const server = https.createServer({ ...tlsOptions, handshakeTimeout: HANDSHAKE_TIMEOUT_MS }, (req, res) =>
    handle(state, req, res),
  );
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.on('tlsClientError', (err: NodeJS.ErrnoException) => {
    state.log.debug({ code: err.code ?? 'error', err: err.message }, 'TLS handshake failed');
  });

  return {
    listen(address) {
      return new Promise((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        server.once('error', onError);
        server.listen(address.port, address.host, () => {
          server.removeListener('error', onError);
          server.on('error', (err) => state.log.error({ err: err.message }, 'webhook server error'));
          state.serving = true;
          const bound = server.address() as AddressInfo;
          resolve(formatHostPort({ host: bound.address, port: bound.port }));
        });
      });
    },
    setCertificate(cert) {
      const next = servingContextOptions(cert, options.policy);
      checkServingContext(next);
      server.setSecureContext(next);
    },
    drain(timeoutMs) {
      state.draining = true;
      return new Promise((resolve) => {
        let done = false;
        const timer = setTimeout(() => {
          if (done) return;
          done = true;
          server.closeAllConnections();
          resolve(false);
        }, timeoutMs);
        timer.unref();
        server.close(() => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(true);
        });
        server.closeIdleConnections();
      });
    },
  };
}

function handle(state: State, req: IncomingMessage, res: ServerResponse): void {
  // a draining server tells keep-alive clients to reconnect (to another replica)
  if (state.draining) res.setHeader('connection', 'close');
  const path = (req.url ?? '/').split('?')[0];
  switch (path) {
    case '/mutate':
      if (req.method !== 'POST') return methodNotAllowed(req, res, 'POST');
      return void admit(state, req, res);
    case '/livez':
      if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(req, res, 'GET, HEAD');
      return sendJson(res, 200, { status: 'ok' });
    case '/readyz': {
      if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(req, res, 'GET, HEAD');
      const ready = state.serving && !state.draining;
      return sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'draining' });
    }
    case '/metrics':
      if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(req, res, 'GET, HEAD');
      return void serveMetrics(state, res);
    default:
      drainRequest(req);
      return sendJson(res, 404, {
        error: 'not_found',
        message: `no route ${req.method ?? ''} ${path ?? ''}; the webhook serves ${ROUTES}`,
      });
  }
}

async function serveMetrics(state: State, res: ServerResponse): Promise<void> {
  const registry = state.metrics.registry;
  let text: string;
  try {
    text = await registry.metrics();
  } catch (err) {
    state.log.error({ err: (err as Error).message }, 'metrics could not be collected');
    return sendJson(res, 500, { error: 'internal', message: 'the metrics could not be collected' });
  }
  res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(text) });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

/** One POST /mutate, answered whatever happens, then counted and timed. */
async function admit(state: State, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = process.hrtime.bigint();
  let result: AdmissionResult;
  try {
    result = await mutate(state, req, res, started);
  } catch (err) {
    state.log.error({ err: (err as Error).message }, 'admission review failed unexpectedly');
    if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: 'the review could not be answered' });
    else res.destroy();
    result = 'internal';
  }
  state.metrics.admission(result, Number(process.hrtime.bigint() - started) / 1e9);
}

/** Answer one POST /mutate; resolves with what it came to (for the metrics). */
async function mutate(
  state: State,
  req: IncomingMessage,
  res: ServerResponse,
  started: bigint,
): Promise<AdmissionResult> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    drainRequest(req);
    return failed(
      res,
      415,
      'unsupported_media_type',
      `content-type must be application/json (got ${JSON.stringify(type)})`,
    );
  }
  const body = await readBody(req, state.maxBodyBytes);
  if (!body.ok) {
    res.setHeader('connection', 'close');
    return failed(res, body.status, body.status === 413 ? 'too_large' : 'bad_request', body.message);
  }
  const parsed = parseAdmissionReview(body.text);
  if (!parsed.ok) {
    state.log.warn({ message: parsed.message }, 'malformed admission review');
    return failed(res, 400, 'bad_review', parsed.message);
  }
  const { answer, outcome, decision } = reviewAdmission(parsed.request, state.injector);
  const request = parsed.request;
  const meta = podMeta(request.object);
  state.log.info(
    {
      uid: request.uid,
      namespace: request.namespace,
      ...meta,
      operation: request.operation,
      dryRun: request.dryRun,
      outcome,
      ...(decision?.kind === 'deny' ? { reason: decision.message } : {}),
      ms: Number(process.hrtime.bigint() - started) / 1e6,
    },
    'admission reviewed',
  );
  sendJson(res, 200, answer);
  return outcome;
}

/** A POST /mutate answered with an error instead of a review: `error` names it in the body and in the metrics. */
function failed(
  res: ServerResponse,
  status: number,
  error: Exclude<AdmissionFailure, 'internal'>,
  message: string,
): AdmissionResult {
  sendJson(res, status, { error, message });
  return error;
}

type BodyRead = { ok: true; text: string } | { ok: false; status: number; message: string };

function readBody(req: IncomingMessage, limit: number): Promise<BodyRead> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.resolve({
      ok: false,
      status: 413,
      message: `the body is ${declared} bytes; at most ${limit} are accepted`,
    });
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (result: BodyRead): void => {
      if (settled) return;
      settled = true;
      req.removeListener('data', onData);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        req.resume(); // discard the rest; the response closes the connection
        settle({ ok: false, status: 413, message: `the body is over ${limit} bytes` });
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => settle({ ok: true, text: Buffer.concat(chunks).toString('utf8') }));
    req.once('error', (err) =>
      settle({ ok: false, status: 400, message: `the request body could not be read: ${err.message}` }),
    );
    req.once('close', () => {
      if (!req.complete)
        settle({ ok: false, status: 400, message: 'the client closed the connection before the body was complete' });
    });
  });
}

/** names that identify a pod in a log line (a controller's pod has only generateName at admission) */
function podMeta(object: unknown): { name?: string; generateName?: string } {
  if (typeof object !== 'object' || object === null) return {};
  const metadata = (object as { metadata?: unknown }).metadata;
  if (typeof metadata !== 'object' || metadata === null) return {};
  const { name, generateName } = metadata as { name?: unknown; generateName?: unknown };
  return {
    ...(typeof name === 'string' ? { name } : {}),
    ...(typeof generateName === 'string' ? { generateName } : {}),
  };
}

function methodNotAllowed(req: IncomingMessage, res: ServerResponse, allow: string): void {
  drainRequest(req);
  res.setHeader('allow', allow);
  sendJson(res, 405, { error: 'method_not_allowed', message: `${req.method ?? ''} is not allowed here; use ${allow}` });
}

function drainRequest(req: IncomingMessage): void {
  req.resume();
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}
