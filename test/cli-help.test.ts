/**
 * `--help` and flag typos as users meet them: `bin/tollgate.js` spawned for every command, the
 * command list and each command's flags taken from the declarative descriptions (src/cli/commands.ts)
 * the parsers use, so a flag added to a parser without its help line, or the reverse, fails here.
 */
import t from 'tap';
import { main } from '../src/cli/main.ts';
import { COMMANDS, WEBHOOK_COMMAND } from '../src/cli/commands.ts';
import type { CommandSpec } from '../src/cli/flagSpec.ts';
import { FLAGS as WEBHOOK_PARSER_FLAGS } from '../src/cli/webhook.ts';
import { closestName } from '../src/core/closestName.ts';
import { exitWithin, startTollgate, type Finished } from './helpers/process.ts';
import type { Teardownable } from './helpers/pki.ts';
import type { Test } from './helpers/world.ts';

async function run(t: Teardownable, args: string[]): Promise<Finished> {
  return exitWithin(startTollgate(t, args), 20_000, `tollgate ${args.join(' ')}`);
}

/** Run `jobs` two at a time: the machine's cores are shared. */
async function inPairs<T>(items: readonly T[], job: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += 2) await Promise.all(items.slice(i, i + 2).map(job));
}

const words = (spec: CommandSpec): string[] => spec.name.split(' ');

t.test('the command list covers every command the issue names', async (t) => {
  const names = COMMANDS.map((c) => c.name).sort();
  t.same(names, [
    'audit verify',
    'certs dev',
    'certs pin',
    'check',
    'demo',
    'inbound',
    'keys new',
    'outbound',
    'probe',
    'run',
    'webhook',
  ]);
});

/** What a help must hold: the usage, then every flag of the description with its line. */
function checkHelp(t: Test, spec: CommandSpec, stdout: string, what: string): void {
  t.match(stdout, new RegExp(`^usage: tollgate ${spec.name}`), `${what}: starts with the usage`);
  for (const f of spec.flags) {
    const left = f.value === undefined ? `--${f.name}` : `--${f.name} ${f.value}`;
    const line = stdout.split('\n').find((l) => l.startsWith(`  ${left} `));
    t.ok(line?.includes(f.description), `${what}: lists ${left} with its description`);
  }
  t.match(stdout, /^ {2}--help +print this help/m, `${what}: lists --help itself`);
}

t.test('every command prints its full flag list for --help, on stdout, and exits 0', async (t) => {
  await inPairs(COMMANDS, async (spec) => {
    const r = await run(t, [...words(spec), '--help']);
    const what = `tollgate ${spec.name} --help`;
    t.equal(r.code, 0, `${what}: exit 0 (stderr: ${r.stderr})`);
    t.equal(r.stderr, '', `${what}: nothing on stderr`);
    checkHelp(t, spec, r.stdout, what);
  });
});

t.test('-h is --help, for every command', async (t) => {
  for (const spec of COMMANDS) {
    const out: string[] = [];
    const code = await main([...words(spec), '-h'], { out: (l) => out.push(l), err: (l) => out.push(`stderr: ${l}`) });
    t.equal(code, 0, `${spec.name} -h: exit 0`);
    checkHelp(t, spec, out.join('\n'), `${spec.name} -h`);
  }
  const r = await run(t, ['audit', 'verify', '-h']);
  t.equal(r.code, 0, 'as a process too: exit 0');
  checkHelp(
    t,
    COMMANDS.find((c) => c.name === 'audit verify')!,
    r.stdout,
    'audit verify -h',
  );
});

t.test(
  '--help wins over every other problem: inbound --help with no other flag prints help, not eight errors',
  async (t) => {
    const r = await run(t, ['inbound', '--target', '--help', 'stray']);
    t.equal(r.code, 0, 'exit 0');
    t.match(r.stdout, /--allow-spiffe ID/, 'the help');
    t.equal(r.stderr, '', 'no problems listed');
  },
);

t.test('the top-level usage lists every command with every one of its flags, and exits 0', async (t) => {
  const spawned = await run(t, ['--help']);
  const answers = [{ args: '--help (a process)', code: spawned.code, stdout: spawned.stdout }];
  for (const args of [['-h'], ['help']]) {
    const out: string[] = [];
    answers.push({
      args: args.join(' '),
      code: await main(args, { out: (l) => out.push(l), err: (l) => out.push(l) }),
      stdout: out.join('\n'),
    });
  }
  for (const { args, code, stdout } of answers) {
    t.equal(code, 0, `tollgate ${args}: exit 0`);
    const usage = stdout.replace(/\n {4,}/g, ' '); // continuation lines are indented under the command
    for (const spec of COMMANDS) {
      const line = usage
        .split('\n')
        .find((l) => l.startsWith(`  tollgate ${spec.name} `) || l === `  tollgate ${spec.name}`);
      t.ok(line !== undefined, `${args}: a usage line for ${spec.name}`);
      for (const f of spec.flags) {
        const shown = f.value === undefined ? `--${f.name}` : `--${f.name} ${f.value}`;
        t.ok(line?.includes(shown), `${args}: ${spec.name} ${shown} in its usage line`);
      }
    }
  }
});

t.test('help COMMAND and a group word with --help print the help of what they name', async (t) => {
  const probe = await run(t, ['help', 'probe']);
  t.equal(probe.code, 0, 'help probe: exit 0');
  t.match(probe.stdout, /^usage: tollgate probe HOST:PORT/, 'help probe: the probe help');
  const certs = await run(t, ['certs', '--help']);
  t.equal(certs.code, 0, 'certs --help: exit 0');
  t.match(certs.stdout, /tollgate certs dev --out DIR[\s\S]*tollgate certs pin FILE/, 'certs --help: both subcommands');
});

/** A typo one letter short of the command's longest flag, which the suggestion rule must map back to it. */
function typoOf(spec: CommandSpec): { typo: string; meant: string } | null {
  const longest = [...spec.flags].sort((a, b) => b.name.length - a.name.length)[0];
  if (longest === undefined) return null;
  const typo = longest.name.slice(0, -2) + longest.name.slice(-1);
  return closestName(
    typo,
    spec.flags.map((f) => f.name),
  ) === longest.name
    ? { typo, meant: longest.name }
    : null;
}

t.test('an unknown flag exits 2 with "did you mean" the flag it is closest to, for every command', async (t) => {
  await inPairs(COMMANDS, async (spec) => {
    const typo = typoOf(spec);
    const r = await run(t, [...words(spec), `--${typo?.typo ?? 'bogus'}`]);
    t.equal(r.code, 2, `${spec.name}: exit 2`);
    if (typo === null) t.match(r.stderr, /  - --bogus: unknown flag/, `${spec.name}: names the unknown flag`);
    else
      t.match(
        r.stderr,
        `  - --${typo.typo}: unknown flag (did you mean --${typo.meant}?)`,
        `${spec.name}: --${typo.typo} -> did you mean --${typo.meant}`,
      );
    t.equal(r.stdout, '', `${spec.name}: nothing on stdout`);
  });
});

t.test('an unknown command is named with the closest command', async (t) => {
  const r = await run(t, ['chek']);
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, 'tollgate: unknown command chek (did you mean check?)');
});

t.test('every flag a command help lists is one its parser takes', async (t) => {
  for (const spec of COMMANDS) {
    for (const f of spec.flags) {
      const err: string[] = [];
      // an unknown flag next to it makes every command stop at its flag problems, before doing anything
      const flag = f.value === undefined ? `--${f.name}` : `--${f.name}=x`;
      const code = await main(
        [...words(spec), flag, '--not-a-flag'],
        { out: () => undefined, err: (l) => err.push(l) },
        '/nonexistent',
      );
      t.equal(code, 2, `${spec.name} ${flag}: a usage problem (the stray flag)`);
      t.notOk(
        err.some((l) => l.startsWith(`  - --${f.name}: unknown flag`)),
        `${spec.name}: --${f.name} is taken by the parser`,
      );
      t.ok(
        err.some((l) => l.startsWith('  - --not-a-flag: unknown flag')),
        `${spec.name}: the stray flag is the problem`,
      );
    }
  }
});

t.test("the webhook's own parser takes exactly the flags its help lists", async (t) => {
  t.same([...WEBHOOK_PARSER_FLAGS].sort(), WEBHOOK_COMMAND.flags.map((f) => f.name).sort());
});
