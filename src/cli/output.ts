/** Where the CLI writes: stdout for results, stderr for problems. Passed in so tests can capture it. */
export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export const processOutput: Output = {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
};

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function printProblems(o: Output, heading: string, problems: readonly { path: string; message: string }[] | readonly string[]): void {
  o.err(`${heading}:`);
  for (const p of problems) o.err(typeof p === 'string' ? `  - ${p}` : `  - ${p.path}: ${p.message}`);
}
