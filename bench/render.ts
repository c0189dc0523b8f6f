/**
 * Redraw latest.md and latest.svg from a results file, without measuring anything: after a
 * change to the tables or the chart, the committed run is rendered again rather than rerun.
 *
 *   node bench/render.ts [RESULTS_JSON] [--out DIR]     (default bench/results/latest.json, DIR its folder)
 */
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderMarkdown, type Results } from './macro/report.ts';
import { renderSvg } from './macro/svg.ts';

const args = process.argv.slice(2);
const outAt = args.indexOf('--out');
const out = outAt >= 0 ? args[outAt + 1] : undefined;
if (outAt >= 0 && out === undefined) throw new Error('--out needs a folder');
const positional = outAt >= 0 ? [...args.slice(0, outAt), ...args.slice(outAt + 2)] : args;
const input = positional[0] ?? fileURLToPath(new URL('results/latest.json', import.meta.url));
const dir = out ?? dirname(input);

const results = JSON.parse(await readFile(input, 'utf8')) as Results;
await writeFile(join(dir, 'latest.md'), renderMarkdown(results));
await writeFile(join(dir, 'latest.svg'), renderSvg(results));
process.stdout.write(`rendered ${join(dir, 'latest.md')} and latest.svg from ${input}\n`);
