/**
 * The Dockerfile's house rules, checked by parsing it (there is no container engine here):
 * multi-stage; the runtime stage is Node 24 with a numeric non-root USER and tollgate itself
 * as an exec-form ENTRYPOINT (PID 1 gets SIGTERM); dev dependencies never reach the runtime;
 * no `latest`; no ADD; everything copied from the context exists and is not ignored. The image
 * and the documented start (`npx tollgate`, `./bin/tollgate.js`) run with the same V8 flags; the
 * image preloads the allocator the benchmarks measure.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DockerfileParser,
  type Copy,
  type Env,
  type From,
  type Instruction,
  type JSONInstruction,
} from 'dockerfile-ast';
import { IMAGE_ALLOCATOR, NODE_FLAGS, shebangNodeFlags } from '../bench/macro/targets.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const dockerfile = DockerfileParser.parse(readFileSync(`${ROOT}Dockerfile`, 'utf8'));
const instructions = dockerfile.getInstructions();
const froms = dockerfile.getFROMs();

interface Stage {
  readonly name: string | null;
  readonly from: From;
  readonly instructions: Instruction[];
}

/** instructions grouped by the FROM that starts their stage */
function stages(): Stage[] {
  const out: Stage[] = [];
  for (const ins of instructions) {
    if (ins.getKeyword() === 'FROM')
      out.push({ name: (ins as From).getBuildStage(), from: ins as From, instructions: [] });
    else out.at(-1)?.instructions.push(ins);
  }
  return out;
}

const all = stages();
const runtime = all.at(-1)!;
const byKeyword = (stage: Stage, keyword: string): Instruction[] =>
  stage.instructions.filter((i) => i.getKeyword() === keyword);
const args = (i: Instruction): string[] => i.getArguments().map((a) => a.getValue());
const fromStage = (c: Copy): string | null => c.getFromFlag()?.getValue() ?? null;

t.test('the build is multi-stage and the runtime stage is Node.js 24', async (t) => {
  t.ok(all.length >= 2, `${all.length} stages`);
  t.equal(runtime.name, 'runtime');
  t.match(runtime.from.getImage(), /nodejs24|node:24/, `runtime base ${runtime.from.getImage()}`);
  for (const f of froms) {
    const tag = f.getImageTag();
    const digest = f.getImageDigest();
    t.ok(
      digest !== null || (tag !== null && tag !== 'latest'),
      `${f.getImage()} is pinned (a tag other than latest, or a digest)`,
    );
    if (f !== runtime.from)
      t.match(f.getImage(), /^node:24\.\d+\.\d+-/, `build stage ${f.getBuildStage()} uses an exact Node 24 version`);
  }
});

t.test('the runtime stage runs as a numeric non-root user', async (t) => {
  const users = byKeyword(runtime, 'USER');
  t.equal(users.length, 1, 'one USER in the runtime stage');
  const user = args(users[0]!).join(' ');
  t.match(user, /^[0-9]+(:[0-9]+)?$/, `numeric (${user}), so runAsNonRoot can be checked`);
  t.not(user.split(':')[0], '0', 'not root');
  const entry = byKeyword(runtime, 'ENTRYPOINT');
  t.ok(instructions.indexOf(users[0]!) < instructions.indexOf(entry[0]!), 'USER comes before the ENTRYPOINT');
});

t.test('tollgate is the exec-form ENTRYPOINT, so it is PID 1 and receives SIGTERM itself', async (t) => {
  const entries = byKeyword(runtime, 'ENTRYPOINT') as JSONInstruction[];
  t.equal(entries.length, 1);
  const words = entries[0]!.getJSONStrings().map((s) => s.getJSONValue());
  t.ok(words.length > 0, 'JSON (exec) form, no shell');
  t.same(
    words,
    ['/nodejs/bin/node', ...NODE_FLAGS, '/app/bin/tollgate.js'],
    'node runs tollgate directly (no npm, no sh -c), with the flags of bin/tollgate.js, which the benchmarks use',
  );
  t.ok(NODE_FLAGS.includes('--max-semi-space-size=4'), 'the young generation is capped');
  for (const i of instructions.filter((x) => x.getKeyword() === 'CMD' || x.getKeyword() === 'ENTRYPOINT')) {
    t.ok(
      (i as JSONInstruction).getJSONStrings().length > 0,
      `${i.getKeyword()} on line ${i.getRange().start.line + 1} is exec form`,
    );
  }
  const stop = byKeyword(runtime, 'STOPSIGNAL');
  t.ok(stop.length === 0 || args(stop[0]!)[0] === 'SIGTERM', 'the stop signal is SIGTERM');
  t.equal(byKeyword(runtime, 'RUN').length, 0, 'no RUN in the runtime stage (distroless has no shell)');
});

t.test('dev dependencies never reach the runtime stage', async (t) => {
  const copies = byKeyword(runtime, 'COPY') as Copy[];
  const moduleCopies = copies.filter((c) => args(c).some((a) => a.includes('node_modules')));
  t.equal(moduleCopies.length, 1, 'node_modules is copied once');
  const source = all.find((s) => s.name === fromStage(moduleCopies[0]!));
  t.ok(source, `from stage ${fromStage(moduleCopies[0]!)}`);
  const installs = byKeyword(source!, 'RUN').map((r) => args(r).join(' '));
  t.ok(
    installs.some((r) => /npm ci\b.*--omit=dev/.test(r)),
    `that stage installs with npm ci --omit=dev: ${installs.join(' | ')}`,
  );
  t.notOk(
    installs.some((r) => /npm (install|i)\b/.test(r)),
    'npm ci (the lockfile), never npm install',
  );
  t.notOk(
    byKeyword(source!, 'COPY').some((c) => fromStage(c as Copy) !== null),
    'it copies nothing from other stages',
  );
  const build = all.find((s) => s.name === 'build')!;
  t.ok(
    byKeyword(build, 'RUN').some((r) => /npm ci\b/.test(args(r).join(' '))),
    'the build stage installs the dev dependencies with npm ci',
  );
  for (const c of copies) {
    const from = fromStage(c);
    const what = args(c).filter((a) => !a.startsWith('--'));
    if (from === 'build') t.same(what, ['/app/dist', './dist'], 'only dist/ comes from the build stage');
    if (from === null) {
      for (const path of what.slice(0, -1))
        t.notMatch(path, /^(\.|src|test|node_modules)\/?$/, `no ${path} from the context`);
    }
  }
});

t.test(
  'the runtime preloads the allocator the benchmarks measure, jemalloc from the Debian release it runs on',
  async (t) => {
    const env = new Map<string, string>();
    for (const e of byKeyword(runtime, 'ENV') as Env[])
      for (const p of e.getProperties()) env.set(p.getName(), p.getValue() ?? '');
    const preload = env.get('LD_PRELOAD') ?? '';
    t.match(
      preload,
      new RegExp(`^/usr/lib/${IMAGE_ALLOCATOR.library.replace(/\./g, '\\.')}$`),
      `LD_PRELOAD=${preload}`,
    );
    for (const [name, value] of Object.entries(IMAGE_ALLOCATOR.env))
      t.equal(env.get(name), value, `${name} as the benchmarks set it`);
    const copy = (byKeyword(runtime, 'COPY') as Copy[]).find((c) => args(c).at(-1) === preload);
    t.ok(copy, 'the preloaded library is copied into the runtime stage');
    const source = all.find((s) => s.name === fromStage(copy!));
    t.ok(source, `from a stage of its own (${fromStage(copy!)})`);
    t.match(runtime.from.getImage(), /debian12/, 'the runtime is Debian 12');
    t.match(source!.from.getImageTag() ?? '', /bookworm/, 'the library is Debian 12 (bookworm) as well');
    const runs = byKeyword(source!, 'RUN').map((r) => args(r).join(' '));
    t.ok(
      runs.some((r) => /apt-get install -y --no-install-recommends libjemalloc2\b/.test(r)),
      `installed from the Debian package: ${runs.join(' | ')}`,
    );
    const from = args(copy!).filter((a) => !a.startsWith('--'))[0]!;
    t.ok(
      runs.some((r) => r.endsWith(` ${from}`)),
      `the stage puts it where the runtime takes it from (${from})`,
    );
  },
);

t.test('no ADD, and every file copied from the build context exists and is not dockerignored', async (t) => {
  t.equal(instructions.filter((i) => i.getKeyword() === 'ADD').length, 0, 'COPY only');
  const ignored = readFileSync(`${ROOT}.dockerignore`, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  for (const must of ['node_modules', 'dist', '.git', '*.key'])
    t.ok(ignored.includes(must), `.dockerignore excludes ${must}`);
  for (const c of instructions.filter((i) => i.getKeyword() === 'COPY') as Copy[]) {
    if (fromStage(c) !== null) continue;
    for (const path of args(c)
      .filter((a) => !a.startsWith('--'))
      .slice(0, -1)) {
      t.ok(existsSync(`${ROOT}${path}`), `${path} exists`);
      t.notOk(ignored.includes(path), `${path} is not in .dockerignore`);
    }
  }
  for (const w of instructions.filter((i) => i.getKeyword() === 'WORKDIR'))
    t.match(args(w)[0], /^\//, 'WORKDIR is absolute');
  const entry = readFileSync(`${ROOT}bin/tollgate.js`, 'utf8');
  t.match(
    entry,
    /(from |import\()'\.\.\/dist\/cli\/main\.js'/,
    'the entry script loads the compiled CLI that the build stage produces',
  );
  t.ok(existsSync(`${ROOT}src/cli/main.ts`), 'from src/cli/main.ts');
});

t.test("the documented start runs with the image's V8 flags: they are on bin/tollgate.js's first line", async (t) => {
  const bin = `${ROOT}bin/tollgate.js`;
  const flags = shebangNodeFlags(readFileSync(bin, 'utf8'));
  t.same(flags, NODE_FLAGS);
  t.ok(flags.includes('--max-semi-space-size=4'), 'the young generation is capped');
  t.same(shebangNodeFlags('#!/usr/bin/env node\n'), [], 'a plain node line has none');
  t.throws(() => shebangNodeFlags('#!/bin/sh\n'), 'anything else is refused');

  // ./bin/tollgate.js as a shell runs it (the kernel reads the #! line); the process reports the flags it got
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-flags-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const report = join(dir, 'report.mjs');
  await writeFile(report, "process.stderr.write('EXECARGV ' + JSON.stringify(process.execArgv) + '\\n');\n");
  const path = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: path, NODE_OPTIONS: `--import=${report}` };
  delete env.NODE_V8_COVERAGE;
  const child = spawn(bin, ['--version'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  t.equal(code, 0, err);
  t.match(out, /\d+\.\d+\.\d+/, 'it ran: the version');
  const seen = [...err.matchAll(/^EXECARGV (.*)$/gm)].map((m) => JSON.parse(m[1]!) as string[]);
  t.ok(seen.length > 0, 'the process reported its flags');
  for (const argv of seen)
    for (const flag of NODE_FLAGS) t.ok(argv.includes(flag), `${flag} in ${JSON.stringify(argv)}`);
});
