/**
 * Why tollgate sent an HTTP/2 connection GOAWAY: the `reason` label of
 * tollgate_http2_goaways_total. A flood of streams cancelled as soon as opened (rapid reset),
 * of PINGs or of SETTINGS; a flood nghttp2 detects itself (CONTINUATION frames, control frames
 * the client does not read); any other protocol error; a connection idle too long; a drain.
 */
export const GOAWAY_REASONS = [
  'rapid_reset',
  'ping_flood',
  'settings_flood',
  'flood',
  'protocol_error',
  'idle',
  'drain',
] as const;

export type GoawayReason = (typeof GOAWAY_REASONS)[number];
