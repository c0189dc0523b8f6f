import pino, { type Logger, type DestinationStream } from 'pino';

/**
 * The root logger: pino JSON lines, created by main (never at module level).
 * Redaction is compiled once here: credentials in headers, signature material,
 * and any field that could hold key material.
 */
export const REDACT_PATHS = [
  'headers.authorization',
  'headers.cookie',
  'headers["set-cookie"]',
  'headers.signature',
  'headers["signature-input"]',
  'headers["proxy-authorization"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers.signature',
  'req.headers["signature-input"]',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'key',
  'keyPem',
  'privateKey',
  'secret',
  'token',
  '*.key',
  '*.keyPem',
  '*.privateKey',
  '*.secret',
  '*.token',
] as const;

export interface LoggerOptions {
  readonly level: string;
  /** where lines go; stdout by default */
  readonly destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level,
      base: { pid: process.pid },
      redact: { paths: [...REDACT_PATHS], censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false, minLength: 0 }),
  );
}
