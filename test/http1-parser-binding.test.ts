/**
 * Node's llhttp binding as this runtime offers it, through src/http1/parserBinding.ts: the
 * strict-mode behaviour the HTTP/1.1 core builds on (docs/architecture.md, "The HTTP/1.1 core"),
 * pinned one case per subtest, plus what the core relies on
 * beyond the table (pipelined messages in one execute, kOnBody's buffers, HEAD responses,
 * maxHeaderSize, a coding list llhttp accepts but the core must refuse itself). If a Node
 * upgrade changes one of these, this file says which.
 */
import t from 'tap';
import { loadHttpParser, ParserUnavailableError, STRICT, type ParseError } from '../src/http1/parserBinding.ts';

const binding = loadHttpParser();
const HEAD_LIMIT = 16 * 1024;

/** One callback as it fired, in order; `exec`/`finish` record what those calls returned. */
type Event =
  | {
      kind: 'head';
      method: string | null;
      url: string;
      status: number;
      statusMessage: string;
      headers: string[];
      upgrade: boolean;
      keepAlive: boolean;
    }
  | { kind: 'body'; bytes: string; buffer: Buffer }
  | { kind: 'complete' }
  | { kind: 'exec'; consumed: number | null; error: string | null }
  | { kind: 'finish'; error: string | null };

interface RunOptions {
  /** kOnHeadersComplete returns this (1: a response to HEAD, no body follows) */
  readonly headResult?: number;
  readonly maxHeaderSize?: number;
  /** call finish() after the last chunk */
  readonly finish?: boolean;
}

/** A strict parser of `type` fed `chunks` (latin1 strings or buffers), recording every callback and every return value. */
function parse(type: number, chunks: ReadonlyArray<string | Buffer>, opts: RunOptions = {}): Event[] {
  const events: Event[] = [];
  const p = binding.create();
  p.initialize(type, {}, opts.maxHeaderSize ?? HEAD_LIMIT, STRICT);
  let pending: string[] = [];
  p[binding.kOnHeaders] = (headers: string[]) => {
    pending = pending.concat(headers);
  };
  p[binding.kOnHeadersComplete] = (
    _major: number,
    _minor: number,
    headers: string[] | undefined,
    method: number | undefined,
    url: string | undefined,
    status: number | undefined,
    statusMessage: string | undefined,
    upgrade: boolean,
    keepAlive: boolean,
  ): number => {
    events.push({
      kind: 'head',
      method: typeof method === 'number' ? (binding.methods[method] ?? null) : null,
      url: url ?? '',
      status: status ?? 0,
      statusMessage: statusMessage ?? '',
      headers: pending.concat(headers ?? []),
      upgrade,
      keepAlive,
    });
    pending = [];
    return opts.headResult ?? 0;
  };
  p[binding.kOnBody] = (buffer: Buffer) => events.push({ kind: 'body', bytes: buffer.toString('latin1'), buffer });
  p[binding.kOnMessageComplete] = () => events.push({ kind: 'complete' });
  try {
    for (const chunk of chunks) {
      const r = p.execute(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
      events.push(
        r instanceof Error
          ? { kind: 'exec', consumed: null, error: (r as ParseError).code }
          : { kind: 'exec', consumed: r, error: null },
      );
      if (r instanceof Error) break;
    }
    if (opts.finish === true) {
      const f = p.finish();
      events.push({ kind: 'finish', error: f instanceof Error ? (f as ParseError).code : null });
    }
  } finally {
    p.close();
    p.free();
  }
  return events;
}

/** The events as short strings, for whole-sequence comparisons. */
function outline(events: readonly Event[]): string[] {
  return events.map((e) => {
    switch (e.kind) {
      case 'head':
        return e.method === null ? `head ${e.status}` : `head ${e.method} ${e.url}`;
      case 'body':
        return `body ${e.bytes}`;
      case 'complete':
        return 'complete';
      case 'exec':
        return e.error === null ? `exec ${e.consumed}` : `error ${e.error}`;
      case 'finish':
        return e.error === null ? 'finish' : `finish error ${e.error}`;
    }
  });
}

function heads(events: readonly Event[]): Array<Extract<Event, { kind: 'head' }>> {
  return events.filter((e): e is Extract<Event, { kind: 'head' }> => e.kind === 'head');
}

const REQ = binding.REQUEST;
const RES = binding.RESPONSE;

/* ------------------------------------------------------------------ the guard */

t.test('loadHttpParser returns the binding with the method table', async (t) => {
  t.ok(binding.methods.includes('GET'), 'GET is in the method table');
  t.ok(binding.methods.includes('CONNECT'), 'CONNECT is in the method table');
  t.not(binding.REQUEST, binding.RESPONSE, 'REQUEST and RESPONSE differ');
  for (const slot of ['kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete', 'kOnExecute'] as const) {
    t.type(binding[slot], 'number', `${slot} is a slot number`);
  }
  t.ok(Object.isFrozen(binding.methods), 'the method table is frozen');
});

t.test('ParserUnavailableError names the runtime to use', async (t) => {
  const e = new ParserUnavailableError('HTTPParser is missing');
  t.equal(e.name, 'ParserUnavailableError');
  t.match(e.message, 'node_modules/.bin/node', 'the message names the Node.js npm ci installs');
  t.match(e.message, 'HTTPParser is missing', 'the message names what is missing');
  t.match(e.message, process.version, 'the message names this runtime');
  t.notMatch(e.message, '\n', 'one line');
});

/* ------------------------------------------------------------------ the table, requests */

t.test(
  'request with Content-Length and Transfer-Encoding: HPE_INVALID_TRANSFER_ENCODING before any callback',
  async (t) => {
    const ev = parse(REQ, [
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    ]);
    t.same(outline(ev), ['error HPE_INVALID_TRANSFER_ENCODING'], 'no head, no body: only the error');
  },
);

t.test('request with Transfer-Encoding: chunked twice: HPE_INVALID_TRANSFER_ENCODING', async (t) => {
  const ev = parse(REQ, [
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  ]);
  t.same(outline(ev), ['error HPE_INVALID_TRANSFER_ENCODING']);
});

t.test('request with two different Content-Length: HPE_UNEXPECTED_CONTENT_LENGTH', async (t) => {
  const ev = parse(REQ, ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd']);
  t.same(outline(ev), ['error HPE_UNEXPECTED_CONTENT_LENGTH']);
});

t.test('request with an obs-fold continuation line: HPE_INVALID_HEADER_TOKEN', async (t) => {
  const ev = parse(REQ, ['GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n']);
  t.same(outline(ev), ['error HPE_INVALID_HEADER_TOKEN']);
});

t.test('request with bare LF line endings: HPE_INVALID_VERSION', async (t) => {
  const ev = parse(REQ, ['GET / HTTP/1.1\nHost: a\n\n']);
  t.same(outline(ev), ['error HPE_INVALID_VERSION']);
});

t.test(
  'request with Transfer-Encoding: gzip: the head callback fires FIRST, then HPE_INVALID_TRANSFER_ENCODING',
  async (t) => {
    const ev = parse(REQ, ['POST /coded HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc']);
    t.same(
      outline(ev),
      ['head POST /coded', 'error HPE_INVALID_TRANSFER_ENCODING'],
      'a head was delivered by the same execute that then failed',
    );
    t.same(heads(ev)[0]?.headers, ['Host', 'a', 'Transfer-Encoding', 'gzip'], 'the head carried the coding');
  },
);

t.test('request with chunk extensions: accepted, body delivered', async (t) => {
  const input =
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;foo=bar\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n';
  const ev = parse(REQ, [input]);
  t.same(
    outline(ev),
    ['head POST /', 'body abc', 'body de', 'complete', `exec ${input.length}`],
    'every byte consumed, no error',
  );
});

t.test(
  'request with Upgrade: websocket: upgrade=true, message complete, execute stops where the tunnel bytes start',
  async (t) => {
    const input =
      'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05TUNNEL BYTES';
    const ev = parse(REQ, [input]);
    t.same(
      outline(ev),
      ['head GET /ws', 'complete', `exec ${input.indexOf('\x81')}`],
      'the return value is the offset of the first tunnel byte',
    );
    t.equal(heads(ev)[0]?.upgrade, true, 'upgrade flag');
  },
);

t.test('CONNECT: upgrade=true, message complete, execute stops where the tunnel bytes start', async (t) => {
  const input = 'CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\nTUNNEL';
  const ev = parse(REQ, [input]);
  t.same(outline(ev), ['head CONNECT example.org:443', 'complete', `exec ${input.indexOf('TUNNEL')}`]);
  t.equal(heads(ev)[0]?.upgrade, true, 'upgrade flag');
});

/* ------------------------------------------------------------------ the table, responses */

t.test('response with Content-Length and Transfer-Encoding: HPE_INVALID_TRANSFER_ENCODING', async (t) => {
  const ev = parse(RES, ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n']);
  t.same(outline(ev), ['error HPE_INVALID_TRANSFER_ENCODING']);
});

t.test('response 100 Continue then 200: two messages', async (t) => {
  const input = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
  const ev = parse(RES, [input]);
  t.same(outline(ev), ['head 100', 'complete', 'head 200', 'body ok', 'complete', `exec ${input.length}`]);
});

t.test('response without a length: the body runs until finish()', async (t) => {
  const head = 'HTTP/1.1 200 OK\r\n\r\nabc';
  const ev = parse(RES, [head, 'def'], { finish: true });
  t.same(
    outline(ev),
    ['head 200', 'body abc', `exec ${head.length}`, 'body def', 'exec 3', 'complete', 'finish'],
    'complete fires only at finish()',
  );
  t.equal(heads(ev)[0]?.keepAlive, false, 'a close-delimited response is not keep-alive');
});

/* ------------------------------------------------------------------ beyond the table */

t.test('pipelined requests in one execute: several head/body/complete sequences', async (t) => {
  const input =
    'GET /a HTTP/1.1\r\nHost: a\r\n\r\n' +
    'POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi' +
    'POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n';
  const ev = parse(REQ, [input]);
  t.same(outline(ev), [
    'head GET /a',
    'complete',
    'head POST /b',
    'body hi',
    'complete',
    'head POST /c',
    'body x',
    'complete',
    `exec ${input.length}`,
  ]);
});

t.test('kOnBody gives a Buffer holding the body bytes of the chunk, a copy on this runtime (not a view)', async (t) => {
  // A view into the chunk was expected; Node 24.21.0's binding copies (Buffer::Copy).
  // Pinned so a change either way is noticed: a view must be copied by whoever keeps it.
  const chunk = Buffer.alloc(32 * 1024, 0x2e);
  const msg = Buffer.from('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello', 'latin1');
  msg.copy(chunk);
  const ev = parse(REQ, [chunk.subarray(0, msg.length)]);
  const body = ev.find((e): e is Extract<Event, { kind: 'body' }> => e.kind === 'body');
  t.ok(body !== undefined, 'one body callback');
  if (body === undefined) return;
  t.ok(Buffer.isBuffer(body.buffer), 'a Buffer');
  t.equal(body.bytes, 'hello', 'the body bytes');
  t.not(body.buffer.buffer, chunk.buffer, 'its memory is not the chunk’s');
  chunk[msg.length - 5] = 0x48;
  t.equal(body.buffer.toString('latin1'), 'hello', 'changing the chunk afterwards does not change what kOnBody gave');
});

t.test('a RESPONSE parser whose kOnHeadersComplete returns 1 (HEAD) skips the body', async (t) => {
  const input = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
  const ev = parse(RES, [input], { headResult: 1 });
  t.same(
    outline(ev),
    ['head 200', 'complete', 'head 200', 'complete', `exec ${input.length}`],
    'no body: the next bytes are the next response',
  );
  const plain = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello';
  const withBody = parse(RES, [plain]);
  t.same(
    outline(withBody),
    ['head 200', 'body hello', 'complete', `exec ${plain.length}`],
    'returning 0 reads the body',
  );
});

t.test('a head over maxHeaderSize: HPE_HEADER_OVERFLOW', async (t) => {
  const ev = parse(REQ, [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(2048)}\r\n\r\n`], { maxHeaderSize: 1024 });
  t.same(outline(ev), ['error HPE_HEADER_OVERFLOW']);
  const fits = parse(REQ, [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(512)}\r\n\r\n`], { maxHeaderSize: 1024 });
  t.same(outline(fits).slice(0, 2), ['head GET /', 'complete'], 'a head under the limit parses');
});

t.test(
  'Transfer-Encoding: gzip, chunked (chunked last) is ACCEPTED by llhttp: the core must check codings itself',
  async (t) => {
    const input = 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    const ev = parse(REQ, [input]);
    t.same(outline(ev), ['head POST /', 'body abc', 'complete', `exec ${input.length}`], 'no error');
    t.same(heads(ev)[0]?.headers, ['Host', 'a', 'Transfer-Encoding', 'gzip, chunked']);
  },
);

t.test(
  'kOnHeadersComplete returning 2 ends the message with its head; execute returns where the body starts, and parsing goes on after it',
  async (t) => {
    // what the core relies on to take bodies of known length straight from the bytes read (serverConnection.ts, upstreamConnection.ts)
    const head = 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n';
    const next = 'GET /b HTTP/1.1\r\nHost: x\r\n\r\n';
    const first = parse(REQ, [`${head}abc${next}`], { headResult: 2 });
    t.same(
      outline(first),
      ['head POST /a', 'complete', `exec ${head.length}`],
      'no body callback: execute stops right after the head',
    );
    // the same parser, fed what follows the body, parses the next request (2 only for the first head here)
    const p = binding.create();
    p.initialize(REQ, {}, HEAD_LIMIT, STRICT);
    const seen: string[] = [];
    let n = 0;
    p[binding.kOnHeadersComplete] = (_a: number, _b: number, _h: string[], _m: number, url: string) => {
      seen.push(`head ${url}`);
      return n++ === 0 ? 2 : 0;
    };
    p[binding.kOnBody] = (b: Buffer) => seen.push(`body ${b.toString('latin1')}`);
    p[binding.kOnMessageComplete] = () => seen.push('complete');
    try {
      const bytes = Buffer.from(`${head}abc${next}`, 'latin1');
      const r = p.execute(bytes);
      t.equal(r, head.length, 'stopped after the head');
      const r2 = p.execute(bytes.subarray(head.length + 3));
      t.equal(r2, next.length, 'the next request parsed whole');
      t.same(seen, ['head /a', 'complete', 'head /b', 'complete']);
      // a response parser behaves the same
      const res = parse(RES, ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'], { headResult: 2 });
      t.same(outline(res), ['head 200', 'complete', 'exec 38'], 'a response: stops after its head too');
    } finally {
      p.close();
      p.free();
    }
  },
);
