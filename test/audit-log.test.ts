/**
 * The tamper-evident audit log: hash-chained, MACed lines written in batches off the hot path,
 * rotated with the chain continuing, continued across restarts, and `tollgate audit verify`
 * naming the first bad line of every kind of tampering.
 */
import t from 'tap';
import { createSecretKey, randomBytes } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { tempDir, type Teardownable } from './helpers/pki.ts';
import { auditCommand } from '../src/cli/audit.ts';
import { formatLine, GENESIS_HASH, lineHash } from '../src/telemetry/auditChain.ts';
import { openAuditLog, type AuditLog, type AuditLogOptions } from '../src/telemetry/auditLog.ts';
import type { AuditEventType } from '../src/telemetry/audit.ts';

interface Setup {
  dir: string;
  file: string;
  keyFile: string;
  keyText: string;
  keyBytes: Buffer;
  logs: Array<{ level: string; obj: object; msg: string }>;
  counted: AuditEventType[];
}

async function setup(t: Teardownable): Promise<Setup> {
  const dir = await tempDir(t, 'tollgate-audit-');
  const keyBytes = randomBytes(32);
  const keyText = keyBytes.toString('base64');
  const keyFile = join(dir, 'audit.key');
  await writeFile(keyFile, keyText + '\n', { mode: 0o600 });
  return { dir, file: join(dir, 'audit.log'), keyFile, keyText, keyBytes, logs: [], counted: [] };
}

async function openLog(s: Setup, extra: Partial<AuditLogOptions> = {}): Promise<AuditLog> {
  const opened = await openAuditLog({
    file: s.file,
    key: createSecretKey(s.keyBytes),
    log: {
      error: (obj, msg) => s.logs.push({ level: 'error', obj, msg }),
      warn: (obj, msg) => s.logs.push({ level: 'warn', obj, msg }),
      debug: (obj, msg) => s.logs.push({ level: 'debug', obj, msg }),
    },
    count: (type) => s.counted.push(type),
    maxFileBytes: 64 * 1024 * 1024,
    maxFiles: 10,
    ...extra,
  });
  if (!opened.ok) throw new Error(opened.problems.join('; '));
  return opened.log;
}

/** Write n events (handshake_failure with field i) and close. */
async function writeEvents(s: Setup, n: number, extra: Partial<AuditLogOptions> = {}): Promise<void> {
  const log = await openLog(s, extra);
  for (let i = 0; i < n; i++) log.record('handshake_failure', { listener: 'ingest', reason: 'unknown_ca', i });
  await log.close();
}

async function verify(s: Setup, ...args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await auditCommand(
    ['verify', s.file, '--key', s.keyFile, ...args],
    { out: (l) => out.push(l), err: (l) => err.push(l) },
    s.dir,
  );
  return { code, out, err };
}

async function lines(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  return text.split('\n').slice(0, -1);
}

t.test('each event is one line with seq, time, type, its fields, prev and mac, and verify passes', async (t) => {
  const s = await setup(t);
  await writeEvents(s, 3);
  const ls = await lines(s.file);
  t.equal(ls.length, 3);
  let prev = GENESIS_HASH;
  ls.forEach((line, i) => {
    const o = JSON.parse(line) as Record<string, unknown>;
    t.same(Object.keys(o), ['seq', 'time', 'type', 'listener', 'reason', 'i', 'prev', 'mac'], 'field order');
    t.equal(o.seq, i + 1);
    t.equal(o.type, 'handshake_failure');
    t.equal(o.i, i);
    t.equal(o.prev, prev, 'prev is the hash of the line before (64 zeros first)');
    t.match(o.mac, /^[0-9a-f]{64}$/);
    prev = lineHash(line);
  });
  t.same(s.counted, ['handshake_failure', 'handshake_failure', 'handshake_failure'], 'every event counted');
  const v = await verify(s);
  t.equal(v.code, 0, v.err.join('\n'));
  t.match(v.out[0], `intact: 3 lines in 1 file`);
  t.match(v.out[0], `seq 1..3, head ${prev}`);
});

t.test('the mac is HMAC-SHA256 over the line without its mac field', async (t) => {
  const s = await setup(t);
  const key = createSecretKey(s.keyBytes);
  const line = formatLine(key, { seq: 41, hash: 'a'.repeat(64) }, '2026-01-01T00:00:00.000Z', 'replay', {
    keyId: 'k1',
    seq: 'not ours',
  });
  const { createHmac } = await import('node:crypto');
  const body =
    '{"seq":42,"time":"2026-01-01T00:00:00.000Z","type":"replay","keyId":"k1","field_seq":"not ours","prev":"' +
    'a'.repeat(64) +
    '"}';
  const mac = createHmac('sha256', s.keyBytes).update(body).digest('hex');
  t.equal(
    line,
    body.slice(0, -1) + `,"mac":"${mac}"}`,
    'a field named like a chain field is renamed, never overrides it',
  );
});

t.test('tampering is detected at the first bad line', async (t) => {
  const cases: Array<{ name: string; tamper: (ls: string[], s: Setup) => string; line: number; problem: RegExp }> = [
    {
      name: 'a changed field',
      tamper: (ls) => [ls[0], ls[1]!.replace('"i":1', '"i":7'), ...ls.slice(2)].join('\n') + '\n',
      line: 2,
      problem: /bad MAC/,
    },
    {
      name: 'a deleted line',
      tamper: (ls) => [ls[0], ...ls.slice(2)].join('\n') + '\n',
      line: 2,
      problem: /seq gap: expected seq 2, found 3/,
    },
    {
      name: 'two lines reordered',
      tamper: (ls) => [ls[0], ls[2], ls[1], ...ls.slice(3)].join('\n') + '\n',
      line: 2,
      problem: /seq gap: expected seq 2, found 3/,
    },
    {
      name: 'an inserted line forged without the key',
      tamper: (ls) => {
        const forged = formatLine(
          createSecretKey(randomBytes(32)),
          { seq: 1, hash: lineHash(ls[0]!) },
          new Date().toISOString(),
          'authz_deny',
          { listener: 'ingest' },
        );
        return [ls[0], forged, ...ls.slice(1)].join('\n') + '\n';
      },
      line: 2,
      problem: /bad MAC/,
    },
    {
      name: 'the first line deleted',
      tamper: (ls) => ls.slice(1).join('\n') + '\n',
      line: 1,
      problem: /seq gap: expected seq 1, found 2/,
    },
    {
      name: 'a truncated last line',
      tamper: (ls) => (ls.join('\n') + '\n').slice(0, -10),
      line: 5,
      problem: /no newline/,
    },
    {
      name: 'a line cut short in the middle',
      tamper: (ls) => [ls[0], ls[1]!.slice(0, 40), ...ls.slice(2)].join('\n') + '\n',
      line: 2,
      problem: /unparsable/,
    },
    {
      name: 'a line written under another key',
      tamper: (ls) =>
        [
          ...ls.slice(0, 4),
          formatLine(
            createSecretKey(randomBytes(32)),
            { seq: 4, hash: lineHash(ls[3]!) },
            new Date().toISOString(),
            'stop',
            {},
          ),
        ].join('\n') + '\n',
      line: 5,
      problem: /bad MAC/,
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const s = await setup(t);
      await writeEvents(s, 5);
      const ls = await lines(s.file);
      await writeFile(s.file, c.tamper(ls, s));
      const v = await verify(s);
      t.equal(v.code, 1, 'exit 1');
      t.match(
        v.err[0],
        new RegExp(`^${s.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${c.line}: `),
        `names line ${c.line}: ${v.err[0]}`,
      );
      t.match(v.err[0], c.problem);
      t.match(v.out[0], `first bad line ${s.file}:${c.line}`);
    });
  }
});

t.test('a whole last line removed is caught by comparing with an exported head', async (t) => {
  const s = await setup(t);
  const log = await openLog(s);
  for (let i = 0; i < 4; i++) log.record('authz_deny', { i });
  await log.flush();
  const head = log.head();
  await log.close();
  t.equal(head.seq, 4);
  t.equal(head.file, s.file);
  const ls = await lines(s.file);
  t.equal(head.hash, lineHash(ls[3]!), 'head is the hash of the last line written');
  t.equal((await verify(s, '--expect-head', `${head.seq}:${head.hash}`)).code, 0, 'intact and matching its head');
  await writeFile(s.file, ls.slice(0, 3).join('\n') + '\n');
  t.equal((await verify(s)).code, 0, 'a clean truncation alone still chains');
  const v = await verify(s, '--expect-head', `${head.seq}:${head.hash}`);
  t.equal(v.code, 1);
  t.match(v.err[0], /truncated: the log ends at seq 3 but the anchored head is seq 4/);
});

t.test('a log rewritten with the key is caught by an exported head', async (t) => {
  const s = await setup(t);
  await writeEvents(s, 3);
  const ls = await lines(s.file);
  const head = { seq: 3, hash: lineHash(ls[2]!) };
  const key = createSecretKey(s.keyBytes);
  const l1 = formatLine(key, { seq: 0, hash: GENESIS_HASH }, new Date().toISOString(), 'start', {});
  const l2 = formatLine(key, { seq: 1, hash: lineHash(l1) }, new Date().toISOString(), 'start', {});
  const l3 = formatLine(key, { seq: 2, hash: lineHash(l2) }, new Date().toISOString(), 'stop', {});
  await writeFile(s.file, [l1, l2, l3].join('\n') + '\n');
  t.equal((await verify(s)).code, 0, 'without an anchor, whoever holds the key can rewrite the log');
  const v = await verify(s, '--expect-head', `${head.seq}:${head.hash}`);
  t.equal(v.code, 1);
  t.match(v.err[0], /:3: does not match the anchored head/);
});

t.test('verify: bad usage exits 2', async (t) => {
  const s = await setup(t);
  await writeEvents(s, 1);
  const o = { out: () => undefined, err: () => undefined };
  t.equal(await auditCommand(['verify', s.file], o, s.dir), 2, 'no --key');
  t.equal(await auditCommand(['verify', '--key', s.keyFile], o, s.dir), 2, 'no FILE');
  t.equal(await auditCommand(['check', s.file, '--key', s.keyFile], o, s.dir), 2, 'unknown subcommand');
  t.equal(await auditCommand(['verify', join(s.dir, 'nope.log'), '--key', s.keyFile], o, s.dir), 2, 'missing FILE');
  t.equal(
    await auditCommand(['verify', s.file, '--key', s.keyFile, '--expect-head', '3:abc'], o, s.dir),
    2,
    'bad head',
  );
  const weak = join(s.dir, 'weak.key');
  await writeFile(weak, randomBytes(16).toString('base64'));
  const err: string[] = [];
  t.equal(
    await auditCommand(['verify', s.file, '--key', weak], { out: () => undefined, err: (l) => err.push(l) }, s.dir),
    2,
    'a weak key is refused',
  );
  t.match(err[0], /key is 16 bytes; at least 32/);
});

t.test('rotation: the chain continues across files and verify follows it', async (t) => {
  const s = await setup(t);
  await writeEvents(s, 60, { maxFileBytes: 2000 });
  const names = (await readdir(s.dir)).filter((n) => n.startsWith('audit.log')).sort();
  t.ok(names.length >= 3, `rotated into ${names.join(', ')}`);
  const current = await lines(s.file);
  const rotated = await lines(`${s.file}.1`);
  const first = JSON.parse(current[0]!) as { seq: number; prev: string };
  const lastRotated = JSON.parse(rotated[rotated.length - 1]!) as { seq: number };
  t.equal(first.seq, lastRotated.seq + 1, 'seq continues in the new file');
  t.equal(first.prev, lineHash(rotated[rotated.length - 1]!), 'prev carries the hash of the rotated file’s last line');
  for (const n of names) {
    const text = await readFile(join(s.dir, n));
    t.ok(text.length <= 2000, `${n} stays within maxFileBytes`);
  }
  const v = await verify(s);
  t.equal(v.code, 0, v.err.join('\n'));
  t.match(v.out[0], `intact: 60 lines in ${names.length} files`);
  t.match(v.out[0], 'seq 1..60');

  // tampering inside a rotated file is named by that file
  const older = await lines(`${s.file}.1`);
  await writeFile(`${s.file}.1`, [older[0], older[1]!.replace('"i":', '"i":1'), ...older.slice(2)].join('\n') + '\n');
  const bad = await verify(s);
  t.equal(bad.code, 1);
  t.match(bad.err[0], `${s.file}.1:2: bad MAC`);
});

t.test(
  'rotation keeps at most maxFiles rotated files; verify --partial accepts a chain whose start was rotated away',
  async (t) => {
    const s = await setup(t);
    await writeEvents(s, 80, { maxFileBytes: 1500, maxFiles: 2 });
    const names = (await readdir(s.dir)).filter((n) => n.startsWith('audit.log')).sort();
    t.same(names, ['audit.log', 'audit.log.1', 'audit.log.2']);
    const strict = await verify(s);
    t.equal(strict.code, 1, 'the start of the chain is missing');
    t.match(strict.err[0], /audit\.log\.2:1: seq gap: expected seq 1/);
    const partial = await verify(s, '--partial');
    t.equal(partial.code, 0, partial.err.join('\n'));
    t.match(partial.out.join('\n'), /note: the chain starts at seq \d+/);
    t.match(partial.out[0], /seq \d+\.\.80/);
  },
);

t.test('a restart continues the chain', async (t) => {
  const s = await setup(t);
  await writeEvents(s, 3);
  const again = await openLog(s);
  t.equal(again.head().seq, 3, 'the head is read back from the file');
  again.record('start', {});
  await again.close();
  const ls = await lines(s.file);
  t.equal(ls.length, 4);
  t.equal((JSON.parse(ls[3]!) as { seq: number }).seq, 4);
  t.equal((await verify(s)).code, 0);
});

t.test('a restart right after a rotation continues from FILE.1', async (t) => {
  const s = await setup(t);
  await writeEvents(s, 3);
  const { rename } = await import('node:fs/promises');
  await rename(s.file, `${s.file}.1`);
  const again = await openLog(s);
  t.equal(again.head().seq, 3);
  again.record('start', {});
  await again.close();
  t.equal((await verify(s)).code, 0);
});

t.test('a corrupt or foreign last line refuses to start rather than begin a new chain', async (t) => {
  const s = await setup(t);
  await writeEvents(s, 3);
  const text = await readFile(s.file, 'utf8');
  const k = createSecretKey(s.keyBytes);
  const tryOpen = () =>
    openAuditLog({
      file: s.file,
      key: k,
      log: { error() {}, warn() {}, debug() {} },
      count() {},
      maxFileBytes: 1 << 20,
      maxFiles: 2,
    });

  await writeFile(s.file, text.slice(0, -20));
  let r = await tryOpen();
  t.equal(r.ok, false, 'truncated last line');
  if (!r.ok) t.match(r.problems[0], /the last line is incomplete/);

  await writeFile(s.file, text.slice(0, -30) + 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n');
  r = await tryOpen();
  t.equal(r.ok, false, 'garbled last line');
  if (!r.ok) t.match(r.problems[0], /the last line does not verify/);

  await writeFile(s.file, text);
  const other = await openAuditLog({
    file: s.file,
    key: createSecretKey(randomBytes(32)),
    log: { error() {}, warn() {}, debug() {} },
    count() {},
    maxFileBytes: 1 << 20,
    maxFiles: 2,
  });
  t.equal(other.ok, false, 'a different key');
  if (!other.ok) t.match(other.problems[0], /bad MAC/);
  t.equal(await readFile(s.file, 'utf8'), text, 'nothing was written');
});

/** A FileHandle whose writes are counted and can be made to fail. */
function spyOpen(state: { writes: number; fail: boolean }): (path: string) => Promise<FileHandle> {
  return async (path) => {
    const fh = await open(path, 'a', 0o600);
    const write = fh.write.bind(fh) as (...a: unknown[]) => Promise<{ bytesWritten: number }>;
    (fh as unknown as { write: unknown }).write = (...a: unknown[]) => {
      state.writes++;
      if (state.fail) return Promise.reject(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
      return write(...a);
    };
    return fh;
  };
}

t.test('record() only batches: many events, few writes', async (t) => {
  const s = await setup(t);
  const state = { writes: 0, fail: false };
  const log = await openLog(s, { openFile: spyOpen(state), batchEvents: 1000 });
  for (let i = 0; i < 500; i++) log.record('handshake_failure', { reason: 'timeout', i });
  t.equal(state.writes, 0, 'nothing is written synchronously by record()');
  t.equal((await readFile(s.file)).length, 0);
  await log.flush();
  t.equal(state.writes, 1, '500 events, one write');
  t.equal((await lines(s.file)).length, 500);
  for (let i = 0; i < 2500; i++) log.record('handshake_failure', { reason: 'timeout', i });
  await log.close();
  t.ok(state.writes <= 5, `2500 more events in ${state.writes - 1} writes (batches of 1000)`);
  t.equal((await lines(s.file)).length, 3000);
  t.equal((await verify(s)).code, 0);
});

t.test('the batch timer writes without an explicit flush', async (t) => {
  const s = await setup(t);
  const log = await openLog(s, { flushIntervalMs: 10 });
  log.record('start', {});
  const deadline = Date.now() + 5000;
  while (log.head().seq < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(log.head().seq, 1);
  t.equal((await lines(s.file)).length, 1);
  await log.close();
});

t.test(
  'a stuck disk: events are kept up to the cap, the rest are counted and the gap written into the chain',
  async (t) => {
    const s = await setup(t);
    const state = { writes: 0, fail: true };
    const log = await openLog(s, { openFile: spyOpen(state), maxPendingEvents: 10, flushIntervalMs: 60_000 });
    for (let i = 0; i < 5; i++) log.record('authz_deny', { i });
    await t.rejects(log.flush(), { code: 'EIO' }, 'flush reports the failure');
    for (let i = 5; i < 25; i++) log.record('authz_deny', { i });
    t.equal(log.dropped(), 10, 'the 5 being written and 10 waiting are kept, 10 dropped');
    t.equal(
      s.logs.filter((l) => l.level === 'error' && /dropped/.test(l.msg)).length,
      1,
      'one loud log line, not one per event',
    );
    state.fail = false;
    await log.close();
    const ls = (await lines(s.file)).map((l) => JSON.parse(l) as Record<string, unknown>);
    t.equal(ls.length, 16);
    t.same(
      ls.slice(0, 15).map((l) => l.i),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
      'kept events in order',
    );
    t.same(
      [ls[15]!.type, ls[15]!.dropped],
      ['audit_dropped', 10],
      'the drop is part of the chain, after the events kept',
    );
    t.equal((await verify(s)).code, 0);
  },
);

t.test('a write that fails part way is retried from where it stopped, keeping the chain', async (t) => {
  const s = await setup(t);
  let calls = 0;
  const openFile = async (path: string): Promise<FileHandle> => {
    const fh = await open(path, 'a', 0o600);
    const write = fh.write.bind(fh) as (buf: Buffer, off: number, len: number) => Promise<{ bytesWritten: number }>;
    (fh as unknown as { write: unknown }).write = async (buf: Buffer, off: number, len: number) => {
      calls++;
      if (calls === 1) return write(buf, off, Math.floor(len / 2)); // a short write
      if (calls === 2) throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' });
      return write(buf, off, len);
    };
    return fh;
  };
  const log = await openLog(s, { openFile, flushIntervalMs: 60_000 });
  for (let i = 0; i < 10; i++) log.record('replay', { i });
  await t.rejects(log.flush());
  await log.close();
  t.equal((await lines(s.file)).length, 10);
  t.equal((await verify(s)).code, 0);
});

t.test('the key never appears in the file or the log lines', async (t) => {
  const s = await setup(t);
  await writeEvents(s, 20);
  const text = await readFile(s.file, 'utf8');
  t.notOk(text.includes(s.keyText), 'no base64 key');
  t.notOk(text.includes(s.keyBytes.toString('hex')), 'no hex key');
  const logged = JSON.stringify(s.logs);
  t.notOk(logged.includes(s.keyText) || logged.includes(s.keyBytes.toString('hex')));
});
