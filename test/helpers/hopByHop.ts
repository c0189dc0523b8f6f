/**
 * RFC 9110 §7.6.1's hop-by-hop fields (with the request-only `expect` and HTTP/2's upgrade field),
 * lowercase: the tests' oracle, listed here on purpose rather than imported from src/http1/fields.ts,
 * so the oracle does not borrow from the code under test.
 */
export const HOP_BY_HOP_NAMES: readonly string[] = [
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
];
