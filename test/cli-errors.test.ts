/**
 * How the CLI reports what went wrong, as real processes: a system error comes with its errno
 * code and a sentence, a bind failure of `inbound`/`outbound` names the flag the operator typed,
 * and `tollgate check` lists the problems of a config and of the files it names in one list.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { explainErrno, errnoText } from '../src/core/errnoText.ts';
import { PRODUCER } from './helpers/identities.ts';
import { exitWithin, startTollgate, type Finished } from './helpers/process.ts';
import type { Teardownable } from './helpers/pki.ts';
import { world, type TestIdentity } from './helpers/world.ts';

async function run(t: Teardownable, args: string[]): Promise<Finished> {
  return exitWithin(startTollgate(t, args), 20_000, `tollgate ${args.join(' ')}`);
}

/** A loopback port some other process holds for the length of the test. */
async function takenPort(t: Teardownable): Promise<number> {
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((r) => squatter.close(r)));
  return (squatter.address() as AddressInfo).port;
}

function problemLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('  - '));
}

function identityFlags(id: TestIdentity): string[] {
  return ['--cert', id.files.certFile, '--key', id.files.keyFile, '--ca', id.files.caFile];
}

t.test('errno codes are followed by what they mean, and a code already explained is left alone', async (t) => {
  t.equal(errnoText('EADDRINUSE', 'socket'), 'EADDRINUSE: the address is already in use by another process');
  t.equal(
    explainErrno('--listen: 127.0.0.1:80: EACCES', 'socket'),
    '--listen: 127.0.0.1:80: EACCES: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  );
  t.equal(explainErrno('certFile /x.crt: ENOENT'), 'certFile /x.crt: ENOENT: no such file or directory');
  t.equal(explainErrno('cannot read (EISDIR)'), 'cannot read (EISDIR: it is a directory, not a file)');
  const explained = 'ENOENT: no such file or directory, open /x';
  t.equal(explainErrno(explained), explained, 'Node’s own message is not explained twice');
  const unknown = 'refused: ERR_SIG_MISSING, ECDSA key, EWHATEVER';
  t.equal(explainErrno(unknown), unknown, 'words that are not known codes are left as they are');
});

t.test(
  'inbound whose --listen port is taken exits 1 naming --listen, the address and EADDRINUSE with a sentence',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest');
    const port = await takenPort(t);
    const r = await run(t, [
      'inbound',
      '--listen',
      `127.0.0.1:${port}`,
      '--target',
      '127.0.0.1:8080',
      ...identityFlags(ingest),
      '--allow-spiffe',
      PRODUCER,
    ]);
    t.equal(r.code, 1, 'exit 1: a runtime failure');
    const expected = `  - --listen: 127.0.0.1:${port}: EADDRINUSE: the address is already in use by another process`;
    t.match(r.stderr, expected, 'the flag, the address, the code and what it means');
    t.notMatch(r.stderr, /listeners\[0\]/, 'not the config path the flags were turned into');
  },
);

t.test('outbound whose --admin port is taken names --admin', async (t) => {
  const w = await world(t);
  const producer = await w.identity('producer');
  const port = await takenPort(t);
  const r = await run(t, [
    'outbound',
    '--listen',
    '127.0.0.1:0',
    '--target',
    '127.0.0.1:15443',
    ...identityFlags(producer),
    '--admin',
    `127.0.0.1:${port}`,
  ]);
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, `  - --admin: 127.0.0.1:${port}: EADDRINUSE: the address is already in use by another process`);
  t.notMatch(r.stderr, /admin\.listen/, 'not admin.listen');
});

t.test(
  'inbound with a certificate file that does not exist names --cert, the file and ENOENT with a sentence',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest');
    const missing = join(w.dir, 'nowhere.crt');
    const flags = [
      '--listen',
      '127.0.0.1:0',
      '--target',
      '127.0.0.1:8080',
      '--cert',
      missing,
      '--key',
      ingest.files.keyFile,
      '--ca',
      ingest.files.caFile,
    ];
    const r = await run(t, ['inbound', ...flags, '--allow-any']);
    t.equal(r.code, 2, 'exit 2');
    t.match(r.stderr, `  - --cert ${missing}: ENOENT: no such file or directory`);
    t.notMatch(r.stderr, /identity\.certFile/, 'not the config path');
  },
);

t.test('run --config whose listener port is taken names the config path, with the sentence', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const port = await takenPort(t);
  const file = join(w.dir, 'taken.json');
  const listener = {
    name: 'ingest',
    mode: 'inbound',
    listen: `127.0.0.1:${port}`,
    target: '127.0.0.1:8080',
    allow: { spiffe: [PRODUCER] },
  };
  await writeFile(file, JSON.stringify({ admin: { listen: null }, identity: ingest.files, listeners: [listener] }));
  const r = await run(t, ['run', '--config', file]);
  t.equal(r.code, 1, 'exit 1');
  t.match(
    r.stderr,
    `  - listeners[0].listen: 127.0.0.1:${port}: EADDRINUSE: the address is already in use by another process`,
  );
});

t.test('check lists a missing certificate in the same list as the config problems', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const file = join(w.dir, 'broken.json');
  const listener = {
    name: 'ingest',
    mode: 'inbound',
    listen: '127.0.0.1:0',
    target: '127.0.0.1:8080',
    allwo: { any: true },
  };
  await writeFile(
    file,
    JSON.stringify({
      admin: { listen: null },
      identity: { ...ingest.files, certFile: 'nowhere.crt' },
      listeners: [listener],
    }),
  );
  const r = await run(t, ['check', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  const headings = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('  - '));
  t.same(headings, [`${file}: invalid configuration:`], 'one heading: one list');
  const lines = problemLines(r.stderr);
  t.ok(
    lines.some((l) => l.startsWith('  - listeners[0].allwo: unknown key (did you mean allow?)')),
    'the config problem',
  );
  t.ok(
    lines.some((l) => l.startsWith('  - listeners[0].allow: ')),
    'the one it causes',
  );
  t.ok(
    lines.includes(`  - identity.certFile ${join(w.dir, 'nowhere.crt')}: ENOENT: no such file or directory`),
    `the missing certificate, resolved against the config's folder, with its errno sentence (stderr: ${r.stderr})`,
  );
  t.equal(lines.length, 3, 'and nothing else');
});

t.test('check of a valid config lists every file problem at once: certificate, key ring and admin token', async (t) => {
  const w = await world(t);
  const ingest = await w.identity('ingest');
  const file = join(w.dir, 'files.json');
  const listener = {
    name: 'ingest',
    mode: 'inbound',
    listen: '127.0.0.1:0',
    target: '127.0.0.1:8080',
    allow: { spiffe: [PRODUCER] },
    integrity: { verify: true },
  };
  await writeFile(
    file,
    JSON.stringify({
      admin: { listen: '127.0.0.1:0', tokenFile: 'no-token' },
      identity: { ...ingest.files, keyFile: 'no-key' },
      keys: { dir: 'no-keys' },
      listeners: [listener],
    }),
  );
  const r = await run(t, ['check', '--config', file]);
  t.equal(r.code, 2, 'exit 2');
  const lines = problemLines(r.stderr);
  t.ok(
    lines.includes(`  - identity.keyFile ${join(w.dir, 'no-key')}: ENOENT: no such file or directory`),
    `the key (stderr: ${r.stderr})`,
  );
  t.ok(
    lines.some((l) => l.startsWith(`  - keys.dir: ${join(w.dir, 'no-keys')}: `)),
    'the key ring',
  );
  t.ok(
    lines.includes(`  - admin.tokenFile: ${join(w.dir, 'no-token')}: ENOENT: no such file or directory`),
    'the admin token',
  );
  t.equal(r.stderr.split('\n').filter((l) => l.endsWith(':') && !l.startsWith('  - ')).length, 1, 'under one heading');
});

t.test(
  'keys new on an existing key and certs pin on a missing file say the errno code and what it means',
  async (t) => {
    const w = await world(t);
    const keys = join(w.dir, 'keys');
    t.equal((await run(t, ['keys', 'new', '--out', keys, '--id', 'k1'])).code, 0, 'the first key');
    const again = await run(t, ['keys', 'new', '--out', keys, '--id', 'k1']);
    t.equal(again.code, 1, 'the second: exit 1');
    t.match(
      again.stderr,
      `${join(keys, 'k1')}: EEXIST: it already exists (keys are never overwritten`,
      'EEXIST with a sentence and the way out',
    );
    const pin = await run(t, ['certs', 'pin', join(w.dir, 'nope.crt')]);
    t.equal(pin.code, 1, 'certs pin of a missing file: exit 1');
    t.match(pin.stderr, 'nope.crt: ENOENT: no such file or directory');
  },
);
