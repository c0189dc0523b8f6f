/**
 * HTTP/2 frames by hand, for the abuse tests: a client that writes exactly the frames a test
 * asks for (RFC 9113 §4–6), whatever a well-behaved client would refuse to send, and reads
 * back every frame the server sends.
 *
 *   const c = await h2Connect(pl.inbound.addr, { ca, cert, key }, 10_000);
 *   await c.handshake([[SETTING.INITIAL_WINDOW_SIZE, 0]]);     // preface, SETTINGS, both acknowledged
 *   c.send(headersFrame(1, requestBlock('GET', '/big'), FLAG.END_STREAM | FLAG.END_HEADERS));
 *   const rst = await c.waitFor((f) => f.type === FRAME.RST_STREAM && f.streamId === 1, 'a reset');
 *
 * Request heads are HPACK literals without indexing and without Huffman coding (RFC 7541
 * §6.2.2), so no encoder state is needed. Response heads are decoded for what the static table
 * and plain literals carry: the client advertises SETTINGS_HEADER_TABLE_SIZE 0, so the server
 * keeps no dynamic table; a Huffman-coded string is given as null.
 */
import tls from 'node:tls';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** frame types (RFC 9113 §6) */
export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** frame flags (END_STREAM and ACK share a bit; which one it is depends on the type) */
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

/** SETTINGS identifiers (RFC 9113 §6.5.2) */
export const SETTING = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** error codes (RFC 9113 §7) */
export const H2_ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/* ------------------------------------------------------------------------------ writing frames */

/** One frame: a 9-byte header (24-bit length, type, flags, 31-bit stream id) and its payload (§4.1). */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

export function settingsFrame(entries: ReadonlyArray<readonly [number, number]> = []): Buffer {
  const payload = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, payload);
}

export function settingsAck(): Buffer {
  return frame(FRAME.SETTINGS, FLAG.ACK, 0);
}

export function pingFrame(opaque: Buffer, ack = false): Buffer {
  if (opaque.length !== 8) throw new Error('a PING carries 8 bytes');
  return frame(FRAME.PING, ack ? FLAG.ACK : 0, 0, opaque);
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, payload);
}

export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment & 0x7fffffff);
  return frame(FRAME.WINDOW_UPDATE, 0, streamId, payload);
}

export function goawayFrame(lastStreamId: number, code: number): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(lastStreamId & 0x7fffffff, 0);
  payload.writeUInt32BE(code, 4);
  return frame(FRAME.GOAWAY, 0, 0, payload);
}

export function dataFrame(streamId: number, data: Buffer, endStream = false): Buffer {
  return frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, streamId, data);
}

export function headersFrame(streamId: number, block: Buffer, flags: number): Buffer {
  return frame(FRAME.HEADERS, flags, streamId, block);
}

export function continuationFrame(streamId: number, block: Buffer, endHeaders: boolean): Buffer {
  return frame(FRAME.CONTINUATION, endHeaders ? FLAG.END_HEADERS : 0, streamId, block);
}

/* ------------------------------------------------------------------------------ HPACK, the little needed */

/** An integer with an N-bit prefix (RFC 7541 §5.1); `high` holds the bits above the prefix in the first byte. */
export function hpackInteger(value: number, prefixBits: number, high = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([high | value]);
  const out = [high | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

/** A string literal without Huffman coding (§5.2). */
function hpackString(s: string): Buffer {
  const bytes = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInteger(bytes.length, 7), bytes]);
}

/** One field as a literal without indexing, with a literal name (§6.2.2: first byte 0000 0000). */
export function literalField(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0]), hpackString(name), hpackString(value)]);
}

/** A request's header block: the pseudo-fields, then `fields` (names in lower case). */
export function requestBlock(
  method: string,
  path: string,
  fields: ReadonlyArray<readonly [string, string]> = [],
  authority = 'localhost',
): Buffer {
  const all: Array<readonly [string, string]> = [
    [':method', method],
    [':scheme', 'https'],
    [':authority', authority],
    [':path', path],
    ...fields,
  ];
  return Buffer.concat(all.map(([n, v]) => literalField(n, v)));
}

/** RFC 7541 Appendix A: the static table, index 1 to 61 */
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/** a decoded field: null where the string was Huffman-coded (not decoded here) */
export type DecodedField = readonly [string | null, string | null];

/**
 * The fields of a header block sent to a client that set SETTINGS_HEADER_TABLE_SIZE 0 (so no
 * dynamic table entry can be referenced). Throws on a reference it cannot resolve.
 */
export function decodeBlock(block: Buffer): DecodedField[] {
  const fields: DecodedField[] = [];
  let at = 0;
  const int = (prefixBits: number): number => {
    const max = (1 << prefixBits) - 1;
    let value = block[at++]! & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      const b = block[at++];
      if (b === undefined) throw new Error('HPACK integer runs past the block');
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) return value;
    }
  };
  const str = (): string | null => {
    const huffman = (block[at]! & 0x80) !== 0;
    const len = int(7);
    const bytes = block.subarray(at, at + len);
    at += len;
    return huffman ? null : bytes.toString('latin1');
  };
  const entry = (index: number): readonly [string, string] => {
    const e = STATIC_TABLE[index - 1];
    if (e === undefined) throw new Error(`HPACK index ${index} is not in the static table`);
    return e;
  };
  while (at < block.length) {
    const b = block[at]!;
    if ((b & 0x80) !== 0) {
      fields.push(entry(int(7))); // indexed field (§6.1)
    } else if ((b & 0xe0) === 0x20) {
      int(5); // dynamic table size update (§6.3)
    } else {
      const prefix = (b & 0xc0) === 0x40 ? 6 : 4; // with incremental indexing (§6.2.1), or without / never (§6.2.2–3)
      const index = int(prefix);
      const name = index === 0 ? str() : entry(index)[0];
      fields.push([name, str()]);
    }
  }
  return fields;
}

/* ------------------------------------------------------------------------------ reading frames */

/** Splits received bytes into frames (the server sends nothing before its SETTINGS, so no preface to skip). */
export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const out: Frame[] = [];
    while (this.buffered.length >= 9) {
      const length = this.buffered.readUIntBE(0, 3);
      if (this.buffered.length < 9 + length) break;
      out.push({
        type: this.buffered[3]!,
        flags: this.buffered[4]!,
        streamId: this.buffered.readUInt32BE(5) & 0x7fffffff,
        payload: this.buffered.subarray(9, 9 + length),
      });
      this.buffered = this.buffered.subarray(9 + length);
    }
    return out;
  }
}

export function settingsOf(f: Frame): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i + 6 <= f.payload.length; i += 6) m.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2));
  return m;
}

export interface Goaway {
  readonly lastStreamId: number;
  readonly code: number;
  readonly debug: string;
}

export function goawayOf(f: Frame): Goaway {
  return {
    lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff,
    code: f.payload.readUInt32BE(4),
    debug: f.payload.subarray(8).toString('latin1'),
  };
}

/** the error code of a RST_STREAM, or the increment of a WINDOW_UPDATE */
export function u32Of(f: Frame): number {
  return f.payload.readUInt32BE(0) & (f.type === FRAME.WINDOW_UPDATE ? 0x7fffffff : 0xffffffff);
}

/* ------------------------------------------------------------------------------ a raw connection */

export interface H2Creds {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface RawH2 {
  readonly socket: tls.TLSSocket;
  /** every frame received so far, in order */
  readonly frames: Frame[];
  closed(): boolean;
  /** write bytes (frames, or the preface); errors after the server closed are ignored */
  send(...bufs: Buffer[]): void;
  /** preface and SETTINGS (`entries`, plus HEADER_TABLE_SIZE 0), then wait for the server's SETTINGS and its ACK of ours */
  handshake(entries?: ReadonlyArray<readonly [number, number]>): Promise<Map<number, number>>;
  /** the first frame received (so far or from now) that matches; rejects after the wait, or once closed without one */
  waitFor(match: (f: Frame) => boolean, what: string): Promise<Frame>;
  /** resolves once the connection closed; rejects after the wait */
  waitClosed(what: string): Promise<void>;
  /** the GOAWAY received, if any */
  goaway(): Goaway | null;
  close(): void;
}

/**
 * A TLS connection offering ALPN h2 only, with a client certificate. Server SETTINGS are
 * acknowledged as they come (a client that never did so would be a different test); nothing
 * else is answered. Every wait is bounded by `waitMs`.
 */
export async function h2Connect(addr: string, creds: H2Creds, waitMs: number): Promise<RawH2> {
  const host = addr.slice(0, addr.lastIndexOf(':'));
  const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host, port, servername: 'localhost', ALPNProtocols: ['h2'], ...creds });
    const timer = setTimeout(() => s.destroy(new Error('not connected in time')), waitMs);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.removeListener('error', reject);
      if (s.alpnProtocol !== 'h2') reject(new Error(`ALPN chose ${String(s.alpnProtocol)}, not h2`));
      else resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  const reader = new FrameReader();
  const frames: Frame[] = [];
  let closed = false;
  const wakers = new Set<() => void>();
  const wake = (): void => {
    for (const f of [...wakers]) f();
  };
  const send = (...bufs: Buffer[]): void => {
    if (closed || socket.destroyed) return;
    socket.write(bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs));
  };
  socket.on('data', (chunk: Buffer) => {
    for (const f of reader.push(chunk)) {
      frames.push(f);
      if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0) send(settingsAck());
    }
    wake();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    closed = true;
    wake();
  });

  const until = <T>(probe: () => T | undefined, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const got = probe();
        if (got !== undefined) finish(() => resolve(got));
        else if (closed) finish(() => reject(new Error(`closed before ${what}`)));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`no ${what} within ${waitMs} ms`))), waitMs);
      const finish = (then: () => void): void => {
        clearTimeout(timer);
        wakers.delete(check);
        then();
      };
      wakers.add(check);
      check();
    });

  const waitFor = (match: (f: Frame) => boolean, what: string): Promise<Frame> => until(() => frames.find(match), what);

  return {
    socket,
    frames,
    closed: () => closed,
    send,
    async handshake(entries = []) {
      send(PREFACE, settingsFrame([[SETTING.HEADER_TABLE_SIZE, 0], ...entries]));
      const server = await waitFor(
        (f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0,
        "the server's SETTINGS",
      );
      await waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) !== 0, 'the ACK of our SETTINGS');
      return settingsOf(server);
    },
    waitFor,
    waitClosed: (what) => until(() => (closed ? true : undefined), what).then(() => undefined),
    goaway() {
      const f = frames.find((x) => x.type === FRAME.GOAWAY);
      return f === undefined ? null : goawayOf(f);
    },
    close() {
      socket.destroy();
    },
  };
}
