/**
 * Prometheus's own linter on a scrape: `promtool check metrics` reads exposition text on stdin
 * and exits 0 when it is clean, 3 with one line per problem when a name or type breaks the
 * conventions (a gauge ending in `_total`, a counter without it…), 1 when it does not parse.
 * Debian's `prometheus` package ships it (.ci/run installs it); without it the tests that use
 * it skip, saying why.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

function onPath(command: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const file = join(dir, command);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** the promtool executable, or null when it is not installed */
export const PROMTOOL = onPath('promtool');

/** tap's `skip` option for a test that needs promtool: false when it is installed */
export const NEEDS_PROMTOOL: string | false =
  PROMTOOL === null ? 'promtool is not installed (apt-get install prometheus; .ci/run installs it)' : false;

export interface PromtoolVerdict {
  readonly code: number | null;
  /** what promtool printed (stdout and stderr), one problem a line */
  readonly output: string;
}

/** `promtool check metrics` on `text`; killed after `ms`. */
export async function promtoolCheckMetrics(text: string, ms = 10_000): Promise<PromtoolVerdict> {
  if (PROMTOOL === null) throw new Error('promtool is not installed');
  const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  const closed = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  child.stdin.on('error', () => undefined); // an early exit closes the pipe; the exit code says why
  child.stdin.end(text);
  try {
    return { code: await closed, output: output.trim() };
  } finally {
    clearTimeout(timer);
  }
}
