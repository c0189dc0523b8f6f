/**
 * `bin/tollgate.js` whatever node starts it: on Node 22+ it runs in place; on an older node it
 * runs itself again with the pinned Node from node_modules (exit code and signals passed
 * through), or refuses in one line saying what to run instead. The process tests start the
 * machine's own Node 20 (/usr/bin/node), as a user typing ./bin/tollgate.js would.
 */
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MIN_NODE_MAJOR, pinnedNodePath, runtimeDecision } from '../bin/nodeRuntime.js';
import { BIN, exitWithin, type Finished, type Running } from './helpers/process.ts';
import { tempDir, type Teardownable } from './helpers/pki.ts';
import { eventually } from './helpers/world.ts';

const SYSTEM_NODE = '/usr/bin/node';

/** Skip reason for the process tests: they need the machine's node to be one older than tollgate needs. */
function whyNoOldNode(): string | false {
  if (!existsSync(SYSTEM_NODE)) return `${SYSTEM_NODE} is not installed`;
  const version = execFileSync(SYSTEM_NODE, ['--version'], { encoding: 'utf8' }).trim();
  if (Number(version.slice(1).split('.')[0]) >= MIN_NODE_MAJOR)
    return `${SYSTEM_NODE} is ${version}, not older than ${MIN_NODE_MAJOR}`;
  return false;
}
const needsOldNode = { skip: whyNoOldNode() };

/** `node file args…` as a child process, output collected. */
function startWith(t: Teardownable, node: string, file: string, args: string[]): Running {
  const child = spawn(node, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<Finished>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err })),
  );
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return {
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    logs: () => [],
    exited,
    exitCode: () => child.exitCode,
    running: () => child.exitCode === null && child.signalCode === null,
    kill: (signal) => child.kill(signal),
  };
}

t.test(
  'the version decision: run on 22+, re-run with the pinned Node below that, refuse in one line without one',
  async (t) => {
    t.same(runtimeDecision('24.21.0', '/p/node', false), { action: 'run' }, 'the pinned version runs in place');
    t.same(runtimeDecision('22.0.0', null, false), { action: 'run' }, '22.0.0 is enough, pinned Node or not');
    t.same(
      runtimeDecision('20.20.2', '/p/node', false),
      { action: 'reexec', binary: '/p/node' },
      'Node 20 with the pinned Node: re-run with it',
    );
    t.same(runtimeDecision('21.7.3', '/p/node', false), { action: 'reexec', binary: '/p/node' }, 'Node 21 too');

    const refused = runtimeDecision('20.20.2', null, false);
    t.equal(refused.action, 'refuse', 'Node 20 without the pinned Node: refuse');
    const message = refused.action === 'refuse' ? refused.message : '';
    t.notMatch(message, /\n/, 'in one line');
    t.match(message, /needs Node\.js 22 or newer, this is 20\.20\.2/, 'saying which Node it needs and which it got');
    t.match(message, /npm ci.*npx tollgate/, 'and what to run instead');

    const loop = runtimeDecision('20.20.2', '/p/node', true);
    t.equal(loop.action, 'refuse', 'a re-run that is still too old refuses instead of re-running again');
    t.match(loop.action === 'refuse' ? loop.message : '', /pinned Node\.js in node_modules is too old/, 'and says so');
  },
);

t.test(
  'package.json asks for Node 22+, the bin checks the same, and the pinned Node is the devDependency',
  async (t) => {
    type Package = { engines?: { node?: string }; devDependencies: Record<string, string> };
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as Package;
    t.equal(pkg.engines?.node, `>=${MIN_NODE_MAJOR}`, 'engines.node');
    t.ok(existsSync(pinnedNodePath(process.platform)), 'node_modules/node/bin/node is where the bin looks');
    const pinnedVersion = execFileSync(pinnedNodePath(process.platform), ['--version'], { encoding: 'utf8' }).trim();
    t.equal(pinnedVersion, `v${pkg.devDependencies.node}`, 'and is the pinned version');
  },
);

t.test("started by the machine's Node 20, bin/tollgate.js runs on the pinned Node", needsOldNode, async (t) => {
  const r = await exitWithin(startWith(t, SYSTEM_NODE, BIN, ['--version']), 20_000, 'tollgate --version on Node 20');
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`);
  t.equal(r.stdout, '0.1.0\n', 'the version, printed by dist/ (which cannot load on Node 20)');
  t.equal(r.stderr, '', 'no warning, no stack trace');

  const usage = await exitWithin(
    startWith(t, SYSTEM_NODE, BIN, ['keys', 'new', '--out']),
    20_000,
    'tollgate keys new --out',
  );
  t.equal(usage.code, 2, "the re-run's exit code is passed through (2: bad usage)");
  t.match(usage.stderr, /--out: needs a value/, 'with its stderr');
});

t.test(
  'a signal sent to the Node 20 process reaches the pinned-Node tollgate once, which drains and exits 0',
  needsOldNode,
  async (t) => {
    const p = startWith(t, SYSTEM_NODE, BIN, ['demo']);
    await eventually(() => p.stdout().includes('running; Ctrl-C to stop') || !p.running(), 30_000, 'the demo running');
    t.ok(p.running(), `the demo runs (stderr: ${p.stderr()})`);
    p.kill('SIGTERM');
    const r = await exitWithin(p, 20_000, 'the demo after SIGTERM');
    t.equal(r.code, 0, `exit 0: one signal, a clean stop (stderr: ${r.stderr})`);
    t.notMatch(r.stderr, /second signal/, 'not taken for a second signal');
  },
);

t.test(
  'an old Node without the pinned Node next to the bin is refused in one line naming what to run',
  needsOldNode,
  async (t) => {
    // a copy of bin/ with no node_modules beside it: what a checkout without `npm ci` looks like
    const dir = await tempDir(t, 'tollgate-bin-');
    await mkdir(join(dir, 'bin'));
    for (const f of ['tollgate.js', 'nodeRuntime.js'])
      await copyFile(new URL(`../bin/${f}`, import.meta.url), join(dir, 'bin', f));
    await copyFile(new URL('../package.json', import.meta.url), join(dir, 'package.json'));
    const r = await exitWithin(
      startWith(t, SYSTEM_NODE, join(dir, 'bin', 'tollgate.js'), ['--version']),
      20_000,
      'tollgate on Node 20 alone',
    );
    t.equal(r.code, 1, 'exit 1');
    t.equal(r.stdout, '', 'nothing on stdout');
    const lines = r.stderr.trimEnd().split('\n');
    t.equal(lines.length, 1, `one line (got: ${r.stderr})`);
    t.match(
      lines[0],
      /needs Node\.js 22 or newer, this is 20\..*run `npm ci`.*then `npx tollgate …`/,
      'which Node it needs and what to run instead',
    );
  },
);
