import { formatHostPort } from '../config/hostPort.ts';
import type { Config } from '../config/types.ts';
import { readConfigFile } from '../config/load.ts';
import { loadIdentity } from '../certs/identityBundle.ts';
import { formatProblem } from '../config/validate.ts';
import { loadKeys } from '../integrity/integrityRuntime.ts';
import { checkAuditLog } from '../telemetry/auditLog.ts';
import { describeWorkers } from '../workers/cpuQuota.ts';
import { CHECK_COMMAND } from './commands.ts';
import { parseCommand } from './flagSpec.ts';
import { namedFileProblems, tokenFileProblem } from './namedFiles.ts';
import { answerUnparsed, EXIT_OK, EXIT_USAGE, printProblems, type Output } from './output.ts';

/**
 * `tollgate check --config FILE`: the same validation `run` does, plus the files it names:
 * the certificates (key matches certificate, chain verifies against the CA, not expired; little
 * lifetime left is a warning; the CRLs parse, are signed by a CA of the bundle and cover each
 * CA; a stale CRL is a warning with identity.crlStale "warn" and a problem with "refuse"), the
 * HMAC key ring (every file a valid key, the signing keys present), the audit log (the key
 * loads, the file's last line verifies) and the admin token. Every problem, of the config and
 * of its files alike, is listed in one list. Exit 0 when it would start, 2 otherwise.
 */
export async function checkCommand(argv: string[], o: Output, now: Date): Promise<number> {
  const parsed = parseCommand(CHECK_COMMAND, argv);
  if (parsed.kind !== 'ok') return answerUnparsed(o, CHECK_COMMAND, parsed);
  const file = parsed.values.config;
  const read = await readConfigFile(file);
  if (!read.result.ok) {
    const fileProblems = await namedFileProblems(read.raw, read.baseDir, now);
    printProblems(o, `${file}: invalid configuration`, [...read.result.problems.map(formatProblem), ...fileProblems]);
    return EXIT_USAGE;
  }
  const c = read.result.config;
  const [identity, keys, audit, token, store] = await Promise.all([
    loadIdentity(c.identity, now),
    loadKeys(c),
    checkAuditLog(c.audit),
    tokenFileProblem(c.admin.tokenFile),
    sharedStateProblem(c),
  ]);
  const problems = [
    ...(identity.ok ? [] : identity.problems.map((p) => `identity.${p}`)),
    ...(keys.ok ? [] : keys.problems),
    ...(audit.ok ? [] : audit.problems),
    ...(token === null ? [] : [token]),
    ...(store === null ? [] : [store]),
  ];
  for (const w of identity.ok ? identity.warnings : []) o.err(`warning: identity.${w}`);
  for (const w of keys.ok ? keys.warnings : []) o.err(`warning: ${w}`);
  for (const w of audit.ok ? audit.warnings : []) o.err(`warning: ${w}`);
  if (problems.length > 0 || !identity.ok || !keys.ok || !audit.ok) {
    printProblems(o, `${file}: would not start`, problems);
    return EXIT_USAGE;
  }
  o.out(`${file}: ok`);
  o.out(`  identity ${identity.bundle.leaf.subject.replace(/\n/g, ', ')} valid until ${identity.bundle.leaf.validTo}`);
  for (const crl of identity.bundle.crls)
    o.out(`  crl from ${crl.issuer}, next update ${crl.nextUpdate?.toISOString() ?? 'none'}`);
  if (keys.ring.size > 0) o.out(`  keys ${keys.ring.ids.join(', ')}`);
  if (audit.seq !== null)
    o.out(`  audit log ${c.audit.file} ${audit.seq === 0 ? '(a new chain)' : `continues after seq ${audit.seq}`}`);
  o.out(`  ${describeWorkers(c.workers)}`);
  if (c.sharedState !== null)
    o.out(`  shared state ${c.sharedState.url} answers (onUnavailable: ${c.sharedState.onUnavailable})`);
  for (const l of c.listeners) {
    const listen = formatHostPort(l.listen);
    if (l.mode !== 'gateway') {
      o.out(`  listener ${l.name}: ${l.mode} ${l.protocol} ${listen} -> ${formatHostPort(l.target)}`);
      continue;
    }
    // a gateway: its routes in the order they are tried
    o.out(`  listener ${l.name}: gateway ${l.protocol} ${listen}, ${l.routes.length} route(s), first match wins`);
    for (const r of l.routes) {
      const m = r.match;
      const match = `${m.methods === null ? '' : `${m.methods.join(',')} `}${m.host ?? '*'}${m.pathPrefix}`;
      const via = r.upstreamTls === null ? '' : ' (mTLS)';
      o.out(`    route ${r.name}: ${match} -> ${r.targets.map(formatHostPort).join(', ')}${via}`);
    }
  }
  return EXIT_OK;
}

/** the shared state store, reached as a replica would reach it (its CA, our client certificate, the password) */
async function sharedStateProblem(c: Config): Promise<string | null> {
  if (c.sharedState === null) return null;
  const { probeSharedStore } = await import('../sharedState/sharedStore.ts');
  const problem = await probeSharedStore(c.sharedState);
  return problem === null ? null : `sharedState.url: ${c.sharedState.url} cannot be used: ${problem}`;
}
