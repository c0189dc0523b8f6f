/**
 * Once any object in a process has String.prototype as its prototype (a `class X extends String`,
 * an `Object.create(String.prototype)`), V8 leaves the fast paths of the string builtins for the
 * rest of the process: on Node 24 `charCodeAt` is 3.5× slower, `toLowerCase` 6×, `slice` 2×. The
 * request path is made of those (the HTTP/1.1 fields, structured fields, signature bases): merely
 * loading ioredis 6, whose RESP3 decoder declares `class VerbatimString extends String`, cost the
 * data path about 10% of its CPU per request in the bench (tollgate-l7-checks with and without the
 * client imported). So neither tollgate's own code nor any runtime dependency may do it, loaded or
 * not yet loaded: every file of src/ and of every package `dependencies` reaches is read.
 */
import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { filesUnder } from './helpers/fileTree.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MODULES = join(ROOT, 'node_modules');

/** a declaration that makes some object inherit from String.prototype */
const INHERITS_FROM_STRING =
  /\bextends\s+String\b|Object\.create\(\s*String\.prototype\b|setPrototypeOf\([^,()]+,\s*String\.prototype\b|__proto__\s*[:=]\s*String\.prototype\b/;

/** the folders of the packages the runtime dependencies reach, through their own `dependencies` */
function runtimeClosure(): string[] {
  const dirs = new Set<string>();
  const visit = (name: string, from: string): void => {
    const dir = packageDir(name, from);
    if (dirs.has(dir)) return;
    dirs.add(dir);
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const dep of Object.keys(manifest.dependencies ?? {})) visit(dep, dir);
  };
  const own = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  for (const name of Object.keys(own.dependencies)) visit(name, ROOT);
  return [...dirs].sort();
}

/** a package's folder: nested under the one that needs it when npm had to, else at the top */
function packageDir(name: string, from: string): string {
  const nested = join(from, 'node_modules', name);
  try {
    if (statSync(join(nested, 'package.json')).isFile()) return nested;
  } catch {
    // not nested
  }
  return join(MODULES, name);
}

t.test('the pattern finds each way of inheriting from String.prototype, and not its ordinary uses', async (t) => {
  for (const bad of [
    'class VerbatimString extends String {',
    'const o = Object.create(String.prototype);',
    'Object.setPrototypeOf(proto, String.prototype)',
    'const p = { __proto__: String.prototype }',
  ])
    t.match(bad, INHERITS_FROM_STRING, bad);
  for (const fine of [
    'String.prototype.slice.call(s, 1)',
    'class Stringify extends Transform {',
    'typeof x === "string" ? String(x) : x',
  ])
    t.notMatch(fine, INHERITS_FROM_STRING, fine);
});

t.test('no runtime dependency makes an object inherit from String.prototype', async (t) => {
  const packages = runtimeClosure();
  t.ok(
    packages.includes(join(MODULES, 'ioredis')) && packages.includes(join(MODULES, 'undici')),
    `the closure has the runtime dependencies (${packages.length} packages)`,
  );
  const offenders: string[] = [];
  let files = 0;
  for (const dir of packages) {
    for (const file of filesUnder(dir, /\.(c|m)?js$/)) {
      files++;
      if (INHERITS_FROM_STRING.test(readFileSync(file, 'utf8'))) offenders.push(file.slice(MODULES.length + 1));
    }
  }
  t.ok(files > 500, `${files} files read`);
  t.same(offenders, [], 'none declares it');
});

t.test("tollgate's own code makes no object inherit from String.prototype", async (t) => {
  const files = filesUnder(join(ROOT, 'src'), /\.ts$/);
  t.ok(files.length > 100, `${files.length} files read`);
  const offenders = files.filter((f) => INHERITS_FROM_STRING.test(readFileSync(f, 'utf8')));
  t.same(offenders, [], 'none declares it');
});
