/**
 * Redraw latest.md and latest.svg from a results file, without measuring anything: after a
 * change to the tables or the chart, the committed run is rendered again rather than rerun.
 * With `--summarise` the rows and the targets table are first computed again from the run's
 * cells by today's code (a changed or added target row, a reference figure replaced), and the
 * results file is rewritten with them.
 *
 *   node bench/render.ts [RESULTS_JSON] [--out DIR] [--summarise]   (default bench/results/latest.json, DIR its folder)
 */
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderMarkdown, summarise, type Results } from './macro/report.ts';
import { SCENARIOS } from './macro/scenarios.ts';
import { renderSvg } from './macro/svg.ts';

const summariseAgain = process.argv.includes('--summarise');
const args = process.argv.slice(2).filter((a) => a !== '--summarise');
const outAt = args.indexOf('--out');
const out = outAt >= 0 ? args[outAt + 1] : undefined;
if (outAt >= 0 && out === undefined) throw new Error('--out needs a folder');
const positional = outAt >= 0 ? [...args.slice(0, outAt), ...args.slice(outAt + 2)] : args;
const input = positional[0] ?? fileURLToPath(new URL('results/latest.json', import.meta.url));
const dir = out ?? dirname(input);

const results = JSON.parse(await readFile(input, 'utf8')) as Results;
if (summariseAgain) {
  const d = results.durations;
  results.summary = summarise(
    results.cells,
    results.targets.map((t) => t.name),
    // the scenarios as today's code defines them, in the run's order
    results.scenarios.map((r) => {
      const s = SCENARIOS.find((x) => x.name === r.name);
      if (s === undefined) throw new Error(`--summarise: scenario ${r.name} is no longer defined`);
      return s;
    }),
    d.idleConnections,
    d.churnHandshakes,
  );
  await writeFile(input, `${JSON.stringify(results, null, 2)}\n`);
}
await writeFile(join(dir, 'latest.md'), renderMarkdown(results));
await writeFile(join(dir, 'latest.svg'), renderSvg(results));
process.stdout.write(`rendered ${join(dir, 'latest.md')} and latest.svg from ${input}\n`);
