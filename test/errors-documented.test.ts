/**
 * One table of error codes, documented exactly: README.md's error table lists the codes of
 * src/core/errors.ts with the same statuses, the first set of codes the interface fixed is never
 * renamed or dropped (docs/reference.md, "Stability"), and a refusal tells the client the code and nothing secret.
 */
import t from 'tap';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { ERRORS, ERROR_CODES, REFUSAL_BODIES, TollgateError, type ErrorCode } from '../src/core/errors.ts';
import { refusalAnswer } from '../src/proxy/refusals.ts';
import { filesUnder } from './helpers/fileTree.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The first set of codes, as the public interface fixes them: add freely, never rename or drop. */
const INTERFACE_CODES: Readonly<Record<string, number>> = {
  ERR_PEER_NOT_ALLOWED: 403,
  ERR_SIG_MISSING: 401,
  ERR_SIG_MALFORMED: 400,
  ERR_SIG_COVERAGE: 401,
  ERR_SIG_UNKNOWN_KEY: 401,
  ERR_SIG_INVALID: 401,
  ERR_SIG_EXPIRED: 401,
  ERR_SIG_REPLAYED: 401,
  ERR_DIGEST_MISSING: 400,
  ERR_DIGEST_MISMATCH: 400,
  ERR_REPLAY_CACHE_FULL: 503,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_PAYLOAD_ANOMALY: 422,
  ERR_RATE_LIMITED: 429,
  ERR_UPSTREAM_UNAVAILABLE: 502,
  ERR_UPSTREAM_TIMEOUT: 504,
  ERR_UPSTREAM_IDENTITY: 502,
  ERR_DRAINING: 503,
};

/** Error codes that belong to Node, OpenSSL or undici, which src/ may name when classifying foreign errors. */
const FOREIGN_CODE = /^ERR_(TLS|SSL|OSSL|HTTP|HTTP2|STREAM|SOCKET|INVALID)_/;
const CODE_FORM = /^ERR_[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/;

interface DocRow {
  code: string;
  status: number;
  when: string;
}

/** Rows of the form `| ERR_… | NNN | when |`, wherever they are in the file. */
function errorTableRows(markdown: string): DocRow[] {
  const rows: DocRow[] = [];
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`?(ERR_[A-Z0-9_]+)`?\s*\|\s*(\d{3})\s*\|([^|]*)\|/.exec(line.trim());
    if (m !== null) rows.push({ code: m[1]!, status: Number(m[2]), when: m[3]!.trim() });
  }
  return rows;
}

async function readme(): Promise<string> {
  return readFile(join(ROOT, 'README.md'), 'utf8');
}

t.test("README's error table lists exactly the codes of the error table, with the same statuses", async (t) => {
  const rows = errorTableRows(await readme());
  t.ok(rows.length > 0, 'README.md has an error table with `| ERR_… | NNN |` rows');
  const documented = new Map<string, number>();
  for (const row of rows) {
    t.notOk(documented.has(row.code), `${row.code} is documented once`);
    documented.set(row.code, row.status);
    t.ok(row.when.length > 0, `${row.code}: the README says when it happens`);
  }
  t.same([...documented.keys()].sort(), [...ERROR_CODES].sort(), 'same set of codes');
  for (const code of ERROR_CODES) {
    t.equal(documented.get(code), ERRORS[code].status, `${code}: README status matches the code table`);
  }
});

t.test(
  'the error table keeps every code of the interface with its status, and every code has the stable form',
  async (t) => {
    for (const [code, status] of Object.entries(INTERFACE_CODES)) {
      t.equal(
        (ERRORS as Record<string, { status: number }>)[code]?.status,
        status,
        `${code} is in the table with status ${status}`,
      );
    }
    const reasons = new Set<string>();
    for (const code of ERROR_CODES) {
      const e = ERRORS[code];
      t.match(code, CODE_FORM, `${code}: ERR_ + upper-case words`);
      t.ok(
        Number.isInteger(e.status) && e.status >= 400 && e.status <= 599,
        `${code}: an HTTP error status (${e.status})`,
      );
      t.match(e.reason, /^[a-z][a-z0-9_]*$/, `${code}: metric reason is a snake_case label`);
      t.notOk(reasons.has(e.reason), `${code}: reason ${e.reason} is not shared with another code`);
      reasons.add(e.reason);
      const err = new TollgateError(code);
      t.equal(err.code, code, `${code}: TollgateError keeps the code`);
      t.equal(err.status, e.status, `${code}: TollgateError carries the table status`);
    }
  },
);

t.test('every ERR_ code named in src/ and in the README is in the table (or is a Node/OpenSSL code)', async (t) => {
  const known = new Set<string>(ERROR_CODES);
  const files = filesUnder(join(ROOT, 'src'), /\.ts$/);
  t.ok(files.length > 10, 'found the sources');
  const unknown: string[] = [];
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    for (const m of text.matchAll(/['"`](ERR_[A-Z0-9_]+)['"`]/g)) {
      const code = m[1]!;
      if (!known.has(code) && !FOREIGN_CODE.test(code)) unknown.push(`${file.slice(ROOT.length)}: ${code}`);
    }
  }
  t.same(unknown, [], 'no code is used in src/ without being in the table');

  const mentioned = new Set((await readme()).match(/\bERR_[A-Z0-9_]*[A-Z0-9]\b/g) ?? []);
  t.same(
    [...mentioned].filter((c) => !known.has(c) && !FOREIGN_CODE.test(c)),
    [],
    'the README mentions no code that is not in the table (or is a Node/OpenSSL code)',
  );
});

/** What a refusal body must never carry: key material, paths, addresses, stack traces, long opaque strings. */
const SECRET_SHAPES: ReadonlyArray<readonly [string, RegExp]> = [
  ['PEM block', /-----BEGIN/],
  ['private/secret/password/token wording', /\b(private|secret|password|passwd|token|bearer)\b/i],
  ['file path', /(^|[\s"'(])(\/|[A-Za-z]:\\)[^\s"']+/],
  ['host:port or IP address', /\b\d{1,3}(\.\d{1,3}){3}\b|\[[0-9a-f:]+\]|localhost:\d+/i],
  ['stack frame', /\bat .+:\d+:\d+/],
  ['long opaque string (hash, key, base64)', /[A-Za-z0-9+/=_-]{32,}/],
];

t.test('refusal bodies are exactly {error, message}, small, and reveal nothing secret', async (t) => {
  t.same(Object.keys(REFUSAL_BODIES).sort(), [...ERROR_CODES].sort(), 'one body per code');
  t.ok(Object.isFrozen(REFUSAL_BODIES), 'the table of bodies is frozen');
  for (const code of ERROR_CODES) {
    const raw = REFUSAL_BODIES[code].toString('utf8');
    const body = JSON.parse(raw) as Record<string, unknown>;
    t.same(Object.keys(body), ['error', 'message'], `${code}: exactly the keys error and message`);
    t.equal(body.error, code, `${code}: error is the code`);
    t.equal(body.message, ERRORS[code].message, `${code}: message is the table's message`);
    t.ok(typeof body.message === 'string' && body.message.length > 0, `${code}: message is not empty`);
    t.ok(raw.length <= 200, `${code}: small (${raw.length} bytes)`);
    for (const [what, shape] of SECRET_SHAPES)
      t.notMatch(String(body.message), shape, `${code}: message has no ${what}`);
  }
});

t.test(
  'a refused request gets the table status, x-tollgate-error and the JSON body (the bytes the request path writes)',
  async (t) => {
    // a raw server writing exactly the refusal bytes the HTTP/1.1 core sends, read by undici's strict client
    const server = net.createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        const path = /^GET \/(\S+) /.exec(chunk.toString('latin1'))?.[1] ?? '';
        socket.end(refusalAnswer(path as ErrorCode, true, '', true), 'latin1');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise((r) => server.close(r)));
    const port = (server.address() as AddressInfo).port;
    for (const code of ERROR_CODES) {
      const res = await request(`http://127.0.0.1:${port}/${code}`);
      const body = await res.body.json();
      t.equal(res.statusCode, ERRORS[code].status, `${code}: status ${ERRORS[code].status}`);
      t.equal(res.headers['x-tollgate-error'], code, `${code}: x-tollgate-error header`);
      t.match(String(res.headers['content-type']), /^application\/json/, `${code}: JSON content type`);
      t.same(body, { error: code, message: ERRORS[code].message }, `${code}: the body`);
    }
  },
);
