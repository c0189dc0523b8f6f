/**
 * Signing helpers for tests: HMAC key files written the way `tollgate keys new` writes them,
 * and requests signed by hand (tollgate's own signer over a view of exactly the headers the
 * test client will send), so a test can then change one thing and expect a refusal; signatures
 * over any components and parameters (customSignature); and expectRefused, which asserts the
 * whole accounting of one refusal (status, code, body, metric, log line, audit event, app).
 */
import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join } from 'node:path';
import type { Dispatcher } from 'undici';
import { HeaderIndex, signatureBase } from '../../src/integrity/signatureBase.ts';
import { signRequest } from '../../src/integrity/signer.ts';
import { contentDigestOf } from '../../src/integrity/contentDigest.ts';
import { serializeInnerList, sf, type BareItem } from '../../src/integrity/structuredFields.ts';
import { ERRORS, type ErrorCode } from '../../src/core/errors.ts';
import { eventually, type Test, type TestSidecar } from './world.ts';

export interface TestKey {
  readonly id: string;
  readonly secret: Buffer;
}

/** Write a random 32-byte key as `dir/id` (base64, mode 0600). */
export async function writeKey(dir: string, id: string, secret: Buffer = randomBytes(32)): Promise<TestKey> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, id), secret.toString('base64') + '\n', { mode: 0o600 });
  return { id, secret };
}

export interface SignedRequestInit {
  readonly method: string;
  readonly path: string;
  /** the Host the client sends (the inbound listener's host:port) */
  readonly authority: string;
  readonly headers?: Record<string, string>;
  readonly body?: Buffer | string;
  readonly key: TestKey;
  readonly tag?: string;
  /** seconds since the epoch; now by default */
  readonly created?: number;
  readonly nonce?: string;
  /** false: leave Content-Digest out (the body is still sent) */
  readonly digest?: boolean;
  /** false: leave Content-Length out (the client sends the body chunked) */
  readonly contentLength?: boolean;
}

/** Headers (lowercase names) for an undici request: host, content fields, Signature-Input and Signature. */
export function signedHeaders(init: SignedRequestInit): Record<string, string> {
  const body = init.body === undefined ? undefined : Buffer.from(init.body);
  const headers: Record<string, string> = { host: init.authority, ...lowercased(init.headers ?? {}) };
  if (body !== undefined) {
    if (init.contentLength !== false) headers['content-length'] = String(body.length);
    if (init.digest !== false) headers['content-digest'] = contentDigestOf(body);
  }
  const raw = Object.entries(headers).flat();
  const fields = signRequest(
    { method: init.method, target: init.path, scheme: 'https', headers: HeaderIndex.fromRaw(raw) },
    {
      keyId: init.key.id,
      key: createSecretKey(init.key.secret),
      tag: init.tag ?? 'tollgate',
      created: init.created ?? Math.floor(Date.now() / 1000),
      ...(init.nonce === undefined ? {} : { nonce: init.nonce }),
    },
  );
  return { ...headers, 'signature-input': fields.signatureInput, signature: fields.signature };
}

function lowercased(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

/* ------------------------------------------------------------ hand-made signatures and refusal accounting */

export interface CustomSignatureInit {
  readonly method: string;
  readonly path: string;
  /** every header the request will carry that a component may name (lowercase names; host included) */
  readonly headers: Record<string, string>;
  /** the covered components, in order */
  readonly components: readonly string[];
  /** the signature parameters, in order, with the types to send (so a test can send created as a string) */
  readonly params: ReadonlyArray<readonly [string, BareItem]>;
  readonly secret: Buffer;
  readonly label?: string;
}

/** Signature-Input and Signature for exactly these components and parameters, MACed with `secret` over tollgate's own signature base. */
export function customSignature(init: CustomSignatureInit): { 'signature-input': string; signature: string } {
  const covered = sf.innerList(
    init.components.map((c) => sf.item(sf.string(c))),
    init.params,
  );
  const base = signatureBase(
    {
      method: init.method,
      target: init.path,
      scheme: 'https',
      headers: HeaderIndex.fromRaw(Object.entries(init.headers).flat()),
    },
    covered,
  );
  const mac = createHmac('sha256', init.secret).update(base, 'latin1').digest();
  const label = init.label ?? 'tollgate';
  return {
    'signature-input': `${label}=${serializeInnerList(covered)}`,
    signature: `${label}=:${mac.toString('base64')}:`,
  };
}

/** The parameters tollgate's signer sends, in its order, with overrides (`undefined` drops one). */
export function signatureParams(
  keyId: string,
  over: Partial<Record<'created' | 'expires' | 'nonce' | 'keyid' | 'alg' | 'tag', BareItem | undefined>> = {},
): Array<readonly [string, BareItem]> {
  const defaults: Record<string, BareItem | undefined> = {
    created: sf.integer(Math.floor(Date.now() / 1000)),
    nonce: sf.string(randomBytes(16).toString('base64url')),
    keyid: sf.string(keyId),
    alg: sf.string('hmac-sha256'),
    tag: sf.string('tollgate'),
  };
  const merged: Record<string, BareItem | undefined> = { ...defaults, ...over };
  return Object.entries(merged).filter((e): e is [string, BareItem] => e[1] !== undefined);
}

/** Signature check counts of one listener, by result. */
export async function signatureChecks(sc: TestSidecar, listener: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const m = sc.registry.getSingleMetric('tollgate_signature_checks_total');
  if (m === undefined) return out;
  for (const v of (await m.get()).values) {
    const labels = v.labels as Record<string, unknown>;
    if (labels.listener !== listener) continue;
    const result = String(labels.result);
    out.set(result, (out.get(result) ?? 0) + v.value);
  }
  return out;
}

/** How many requests an upstream has begun to receive (the 'request' event, before any body). */
export function countRequests(server: Server): () => number {
  let n = 0;
  server.on('request', () => {
    n += 1;
  });
  return () => n;
}

export interface RefusalExpectation {
  readonly listener?: string;
  /** the tollgate_signature_checks_total result counted once; null: no signature check is counted (body refusals like 413) */
  readonly result?: string | null;
  /** the audit event; by default 'replay' for ERR_SIG_REPLAYED, 'signature_failure' for the other signature codes, else 'request_refused' */
  readonly auditEvent?: string;
}

const SIGNATURE_CODES: ReadonlySet<ErrorCode> = new Set(
  (Object.keys(ERRORS) as ErrorCode[]).filter(
    (c) => c.startsWith('ERR_SIG_') || c.startsWith('ERR_DIGEST_') || c === 'ERR_REPLAY_CACHE_FULL',
  ),
);

/**
 * Send one request with `send` and assert the whole accounting of its refusal: the status and
 * `x-tollgate-error` of the code, the JSON body {error, message}, exactly one count under
 * tollgate_signature_checks_total{listener, result} (and nothing else counted there), exactly
 * one 'request refused' log line with the code, exactly one audit event, and nothing at the
 * app (neither a request begun nor one recorded). Returns the response (body consumed).
 */
export async function expectRefused(
  t: Test,
  sc: TestSidecar,
  app: { readonly requests: () => number },
  code: ErrorCode,
  send: () => Promise<Dispatcher.ResponseData>,
  opts: RefusalExpectation = {},
): Promise<Dispatcher.ResponseData> {
  const listener = opts.listener ?? sc.listeners[0]!.name;
  const result = opts.result === undefined ? (SIGNATURE_CODES.has(code) ? ERRORS[code].reason : null) : opts.result;
  const auditEvent =
    opts.auditEvent ??
    (code === 'ERR_SIG_REPLAYED' ? 'replay' : SIGNATURE_CODES.has(code) ? 'signature_failure' : 'request_refused');
  const logStart = sc.logs.lines.length;
  const checksBefore = await signatureChecks(sc, listener);
  const appBefore = app.requests();

  const res = await send();
  const text = await res.body.text();
  t.equal(res.statusCode, ERRORS[code].status, `${code}: status`);
  t.equal(res.headers['x-tollgate-error'], code, `${code}: x-tollgate-error (body ${text})`);
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // reported by the next assertion
  }
  t.same(body, { error: code, message: ERRORS[code].message }, `${code}: JSON body`);

  const newLines = (): Array<Record<string, unknown>> => sc.logs.lines.slice(logStart);
  const isAudit = (l: Record<string, unknown>): boolean =>
    l.audit === true && ['signature_failure', 'replay', 'request_refused'].includes(String(l.event));
  await eventually(
    () => newLines().some((l) => l.msg === 'request refused') && newLines().some(isAudit),
    2000,
    `the log and audit lines of ${code}`,
  );
  const refusedLines = newLines().filter((l) => l.msg === 'request refused');
  t.same(
    refusedLines.map((l) => l.code),
    [code],
    `${code}: exactly one 'request refused' log line, with the code`,
  );
  const audits = newLines().filter(isAudit);
  t.same(
    audits.map((l) => [l.event, l.code]),
    [[auditEvent, code]],
    `${code}: exactly one audit event`,
  );

  const checksAfter = await signatureChecks(sc, listener);
  const delta: Record<string, number> = {};
  for (const [r, n] of checksAfter) {
    const d = n - (checksBefore.get(r) ?? 0);
    if (d !== 0) delta[r] = d;
  }
  t.same(
    delta,
    result === null ? {} : { [result]: 1 },
    result === null
      ? `${code}: nothing counted under tollgate_signature_checks_total`
      : `${code}: tollgate_signature_checks_total counted once as ${result}`,
  );
  t.equal(app.requests(), appBefore, `${code}: the app saw nothing`);
  return res;
}
