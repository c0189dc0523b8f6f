/**
 * The audit log in a running tollgate: `tollgate run` with `audit.file` writes start, drain and
 * stop into a chain that `tollgate audit verify` accepts; SIGTERM loses nothing; a restart
 * continues the chain; a corrupt last line refuses to start (exit 2); /audit/head gives the
 * last line's seq and hash; the key appears nowhere. Config validation of the audit section.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PRODUCER } from './helpers/identities.ts';
import type { Teardownable } from './helpers/pki.ts';
import { exitWithin, startTollgate } from './helpers/process.ts';
import { eventually, startTestSidecar, world, type TestIdentity, type World } from './helpers/world.ts';
import { expectConfig, expectProblems } from './helpers/config.ts';
import { validateConfig } from '../src/config/validate.ts';
import { lineHash } from '../src/telemetry/auditChain.ts';

interface Setup {
  w: World;
  ingest: TestIdentity;
  keyText: string;
  configFile: string;
  auditFile: string;
}

async function setup(t: Teardownable): Promise<Setup> {
  const w = await world(t);
  const ingest = await w.identity('ingest', { spiffe: ['spiffe://example.org/ingest'] });
  const keyText = randomBytes(32).toString('base64');
  await writeFile(join(w.dir, 'audit.key'), keyText + '\n', { mode: 0o600 });
  const config = {
    admin: { listen: null },
    drainTimeoutSeconds: 5,
    identity: { certFile: ingest.files.certFile, keyFile: ingest.files.keyFile, caFile: ingest.files.caFile },
    audit: { file: 'audit.log', keyFile: 'audit.key' },
    log: { level: 'debug' },
    listeners: [
      {
        name: 'ingest',
        mode: 'inbound',
        protocol: 'http',
        listen: '127.0.0.1:0',
        target: '127.0.0.1:9',
        allow: { spiffe: [PRODUCER] },
      },
    ],
  };
  const configFile = join(w.dir, 'tollgate.json');
  await writeFile(configFile, JSON.stringify(config));
  return { w, ingest, keyText, configFile, auditFile: join(w.dir, 'audit.log') };
}

/** Run tollgate until it has started, SIGTERM it, and return what it printed. */
async function runAndStop(t: Teardownable, s: Setup): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = startTollgate(t, ['run', '--config', s.configFile]);
  await eventually(
    () => p.logs().some((l) => l.msg === 'tollgate started') || !p.running(),
    15_000,
    'tollgate started',
  );
  if (!p.running()) throw new Error(`tollgate did not start: ${p.stderr()}${p.stdout()}`);
  p.kill('SIGTERM');
  return exitWithin(p, 15_000);
}

async function types(file: string): Promise<Array<{ seq: number; type: string }>> {
  const text = await readFile(file, 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { seq: number; type: string });
}

t.test(
  'SIGTERM loses nothing: start, drain and stop are in the file, and the chain verifies; a restart continues it',
  async (t) => {
    const s = await setup(t);
    const first = await runAndStop(t, s);
    t.equal(first.code, 0, first.stderr);
    t.same(
      (await types(s.auditFile)).map((e) => [e.seq, e.type]),
      [
        [1, 'start'],
        [2, 'drain'],
        [3, 'stop'],
      ],
    );

    const second = await runAndStop(t, s);
    t.equal(second.code, 0, second.stderr);
    t.same(
      (await types(s.auditFile)).map((e) => e.seq),
      [1, 2, 3, 4, 5, 6],
      'the second run continues the chain',
    );

    const v = startTollgate(t, ['audit', 'verify', s.auditFile, '--key', join(s.w.dir, 'audit.key')]);
    const done = await exitWithin(v, 15_000);
    t.equal(done.code, 0, done.stderr);
    t.match(done.stdout, /intact: 6 lines in 1 file .* seq 1\.\.6, head [0-9a-f]{64}/);

    const file = await readFile(s.auditFile, 'utf8');
    const hex = Buffer.from(s.keyText, 'base64').toString('hex');
    for (const [name, text] of [
      ['the audit file', file],
      ['stdout', first.stdout + second.stdout],
      ['stderr', first.stderr + second.stderr],
    ] as const) {
      t.notOk(text.includes(s.keyText) || text.includes(hex), `the key is not in ${name}`);
    }
    const auditLines = first.stdout.split('\n').filter((l) => l.includes('"audit":true'));
    t.ok(auditLines.length >= 3, 'each event is logged at debug');
    t.ok(
      auditLines.every((l) => l.includes('"level":"debug"')),
      'and not above debug',
    );
  },
);

t.test('a corrupt last line refuses to start with exit 2, naming audit.file', async (t) => {
  const s = await setup(t);
  t.equal((await runAndStop(t, s)).code, 0);
  const text = await readFile(s.auditFile, 'utf8');
  await writeFile(s.auditFile, text.slice(0, -15));
  const p = startTollgate(t, ['run', '--config', s.configFile]);
  const done = await exitWithin(p, 15_000);
  t.equal(done.code, 2);
  t.match(done.stderr, /audit\.file: .*audit\.log: the last line is incomplete/);
  t.equal(await readFile(s.auditFile, 'utf8'), text.slice(0, -15), 'the file is left as it was');

  const check = await exitWithin(startTollgate(t, ['check', '--config', s.configFile]), 15_000);
  t.equal(check.code, 2, 'tollgate check says the same');
  t.match(check.stderr, /audit\.file: /);
});

t.test('a weak audit key refuses to start', async (t) => {
  const s = await setup(t);
  await writeFile(join(s.w.dir, 'audit.key'), randomBytes(16).toString('base64'), { mode: 0o600 });
  const done = await exitWithin(startTollgate(t, ['run', '--config', s.configFile]), 15_000);
  t.equal(done.code, 2);
  t.match(done.stderr, /audit\.keyFile: .*key is 16 bytes; at least 32 are required/);
});

t.test('tollgate check reports where the chain continues', async (t) => {
  const s = await setup(t);
  const fresh = await exitWithin(startTollgate(t, ['check', '--config', s.configFile]), 15_000);
  t.equal(fresh.code, 0, fresh.stderr);
  t.match(fresh.stdout, /audit log .*audit\.log \(a new chain\)/);
});

t.test('/audit/head gives the seq and hash of the last line written', async (t) => {
  const s = await setup(t);
  const sc = await startTestSidecar(t, s.w.dir, {
    admin: { listen: '127.0.0.1:0' },
    identity: s.ingest.files,
    audit: { file: 'audit.log', keyFile: 'audit.key' },
    listeners: [
      { name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: '127.0.0.1:9', allow: { any: true } },
    ],
  });
  const url = `http://127.0.0.1:${sc.admin!.port}/audit/head`;
  let head: { seq: number; hash: string; file: string } = { seq: 0, hash: '', file: '' };
  await eventually(
    async () => {
      head = (await (await fetch(url)).json()) as typeof head;
      return head.seq >= 1;
    },
    5000,
    'the start event written',
  );
  const lines = (await readFile(s.auditFile, 'utf8')).split('\n').filter((l) => l !== '');
  t.equal(head.seq, lines.length);
  t.equal(head.hash, lineHash(lines[lines.length - 1]!));
  t.equal(head.file, s.auditFile);
  t.equal(await sc.metric('tollgate_audit_events_total', { type: 'start' }), 1, 'events are still counted');
  const auditLines = sc.logs.lines.filter((l) => l.audit === true);
  t.ok(auditLines.length >= 1 && auditLines.every((l) => l.level === 20), 'audit events are logged at debug only');
});

t.test('config: the audit section', async (t) => {
  const base = {
    identity: { certFile: 'c', keyFile: 'k', caFile: 'ca' },
    listeners: [{ name: 'l', mode: 'inbound', listen: '127.0.0.1:1', target: '127.0.0.1:2', allow: { any: true } }],
  };
  const opts = { baseDir: '/etc/tollgate', source: null };
  const c = expectConfig(validateConfig({ ...base, audit: { file: 'audit.log', keyFile: 'audit.key' } }, opts));
  t.same(
    c.audit,
    {
      file: '/etc/tollgate/audit.log',
      keyFile: '/etc/tollgate/audit.key',
      maxFileBytes: 64 * 1024 * 1024,
      maxFiles: 10,
    },
    'defaults: 64 MiB, 10 rotated files',
  );
  const problems = (audit: unknown): string[] =>
    expectProblems(validateConfig({ ...base, audit }, opts)).map((p) => `${p.path}: ${p.message}`);
  t.match(problems({ file: 'audit.log' }), [/^audit\.keyFile: required when audit\.file is set/]);
  t.match(problems({ file: 'audit.log', keyFile: null }), [/^audit\.keyFile: required/]);
  t.match(problems({ keyFile: 'audit.key' }), [/^audit\.file: required when audit\.keyFile is set/]);
  t.match(problems({ file: 'a', keyFile: 'k', maxFileBytes: 100, maxFiles: 0 }).sort(), [
    /^audit\.maxFileBytes: at least 4096/,
    /^audit\.maxFiles: expected a positive integer/,
  ]);
  t.match(problems({ file: 'a', keyFile: 'k', maxFiles: 5000 }), [/^audit\.maxFiles: at most 1000/]);
  t.match(problems({ file: 'a', keyFile: 'k', maxFileBytez: 1 }), [/^audit\.maxFileBytez/]);
});
