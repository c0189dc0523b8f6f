import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { ERRORS, REFUSAL_BODIES, type ErrorCode } from '../core/errors.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';

/**
 * Requests Node's HTTP parser refuses before our request path sees them — a head over
 * maxHeaderBytes, headers not finished within headersTimeoutSeconds, a malformed request —
 * answered like every other refusal (status, x-tollgate-error, JSON body, connection closed)
 * and accounted the same way: one log line, one metric increment, one audit event. A client
 * that simply went away is not a refusal and is dropped quietly.
 */
export interface ClientErrorDeps {
  readonly listener: string;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly audit: AuditSink;
}

/** the parser's refusals we answer; anything else (a reset, a TLS-level error) just ends the connection, as Node would */
function codeFor(err: NodeJS.ErrnoException): ErrorCode | null {
  const c = err.code ?? '';
  if (c === 'HPE_HEADER_OVERFLOW') return 'ERR_HEADERS_TOO_LARGE';
  if (c === 'ERR_HTTP_REQUEST_TIMEOUT') return 'ERR_HEADERS_TIMEOUT';
  if (c.startsWith('HPE_')) return 'ERR_BAD_REQUEST';
  return null;
}

const REASONS: Readonly<Partial<Record<ErrorCode, string>>> = {
  ERR_HEADERS_TOO_LARGE: 'Request Header Fields Too Large',
  ERR_HEADERS_TIMEOUT: 'Request Timeout',
  ERR_BAD_REQUEST: 'Bad Request',
};

export function attachClientErrorHandler(server: { on(event: 'clientError', fn: (err: Error, socket: Socket) => void): unknown }, deps: ClientErrorDeps): void {
  const refused = deps.metrics.requests.labels(deps.listener, 'default', '4xx');
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const code = codeFor(err);
    if (code === null || !socket.writable) {
      socket.destroy();
      return;
    }
    const body = REFUSAL_BODIES[code];
    refused.inc();
    deps.log.warn({ code, cause: err.code, remote: socket.remoteAddress }, 'request refused');
    deps.audit.record('request_refused', { listener: deps.listener, code, cause: err.code ?? null, remote: socket.remoteAddress ?? null });
    socket.end(
      `HTTP/1.1 ${ERRORS[code].status} ${REASONS[code] ?? 'Bad Request'}\r\n` +
        `content-type: application/json\r\ncontent-length: ${body.length}\r\nx-tollgate-error: ${code}\r\nconnection: close\r\n\r\n` +
        body.toString('latin1'),
    );
  });
}
