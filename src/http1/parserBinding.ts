import { createRequire } from 'node:module';

/**
 * Node's own llhttp binding, the parser node:http uses, reached through `_http_common`. It is
 * internal to Node, so what the core relies on is checked once at start (`loadHttpParser`);
 * the runtime is pinned, so a failure here means a wrong runtime, reported in one line.
 *
 * A parser gets its callbacks by assignment to numeric slots (the kOn… constants). In strict
 * mode (lenient flags 0) llhttp refuses CL with TE, two lengths, obs-fold, bare LF and more;
 * test/http1-parser-binding.test.ts pins that behaviour on this runtime.
 */

/** An error execute() returns: `code` is llhttp's (HPE_…), `bytesParsed` where it stopped. */
export interface ParseError extends Error {
  readonly code: string;
  readonly bytesParsed: number;
  readonly reason?: string;
}

/** What one parser object offers (the subset the core uses). */
export interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  /** bytes consumed, or the error that stopped parsing */
  execute(chunk: Buffer): number | ParseError;
  /** end of input: completes a close-delimited message; an error if a message was cut */
  finish(): undefined | ParseError;
  close(): void;
  free(): void;
  remove(): void;
  [slot: number]: unknown;
}

export interface HttpParserBinding {
  readonly REQUEST: number;
  readonly RESPONSE: number;
  readonly kOnMessageBegin: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
  readonly kOnExecute: number;
  /** method index -> method name */
  readonly methods: readonly string[];
  create(): LlhttpParser;
}

const SLOTS = [
  'REQUEST',
  'RESPONSE',
  'kOnMessageBegin',
  'kOnHeaders',
  'kOnHeadersComplete',
  'kOnBody',
  'kOnMessageComplete',
  'kOnExecute',
] as const;
const METHODS = ['initialize', 'execute', 'finish', 'close', 'free', 'remove'] as const;

/** Thrown when this runtime's llhttp binding lacks what the core uses. */
export class ParserUnavailableError extends Error {
  constructor(what: string) {
    super(
      `this Node.js runtime (${process.version}) does not offer the HTTP parser binding tollgate needs (${what}); run tollgate with the Node.js that npm ci installs (node_modules/.bin/node)`,
    );
    this.name = 'ParserUnavailableError';
  }
}

/** Load and check the binding; throws ParserUnavailableError with one clear line. */
export function loadHttpParser(): HttpParserBinding {
  let common: { HTTPParser?: (new () => LlhttpParser) & Record<string, unknown>; methods?: string[] };
  try {
    common = createRequire(import.meta.url)('_http_common') as typeof common;
  } catch {
    throw new ParserUnavailableError('_http_common cannot be loaded');
  }
  const P = common.HTTPParser;
  if (typeof P !== 'function') throw new ParserUnavailableError('HTTPParser is missing');
  for (const slot of SLOTS)
    if (typeof P[slot] !== 'number') throw new ParserUnavailableError(`HTTPParser.${slot} is missing`);
  for (const m of METHODS)
    if (typeof (P.prototype as Record<string, unknown>)[m] !== 'function')
      throw new ParserUnavailableError(`HTTPParser#${m} is missing`);
  if (!Array.isArray(common.methods) || !common.methods.includes('GET'))
    throw new ParserUnavailableError('the method table is missing');
  const Ctor = P;
  return {
    REQUEST: P.REQUEST as number,
    RESPONSE: P.RESPONSE as number,
    kOnMessageBegin: P.kOnMessageBegin as number,
    kOnHeaders: P.kOnHeaders as number,
    kOnHeadersComplete: P.kOnHeadersComplete as number,
    kOnBody: P.kOnBody as number,
    kOnMessageComplete: P.kOnMessageComplete as number,
    kOnExecute: P.kOnExecute as number,
    methods: Object.freeze([...common.methods]),
    create: () => new Ctor(),
  };
}

/** llhttp's strict mode: no leniency at all (node:http's default without insecureHTTPParser). */
export const STRICT = 0;
