/**
 * One declarative description per command (its flags: name, value placeholder, repeatable,
 * required, description) drives both the parsing and the help, so `--help` cannot list a
 * flag the parser refuses or miss one it takes.
 *
 * Parsing reports every problem at once, each named by its flag, the way config problems are
 * named by their path: an unknown flag gets "did you mean" with the same rule as config keys.
 */
import { parseArgs } from 'node:util';
import { unknownFlagMessage } from '../core/closestName.ts';

export interface FlagSpec {
  /** without the dashes: `listen` */
  readonly name: string;
  /** the value's placeholder (`H:P`, `FILE`); absent for a boolean flag */
  readonly value?: string;
  /** may be given more than once; the values are kept in order */
  readonly repeatable?: boolean;
  readonly required?: boolean;
  /** shown in the help; applied when the flag is absent */
  readonly default?: string;
  /** one line for the help */
  readonly description: string;
}

export interface OperandSpec {
  /** placeholder: `FILE`, `HOST:PORT` */
  readonly name: string;
  readonly description: string;
}

export interface CommandSpec {
  /** the words after `tollgate`: `certs dev` */
  readonly name: string;
  /** one line: what the command does */
  readonly summary: string;
  /** exactly one operand, when the command takes one */
  readonly operand?: OperandSpec;
  readonly flags: readonly FlagSpec[];
  /** lines after the flag list: exit codes, how flags combine */
  readonly notes?: readonly string[];
}

export interface FlagProblem {
  readonly path: string;
  readonly message: string;
}

type FlagName<F> = F extends { readonly name: infer N extends string } ? N : never;
type FlagValue<F> = F extends { readonly value: string }
  ? F extends { readonly repeatable: true }
    ? string[]
    : string
  : boolean;
/** present whenever the parse succeeds: booleans, required flags and flags with a default */
type AlwaysSet<F> = F extends { readonly value: string }
  ? F extends { readonly required: true } | { readonly default: string }
    ? true
    : false
  : true;

/** The parsed values of a command whose flags are `Fs` (declared `as const`), typed by their specs. */
export type FlagValues<Fs extends readonly FlagSpec[]> = {
  [F in Fs[number] as AlwaysSet<F> extends true ? FlagName<F> : never]: FlagValue<F>;
} & {
  [F in Fs[number] as AlwaysSet<F> extends true ? never : FlagName<F>]?: FlagValue<F>;
};

export type ParseOutcome<C extends CommandSpec> =
  | { readonly kind: 'help' }
  /** `values` and `operand`: what did parse, so a command can add its own problems to the same list */
  | {
      readonly kind: 'problems';
      readonly problems: readonly FlagProblem[];
      readonly values: Partial<FlagValues<C['flags']>>;
      readonly operand?: string;
    }
  | { readonly kind: 'ok'; readonly values: FlagValues<C['flags']>; readonly operand: OperandOf<C> };

/** a command with an operand gets it as a string once parsed */
type OperandOf<C extends CommandSpec> = C extends { readonly operand: OperandSpec } ? string : undefined;

export const HELP_FLAG: FlagSpec = Object.freeze({ name: 'help', description: 'print this help and exit (also -h)' });

/** `-h` or `--help` anywhere before a `--`: the caller prints the help, whatever else is wrong. */
export function wantsHelp(argv: readonly string[]): boolean {
  // no options declared: every word that looks like a flag is a token of its own
  const { tokens } = parseArgs({ args: [...argv], options: {}, strict: false, allowPositionals: true, tokens: true });
  return tokens.some((t) => t.kind === 'option' && (t.name === 'help' || t.name === 'h'));
}

export function parseCommand<C extends CommandSpec>(spec: C, argv: readonly string[]): ParseOutcome<C> {
  if (wantsHelp(argv)) return { kind: 'help' };
  const options = Object.fromEntries(
    spec.flags.map(
      (f) => [f.name, { type: f.value === undefined ? 'boolean' : 'string', multiple: f.repeatable === true }] as const,
    ),
  );
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const problems: FlagProblem[] = [];
  const values = new Map<string, string | string[] | boolean>();
  const operands: string[] = [];
  // the word after an unknown flag is taken for its value, not reported as a stray argument
  let valueOfUnknownAt = -1;
  for (const token of tokens) {
    if (token.kind === 'positional') {
      if (token.index !== valueOfUnknownAt) operands.push(token.value);
    } else if (token.kind === 'option') {
      const problem = tokenProblem(spec, token.name, token.value, token.inlineValue, values);
      if (problem !== null) problems.push({ path: token.rawName, message: problem });
      else record(spec, values, token.name, token.value);
      if (!spec.flags.some((f) => f.name === token.name) && token.inlineValue !== true)
        valueOfUnknownAt = token.index + 1;
    }
  }
  problems.push(...operandProblems(spec, operands));
  for (const f of spec.flags) {
    if (values.has(f.name) || problems.some((p) => p.path === `--${f.name}`)) continue;
    if (f.required === true) problems.push({ path: `--${f.name}`, message: `required (${f.description})` });
    else if (f.value === undefined) values.set(f.name, false);
    else if (f.default !== undefined) values.set(f.name, f.default);
  }
  const operand = operands.length === 1 ? operands[0] : undefined;
  const parsed = Object.fromEntries(values);
  if (problems.length > 0) {
    return {
      kind: 'problems',
      problems,
      values: parsed as Partial<FlagValues<C['flags']>>,
      ...(operand === undefined ? {} : { operand }),
    };
  }
  return { kind: 'ok', values: parsed as FlagValues<C['flags']>, operand: operand as OperandOf<C> };
}

function tokenProblem(
  spec: CommandSpec,
  name: string,
  value: string | undefined,
  inline: boolean | undefined,
  values: ReadonlyMap<string, unknown>,
): string | null {
  const flag = spec.flags.find((f) => f.name === name);
  if (flag === undefined)
    return unknownFlagMessage(
      name,
      spec.flags.map((f) => f.name),
    );
  if (flag.value === undefined) {
    if (value !== undefined) return 'takes no value';
    return values.has(name) ? 'given more than once' : null;
  }
  // non-strict parseArgs hands a string flag the next word even when that word is a flag
  if (value === undefined) return `needs a value (--${name} ${flag.value})`;
  if (inline !== true && value.startsWith('-') && value !== '-')
    return `needs a value (--${name} ${flag.value}); the next word, ${value}, is a flag`;
  if (flag.repeatable !== true && values.has(name)) return 'given more than once';
  return null;
}

function record(
  spec: CommandSpec,
  values: Map<string, string | string[] | boolean>,
  name: string,
  value: string | undefined,
): void {
  const flag = spec.flags.find((f) => f.name === name)!;
  if (flag.value === undefined) values.set(name, true);
  else if (flag.repeatable === true) values.set(name, [...((values.get(name) as string[] | undefined) ?? []), value!]);
  else values.set(name, value!);
}

function operandProblems(spec: CommandSpec, operands: readonly string[]): FlagProblem[] {
  if (spec.operand === undefined) {
    return operands.map((o) => ({ path: o, message: 'unexpected argument (flags are --name VALUE)' }));
  }
  const { name, description } = spec.operand;
  if (operands.length === 0) return [{ path: name, message: `required (${description})` }];
  if (operands.length > 1)
    return [{ path: name, message: `exactly one, got ${operands.length}: ${operands.join(' ')}` }];
  return [];
}

/* ------------------------------------------------------------------ help */

/** `--out DIR`, `[--identity NAME]…`, `[--force]`: one flag as the usage line shows it. */
function flagSynopsis(f: FlagSpec): string {
  const text = f.value === undefined ? `--${f.name}` : `--${f.name} ${f.value}`;
  if (f.required === true) return text;
  return f.repeatable === true ? `[${text}]…` : `[${text}]`;
}

/** The usage words after `lead`: `tollgate certs dev --out DIR [--trust-domain D] …`, wrapped at `width` under the first flag. */
export function synopsis(spec: CommandSpec, lead = '', width = 100): string {
  const head = `${lead}tollgate ${spec.name}`;
  const words = [...(spec.operand === undefined ? [] : [spec.operand.name]), ...spec.flags.map(flagSynopsis)];
  const indent = ' '.repeat(head.length + 1);
  const lines: string[] = [];
  let line = head;
  for (const word of words) {
    if (line !== head && line.length + 1 + word.length > width) {
      lines.push(line);
      line = indent + word;
    } else line += ` ${word}`;
  }
  lines.push(line);
  return lines.join('\n');
}

/** The full help: usage, what it does, the operand and every flag with its description, then the notes. */
export function helpText(spec: CommandSpec): string {
  const rows = [...spec.flags, HELP_FLAG].map((f): [string, string] => {
    const left = f.value === undefined ? `--${f.name}` : `--${f.name} ${f.value}`;
    const extras = [
      ...(f.required === true ? ['[required]'] : []),
      ...(f.repeatable === true ? ['[repeatable]'] : []),
      ...(f.default !== undefined ? [`[default: ${f.default}]`] : []),
    ];
    return [left, [f.description, ...extras].join(' ')];
  });
  const operand: [string, string][] = spec.operand === undefined ? [] : [[spec.operand.name, spec.operand.description]];
  const width = Math.max(...[...rows, ...operand].map(([left]) => left.length)) + 2;
  const table = (entries: readonly [string, string][]): string[] =>
    entries.map(([left, right]) => `  ${left.padEnd(width)}${right}`);
  return [
    synopsis(spec, 'usage: '),
    '',
    ...wrap(spec.summary, 100),
    ...(operand.length === 0 ? [] : ['', 'argument:', ...table(operand)]),
    '',
    'flags:',
    ...table(rows),
    ...(spec.notes === undefined || spec.notes.length === 0 ? [] : ['', ...spec.notes.flatMap((n) => wrap(n, 100))]),
  ].join('\n');
}

/** Words into lines of at most `width` characters (a longer word gets a line of its own). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}
