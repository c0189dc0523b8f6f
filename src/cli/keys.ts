import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { systemErrorText } from '../core/errnoText.ts';
import { commandsUnder, KEYS_NEW_COMMAND, usageOf } from './commands.ts';
import { parseCommand, wantsHelp } from './flagSpec.ts';
import { answerUnparsed, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type Output } from './output.ts';

const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** `tollgate keys new --out DIR --id ID`: a random 32-byte HMAC key, base64, in DIR/ID, mode 0600. */
export async function keysCommand(argv: string[], o: Output, cwd: string): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'new') {
    const usage = usageOf(commandsUnder('keys'));
    if (wantsHelp(argv)) {
      o.out(usage);
      return EXIT_OK;
    }
    o.err(sub === undefined ? usage : `tollgate keys: unknown subcommand ${sub}\n${usage}`);
    return EXIT_USAGE;
  }
  const parsed = parseCommand(KEYS_NEW_COMMAND, rest);
  if (parsed.kind !== 'ok') return answerUnparsed(o, KEYS_NEW_COMMAND, parsed);
  const { out, id } = parsed.values;
  if (!KEY_ID.test(id)) {
    o.err('tollgate keys new: --id must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with . _ -');
    return EXIT_USAGE;
  }
  const dir = resolve(cwd, out);
  const file = join(dir, id);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    const exists = (err as NodeJS.ErrnoException).code === 'EEXIST';
    o.err(
      `tollgate keys new: ${file}: ${systemErrorText(err)}${exists ? ' (keys are never overwritten: choose another --id, or delete the file first)' : ''}`,
    );
    return EXIT_FAILURE;
  }
  o.out(file);
  return EXIT_OK;
}
