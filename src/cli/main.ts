import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.ts';
import { configFromFlags } from '../config/flags.ts';
import { certsCommand } from './certs.ts';
import { keysCommand } from './keys.ts';
import { auditCommand } from './audit.ts';
import { checkCommand } from './check.ts';
import { demoCommand } from './demo.ts';
import { probeCommand } from './probe.ts';
import { webhookCommand } from './webhook.ts';
import { serve } from './serve.ts';
import { EXIT_USAGE, printProblems, processOutput, type Output } from './output.ts';
import { VERSION } from '../main.ts';

const USAGE = `tollgate ${VERSION}: mTLS sidecar with message signatures

usage:
  tollgate run --config FILE
  tollgate inbound  --listen H:P --target H:P --cert F --key F --ca F [--allow-spiffe ID]… [--allow-dns N]… [--allow-cn CN]… [--allow-spki-pin PIN]… [--protocol http|tcp] [--keys DIR] [--admin H:P]
  tollgate outbound --listen H:P --target H:P --cert F --key F --ca F [--server-name N] [--verify-spiffe ID]… [--verify-spki-pin PIN]… [--protocol http|tcp] [--keys DIR --sign-key-id ID] [--admin H:P]
  tollgate check --config FILE
  tollgate certs dev --out DIR [--trust-domain D] [--identity NAME]…
  tollgate certs pin FILE
  tollgate keys new --out DIR --id ID
  tollgate audit verify FILE --key F [--partial] [--expect-head SEQ:HASH]
  tollgate probe HOST:PORT --ca F [--cert F --key F] [--server-name N] [--expect-spiffe ID]… [--expect-spki-pin PIN]… [--min-days-valid N] [--alpn P]… [--timeout SECONDS] [--json]
  tollgate webhook --listen H:P --cert F --key F --image IMAGE [--config FILE]
  tollgate demo [--once]

exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid configuration`;

/** argv (after the program name) -> exit code */
export async function main(argv: string[], o: Output = processOutput, cwd = process.cwd()): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return runCommand(rest, o);
    case 'inbound':
    case 'outbound': {
      const result = configFromFlags(command, rest, cwd);
      if (!result.ok) {
        printProblems(o, `tollgate ${command}: invalid flags`, result.problems);
        return EXIT_USAGE;
      }
      return serve(result.config, o);
    }
    case 'check':
      return checkCommand(rest, o, new Date());
    case 'certs':
      return certsCommand(rest, o, cwd);
    case 'keys':
      return keysCommand(rest, o, cwd);
    case 'audit':
      return auditCommand(rest, o, cwd);
    case 'demo':
      return demoCommand(rest, o);
    case 'probe':
      return probeCommand(rest, o, cwd);
    case 'webhook':
      return webhookCommand(rest, o);
    case 'version':
    case '--version':
      o.out(VERSION);
      return 0;
    case 'help':
    case '--help':
    case '-h':
      o.out(USAGE);
      return 0;
    default:
      o.err(command === undefined ? USAGE : `tollgate: unknown command ${command}\n\n${USAGE}`);
      return EXIT_USAGE;
  }
}

async function runCommand(argv: string[], o: Output): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: 'string' } }, strict: true }));
  } catch (err) {
    o.err(`tollgate run: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
  if (values.config === undefined) {
    o.err('tollgate run: --config FILE is required');
    return EXIT_USAGE;
  }
  const result = await loadConfigFile(values.config);
  if (!result.ok) {
    printProblems(o, `${values.config}: invalid configuration`, result.problems);
    return EXIT_USAGE;
  }
  return serve(result.config, o);
}
