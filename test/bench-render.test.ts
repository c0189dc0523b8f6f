/**
 * `bench/render.ts --summarise` on a copy of the committed run: the rows and the targets table
 * are computed again from the run's cells, so a results file whose table was lost (or is out of
 * date) gets it back, row by row, and its markdown shows it. No load is generated.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { Results } from '../bench/macro/report.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

function render(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    delete env.NODE_V8_COVERAGE;
    const child = spawn(process.execPath, [join(ROOT, 'bench', 'render.ts'), ...args], { cwd: ROOT, env });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('close', (code) => resolve({ code, output }));
  });
}

t.test('--summarise computes the targets table again from the cells of the committed run', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-render-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const committed = JSON.parse(await readFile(join(ROOT, 'bench', 'results', 'latest.json'), 'utf8')) as Results;
  const emptied: Results = { ...committed, summary: { scenarios: {}, checks: [] } };
  const copy = join(dir, 'run.json');
  await writeFile(copy, JSON.stringify(emptied));

  const plain = await render([copy, '--out', dir]);
  t.equal(plain.code, 0, plain.output);
  t.notMatch(await readFile(join(dir, 'latest.md'), 'utf8'), /L7 without checks vs the raw-l7 instrument/);

  const again = await render([copy, '--out', dir, '--summarise']);
  t.equal(again.code, 0, again.output);
  const rewritten = JSON.parse(await readFile(copy, 'utf8')) as Results;
  t.same(
    rewritten.summary.checks.map((c) => c.name),
    committed.summary.checks.map((c) => c.name),
    'every row of the committed table is back, in its order',
  );
  t.same(rewritten.summary.scenarios, committed.summary.scenarios, 'the per-scenario rows equal the committed ones');
  t.same(rewritten.cells, committed.cells, 'the cells are left as they were');
  const md = await readFile(join(dir, 'latest.md'), 'utf8');
  t.match(md, /\| L7 without checks vs the raw-l7 instrument, GET keep-alive \| 0\.85× \(per rep: 0\.83, 0\.87;/);
});
