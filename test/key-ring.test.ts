/**
 * The HMAC key ring (src/integrity/keyRing.ts) against real directories: loading key files as
 * `tollgate keys new` writes them, refusing bad ones without quoting them, and a watcher that
 * follows the directory through edits and Kubernetes-style atomic symlink swaps.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AuditEventType, AuditSink } from '../src/telemetry/audit.ts';
import { processGroupIds } from '../src/core/fileExposure.ts';
import { keyRingFromEntries, loadKeyRing, watchKeyRing } from '../src/integrity/keyRing.ts';
import { loadKeyFile } from '../src/core/keyFile.ts';
import type { KeyRing, KeyRingLoad, KeyRingWatcher, KeyRingWatcherOptions } from '../src/integrity/keyRing.ts';
import { tempDir, type Teardownable } from './helpers/pki.ts';
import { captureLogs, eventually, type LogCapture } from './helpers/world.ts';

const KEY_RING_EVENT: AuditEventType = 'key_ring_change';
const DEBOUNCE_MS = 20;
const WAIT_MS = 4000;

interface TestKey {
  readonly bytes: Buffer;
  /** the file content, as `tollgate keys new` writes it */
  readonly text: string;
}

function newKey(size = 32): TestKey {
  const bytes = randomBytes(size);
  return { bytes, text: bytes.toString('base64') + '\n' };
}

async function writeKey(dir: string, id: string, content: string, mode = 0o600): Promise<void> {
  await writeFile(join(dir, id), content, { mode });
  await chmod(join(dir, id), mode); // whatever the umask
}

/** A group this process is not in, for a file chown'd to a group it cannot read through. */
function foreignGroup(): number {
  const own = processGroupIds();
  let gid = 4242;
  while (own.has(gid)) gid++;
  return gid;
}

/** Changing a file's group to one the process is not in takes root (CAP_CHOWN). */
const CANNOT_CHOWN =
  process.getuid?.() === 0
    ? false
    : 'giving a file a foreign group needs root (CAP_CHOWN); these tests run unprivileged';

function loaded(t: Tap, result: KeyRingLoad): { ring: KeyRing; warnings: readonly string[] } {
  if (!result.ok) {
    t.fail(`the load failed: ${result.problems.join('; ')}`);
    throw new Error('load failed');
  }
  return result;
}

function problemsOf(t: Tap, result: KeyRingLoad): readonly string[] {
  if (result.ok) {
    t.fail('the load succeeded');
    return [];
  }
  return result.problems;
}

function sameKey(ring: KeyRing, id: string, key: TestKey): boolean {
  return ring.get(id)?.equals(createSecretKey(key.bytes)) ?? false;
}

type Tap = Teardownable & { fail(msg: string): void };

interface AuditEvent {
  readonly type: AuditEventType;
  readonly fields: Readonly<Record<string, unknown>>;
}

interface Watched {
  readonly w: KeyRingWatcher;
  readonly logs: LogCapture;
  readonly audits: AuditEvent[];
  readonly reloads: Array<{ result: 'success' | 'failure'; size: number }>;
}

/** Load `dir` and watch it, with captured logs, audit events and reload results; closed when the test ends. */
async function watched(t: Tap, dir: string, opts: Partial<KeyRingWatcherOptions> = {}): Promise<Watched> {
  const logs = captureLogs('debug');
  const audits: AuditEvent[] = [];
  const reloads: Array<{ result: 'success' | 'failure'; size: number }> = [];
  const audit: AuditSink = {
    record: (type, fields) => audits.push({ type, fields }),
    flush: () => Promise.resolve(),
  };
  const initial = loaded(t, await loadKeyRing(dir)).ring;
  const w = watchKeyRing(initial, {
    dir,
    log: logs.logger,
    audit,
    onReload: (result, ring) => reloads.push({ result, size: ring.size }),
    debounceMs: DEBOUNCE_MS,
    ...opts,
  });
  t.teardown(() => w.close());
  return { w, logs, audits, reloads };
}

/** No captured log line holds any of the keys' base64 text. */
function noKeyTextIn(logs: LogCapture, keys: readonly TestKey[]): boolean {
  const all = logs.lines.map((l) => JSON.stringify(l)).join('\n');
  return keys.every((k) => !all.includes(k.text.trim()) && !all.includes(k.bytes.toString('hex')));
}

t.test('loading', async (t) => {
  t.test('loads keys written the way `tollgate keys new` writes them', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k2 = newKey();
    const k1 = newKey();
    await writeKey(dir, 'k2', k2.text);
    await writeKey(dir, 'k1', k1.text);
    const { ring, warnings } = loaded(t, await loadKeyRing(dir));
    t.same(ring.ids, ['k1', 'k2'], 'ids are sorted');
    t.equal(ring.size, 2);
    t.same(warnings, [], 'mode 0600 draws no warning');
    t.ok(sameKey(ring, 'k1', k1) && sameKey(ring, 'k2', k2), 'each id has its own key');
    t.equal(ring.get('k1')?.type, 'secret');
  });

  t.test('a ring key produces the same HMAC as the raw key bytes', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k1 = newKey();
    await writeKey(dir, 'k1', k1.text);
    const { ring } = loaded(t, await loadKeyRing(dir));
    const message = 'POST /ingest HTTP/1.1';
    t.equal(
      createHmac('sha256', ring.get('k1')!).update(message).digest('hex'),
      createHmac('sha256', k1.bytes).update(message).digest('hex'),
    );
  });

  t.test('accepts longer keys, padding, and surrounding whitespace', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k64 = newKey(64);
    const k33 = newKey(33); // no "=" padding
    const k34 = newKey(34); // "=="
    const k35 = newKey(35); // one "="
    await writeKey(dir, 'long', k64.text);
    await writeKey(dir, 'p0', k33.text);
    await writeKey(dir, 'p1', `  ${k34.bytes.toString('base64')}\r\n\n`);
    await writeKey(dir, 'p2', `\t${k35.bytes.toString('base64')}`);
    t.match(k33.bytes.toString('base64'), /[^=]$/);
    t.match(k34.bytes.toString('base64'), /==$/);
    t.match(k35.bytes.toString('base64'), /[^=]=$/);
    const { ring } = loaded(t, await loadKeyRing(dir));
    t.ok(
      sameKey(ring, 'long', k64) && sameKey(ring, 'p0', k33) && sameKey(ring, 'p1', k34) && sameKey(ring, 'p2', k35),
    );
  });

  t.test('a key shorter than 32 bytes fails the load, naming the file and not its content', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const short = newKey(16);
    await writeKey(dir, 'k0', newKey().text);
    await writeKey(dir, 'k1', short.text);
    const problems = problemsOf(t, await loadKeyRing(dir));
    t.same(problems, ['k1: key is 16 bytes; at least 32 are required'], 'one bad file fails the whole load');
    t.notOk(problems.join('\n').includes(short.text.trim()), 'the key is not quoted');
  });

  t.test('content that is not strict base64 fails the load, naming the file and not its content', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const cases: Record<string, string> = {
      text: 'this-is-not-base64-at-all-but-it-is-long-enough!!\n',
      urlsafe: randomBytes(48).toString('base64url').padEnd(64, 'A').replace(/^./, '_') + '\n',
      wrapped: `${randomBytes(48).toString('base64')}\n${randomBytes(48).toString('base64')}\n`,
      unpadded: randomBytes(32).toString('base64').replace(/=+$/, '') + '\n',
      innerpad: `${randomBytes(32).toString('base64')}${randomBytes(33).toString('base64')}\n`,
      empty: '\n',
    };
    for (const [id, content] of Object.entries(cases)) await writeKey(dir, id, content);
    const problems = problemsOf(t, await loadKeyRing(dir));
    t.equal(problems.length, Object.keys(cases).length, 'every bad file is named');
    for (const [id, content] of Object.entries(cases)) {
      const p = problems.find((x) => x.startsWith(`${id}: `));
      t.ok(p, `${id} is named`);
      t.match(p ?? '', id === 'empty' ? /empty/ : /not base64/);
      for (const line of content.split('\n').filter((l) => l.length >= 8))
        t.notOk(problems.join('\n').includes(line), `${id}'s content is not quoted`);
    }
  });

  t.test('a missing directory fails the load', async (t) => {
    const dir = join(await tempDir(t, 'keyring-'), 'nope');
    const problems = problemsOf(t, await loadKeyRing(dir));
    t.equal(problems.length, 1);
    t.match(problems[0], dir);
    t.match(problems[0], /does not exist/);
  });

  t.test('an empty directory loads as an empty ring', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const { ring, warnings } = loaded(t, await loadKeyRing(dir));
    t.equal(ring.size, 0);
    t.same(ring.ids, []);
    t.same(warnings, []);
  });

  t.test('a key file readable by others loads with a warning naming the file and its mode', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k1 = newKey();
    await writeKey(dir, 'k1', k1.text, 0o644);
    await writeKey(dir, 'k2', newKey().text, 0o400);
    const { ring, warnings } = loaded(t, await loadKeyRing(dir));
    t.ok(sameKey(ring, 'k1', k1), 'the key is still loaded');
    t.equal(warnings.length, 1, 'only the readable file is warned about');
    t.match(warnings[0], /^k1: mode 0644 /);
    t.match(warnings[0], /defaultMode 0400/);
    t.notOk(warnings.join('\n').includes(k1.text.trim()));
  });

  t.test('the mode warning is about the file a symlink points to', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await mkdir(join(dir, '..data'));
    await writeKey(join(dir, '..data'), 'k1', newKey().text, 0o644);
    await symlink('..data/k1', join(dir, 'k1')); // the link itself is 0777
    await writeKey(join(dir, '..data'), 'k2', newKey().text, 0o600);
    await symlink('..data/k2', join(dir, 'k2'));
    const { ring, warnings } = loaded(t, await loadKeyRing(dir));
    t.same(ring.ids, ['k1', 'k2']);
    t.equal(warnings.length, 1);
    t.match(warnings[0], /^k1: mode 0644 /);
  });

  t.test("Kubernetes fsGroup modes: group read by the process's own group loads without a warning", async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const gid = process.getgid!();
    await writeKey(dir, 'k1', newKey().text, 0o440); // what the kubelet makes of defaultMode 0400 with fsGroup
    await writeKey(dir, 'k2', newKey().text, 0o640);
    for (const id of ['k1', 'k2']) await chown(join(dir, id), process.getuid!(), gid);
    t.ok(processGroupIds().has((await stat(join(dir, 'k1'))).gid), 'the files belong to a group of this process');
    const { ring, warnings } = loaded(t, await loadKeyRing(dir));
    t.same(ring.ids, ['k1', 'k2']);
    t.same(warnings, [], '0440 and 0640 for our own group: nothing to warn about');
  });

  t.test("group write, or any access for others, is still warned about even for the process's own group", async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await writeKey(dir, 'k1', newKey().text, 0o660);
    await writeKey(dir, 'k2', newKey().text, 0o444);
    await writeKey(dir, 'k3', newKey().text, 0o604);
    const gid = process.getgid!();
    for (const id of ['k1', 'k2', 'k3']) await chown(join(dir, id), process.getuid!(), gid);
    const { warnings } = loaded(t, await loadKeyRing(dir));
    t.match(warnings, [
      `k1: mode 0660 lets group ${gid} write it; make it 0600 or 0400`,
      /^k2: mode 0444 lets others read it; /,
      /^k3: mode 0604 lets others read it; /,
    ]);
    t.equal(warnings.length, 3);
  });

  t.test(
    'group read by a group the process is not in is warned about, naming the group',
    { skip: CANNOT_CHOWN },
    async (t) => {
      const dir = await tempDir(t, 'keyring-');
      const gid = foreignGroup();
      await writeKey(dir, 'k1', newKey().text, 0o440);
      await writeKey(dir, 'k2', newKey().text, 0o400);
      for (const id of ['k1', 'k2']) await chown(join(dir, id), process.getuid!(), gid);
      const { ring, warnings } = loaded(t, await loadKeyRing(dir));
      t.same(ring.ids, ['k1', 'k2'], 'the keys still load');
      t.same(warnings.length, 1, 'only the group-readable file');
      t.match(
        warnings[0],
        `k1: mode 0440 lets group ${gid} (not a group of this process) read it; make it 0600 or 0400`,
      );
    },
  );

  t.test('a single key file (the audit key) follows the same rule and is named by its path', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await writeKey(dir, 'own.key', newKey().text, 0o440);
    await chown(join(dir, 'own.key'), process.getuid!(), process.getgid!());
    await writeKey(dir, 'open.key', newKey().text, 0o644);
    t.match(await loadKeyFile(join(dir, 'own.key')), { ok: true, warning: null }, '0440 for our own group');
    t.match(
      await loadKeyFile(join(dir, 'open.key')),
      { ok: true, warning: `${join(dir, 'open.key')}: mode 0644 lets others read it; ` },
      '0644',
    );
    if (CANNOT_CHOWN !== false) return;
    await writeKey(dir, 'foreign.key', newKey().text, 0o440);
    await chown(join(dir, 'foreign.key'), process.getuid!(), foreignGroup());
    const foreign = await loadKeyFile(join(dir, 'foreign.key'));
    t.match(
      foreign,
      { ok: true, warning: /foreign\.key: mode 0440 lets group \d+ \(not a group of this process\) read it/ },
      'a foreign group',
    );
  });

  t.test('dotfiles, subdirectories and names that are not key ids are skipped', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await writeKey(dir, 'k1', newKey().text);
    await writeKey(dir, '.k1.swp', 'editor junk');
    await mkdir(join(dir, '..2026_11_23_10_00_00.123'));
    await writeKey(join(dir, '..2026_11_23_10_00_00.123'), 'k9', 'not a key');
    await mkdir(join(dir, 'archive'));
    await writeKey(join(dir, 'archive'), 'k8', 'not a key either');
    await writeKey(dir, 'k1~', 'editor backup');
    const { ring, warnings } = loaded(t, await loadKeyRing(dir));
    t.same(ring.ids, ['k1']);
    t.equal(warnings.length, 1, 'a file whose name is not a key id is pointed out');
    t.match(warnings[0], /"k1~": skipped: not a valid key id/);
  });

  t.test('a symlink that points to nothing fails the load', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await symlink('..data/k1', join(dir, 'k1'));
    t.match(problemsOf(t, await loadKeyRing(dir)), [/^k1: the symlink points to nothing/]);
  });

  t.test('an unknown id has no key', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await writeKey(dir, 'k1', newKey().text);
    const { ring } = loaded(t, await loadKeyRing(dir));
    t.equal(ring.get('k2'), undefined);
    t.equal(ring.get('__proto__'), undefined);
    t.equal(ring.get('constructor'), undefined);
    t.equal(ring.get(''), undefined);
  });
});

t.test('a ring from entries', async (t) => {
  t.test('holds the given keys under their ids, sorted', async (t) => {
    const b = newKey();
    const a = newKey();
    const ring = keyRingFromEntries([
      ['b', b.bytes],
      ['a', a.bytes],
    ]);
    t.same(ring.ids, ['a', 'b']);
    t.equal(ring.size, 2);
    t.ok(sameKey(ring, 'a', a) && sameKey(ring, 'b', b));
    t.not(
      b.bytes.every((x) => x === 0),
      "the caller's buffers are left alone",
    );
  });

  t.test('refuses short keys, bad ids and duplicates', async (t) => {
    t.throws(() => keyRingFromEntries([['k1', randomBytes(16)]]), /k1: key is 16 bytes/);
    t.throws(() => keyRingFromEntries([['.k1', randomBytes(32)]]), /not 1-128 characters/);
    t.throws(
      () =>
        keyRingFromEntries([
          ['k1', randomBytes(32)],
          ['k1', randomBytes(32)],
        ]),
      /twice/,
    );
  });
});

t.test('watching', async (t) => {
  t.test('a new key file written into the directory is picked up', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k1 = newKey();
    const k2 = newKey();
    await writeKey(dir, 'k1', k1.text);
    const { w, logs, audits, reloads } = await watched(t, dir);
    await writeKey(dir, 'k2', k2.text);
    await eventually(() => w.current().get('k2') !== undefined, WAIT_MS, 'k2 to be loaded');
    t.ok(sameKey(w.current(), 'k2', k2) && sameKey(w.current(), 'k1', k1));
    const line = logs.lines.find((l) => l.msg === 'key ring reloaded');
    t.match(line, { level: 30, added: ['k2'], removed: [], keyCount: 2 }, 'one info line with what changed');
    t.match(audits, [{ type: KEY_RING_EVENT, fields: { ok: true, added: ['k2'], removed: [], problems: [] } }]);
    t.match(reloads.at(-1), { result: 'success', size: 2 });
    t.ok(noKeyTextIn(logs, [k1, k2]), 'no key text in the log');
  });

  t.test('a removed key file is dropped', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k1 = newKey();
    const k2 = newKey();
    await writeKey(dir, 'k1', k1.text);
    await writeKey(dir, 'k2', k2.text);
    const { w, logs, audits } = await watched(t, dir);
    t.same(w.current().ids, ['k1', 'k2']);
    await unlink(join(dir, 'k2'));
    await eventually(() => w.current().get('k2') === undefined, WAIT_MS, 'k2 to be dropped');
    t.same(w.current().ids, ['k1']);
    t.match(audits, [{ type: KEY_RING_EVENT, fields: { ok: true, added: [], removed: ['k2'] } }]);
    t.ok(noKeyTextIn(logs, [k1, k2]));
  });

  t.test('a bad key file added keeps the old ring and reports the failure', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k1 = newKey();
    const short = newKey(16);
    await writeKey(dir, 'k1', k1.text);
    const { w, logs, audits, reloads } = await watched(t, dir);
    const before = w.current();
    await writeKey(dir, 'k2', short.text);
    await eventually(() => reloads.some((r) => r.result === 'failure'), WAIT_MS, 'a failed reload');
    t.equal(w.current(), before, 'the old ring is kept');
    t.match(
      reloads.find((r) => r.result === 'failure'),
      { size: 1 },
      'onReload gets the ring in use',
    );
    const line = logs.lines.find((l) => l.level === 50);
    t.match(
      line,
      { msg: /key ring reload failed/, problems: ['k2: key is 16 bytes; at least 32 are required'] },
      'an error line with the problems',
    );
    t.match(audits, [{ type: KEY_RING_EVENT, fields: { ok: false, added: [], removed: [], problems: [/^k2: /] } }]);
    t.ok(noKeyTextIn(logs, [k1, short]));
    t.notOk(JSON.stringify(audits).includes(short.text.trim()), 'no key text in the audit event');

    // fixing the file recovers
    const k2 = newKey();
    await writeKey(dir, 'k2', k2.text);
    await eventually(() => sameKey(w.current(), 'k2', k2), WAIT_MS, 'the fixed k2 to be loaded');
  });

  t.test('a ring the validate check refuses is not swapped in', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await writeKey(dir, 'k1', newKey().text);
    await writeKey(dir, 'k2', newKey().text);
    const { w, logs, audits, reloads } = await watched(t, dir, {
      validate: (ring) => (ring.get('k1') === undefined ? 'the signing key k1 is missing' : null),
    });
    const before = w.current();
    await unlink(join(dir, 'k1'));
    await eventually(() => reloads.some((r) => r.result === 'failure'), WAIT_MS, 'a refused reload');
    t.equal(w.current(), before, 'the old ring is kept');
    t.same(w.current().ids, ['k1', 'k2']);
    t.match(
      logs.lines.find((l) => l.level === 50),
      { problems: ['the signing key k1 is missing'] },
    );
    t.match(audits, [{ fields: { ok: false, problems: ['the signing key k1 is missing'] } }]);
  });

  t.test('a Kubernetes Secret volume swap brings in the new keys', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k1a = newKey();
    const k1b = newKey();
    const k2 = newKey();
    await mkdir(join(dir, '..2026_a'));
    await writeKey(join(dir, '..2026_a'), 'k1', k1a.text, 0o400);
    await symlink('..2026_a', join(dir, '..data'));
    await symlink('..data/k1', join(dir, 'k1'));
    const { w, logs } = await watched(t, dir);
    t.ok(sameKey(w.current(), 'k1', k1a));

    await mkdir(join(dir, '..2026_b'));
    await writeKey(join(dir, '..2026_b'), 'k1', k1b.text, 0o400);
    await writeKey(join(dir, '..2026_b'), 'k2', k2.text, 0o400);
    await symlink('..2026_b', join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    await symlink('..data/k2', join(dir, 'k2'));
    await rm(join(dir, '..2026_a'), { recursive: true });

    await eventually(
      () => sameKey(w.current(), 'k1', k1b) && sameKey(w.current(), 'k2', k2),
      WAIT_MS,
      "k1's new key and k2",
    );
    t.same(w.current().ids, ['k1', 'k2']);
    const changes = logs.lines.filter((l) => l.msg === 'key ring reloaded');
    t.ok(changes.length >= 1);
    t.ok(
      changes.some((l) => (l.changed as string[]).includes('k1')),
      'a key whose material changed under the same id is reported as changed',
    );
    t.ok(noKeyTextIn(logs, [k1a, k1b, k2]));
  });

  t.test('a reload that finds nothing changed is a quiet success', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k1 = newKey();
    await writeKey(dir, 'k1', k1.text);
    const { w, logs, audits, reloads } = await watched(t, dir);
    const before = w.current();
    t.same(await w.reload(), { ok: true, problems: [] });
    // an editor's temp file comes and goes: reloads, and nothing to say about them
    await writeKey(dir, '.k1.swp', 'junk');
    await unlink(join(dir, '.k1.swp'));
    await eventually(() => reloads.length >= 2, WAIT_MS, 'the reload after the temp file');
    t.equal(w.current(), before, 'the ring in use stays the same object');
    t.ok(reloads.every((r) => r.result === 'success'));
    t.same(audits, [], 'no audit event');
    t.ok(
      logs.lines.every((l) => l.level === 20),
      'logged at debug only',
    );
    t.ok(noKeyTextIn(logs, [k1]));
  });

  t.test('an explicit reload reports its problems', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await writeKey(dir, 'k1', newKey().text);
    const { w } = await watched(t, dir, { debounceMs: 60_000 });
    await writeKey(dir, 'k2', 'garbage!');
    const r = await w.reload();
    t.equal(r.ok, false);
    t.match(r.problems, [/^k2: not base64/]);
    t.same(w.current().ids, ['k1']);
  });

  t.test('the directory disappearing keeps the old ring, and the next reload watches it again', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    const k1 = newKey();
    await writeKey(dir, 'k1', k1.text);
    const { w, logs, reloads } = await watched(t, dir);
    const before = w.current();
    await rm(dir, { recursive: true });
    await eventually(() => reloads.some((r) => r.result === 'failure'), WAIT_MS, 'the failed reload');
    const r = await w.reload();
    t.equal(r.ok, false);
    t.match(r.problems, [/does not exist/]);
    t.equal(w.current(), before, 'the old ring is kept');
    t.ok(
      logs.lines.some((l) => l.level === 40 && /gone/.test(String(l.msg))),
      'the loss of the directory is logged',
    );

    await mkdir(dir);
    const k2 = newKey();
    await writeKey(dir, 'k1', k1.text);
    t.same(await w.reload(), { ok: true, problems: [] }, 'the next reload succeeds');
    await writeKey(dir, 'k2', k2.text);
    await eventually(() => sameKey(w.current(), 'k2', k2), WAIT_MS, 'k2 seen through the new watch');
  });

  t.test('close stops watching', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await writeKey(dir, 'k1', newKey().text);
    const closed = await watched(t, dir, { debounceMs: DEBOUNCE_MS });
    const witness = await watched(t, dir, { debounceMs: DEBOUNCE_MS * 5 });
    closed.w.close();
    await writeKey(dir, 'k2', newKey().text);
    await eventually(() => witness.w.current().get('k2') !== undefined, WAIT_MS, 'the open watcher to see k2');
    t.same(closed.w.current().ids, ['k1'], 'the closed watcher did not reload');
    t.same(closed.reloads, []);
    t.equal((await closed.w.reload()).ok, false, 'nor does it reload on request');
  });

  t.test('a watcher does not keep the process alive', async (t) => {
    const dir = await tempDir(t, 'keyring-');
    await writeKey(dir, 'k1', newKey().text);
    const mod = fileURLToPath(new URL('../src/integrity/keyRing.ts', import.meta.url));
    const script = `
      import { loadKeyRing, watchKeyRing } from ${JSON.stringify(mod)};
      const r = await loadKeyRing(${JSON.stringify(dir)});
      if (!r.ok) process.exit(3);
      const noop = () => {};
      const log = { debug: noop, info: noop, warn: noop, error: noop };
      watchKeyRing(r.ring, { dir: ${JSON.stringify(dir)}, log, audit: { record: noop, flush: async () => {} } });
      console.log('watching');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '--eval', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), WAIT_MS);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearTimeout(timer);
    t.equal(out.trim(), 'watching');
    t.equal(code, 0, 'the process exits by itself');
  });
});
