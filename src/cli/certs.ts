import { readdir, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createDevPki, writeDevPki } from '../certs/devPki.ts';
import { errnoText, systemErrorText } from '../core/errnoText.ts';
import { spkiPin } from '../core/spkiPin.ts';
import { CERTS_DEV_COMMAND, CERTS_PIN_COMMAND, commandsUnder, usageOf } from './commands.ts';
import { parseCommand, wantsHelp } from './flagSpec.ts';
import { answerUnparsed, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type Output } from './output.ts';

export const DEFAULT_IDENTITIES = ['producer', 'ingest'];

/** `tollgate certs dev|pin …` */
export async function certsCommand(argv: string[], o: Output, cwd: string): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'dev') return certsDev(rest, o, cwd);
  if (sub === 'pin') return certsPin(rest, o, cwd);
  const usage = usageOf(commandsUnder('certs'));
  if (wantsHelp(argv)) {
    o.out(usage);
    return EXIT_OK;
  }
  o.err(sub === undefined ? usage : `tollgate certs: unknown subcommand ${sub}\n${usage}`);
  return EXIT_USAGE;
}

async function certsDev(argv: string[], o: Output, cwd: string): Promise<number> {
  const parsed = parseCommand(CERTS_DEV_COMMAND, argv);
  if (parsed.kind !== 'ok') return answerUnparsed(o, CERTS_DEV_COMMAND, parsed);
  const { values } = parsed;
  const validityDays = Number(values['validity-days']);
  if (!Number.isInteger(validityDays) || validityDays < 1 || validityDays > 397) {
    o.err('tollgate certs dev: --validity-days must be an integer from 1 to 397');
    return EXIT_USAGE;
  }
  const out = resolve(cwd, values.out);
  if (!values.force) {
    const occupied = await occupiedBy(out);
    if (occupied !== null) {
      const why = 'a new CA there would invalidate every certificate issued before: pass --force to replace them';
      o.err(`tollgate certs dev: --out ${values.out} ${occupied}; ${why}`);
      return EXIT_USAGE;
    }
  }
  const trustDomain = values['trust-domain'];
  const identities = values.identity ?? DEFAULT_IDENTITIES;
  try {
    const pki = await createDevPki({ trustDomain, identities, validityDays });
    const files = await writeDevPki(out, pki);
    o.out(`development PKI for trust domain ${trustDomain} (valid ${validityDays} days):`);
    for (const f of files) o.out(`  ${f}`);
    for (const name of identities)
      o.out(`  ${name}: spiffe://${trustDomain}/${name}  pin ${spkiPin(pki.identities[name]!.certPem)}`);
    return EXIT_OK;
  } catch (err) {
    // a bad trust domain or identity name is usage; a folder that cannot be written is the machine's
    const code = (err as NodeJS.ErrnoException).code;
    o.err(
      `tollgate certs dev: ${code === undefined ? (err as Error).message : `--out ${values.out}: ${systemErrorText(err)}`}`,
    );
    return code === undefined ? EXIT_USAGE : EXIT_FAILURE;
  }
}

/** What makes `dir` unsafe to write a new PKI into (`holds ca.crt, ca.key, ingest/ and 2 more`), or null when it is absent or empty. */
async function occupiedBy(dir: string): Promise<string | null> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    return code === 'ENOTDIR'
      ? 'is a file, not a folder'
      : `cannot be read (${errnoText(code ?? (err as Error).message)})`;
  }
  if (entries.length === 0) return null;
  const names = entries.map((e) => (e.isDirectory() ? `${e.name}/` : e.name)).sort();
  const shown = names.slice(0, 3).join(', ');
  return `already holds ${names.length > 3 ? `${shown} and ${names.length - 3} more` : shown}`;
}

async function certsPin(argv: string[], o: Output, cwd: string): Promise<number> {
  const parsed = parseCommand(CERTS_PIN_COMMAND, argv);
  if (parsed.kind !== 'ok') return answerUnparsed(o, CERTS_PIN_COMMAND, parsed);
  const file = parsed.operand;
  try {
    o.out(spkiPin(await readFile(resolve(cwd, file))));
    return EXIT_OK;
  } catch (err) {
    o.err(`tollgate certs pin: ${file}: ${systemErrorText(err)}`);
    return EXIT_FAILURE;
  }
}
