import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.ts';
import { loadIdentity } from '../certs/identityBundle.ts';
import { notYetBuilt } from '../config/notYetBuilt.ts';
import { loadKeys } from '../integrity/integrityRuntime.ts';
import { checkAuditLog } from '../telemetry/auditLog.ts';
import { describeWorkers } from '../workers/cpuQuota.ts';
import { EXIT_OK, EXIT_USAGE, printProblems, type Output } from './output.ts';

/**
 * `tollgate check --config FILE`: the same validation `run` does, plus the certificates it
 * names (key matches certificate, chain verifies against the CA, not expired; expiring within
 * 7 days is a warning; the CRLs parse, are signed by a CA of the bundle and cover each CA; a
 * stale CRL is a warning with identity.crlStale "warn" and a problem with "refuse"), its HMAC key ring (every file a valid key, the signing keys present) and the audit log (the key loads, the file's last line verifies). Exit 0 when it would start, 2 otherwise.
 */
export async function checkCommand(argv: string[], o: Output, now: Date): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: 'string' } }, strict: true }));
  } catch (err) {
    o.err(`tollgate check: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
  if (values.config === undefined) {
    o.err('tollgate check: --config FILE is required');
    return EXIT_USAGE;
  }
  const result = await loadConfigFile(values.config);
  if (!result.ok) {
    printProblems(o, `${values.config}: invalid configuration`, result.problems);
    return EXIT_USAGE;
  }
  const unavailable = notYetBuilt(result.config);
  if (unavailable.length > 0) {
    printProblems(o, `${values.config}: not available in this build`, unavailable);
    return EXIT_USAGE;
  }
  const identity = await loadIdentity(result.config.identity, now);
  if (!identity.ok) {
    printProblems(o, `${values.config}: identity problems`, identity.problems.map((p) => `identity.${p}`));
    return EXIT_USAGE;
  }
  for (const w of identity.warnings) o.err(`warning: identity.${w}`);
  const keys = await loadKeys(result.config);
  if (!keys.ok) {
    printProblems(o, `${values.config}: key problems`, keys.problems);
    return EXIT_USAGE;
  }
  for (const w of keys.warnings) o.err(`warning: ${w}`);
  const audit = await checkAuditLog(result.config.audit);
  if (!audit.ok) {
    printProblems(o, `${values.config}: audit log problems`, audit.problems);
    return EXIT_USAGE;
  }
  for (const w of audit.warnings) o.err(`warning: ${w}`);
  const c = result.config;
  o.out(`${values.config}: ok`);
  o.out(`  identity ${identity.bundle.leaf.subject.replace(/\n/g, ', ')} valid until ${identity.bundle.leaf.validTo}`);
  for (const crl of identity.bundle.crls) o.out(`  crl from ${crl.issuer}, next update ${crl.nextUpdate?.toISOString() ?? 'none'}`);
  if (keys.ring.size > 0) o.out(`  keys ${keys.ring.ids.join(', ')}`);
  if (audit.seq !== null) o.out(`  audit log ${c.audit.file} ${audit.seq === 0 ? '(a new chain)' : `continues after seq ${audit.seq}`}`);
  o.out(`  ${describeWorkers(c.workers)}`);
  for (const l of c.listeners) o.out(`  listener ${l.name}: ${l.mode} ${l.protocol} ${l.listen.host}:${l.listen.port} -> ${l.target.host}:${l.target.port}`);
  return EXIT_OK;
}
