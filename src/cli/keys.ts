import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type Output } from './output.ts';

const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** `tollgate keys new --out DIR --id ID`: a random 32-byte HMAC key, base64, in DIR/ID, mode 0600. */
export async function keysCommand(argv: string[], o: Output, cwd: string): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'new') {
    o.err('usage: tollgate keys new --out DIR --id ID');
    return EXIT_USAGE;
  }
  let values;
  try {
    ({ values } = parseArgs({ args: rest, options: { out: { type: 'string' }, id: { type: 'string' } }, strict: true }));
  } catch (err) {
    o.err(`tollgate keys new: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
  if (values.out === undefined || values.id === undefined) {
    o.err('tollgate keys new: --out DIR and --id ID are required');
    return EXIT_USAGE;
  }
  if (!KEY_ID.test(values.id)) {
    o.err('tollgate keys new: --id must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with . _ -');
    return EXIT_USAGE;
  }
  const dir = resolve(cwd, values.out);
  const file = join(dir, values.id);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    o.err(`tollgate keys new: ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return EXIT_FAILURE;
  }
  o.out(file);
  return EXIT_OK;
}
