/**
 * HTTP/2 error codes (RFC 9113 §7) as numbers, so the modules that only name them need not load
 * node:http2 (about 5 MiB of a process that may never see an HTTP/2 connection).
 */
export const H2_NO_ERROR = 0x0;
export const H2_REFUSED_STREAM = 0x7;
export const H2_ENHANCE_YOUR_CALM = 0xb;
