/**
 * Raw JSON value -> validated, defaulted, deeply frozen Config, or every problem found,
 * each named by its path (`listeners[1].allow: ...`). One function per section: the top-level
 * sections here, the listeners in validateListeners.ts (their allow-lists and verification in
 * validatePeers.ts, their signing and verifying in validateIntegrity.ts), and the readers that
 * turn one field into a value or a problem in validateReaders.ts.
 *
 * Fail closed: unknown keys are problems at every level (a typo must never weaken a
 * policy silently), secrets are only ever named by file, and anything that widens
 * exposure (public plaintext, no allow-list) must be said explicitly.
 */
import {
  DEFAULT_ADMIN,
  DEFAULT_AUDIT,
  DEFAULT_CRL_STALE,
  DEFAULT_DRAIN_TIMEOUT_SECONDS,
  DEFAULT_EXPIRY_WARNING_FRACTION,
  DEFAULT_HEALTH,
  DEFAULT_KEYS,
  DEFAULT_LOG,
  DEFAULT_TLS,
  DEFAULT_WORKERS,
  MAX_WORKERS,
} from './defaults.ts';
import { formatHostPort, isLoopbackHost } from './hostPort.ts';
import type { Config, ConfigProblem, ConfigResult, HostPort } from './types.ts';
import { validateIntegrityProfile } from './validateIntegrity.ts';
import { validateListeners } from './validateListeners.ts';
import { validateSharedState } from './validateSharedState.ts';
import {
  at,
  bad,
  booleanValue,
  checkKeys,
  filePath,
  fractionOfOne,
  isAbsent,
  isObject,
  listenAddress,
  nullable,
  ok,
  oneOf,
  positiveInteger,
  read,
  report,
  REQUIRED,
  seconds,
  section,
  UNSET_ADDRESS,
  type Ctx,
  type Parser,
} from './validateReaders.ts';

export interface ValidateOptions {
  /** relative file paths resolve against this folder (the config file's folder, or the cwd for flags) */
  readonly baseDir: string;
  /** recorded as Config.source */
  readonly source: string | null;
}

/** `path: message`, the way problems are printed. */
export function formatProblem(problem: ConfigProblem): string {
  return `${problem.path}: ${problem.message}`;
}

export function validateConfig(raw: unknown, opts: ValidateOptions): ConfigResult {
  const ctx: Ctx = { baseDir: opts.baseDir, problems: [] };
  if (!isObject(raw)) {
    report(ctx, 'config', 'expected a JSON object');
    return failure(ctx);
  }
  checkKeys(ctx, raw, '', TOP_LEVEL_KEYS);
  const admin = validateAdmin(ctx, raw.admin, 'admin');
  const health = validateHealth(ctx, raw.health, 'health');
  const identity = validateIdentity(ctx, raw.identity, 'identity');
  const tls = validateTls(ctx, raw.tls, 'tls');
  const keys = validateKeys(ctx, raw.keys, 'keys');
  const integrity = validateIntegrityProfile(ctx, raw.integrity, 'integrity');
  const audit = validateAudit(ctx, raw.audit, 'audit');
  const log = validateLog(ctx, raw.log, 'log');
  const drainTimeoutSeconds = read(ctx, raw, '', 'drainTimeoutSeconds', seconds, DEFAULT_DRAIN_TIMEOUT_SECONDS);
  const workers = read(ctx, raw, '', 'workers', workerCount, DEFAULT_WORKERS);
  const sharedState = isAbsent(raw.sharedState) ? null : validateSharedState(ctx, raw.sharedState, 'sharedState');
  const listeners = validateListeners(ctx, raw.listeners, 'listeners', keys.dir);
  checkDistinctListenAddresses(ctx, [
    { path: 'admin.listen', address: admin.listen },
    { path: 'health.listen', address: health.listen },
    ...listeners.map((l, i) => ({ path: `listeners[${i}].listen`, address: l.listen })),
  ]);
  if (ctx.problems.length > 0) return failure(ctx);
  const config: Config = {
    source: opts.source,
    admin,
    health,
    identity,
    tls,
    keys,
    integrity,
    audit,
    log,
    drainTimeoutSeconds,
    workers,
    sharedState,
    listeners,
  };
  return Object.freeze({ ok: true, config: deepFreeze(config) });
}

/* ------------------------------------------------------------------ sections */

const TOP_LEVEL_KEYS = [
  'admin',
  'health',
  'identity',
  'tls',
  'keys',
  'integrity',
  'audit',
  'log',
  'drainTimeoutSeconds',
  'workers',
  'sharedState',
  'listeners',
] as const;

function validateAdmin(ctx: Ctx, value: unknown, path: string): Config['admin'] {
  const o = section(ctx, value, path, ['listen', 'tokenFile']);
  const listen = read(ctx, o, path, 'listen', nullable(listenAddress), DEFAULT_ADMIN.listen);
  const tokenFile = read(ctx, o, path, 'tokenFile', nullable(filePath(ctx)), DEFAULT_ADMIN.tokenFile);
  if (listen !== null && !isLoopbackHost(listen.host) && tokenFile === null) {
    report(
      ctx,
      at(path, 'tokenFile'),
      `required when the admin server listens off loopback (${formatHostPort(listen)})`,
    );
  }
  return { listen, tokenFile };
}

function validateHealth(ctx: Ctx, value: unknown, path: string): Config['health'] {
  const o = section(ctx, value, path, ['listen']);
  return { listen: read(ctx, o, path, 'listen', nullable(listenAddress), DEFAULT_HEALTH.listen) };
}

function validateIdentity(ctx: Ctx, value: unknown, path: string): Config['identity'] {
  const o = section(
    ctx,
    value,
    path,
    ['certFile', 'keyFile', 'caFile', 'crlFile', 'crlStale', 'expiryWarningFraction'],
    { required: true },
  );
  if (!isObject(value)) {
    return {
      certFile: '',
      keyFile: '',
      caFile: '',
      crlFile: null,
      crlStale: DEFAULT_CRL_STALE,
      expiryWarningFraction: DEFAULT_EXPIRY_WARNING_FRACTION,
    };
  }
  return {
    certFile: read(ctx, o, path, 'certFile', filePath(ctx), '', REQUIRED),
    keyFile: read(ctx, o, path, 'keyFile', filePath(ctx), '', REQUIRED),
    caFile: read(ctx, o, path, 'caFile', filePath(ctx), '', REQUIRED),
    crlFile: read(ctx, o, path, 'crlFile', nullable(filePath(ctx)), null),
    crlStale: read(ctx, o, path, 'crlStale', oneOf(['warn', 'refuse'] as const), DEFAULT_CRL_STALE),
    expiryWarningFraction: read(ctx, o, path, 'expiryWarningFraction', fractionOfOne, DEFAULT_EXPIRY_WARNING_FRACTION),
  };
}

function validateTls(ctx: Ctx, value: unknown, path: string): Config['tls'] {
  const o = section(ctx, value, path, ['minVersion']);
  return { minVersion: read(ctx, o, path, 'minVersion', tlsMinVersion, DEFAULT_TLS.minVersion) };
}

function validateKeys(ctx: Ctx, value: unknown, path: string): Config['keys'] {
  const o = section(ctx, value, path, ['dir'], { holdsSecrets: true });
  return { dir: read(ctx, o, path, 'dir', nullable(filePath(ctx)), DEFAULT_KEYS.dir) };
}

function validateAudit(ctx: Ctx, value: unknown, path: string): Config['audit'] {
  const o = section(ctx, value, path, ['file', 'keyFile', 'maxFileBytes', 'maxFiles']);
  const file = read(ctx, o, path, 'file', nullable(filePath(ctx)), DEFAULT_AUDIT.file);
  const keyFile = read(ctx, o, path, 'keyFile', nullable(filePath(ctx)), DEFAULT_AUDIT.keyFile);
  const maxFileBytes = read(ctx, o, path, 'maxFileBytes', positiveInteger, DEFAULT_AUDIT.maxFileBytes);
  const maxFiles = read(ctx, o, path, 'maxFiles', positiveInteger, DEFAULT_AUDIT.maxFiles);
  if (maxFileBytes < MIN_AUDIT_FILE_BYTES)
    report(ctx, at(path, 'maxFileBytes'), `at least ${MIN_AUDIT_FILE_BYTES} (a file must hold more than a few lines)`);
  if (maxFiles > MAX_AUDIT_FILES) report(ctx, at(path, 'maxFiles'), `at most ${MAX_AUDIT_FILES}`);
  if (file !== null && keyFile === null && isAbsent(o.keyFile)) {
    report(ctx, at(path, 'keyFile'), 'required when audit.file is set (every audit line is MACed with this key)');
  }
  if (file === null && keyFile !== null && isAbsent(o.file)) {
    report(ctx, at(path, 'file'), 'required when audit.keyFile is set');
  }
  return { file, keyFile, maxFileBytes, maxFiles };
}

const MIN_AUDIT_FILE_BYTES = 4096;
const MAX_AUDIT_FILES = 1000;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

function validateLog(ctx: Ctx, value: unknown, path: string): Config['log'] {
  const o = section(ctx, value, path, ['level', 'access']);
  return {
    level: read(ctx, o, path, 'level', oneOf(LOG_LEVELS), DEFAULT_LOG.level),
    access: read(ctx, o, path, 'access', booleanValue, DEFAULT_LOG.access),
  };
}

/* -------------------------------------------------------------- cross checks */

interface NamedAddress {
  readonly path: string;
  readonly address: HostPort | null;
}

/** Two servers cannot bind the same address; port 0 (any free port) never collides. */
function checkDistinctListenAddresses(ctx: Ctx, entries: readonly NamedAddress[]): void {
  const earlier: { path: string; address: HostPort }[] = [];
  for (const { path, address } of entries) {
    if (address === null || address === UNSET_ADDRESS || address.port === 0) continue;
    const clash = earlier.find((e) => addressesCollide(e.address, address));
    if (clash !== undefined) {
      report(ctx, path, `${formatHostPort(address)} collides with ${clash.path} (${formatHostPort(clash.address)})`);
    }
    earlier.push({ path, address });
  }
}

function addressesCollide(a: HostPort, b: HostPort): boolean {
  if (a.port !== b.port) return false;
  if (a.host === b.host || a.host === '::' || b.host === '::') return true;
  const v6 = (h: string): boolean => h.includes(':');
  return (a.host === '0.0.0.0' && !v6(b.host)) || (b.host === '0.0.0.0' && !v6(a.host));
}

/* ------------------------------------------------------ top-level readers */

const workerCount: Parser<number | 'auto'> = (v) =>
  v === 'auto' || (Number.isSafeInteger(v) && (v as number) >= 1 && (v as number) <= MAX_WORKERS)
    ? ok(v as number | 'auto')
    : bad(`expected an integer from 1 to ${MAX_WORKERS}, or "auto" (one per CPU of the cgroup quota)`);

const tlsMinVersion: Parser<Config['tls']['minVersion']> = (v) => {
  if (v === 'TLSv1.2' || v === 'TLSv1.3') return ok(v);
  if (v === 'TLSv1' || v === 'TLSv1.1' || v === 'SSLv3' || v === 'SSLv2') return bad('TLS below 1.2 is not allowed');
  return bad('expected "TLSv1.2" or "TLSv1.3"');
};

function failure(ctx: Ctx): ConfigResult {
  return Object.freeze({ ok: false, problems: Object.freeze([...ctx.problems]) });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
