import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createDevPki, writeDevPki } from '../certs/devPki.ts';
import { spkiPin } from '../core/spkiPin.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type Output } from './output.ts';

export const DEFAULT_TRUST_DOMAIN = 'example.org';
export const DEFAULT_IDENTITIES = ['producer', 'ingest'];

/** `tollgate certs dev|pin …` */
export async function certsCommand(argv: string[], o: Output, cwd: string): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'dev') return certsDev(rest, o, cwd);
  if (sub === 'pin') return certsPin(rest, o, cwd);
  o.err('usage: tollgate certs dev --out DIR [--trust-domain D] [--identity NAME]…\n       tollgate certs pin FILE');
  return EXIT_USAGE;
}

async function certsDev(argv: string[], o: Output, cwd: string): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        out: { type: 'string' },
        'trust-domain': { type: 'string', default: DEFAULT_TRUST_DOMAIN },
        identity: { type: 'string', multiple: true },
        'validity-days': { type: 'string', default: '30' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    o.err(`tollgate certs dev: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
  if (values.out === undefined) {
    o.err('tollgate certs dev: --out DIR is required');
    return EXIT_USAGE;
  }
  const validityDays = Number(values['validity-days']);
  if (!Number.isInteger(validityDays) || validityDays < 1 || validityDays > 397) {
    o.err('tollgate certs dev: --validity-days must be an integer from 1 to 397');
    return EXIT_USAGE;
  }
  const identities = values.identity ?? DEFAULT_IDENTITIES;
  try {
    const pki = await createDevPki({ trustDomain: values['trust-domain'], identities, validityDays });
    const files = await writeDevPki(resolve(cwd, values.out), pki);
    o.out(`development PKI for trust domain ${values['trust-domain']} (valid ${validityDays} days):`);
    for (const f of files) o.out(`  ${f}`);
    for (const name of identities) o.out(`  ${name}: spiffe://${values['trust-domain']}/${name}  pin ${spkiPin(pki.identities[name]!.certPem)}`);
    return EXIT_OK;
  } catch (err) {
    o.err(`tollgate certs dev: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
}

async function certsPin(argv: string[], o: Output, cwd: string): Promise<number> {
  if (argv.length !== 1 || argv[0]!.startsWith('-')) {
    o.err('usage: tollgate certs pin FILE');
    return EXIT_USAGE;
  }
  try {
    o.out(spkiPin(await readFile(resolve(cwd, argv[0]!))));
    return EXIT_OK;
  } catch (err) {
    o.err(`tollgate certs pin: ${argv[0]}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return EXIT_FAILURE;
  }
}
