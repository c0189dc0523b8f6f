/**
 * The HMAC key ring: a directory with one file per key id, each holding the base64 of at least
 * 32 random bytes (what `tollgate keys new` writes). Loading is all-or-nothing: one bad file
 * fails the whole load, so a half-written rotation never becomes the ring in use.
 *
 * The watcher follows the directory (not the files), which is what a Kubernetes Secret volume
 * needs: it swaps the `..data` symlink atomically and the key files are symlinks through it.
 *
 * Key bytes never reach a log line, a problem or a warning, and are not kept in plain buffers:
 * the decoded bytes live only in the secret KeyObject (the buffers read and decoded are zeroed).
 */
import { createSecretKey, type KeyObject } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import { lstat, open, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { AuditEventType, AuditSink } from '../telemetry/audit.ts';
import { debounce, type Debounced } from '../core/debounce.ts';
import { fileExposure, processGroupIds } from '../core/fileExposure.ts';
import { watchDir, type DirWatch } from '../core/dirWatch.ts';

export interface KeyRing {
  /** the HMAC key for an id (a secret KeyObject from crypto.createSecretKey), or undefined */
  get(keyId: string): KeyObject | undefined;
  readonly ids: readonly string[]; // sorted
  readonly size: number;
}

export type KeyRingLoad =
  | { readonly ok: true; readonly ring: KeyRing; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly problems: readonly string[] };

export interface KeyRingWatcherOptions {
  readonly dir: string;
  readonly log: Logger;
  readonly audit: AuditSink;
  /** called with the result of every reload attempt (for metrics) */
  readonly onReload?: (result: 'success' | 'failure', ring: KeyRing) => void;
  /** a reload is refused (old ring kept) when this returns a problem string, e.g. "the signing key k1 is missing" */
  readonly validate?: (ring: KeyRing) => string | null;
  readonly debounceMs?: number; // default 200
}

export interface KeyRingWatcher {
  current(): KeyRing;
  /** re-read now; keep the old ring on any problem */
  reload(): Promise<{ ok: boolean; problems: readonly string[] }>;
  close(): void;
}

/** A key id, which is also the key file's name. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const MIN_KEY_BYTES = 32;
/** A key file is a line of base64; anything much bigger is not a key file (and is not read). */
const MAX_KEY_FILE_BYTES = 4096;
const DEFAULT_DEBOUNCE_MS = 200;
/** The audit event type for a key ring reload (AuditEventType in src/telemetry/audit.ts). */
const AUDIT_EVENT: AuditEventType = 'key_ring_change';

// ---------------------------------------------------------------------------------------------
// The ring

function makeRing(keys: Map<string, KeyObject>): KeyRing {
  const ids = Object.freeze([...keys.keys()].sort());
  return Object.freeze({
    get: (keyId: string) => keys.get(keyId),
    ids,
    size: ids.length,
  });
}

/** A ring from id/bytes pairs (for tests and the demo). The caller keeps ownership of the buffers. */
export function keyRingFromEntries(entries: Iterable<readonly [string, Buffer]>): KeyRing {
  const keys = new Map<string, KeyObject>();
  for (const [id, bytes] of entries) {
    if (!KEY_ID_PATTERN.test(id)) throw new TypeError(`key id ${JSON.stringify(id)} is not 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`);
    if (keys.has(id)) throw new TypeError(`key id ${id} is given twice`);
    if (bytes.length < MIN_KEY_BYTES) throw new TypeError(`${id}: key is ${bytes.length} bytes; at least ${MIN_KEY_BYTES} are required`);
    keys.set(id, createSecretKey(bytes));
  }
  return makeRing(keys);
}

// ---------------------------------------------------------------------------------------------
// Loading

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? 'error';
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
    if (isSpace(b)) return { problem: `not base64: whitespace at offset ${i - start} inside the text (write the base64 on one line)` };
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

type FileResult = { kind: 'key'; key: KeyObject; warning: string | null } | { kind: 'skip'; warning: string | null } | { kind: 'problem'; problem: string };

/** Kubernetes with fsGroup makes Secret files 0440 for the pod's group, which the process is in: accepted, so not advised against. */
const MODE_ADVICE = "make it 0600 or 0400 (Kubernetes: defaultMode 0400; fsGroup's 0440 is fine, the group being this process's own)";

/** Read one directory entry `name` (already known to be a valid key id); `ownGroups` may read it (processGroupIds()). */
async function readKeyFile(dir: string, name: string, ownGroups: ReadonlySet<number>): Promise<FileResult> {
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
    if (fst.size > MAX_KEY_FILE_BYTES) return { kind: 'problem', problem: `${name}: file is ${fst.size} bytes; a key file holds one line of base64` };
    let length = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, length, buf.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MAX_KEY_FILE_BYTES) return { kind: 'problem', problem: `${name}: file is over ${MAX_KEY_FILE_BYTES} bytes; a key file holds one line of base64` };
    }
    const decoded = decodeKeyText(buf, length);
    if ('problem' in decoded) return { kind: 'problem', problem: `${name}: ${decoded.problem}` };
    const bytes = decoded.bytes;
    try {
      if (bytes.length < MIN_KEY_BYTES) return { kind: 'problem', problem: `${name}: key is ${bytes.length} bytes; at least ${MIN_KEY_BYTES} are required` };
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

/** read every key file of dir into a new ring; any bad file makes the whole load fail (problems name the file, never its content) */
export async function loadKeyRing(dir: string): Promise<KeyRingLoad> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT') return { ok: false, problems: [`${dir}: the key directory does not exist`] };
    if (code === 'ENOTDIR') return { ok: false, problems: [`${dir}: not a directory`] };
    return { ok: false, problems: [`${dir}: cannot read the key directory (${code})`] };
  }
  names.sort();
  const problems: string[] = [];
  const warnings: string[] = [];
  const keys = new Map<string, KeyObject>();
  const ownGroups = processGroupIds();
  for (const name of names) {
    if (name.startsWith('.')) continue; // ..data, ..2026_11_23_…, editors' dotfiles
    if (!KEY_ID_PATTERN.test(name)) {
      warnings.push(`${JSON.stringify(name)}: skipped: not a valid key id (1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit)`);
      continue;
    }
    const r = await readKeyFile(dir, name, ownGroups);
    if (r.kind === 'problem') problems.push(r.problem);
    else {
      if (r.warning !== null) warnings.push(r.warning);
      if (r.kind === 'key') keys.set(name, r.key);
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, ring: makeRing(keys), warnings };
}

// ---------------------------------------------------------------------------------------------
// Watching

interface RingDiff {
  readonly added: string[];
  readonly removed: string[];
  /** ids in both rings whose key material differs */
  readonly changed: string[];
}

function diffRings(before: KeyRing, after: KeyRing): RingDiff {
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  for (const id of after.ids) {
    const old = before.get(id);
    if (old === undefined) added.push(id);
    else if (!old.equals(after.get(id)!)) changed.push(id);
  }
  for (const id of before.ids) if (after.get(id) === undefined) removed.push(id);
  return { added, removed, changed };
}

/** start from an already loaded ring and watch dir for changes */
export function watchKeyRing(initial: KeyRing, options: KeyRingWatcherOptions): KeyRingWatcher {
  const { dir, log, audit, onReload, validate } = options;
  let ring = initial;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();
  const pending: Debounced = debounce(options.debounceMs ?? DEFAULT_DEBOUNCE_MS, () => void reload());
  const dirWatch: DirWatch = watchDir({ dir, log, what: 'key directory', keeping: 'the current key ring', onChange: () => pending.trigger() });

  const record = (fields: Record<string, unknown>): void => {
    try {
      audit.record(AUDIT_EVENT, fields);
    } catch (err) {
      log.error({ dir, err: (err as Error).message, event: AUDIT_EVENT }, 'recording the key ring audit event failed');
    }
  };

  const notify = (result: 'success' | 'failure', r: KeyRing): void => {
    if (onReload === undefined) return;
    try {
      onReload(result, r);
    } catch (err) {
      log.error({ dir, err: (err as Error).message }, 'key ring onReload callback threw');
    }
  };

  const fail = (problems: readonly string[], warnings: readonly string[]): { ok: boolean; problems: readonly string[] } => {
    log.error({ dir, problems, ...(warnings.length > 0 ? { warnings } : {}), keyCount: ring.size }, 'key ring reload failed; keeping the current key ring');
    record({ ok: false, added: [], removed: [], problems: [...problems] });
    notify('failure', ring);
    return { ok: false, problems };
  };

  const attempt = async (): Promise<{ ok: boolean; problems: readonly string[] }> => {
    if (closed) return { ok: false, problems: ['the key ring watcher is closed'] };
    await dirWatch.refresh();
    const loaded = await loadKeyRing(dir);
    if (closed) return { ok: false, problems: ['the key ring watcher is closed'] };
    if (!loaded.ok) return fail(loaded.problems, []);
    let refusal: string | null;
    try {
      refusal = validate === undefined ? null : validate(loaded.ring);
    } catch (err) {
      refusal = `the key ring check threw: ${(err as Error).message}`;
    }
    if (refusal !== null) return fail([refusal], loaded.warnings);
    const diff = diffRings(ring, loaded.ring);
    const fields = {
      dir,
      added: diff.added,
      removed: diff.removed,
      changed: diff.changed,
      keyCount: loaded.ring.size,
      ...(loaded.warnings.length > 0 ? { warnings: loaded.warnings } : {}),
    };
    if (diff.added.length === 0 && diff.removed.length === 0 && diff.changed.length === 0) {
      log.debug(fields, 'key ring reloaded; no change');
      notify('success', ring);
      return { ok: true, problems: [] };
    }
    ring = loaded.ring;
    log.info(fields, 'key ring reloaded');
    record({ ok: true, added: diff.added, removed: diff.removed, changed: diff.changed, problems: [] });
    notify('success', ring);
    return { ok: true, problems: [] };
  };

  /** one reload at a time, in order, so an older read never replaces a newer one */
  const reload = (): Promise<{ ok: boolean; problems: readonly string[] }> => {
    const run = queue.then(attempt, attempt);
    queue = run.catch(() => undefined);
    return run.catch((err: unknown) => fail([`reload failed unexpectedly: ${(err as Error).message}`], []));
  };

  return {
    current: () => ring,
    reload,
    close() {
      closed = true;
      pending.cancel();
      dirWatch.close();
    },
  };
}

/**
 * One key file on its own (the audit key): the same format and checks as a ring's files —
 * base64 of at least 32 bytes; problems and warnings name the path, never the content.
 */
export async function loadKeyFile(path: string): Promise<{ ok: true; key: KeyObject; warning: string | null } | { ok: false; problem: string }> {
  const r = await readKeyFile(dirname(path), basename(path), processGroupIds());
  if (r.kind === 'problem') return { ok: false, problem: `${path}: ${r.problem.slice(basename(path).length + 2)}` };
  if (r.kind === 'skip') return { ok: false, problem: `${path}: not a key file (missing, a directory or not a regular file)` };
  return { ok: true, key: r.key, warning: r.warning === null ? null : `${path}: ${r.warning.slice(basename(path).length + 2)}` };
}
