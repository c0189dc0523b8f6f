import { explainErrno } from '../core/errnoText.ts';
import { helpText, type CommandSpec, type FlagProblem } from './flagSpec.ts';

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

/** A problem about an address to bind (`listeners[0].listen`, `admin.listen`, `--listen`, `--admin`): its errno codes are socket ones. */
const SOCKET_PROBLEM = /^(\S*\.listen|--listen|--admin)(?=:|\s)/;

/** `heading:` then one `  - path: message` line per problem; errno codes in them come with a sentence. */
export function printProblems(
  o: Output,
  heading: string,
  problems: readonly { path: string; message: string }[] | readonly string[],
): void {
  o.err(`${heading}:`);
  for (const p of problems) {
    const line = typeof p === 'string' ? p : `${p.path}: ${p.message}`;
    o.err(`  - ${explainErrno(line, SOCKET_PROBLEM.test(line) ? 'socket' : 'file')}`);
  }
}

/** A command line that did not parse: every problem, then where the full flag list is. */
export function printFlagProblems(o: Output, command: string, problems: readonly FlagProblem[]): void {
  printProblems(o, `tollgate ${command}: invalid flags`, problems);
  o.err(`(tollgate ${command} --help lists every flag)`);
}

/** A parse that asked for help (printed, exit 0) or found problems (printed, exit 2). */
export function answerUnparsed(
  o: Output,
  spec: CommandSpec,
  parsed: { kind: 'help' } | { kind: 'problems'; problems: readonly FlagProblem[] },
): number {
  if (parsed.kind === 'help') {
    o.out(helpText(spec));
    return EXIT_OK;
  }
  printFlagProblems(o, spec.name, parsed.problems);
  return EXIT_USAGE;
}
