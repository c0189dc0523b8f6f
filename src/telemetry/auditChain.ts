/**
 * The audit log's line format, shared by the writer (auditLog.ts) and `tollgate audit verify`.
 *
 * One line per event, UTF-8, ended by "\n":
 *
 *   {"seq":N,"time":"ISO-8601","type":"T",...fields,"prev":"<64 hex>","mac":"<64 hex>"}
 *
 * - body: JSON.stringify({seq, time, type, ...fields, prev}) — the exact bytes of the line with
 *   the final `,"mac":"<64 hex>"` removed (so the line is the body with its last "}" replaced by
 *   `,"mac":"…"}`).
 * - mac: lowercase hex HMAC-SHA256 under the audit key over the body's UTF-8 bytes.
 * - prev: lowercase hex SHA-256 of the previous line's exact bytes (without its "\n"); 64 zeros
 *   for the first line of a chain. seq starts at 1 and increases by one, across rotated files.
 *
 * The verifier recomputes the MAC over the body bytes as they are in the file (never over a
 * re-serialization), and reads seq/prev/type only from the MACed body.
 */
import { createHash, createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';

export const GENESIS_HASH = '0'.repeat(64);
/** Names the chain owns; an event field with one of these names is written as `field_<name>`. */
const RESERVED = new Set(['seq', 'time', 'type', 'prev', 'mac']);
const MAC_SUFFIX = /,"mac":"([0-9a-f]{64})"\}$/;
const HEX64 = /^[0-9a-f]{64}$/;

export interface ChainPosition {
  /** seq of the last line (0 before the first) */
  readonly seq: number;
  /** SHA-256 hex of the last line (GENESIS_HASH before the first) */
  readonly hash: string;
}

export function lineHash(line: string): string {
  return createHash('sha256').update(line, 'utf8').digest('hex');
}

function macHex(key: KeyObject, body: string): string {
  return createHmac('sha256', key).update(body, 'utf8').digest('hex');
}

/** Format the line (without "\n") following `after`. Throws if fields cannot be serialized (a cycle, a BigInt). */
export function formatLine(
  key: KeyObject,
  after: ChainPosition,
  time: string,
  type: string,
  fields: Readonly<Record<string, unknown>>,
): string {
  const obj: Record<string, unknown> = { seq: after.seq + 1, time, type };
  for (const [k, v] of Object.entries(fields)) obj[RESERVED.has(k) ? `field_${k}` : k] = v;
  obj.prev = after.hash;
  const body = JSON.stringify(obj);
  return `${body.slice(0, -1)},"mac":"${macHex(key, body)}"}`;
}

export type LineCheck =
  | { readonly ok: true; readonly seq: number; readonly hash: string; readonly type: string; readonly prev: string }
  | { readonly ok: false; readonly problem: string };

/**
 * Check one line on its own: it parses, its MAC is right, seq and prev are well-formed.
 * The caller checks seq continuity and prev against the previous line.
 */
export function checkLine(key: KeyObject, line: string): LineCheck {
  const m = MAC_SUFFIX.exec(line);
  if (m === null)
    return {
      ok: false,
      problem: 'unparsable: the line does not end with a "mac" field (truncated or not an audit line)',
    };
  const body = line.slice(0, m.index) + '}';
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { ok: false, problem: 'unparsable: not a JSON object' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return { ok: false, problem: 'unparsable: not a JSON object' };
  const o = parsed as Record<string, unknown>;
  const expected = Buffer.from(macHex(key, body), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(m[1]!, 'hex')))
    return { ok: false, problem: 'bad MAC (the line was altered, or written under another key)' };
  if (Object.hasOwn(o, 'mac')) return { ok: false, problem: 'unparsable: a second "mac" field' };
  const seq = o.seq;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1)
    return { ok: false, problem: 'unparsable: seq is not a positive integer' };
  if (typeof o.prev !== 'string' || !HEX64.test(o.prev))
    return { ok: false, problem: 'unparsable: prev is not 64 hex digits' };
  if (typeof o.type !== 'string' || typeof o.time !== 'string')
    return { ok: false, problem: 'unparsable: type or time missing' };
  return { ok: true, seq, hash: lineHash(line), type: o.type, prev: o.prev };
}

export interface VerifyFile {
  readonly name: string;
  readonly text: string;
}

export type ChainVerdict =
  | {
      readonly ok: true;
      readonly lines: number;
      readonly firstSeq: number;
      readonly lastSeq: number;
      readonly head: string;
      readonly firstPrev: string;
    }
  | { readonly ok: false; readonly file: string; readonly line: number; readonly problem: string };

/**
 * Verify files oldest first as one chain. Unless `partial`, the chain must start at seq 1 with
 * prev 64 zeros; with `partial` the first line is taken as the anchor (older files rotated away).
 * With an `anchor` (a head exported earlier from /audit/head), the line with that seq must have
 * that hash and the log must reach it: this catches a rewrite or truncation by someone with the key.
 */
export function verifyChain(
  key: KeyObject,
  files: readonly VerifyFile[],
  partial: boolean,
  anchor: ChainPosition | null = null,
): ChainVerdict {
  let pos: ChainPosition | null = partial ? null : { seq: 0, hash: GENESIS_HASH };
  let lines = 0;
  let firstSeq = 0;
  let firstPrev = GENESIS_HASH;
  for (const f of files) {
    if (f.text.length === 0) continue;
    const parts = f.text.split('\n');
    const last = parts.pop()!;
    if (last !== '')
      return {
        ok: false,
        file: f.name,
        line: parts.length + 1,
        problem: 'unparsable: the last line has no newline (truncated write)',
      };
    for (let i = 0; i < parts.length; i++) {
      const bad = (problem: string): ChainVerdict => ({ ok: false, file: f.name, line: i + 1, problem });
      const c = checkLine(key, parts[i]!);
      if (!c.ok) return bad(c.problem);
      if (pos !== null) {
        if (c.seq !== pos.seq + 1)
          return bad(`seq gap: expected seq ${pos.seq + 1}, found ${c.seq} (lines deleted, inserted or reordered)`);
        if (c.prev !== pos.hash)
          return bad(`broken prev: does not match the hash of the line before (${pos.hash.slice(0, 16)}…)`);
      }
      if (lines === 0) {
        firstSeq = c.seq;
        firstPrev = c.prev;
      }
      if (anchor !== null && c.seq === anchor.seq && c.hash !== anchor.hash)
        return bad(
          `does not match the anchored head: seq ${anchor.seq} should hash to ${anchor.hash.slice(0, 16)}… (the log was rewritten)`,
        );
      lines++;
      pos = { seq: c.seq, hash: c.hash };
    }
  }
  if (anchor !== null && (pos?.seq ?? 0) < anchor.seq) {
    const f = files[files.length - 1];
    return {
      ok: false,
      file: f?.name ?? '',
      line: f === undefined ? 0 : f.text.split('\n').length,
      problem: `truncated: the log ends at seq ${pos?.seq ?? 0} but the anchored head is seq ${anchor.seq}`,
    };
  }
  if (anchor !== null && lines > 0 && firstSeq > anchor.seq) {
    return {
      ok: false,
      file: files[0]?.name ?? '',
      line: 1,
      problem: `the anchored seq ${anchor.seq} is older than the first line (seq ${firstSeq}); verify with the rotated files`,
    };
  }
  return { ok: true, lines, firstSeq, lastSeq: pos?.seq ?? 0, head: pos?.hash ?? GENESIS_HASH, firstPrev };
}
