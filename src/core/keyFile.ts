/**
 * Reading a secret key file: one line of base64 of at least MIN_KEY_BYTES random bytes (what
 * `tollgate keys new` writes), checked the same way wherever a key comes from a file: each file
 * of the HMAC key ring (integrity/keyRing.ts) and the audit log's key (telemetry/auditLog.ts).
 *
 * Key bytes never reach a problem or a warning, and are not kept in plain buffers: the decoded
 * bytes live only in the secret KeyObject (the buffers read and decoded are zeroed).
 */
import { createSecretKey, type KeyObject } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import { lstat, open, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileExposure, processGroupIds } from './fileExposure.ts';

export const MIN_KEY_BYTES = 32;
/** A key file is a line of base64; anything much bigger is not a key file (and is not read). */
const MAX_KEY_FILE_BYTES = 4096;

/**
 * One key file on its own (the audit key): the same format and checks as a ring's files —
 * base64 of at least 32 bytes; problems and warnings name the path, never the content.
 */
export async function loadKeyFile(
  path: string,
): Promise<{ ok: true; key: KeyObject; warning: string | null } | { ok: false; problem: string }> {
  const r = await readKeyFile(dirname(path), basename(path), processGroupIds());
  if (r.kind === 'problem') return { ok: false, problem: `${path}: ${r.problem.slice(basename(path).length + 2)}` };
  if (r.kind === 'skip')
    return { ok: false, problem: `${path}: not a key file (missing, a directory or not a regular file)` };
  return {
    ok: true,
    key: r.key,
    warning: r.warning === null ? null : `${path}: ${r.warning.slice(basename(path).length + 2)}`,
  };
}

/** One file read as a key: the key (with a warning if others may read it), nothing to load, or a problem naming the file. */
export type KeyFileRead =
  | { kind: 'key'; key: KeyObject; warning: string | null }
  | { kind: 'skip'; warning: string | null }
  | { kind: 'problem'; problem: string };

/** Kubernetes with fsGroup makes Secret files 0440 for the pod's group, which the process is in: accepted, so not advised against. */
const MODE_ADVICE =
  "make it 0600 or 0400 (Kubernetes: defaultMode 0400; fsGroup's 0440 is fine, the group being this process's own)";

/** Read one directory entry `name` (already known to be a valid key id); `ownGroups` may read it (processGroupIds()). */
export async function readKeyFile(dir: string, name: string, ownGroups: ReadonlySet<number>): Promise<KeyFileRead> {
  const path = join(dir, name);
  let st: Stats;
  try {
    st = await stat(path); // follows symlinks
  } catch (err) {
    if (errCode(err) === 'ENOENT') {
      // a dangling symlink is a broken key file; an entry gone since readdir (an editor's temp file) is nothing
      const link = await lstat(path).then(
        () => true,
        () => false,
      );
      if (!link) return { kind: 'skip', warning: null };
      return { kind: 'problem', problem: `${name}: the symlink points to nothing (ENOENT)` };
    }
    return { kind: 'problem', problem: `${name}: cannot stat (${errCode(err)})` };
  }
  if (st.isDirectory()) return { kind: 'skip', warning: null };
  if (!st.isFile()) return { kind: 'skip', warning: `${name}: skipped: not a regular file` };

  // O_NONBLOCK: should the file have been swapped for a FIFO since the stat, opening it must not hang
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK).catch((err: unknown) => err as Error);
  if (fh instanceof Error) {
    if (errCode(fh) === 'ENOENT') return { kind: 'skip', warning: null };
    return { kind: 'problem', problem: `${name}: cannot open (${errCode(fh)})` };
  }
  const buf = Buffer.alloc(MAX_KEY_FILE_BYTES + 1);
  try {
    const fst = await fh.stat();
    if (!fst.isFile()) return { kind: 'skip', warning: `${name}: skipped: not a regular file` };
    if (fst.size > MAX_KEY_FILE_BYTES)
      return { kind: 'problem', problem: `${name}: file is ${fst.size} bytes; a key file holds one line of base64` };
    let length = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, length, buf.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MAX_KEY_FILE_BYTES) {
        return {
          kind: 'problem',
          problem: `${name}: file is over ${MAX_KEY_FILE_BYTES} bytes; a key file holds one line of base64`,
        };
      }
    }
    const decoded = decodeKeyText(buf, length);
    if ('problem' in decoded) return { kind: 'problem', problem: `${name}: ${decoded.problem}` };
    const bytes = decoded.bytes;
    try {
      if (bytes.length < MIN_KEY_BYTES)
        return {
          kind: 'problem',
          problem: `${name}: key is ${bytes.length} bytes; at least ${MIN_KEY_BYTES} are required`,
        };
      const key = createSecretKey(bytes);
      const exposure = fileExposure(fst, ownGroups);
      return { kind: 'key', key, warning: exposure === null ? null : `${name}: ${exposure}; ${MODE_ADVICE}` };
    } finally {
      bytes.fill(0);
    }
  } catch (err) {
    return { kind: 'problem', problem: `${name}: cannot read (${errCode(err)})` };
  } finally {
    buf.fill(0);
    await fh.close().catch(() => undefined);
  }
}

function isSpace(b: number): boolean {
  return b === 0x20 || (b >= 0x09 && b <= 0x0d);
}

/** The 6-bit value of a standard-alphabet base64 character, or -1. */
function base64Value(b: number): number {
  if (b >= 0x41 && b <= 0x5a) return b - 0x41; // A-Z
  if (b >= 0x61 && b <= 0x7a) return b - 0x61 + 26; // a-z
  if (b >= 0x30 && b <= 0x39) return b - 0x30 + 52; // 0-9
  if (b === 0x2b) return 62; // +
  if (b === 0x2f) return 63; // /
  return -1;
}

/**
 * Strict base64 of `text[0, length)`, surrounding whitespace allowed, decoded straight from the
 * bytes (no string copy of the key is ever made). Returns the decoded bytes or a problem that
 * says what is wrong without quoting any of the content.
 */
function decodeKeyText(text: Buffer, length: number): { bytes: Buffer } | { problem: string } {
  let start = 0;
  let end = length;
  while (start < end && isSpace(text[start]!)) start++;
  while (end > start && isSpace(text[end - 1]!)) end--;
  const n = end - start;
  if (n === 0) return { problem: 'file is empty; expected the base64 of a key' };
  let pad = 0;
  for (let i = start; i < end; i++) {
    const b = text[i]!;
    if (b === 0x3d) {
      pad++;
      continue;
    }
    if (pad > 0) return { problem: `not base64: "=" padding is followed by more text at offset ${i - start}` };
    if (base64Value(b) >= 0) continue;
    if (isSpace(b))
      return {
        problem: `not base64: whitespace at offset ${i - start} inside the text (write the base64 on one line)`,
      };
    return { problem: `not base64: the character at offset ${i - start} is not one of A-Z a-z 0-9 + / =` };
  }
  if (n % 4 !== 0) return { problem: `not base64: ${n} characters is not a multiple of 4` };
  if (pad > 2) return { problem: `not base64: ${pad} "=" padding characters (at most 2)` };
  const out = Buffer.alloc((n / 4) * 3 - pad);
  let o = 0;
  for (let i = start; i < end; i += 4) {
    const a = base64Value(text[i]!);
    const b = base64Value(text[i + 1]!);
    const c = base64Value(text[i + 2]!);
    const d = base64Value(text[i + 3]!);
    out[o++] = (a << 2) | (b >> 4);
    if (c >= 0) out[o++] = ((b & 0x0f) << 4) | (c >> 2);
    if (d >= 0) out[o++] = ((c & 0x03) << 6) | d;
  }
  return { bytes: out };
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? 'error';
}
