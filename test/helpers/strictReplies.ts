/**
 * What a client received, read back strictly: the bytes parsed as HTTP/1.1 responses by Node's
 * llhttp in strict mode (the same parser tollgate uses, so a stray or ambiguous byte shows up as a
 * parse error rather than being guessed at). Shared by the corpus tests.
 */
import { loadHttpParser, STRICT } from '../../src/http1/parserBinding.ts';

const llhttp = loadHttpParser();

export interface Reply {
  readonly status: number;
  /** raw name/value pairs, flat as node gives them */
  readonly headers: string[];
  body: Buffer;
  complete: boolean;
}

export interface Replies {
  readonly replies: Reply[];
  /** the llhttp error the bytes hit, if any (a malformed or, once ended, a truncated answer) */
  readonly error: string | null;
}

/** Parse everything the client received as HTTP/1.1 responses, strictly; `ended`: the connection closed. */
export function parseReplies(bytes: Buffer, ended: boolean): Replies {
  const replies: Reply[] = [];
  const p = llhttp.create();
  p.initialize(llhttp.RESPONSE, {}, 64 * 1024, STRICT);
  let pending: string[] = [];
  p[llhttp.kOnHeaders] = (h: string[]) => (pending = pending.concat(h));
  p[llhttp.kOnHeadersComplete] = (
    _a: number,
    _b: number,
    h: string[] | undefined,
    _m: unknown,
    _u: unknown,
    status: number,
  ) => {
    replies.push({ status, headers: pending.concat(h ?? []), body: Buffer.alloc(0), complete: false });
    pending = [];
    return 0;
  };
  p[llhttp.kOnBody] = (b: Buffer) => {
    const last = replies.at(-1)!;
    last.body = Buffer.concat([last.body, b]);
  };
  p[llhttp.kOnMessageComplete] = () => (replies.at(-1)!.complete = true);
  let error: string | null = null;
  try {
    const r = bytes.length > 0 ? p.execute(bytes) : 0;
    if (r instanceof Error) error = (r as Error & { code: string }).code;
    else if (ended) {
      const f = p.finish();
      if (f instanceof Error) error = (f as Error & { code: string }).code;
    }
  } finally {
    p.close();
    p.free();
  }
  return { replies, error };
}

/** A field of a reply (first occurrence, `name` lowercased), or undefined. */
export function header(reply: Reply | undefined, name: string): string | undefined {
  if (reply === undefined) return undefined;
  for (let i = 0; i < reply.headers.length; i += 2)
    if (reply.headers[i]!.toLowerCase() === name) return reply.headers[i + 1];
  return undefined;
}
