/**
 * The HMAC key ring: a directory with one file per key id, each holding the base64 of at least
 * 32 random bytes (what `tollgate keys new` writes). Loading is all-or-nothing: one bad file
 * fails the whole load, so a half-written rotation never becomes the ring in use.
 *
 * The watcher follows the directory (not the files), which is what a Kubernetes Secret volume
 * needs: it swaps the `..data` symlink atomically and the key files are symlinks through it.
 *
 * Each file is read by core/keyFile.ts (shared with the audit key): key bytes never reach a log
 * line, a problem or a warning, and live only in secret KeyObjects.
 */
import { createSecretKey, type KeyObject } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { AuditEventType, AuditSink } from '../telemetry/audit.ts';
import { debounce, type Debounced } from '../core/debounce.ts';
import { processGroupIds } from '../core/fileExposure.ts';
import { watchDir, type DirWatch } from '../core/dirWatch.ts';
import { MIN_KEY_BYTES, readKeyFile } from '../core/keyFile.ts';

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
    if (!KEY_ID_PATTERN.test(id))
      throw new TypeError(
        `key id ${JSON.stringify(id)} is not 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`,
      );
    if (keys.has(id)) throw new TypeError(`key id ${id} is given twice`);
    if (bytes.length < MIN_KEY_BYTES)
      throw new TypeError(`${id}: key is ${bytes.length} bytes; at least ${MIN_KEY_BYTES} are required`);
    keys.set(id, createSecretKey(bytes));
  }
  return makeRing(keys);
}

// ---------------------------------------------------------------------------------------------
// Loading

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? 'error';
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
      warnings.push(
        `${JSON.stringify(name)}: skipped: not a valid key id (1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit)`,
      );
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
  const dirWatch: DirWatch = watchDir({
    dir,
    log,
    what: 'key directory',
    keeping: 'the current key ring',
    onChange: () => pending.trigger(),
  });

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

  const fail = (
    problems: readonly string[],
    warnings: readonly string[],
  ): { ok: boolean; problems: readonly string[] } => {
    log.error(
      { dir, problems, ...(warnings.length > 0 ? { warnings } : {}), keyCount: ring.size },
      'key ring reload failed; keeping the current key ring',
    );
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
