/**
 * `tollgate COMMAND …`: help and usage come from the command descriptions alone (commands.ts);
 * a command's module, with the sidecar, TLS and HTTP stacks behind it, is loaded only when
 * the command runs, so `--help` and a typo answer at once.
 */
import { closestName } from '../core/closestName.ts';
import { COMMANDS, INBOUND_COMMAND, OUTBOUND_COMMAND, RUN_COMMAND, topLevelUsage } from './commands.ts';
import { helpText, parseCommand, wantsHelp, type CommandSpec } from './flagSpec.ts';
import {
  answerUnparsed,
  EXIT_OK,
  EXIT_USAGE,
  printFlagProblems,
  printProblems,
  processOutput,
  type Output,
} from './output.ts';

const COMMAND_WORDS = [
  'run',
  'inbound',
  'outbound',
  'check',
  'certs',
  'keys',
  'audit',
  'probe',
  'webhook',
  'demo',
  'help',
  'version',
];

/** argv (after the program name) -> exit code */
export async function main(argv: string[], o: Output = processOutput, cwd = process.cwd()): Promise<number> {
  const [command, ...rest] = argv;
  const spec = COMMANDS.find((c) => c.name === command || c.name === `${command} ${rest[0]}`);
  if (spec !== undefined && wantsHelp(argv.slice(words(spec).length))) {
    o.out(helpText(spec));
    return EXIT_OK;
  }
  switch (command) {
    case 'run':
      return runCommand(rest, o);
    case 'inbound':
    case 'outbound':
      return quickCommand(command, rest, o, cwd);
    case 'check':
      return (await import('./check.ts')).checkCommand(rest, o, new Date());
    case 'certs':
      return (await import('./certs.ts')).certsCommand(rest, o, cwd);
    case 'keys':
      return (await import('./keys.ts')).keysCommand(rest, o, cwd);
    case 'audit':
      return (await import('./audit.ts')).auditCommand(rest, o, cwd);
    case 'demo':
      return (await import('./demo.ts')).demoCommand(rest, o);
    case 'probe':
      return (await import('./probe.ts')).probeCommand(rest, o, cwd);
    case 'webhook':
      return (await import('./webhook.ts')).webhookCommand(rest, o);
    case 'version':
    case '--version':
      o.out(await version());
      return EXIT_OK;
    case 'help':
      return helpCommand(rest, o);
    case '--help':
    case '-h':
      o.out(topLevelUsage(await version()));
      return EXIT_OK;
    default:
      return unknownCommand(command, o);
  }
}

function words(spec: CommandSpec): string[] {
  return spec.name.split(' ');
}

async function version(): Promise<string> {
  return (await import('../version.ts')).VERSION;
}

/** `tollgate help [COMMAND…]`: the command's help (a group's usage for `certs`), or the usage of them all. */
async function helpCommand(argv: string[], o: Output): Promise<number> {
  if (argv.length === 0) {
    o.out(topLevelUsage(await version()));
    return EXIT_OK;
  }
  return main([...argv, '--help'], o);
}

function unknownCommand(command: string | undefined, o: Output): number {
  // no version here: the usage for a mistake should not wait for the whole sidecar to load
  const usage = topLevelUsage(null);
  if (command === undefined) {
    o.err(usage);
    return EXIT_USAGE;
  }
  const suggestion = closestName(command, COMMAND_WORDS);
  o.err(
    `tollgate: unknown command ${command}${suggestion === null ? '' : ` (did you mean ${suggestion}?)`}\n\n${usage}`,
  );
  return EXIT_USAGE;
}

async function quickCommand(mode: 'inbound' | 'outbound', argv: string[], o: Output, cwd: string): Promise<number> {
  const { configFromFlags, problemInFlagTerms } = await import('../config/flags.ts');
  const result = configFromFlags(mode, argv, cwd);
  if (!result.ok) {
    printFlagProblems(o, (mode === 'inbound' ? INBOUND_COMMAND : OUTBOUND_COMMAND).name, result.problems);
    return EXIT_USAGE;
  }
  return (await import('./serve.ts')).serve(result.config, o, { problemText: problemInFlagTerms });
}

async function runCommand(argv: string[], o: Output): Promise<number> {
  const parsed = parseCommand(RUN_COMMAND, argv);
  if (parsed.kind !== 'ok') return answerUnparsed(o, RUN_COMMAND, parsed);
  const file = parsed.values.config;
  const result = await (await import('../config/load.ts')).loadConfigFile(file);
  if (!result.ok) {
    printProblems(o, `${file}: invalid configuration`, result.problems);
    return EXIT_USAGE;
  }
  return (await import('./serve.ts')).serve(result.config, o);
}
