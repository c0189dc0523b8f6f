/**
 * What a process loads is memory every pod pays for. A worker thread runs the data plane only:
 * it must not load the composition root, the admin app or fastify. `tollgate run` without an
 * admin or health server must not load fastify at all. Checked two ways: the static import graph
 * of src/ (what any build loads, whatever the config), and the modules a real `tollgate run`
 * process loads in each of its threads (recorded by a module load hook).
 */
import t from 'tap';
import ts from 'typescript';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BIN } from './helpers/process.ts';
import { eventually, startUpstream, world, type World } from './helpers/world.ts';
import type { Teardownable } from './helpers/pki.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = join(ROOT, 'src');

/**
 * The modules a file loads when it is imported: its import and export-from declarations, less
 * those erased at compile time (`import type`, `export type`). With verbatimModuleSyntax an
 * `import { type X }` still loads its module, so it counts. `import()` is not followed: it loads
 * only when the code runs it.
 */
function staticImportsOf(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const specifiers: string[] = [];
  for (const s of source.statements) {
    if (ts.isImportDeclaration(s) && s.importClause?.isTypeOnly !== true && ts.isStringLiteral(s.moduleSpecifier))
      specifiers.push(s.moduleSpecifier.text);
    const reExport = ts.isExportDeclaration(s) && !s.isTypeOnly && s.moduleSpecifier !== undefined;
    if (reExport && ts.isStringLiteral(s.moduleSpecifier!))
      specifiers.push((s.moduleSpecifier as ts.StringLiteral).text);
  }
  return specifiers;
}

/** Every module reached from `entry` through static imports: our files relative to src/, packages by name (not followed into). */
function staticGraph(entry: string): Set<string> {
  const reached = new Set<string>();
  const queue = [join(SRC, entry)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    const name = relative(SRC, file);
    if (reached.has(name)) continue;
    reached.add(name);
    for (const spec of staticImportsOf(file)) {
      if (spec.startsWith('.')) queue.push(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:'))
        reached.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  }
  return reached;
}

t.test('the static import graph reads imports, skips what compiles away, and does not follow import()', async (t) => {
  const graph = staticGraph('cli/main.ts');
  t.ok(graph.has('cli/commands.ts'), 'a static import is followed');
  t.notOk(graph.has('cli/check.ts'), 'a command loaded with import() is not');
  t.ok(staticGraph('main.ts').has('pino'), 'a package is recorded by name');
});

t.test('a worker thread statically loads neither the composition root, nor the admin apps, nor fastify', async (t) => {
  const graph = staticGraph('workers/workerMain.ts');
  t.ok(graph.has('proxy/dataPlane.ts'), 'the data plane it runs is in its graph');
  t.notOk(graph.has('main.ts'), 'not src/main.ts');
  t.same(
    [...graph].filter((m) => m.startsWith('admin/')),
    [],
    'nothing of src/admin/',
  );
  t.notOk(graph.has('fastify'), 'not fastify');
});

t.test(
  'the composition root and the CLI load fastify only through import(), when an admin or health server is configured',
  async (t) => {
    t.notOk(staticGraph('main.ts').has('fastify'), 'src/main.ts does not import fastify statically');
    const cli = staticGraph('cli/main.ts');
    t.notOk(cli.has('main.ts'), 'the CLI entry does not load the composition root');
    t.notOk(cli.has('fastify'), 'nor fastify');
  },
);

/** Writes every module URL a thread loads as `threadId url` lines to the file named by TOLLGATE_TEST_LOADED. */
const LOAD_RECORDER = `import { registerHooks } from 'node:module';
import { threadId } from 'node:worker_threads';
import { appendFileSync } from 'node:fs';
const out = process.env.TOLLGATE_TEST_LOADED;
registerHooks({
  load(url, context, nextLoad) {
    appendFileSync(out, threadId + ' ' + url + '\\n');
    return nextLoad(url, context);
  },
});
`;

interface Loaded {
  readonly stdout: string;
  /** the main thread's module URLs */
  readonly main: readonly string[];
  /** each worker thread's */
  readonly workers: ReadonlyArray<readonly string[]>;
}

/** Run `tollgate run` (bin/tollgate.js, dist/) with `config` until it has started, SIGTERM it, and return what each thread loaded. */
async function modulesLoadedByRun(
  t: Teardownable,
  w: World,
  name: string,
  config: Record<string, unknown>,
): Promise<Loaded> {
  const file = join(w.dir, `${name}.json`);
  await writeFile(file, JSON.stringify(config));
  return modulesLoadedBy(t, w, name, ['run', '--config', file], true);
}

/** Run bin/tollgate.js with `args` until it exits (a sidecar: until it has started, then SIGTERM) and return what each thread loaded. */
async function modulesLoadedBy(
  t: Teardownable,
  w: World,
  name: string,
  args: readonly string[],
  sidecar: boolean,
): Promise<Loaded> {
  const recorder = join(w.dir, 'record-loads.mjs');
  await writeFile(recorder, LOAD_RECORDER);
  const out = join(w.dir, `${name}.loaded`);
  const child = spawn(process.execPath, ['--import', pathToFileURL(recorder).href, BIN, ...args], {
    env: { ...process.env, TOLLGATE_TEST_LOADED: out },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  t.teardown(() => void child.kill('SIGKILL'));
  if (sidecar) {
    await eventually(
      () => stdout.includes('"msg":"tollgate started"') || child.exitCode !== null,
      15_000,
      'tollgate started',
    );
    if (!stdout.includes('"msg":"tollgate started"')) throw new Error(`tollgate did not start: ${stderr}${stdout}`);
    child.kill('SIGTERM');
  }
  if ((await exited) !== 0) throw new Error(`tollgate ${args.join(' ')} did not exit 0: ${stderr}`);
  const byThread = new Map<number, string[]>();
  for (const line of (await readFile(out, 'utf8')).split('\n').filter((l) => l !== '')) {
    const space = line.indexOf(' ');
    const thread = Number(line.slice(0, space));
    byThread.set(thread, [...(byThread.get(thread) ?? []), line.slice(space + 1)]);
  }
  return {
    stdout,
    main: byThread.get(0) ?? [],
    workers: [...byThread.entries()].filter(([id]) => id !== 0).map(([, urls]) => urls),
  };
}

const isFastify = (url: string): boolean => url.includes('/node_modules/fastify/');
const DIST = pathToFileURL(join(ROOT, 'dist')).href;

t.test(
  'tollgate run loads fastify only when an admin server is configured, and never in a worker thread',
  async (t) => {
    const w = await world(t);
    const ingest = await w.identity('ingest', { dns: ['localhost'] });
    const app = await startUpstream(t);
    const config = (admin: string | null): Record<string, unknown> => ({
      workers: 2,
      admin: { listen: admin },
      identity: ingest.files,
      listeners: [{ name: 'ingest', mode: 'inbound', listen: '127.0.0.1:0', target: app.addr, allow: { any: true } }],
    });

    const lean = await modulesLoadedByRun(t, w, 'no-admin', config(null));
    t.ok(
      lean.main.some((u) => u === `${DIST}/main.js`),
      'the recorder sees the composition root load in the main thread',
    );
    t.equal(lean.workers.length, 1, 'and one worker thread');
    t.ok(
      lean.workers[0]!.some((u) => u === `${DIST}/workers/workerMain.js`),
      'whose entry it sees load',
    );
    t.same(lean.main.filter(isFastify), [], 'without admin or health server, the main thread does not load fastify');
    t.same(
      lean.main.filter((u) => u.startsWith(`${DIST}/admin/`)),
      [],
      'nor anything of admin/',
    );
    t.same(lean.workers[0]!.filter(isFastify), [], 'the worker thread does not load fastify');
    const isRedisClient = (u: string): boolean => u.includes('/node_modules/ioredis/');
    t.same(
      [...lean.main, ...lean.workers[0]!].filter(isRedisClient),
      [],
      'without sharedState, no thread loads the Redis client',
    );
    // prom-client's index loads its Pushgateway (node:http, https, zlib) and, for the CPU counters,
    // @opentelemetry/api: src/telemetry/promClient.ts loads its parts one by one instead
    const promIndexOrOtel = (u: string): boolean =>
      u.includes('/node_modules/@opentelemetry/') ||
      /\/node_modules\/prom-client\/(index|lib\/pushgateway)\.js$/.test(u);
    t.ok(
      lean.main.some((u) => u.endsWith('/node_modules/prom-client/lib/registry.js')),
      'the recorder sees prom-client parts load',
    );
    t.same(
      [...lean.main, ...lean.workers[0]!].filter(promIndexOrOtel),
      [],
      "no thread loads prom-client's index or OpenTelemetry",
    );
    t.ok(lean.main.includes('node:tls'), 'the recorder sees built-in modules load');
    t.same(
      [...lean.main, ...lean.workers[0]!].filter((u) => ['node:http', 'node:https', 'node:zlib'].includes(u)),
      [],
      'nor node:http, node:https or node:zlib',
    );
    const composition = (u: string): boolean =>
      u === `${DIST}/main.js` || u.startsWith(`${DIST}/admin/`) || u.startsWith(`${DIST}/cli/`);
    t.same(lean.workers[0]!.filter(composition), [], 'nor main.js, admin/ or cli/');

    const withAdmin = await modulesLoadedByRun(t, w, 'admin', config('127.0.0.1:0'));
    t.ok(withAdmin.main.some(isFastify), 'with an admin server, the main thread loads fastify');
    t.same(withAdmin.workers[0]!.filter(isFastify), [], 'and the worker thread still does not');
  },
);

t.test('tollgate version prints the version package.json states, without loading the sidecar', async (t) => {
  const w = await world(t);
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const run = await modulesLoadedBy(t, w, 'version', ['version'], false);
  t.equal(run.stdout.trim(), pkg.version);
  t.ok(run.main.includes(`${DIST}/version.js`), 'read from version.js');
  const sidecar = (u: string): boolean =>
    u === `${DIST}/main.js` || u.startsWith(`${DIST}/proxy/`) || u.startsWith(`${DIST}/admin/`);
  t.same(run.main.filter(sidecar), [], 'not main.js, proxy/ or admin/');
});
