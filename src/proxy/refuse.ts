import type { ServerResponse } from 'node:http';
import { ERRORS, REFUSAL_BODIES, type ErrorCode } from '../core/errors.ts';

/**
 * Answer a refused request: the status from the error table, `x-tollgate-error`, and a small
 * JSON body that names the code and nothing secret. `close` ends the connection after it
 * (used when the request body was not read, or the peer is not allowed at all).
 */
export function refuse(res: ServerResponse, code: ErrorCode, close: boolean, extraHeaders?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = REFUSAL_BODIES[code];
  res.statusCode = ERRORS[code].status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', body.length);
  res.setHeader('x-tollgate-error', code);
  if (extraHeaders !== undefined) for (const name in extraHeaders) res.setHeader(name, extraHeaders[name]!);
  if (close) res.shouldKeepAlive = false;
  res.end(body);
}
