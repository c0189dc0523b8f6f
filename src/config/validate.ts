/**
 * Raw JSON value -> validated, defaulted, deeply frozen Config, or every problem found,
 * each named by its path (`listeners[1].allow: ...`). One function per section; the
 * readers at the bottom turn one field into a value or a problem.
 *
 * Fail closed: unknown keys are problems at every level (a typo must never weaken a
 * policy silently), secrets are only ever named by file, and anything that widens
 * exposure (public plaintext, no allow-list) must be said explicitly.
 */
import { isSpkiPin } from '../core/spkiPin.ts';
import { closestName } from '../core/closestName.ts';
import { resolve } from 'node:path';
import {
  DEFAULT_ADMIN,
  DEFAULT_ANOMALY,
  DEFAULT_AUDIT,
  DEFAULT_CRL_STALE,
  DEFAULT_DRAIN_TIMEOUT_SECONDS,
  DEFAULT_EXPIRY_WARNING_FRACTION,
  DEFAULT_HEALTH,
  DEFAULT_INTEGRITY,
  DEFAULT_KEYS,
  DEFAULT_LIMITS,
  DEFAULT_LOG,
  DEFAULT_PROTOCOL,
  DEFAULT_TLS,
  DEFAULT_WORKERS,
  MAX_WORKERS,
} from './defaults.ts';
import { formatHostPort, isDnsName, isLoopbackHost, isValidHost, parseHostPort } from './hostPort.ts';
import type {
  AllowConfig,
  AnomalyConfig,
  Config,
  ConfigProblem,
  ConfigResult,
  HostPort,
  LimitsConfig,
  ListenerConfig,
  ListenerIntegrityConfig,
  ListenerMode,
  VerifyConfig,
} from './types.ts';

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
  'listeners',
] as const;

function validateAdmin(ctx: Ctx, value: unknown, path: string): Config['admin'] {
  const o = section(ctx, value, path, ['listen', 'tokenFile']);
  const listen = read(ctx, o, path, 'listen', nullable(listenAddress), DEFAULT_ADMIN.listen);
  const tokenFile = read(ctx, o, path, 'tokenFile', nullable(filePath(ctx)), DEFAULT_ADMIN.tokenFile);
  if (listen !== null && !isLoopbackHost(listen.host) && tokenFile === null) {
    report(ctx, at(path, 'tokenFile'), `required when the admin server listens off loopback (${formatHostPort(listen)})`);
  }
  return { listen, tokenFile };
}

function validateHealth(ctx: Ctx, value: unknown, path: string): Config['health'] {
  const o = section(ctx, value, path, ['listen']);
  return { listen: read(ctx, o, path, 'listen', nullable(listenAddress), DEFAULT_HEALTH.listen) };
}

function validateIdentity(ctx: Ctx, value: unknown, path: string): Config['identity'] {
  const o = section(ctx, value, path, ['certFile', 'keyFile', 'caFile', 'crlFile', 'crlStale', 'expiryWarningFraction'], { required: true });
  if (!isObject(value)) {
    return { certFile: '', keyFile: '', caFile: '', crlFile: null, crlStale: DEFAULT_CRL_STALE, expiryWarningFraction: DEFAULT_EXPIRY_WARNING_FRACTION };
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

function validateIntegrityProfile(ctx: Ctx, value: unknown, path: string): Config['integrity'] {
  const o = section(ctx, value, path, ['tag', 'skewSeconds', 'maxAgeSeconds', 'bodyMode', 'maxBufferedBytes', 'replayCacheEntries', 'requiredComponents']);
  const d = DEFAULT_INTEGRITY;
  const profile: Config['integrity'] = {
    tag: read(ctx, o, path, 'tag', signatureTag, d.tag),
    skewSeconds: read(ctx, o, path, 'skewSeconds', seconds, d.skewSeconds),
    maxAgeSeconds: read(ctx, o, path, 'maxAgeSeconds', seconds, d.maxAgeSeconds),
    bodyMode: read(ctx, o, path, 'bodyMode', oneOf(['buffer', 'stream'] as const), d.bodyMode),
    maxBufferedBytes: read(ctx, o, path, 'maxBufferedBytes', positiveInteger, d.maxBufferedBytes),
    replayCacheEntries: read(ctx, o, path, 'replayCacheEntries', positiveInteger, d.replayCacheEntries),
    requiredComponents: o.requiredComponents === undefined ? d.requiredComponents : readStringList(ctx, o, path, 'requiredComponents', componentNameProblem),
  };
  if (profile.skewSeconds > profile.maxAgeSeconds) {
    report(ctx, at(path, 'skewSeconds'), `must not exceed maxAgeSeconds (${profile.maxAgeSeconds})`);
  }
  return profile;
}

const DERIVED_COMPONENTS = new Set(['@method', '@authority', '@path', '@query', '@target-uri', '@scheme', '@request-target']);
const FIELD_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

/** A component the verifier can demand on top of the floor: a request-derived name, or a lowercase field name. */
function componentNameProblem(name: string): string | null {
  if (name.startsWith('@')) return DERIVED_COMPONENTS.has(name) ? null : `${name} is not a request component (one of ${[...DERIVED_COMPONENTS].join(', ')})`;
  return FIELD_NAME.test(name) ? null : `"${name}" is not a lowercase HTTP field name`;
}

function validateAudit(ctx: Ctx, value: unknown, path: string): Config['audit'] {
  const o = section(ctx, value, path, ['file', 'keyFile', 'maxFileBytes', 'maxFiles']);
  const file = read(ctx, o, path, 'file', nullable(filePath(ctx)), DEFAULT_AUDIT.file);
  const keyFile = read(ctx, o, path, 'keyFile', nullable(filePath(ctx)), DEFAULT_AUDIT.keyFile);
  const maxFileBytes = read(ctx, o, path, 'maxFileBytes', positiveInteger, DEFAULT_AUDIT.maxFileBytes);
  const maxFiles = read(ctx, o, path, 'maxFiles', positiveInteger, DEFAULT_AUDIT.maxFiles);
  if (maxFileBytes < MIN_AUDIT_FILE_BYTES) report(ctx, at(path, 'maxFileBytes'), `at least ${MIN_AUDIT_FILE_BYTES} (a file must hold more than a few lines)`);
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

/* ----------------------------------------------------------------- listeners */

function validateListeners(ctx: Ctx, value: unknown, path: string, keysDir: string | null): ListenerConfig[] {
  if (value === undefined) {
    report(ctx, path, 'required: at least one listener');
    return [];
  }
  if (!Array.isArray(value)) {
    report(ctx, path, 'expected an array of listeners');
    return [];
  }
  if (value.length === 0) report(ctx, path, 'at least one listener is required');
  const listeners = value.map((item: unknown, i) => validateListener(ctx, item, `${path}[${i}]`, keysDir));
  checkDistinctNames(ctx, listeners, path);
  return listeners;
}

const COMMON_LISTENER_KEYS = ['name', 'mode', 'protocol', 'listen', 'target', 'integrity', 'anomaly', 'limits'];
const INBOUND_ONLY_KEYS = ['allow', 'unsafeTarget'];
const OUTBOUND_ONLY_KEYS = ['serverName', 'verify', 'unsafeListen'];
/** the syntax of a listener name (the admin API checks query parameters against it too) */
export const LISTENER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function validateListener(ctx: Ctx, value: unknown, path: string, keysDir: string | null): ListenerConfig {
  if (!isObject(value)) {
    report(ctx, path, 'expected an object');
    return placeholderListener('', UNSET_ADDRESS);
  }
  const o = value;
  const name = read(ctx, o, path, 'name', listenerName, '', REQUIRED);
  if (o.mode === 'gateway') {
    // Routes, per-route policy and rate limits come with the gateway work; until then, refuse honestly.
    report(ctx, at(path, 'mode'), 'mode gateway is not supported yet');
    return placeholderListener(name, read(ctx, o, path, 'listen', listenAddress, UNSET_ADDRESS));
  }
  const mode = read(ctx, o, path, 'mode', oneOf(['inbound', 'outbound'] as const), null, REQUIRED);
  checkListenerKeys(ctx, o, path, mode);
  const protocol = read(ctx, o, path, 'protocol', oneOf(['http', 'tcp'] as const), DEFAULT_PROTOCOL);
  const listen = read(ctx, o, path, 'listen', listenAddress, UNSET_ADDRESS, REQUIRED);
  const target = read(ctx, o, path, 'target', targetAddress, UNSET_ADDRESS, REQUIRED);
  const common: ListenerCommon = {
    name,
    protocol,
    listen,
    target,
    anomaly: validateAnomaly(ctx, o.anomaly, at(path, 'anomaly')),
    limits: validateLimits(ctx, o.limits, at(path, 'limits')),
  };
  if (mode === 'inbound') return assembleListener(common, validateInboundPart(ctx, o, path, common, keysDir));
  if (mode === 'outbound') return assembleListener(common, validateOutboundPart(ctx, o, path, common, keysDir));
  return placeholderListener(name, listen);
}

/** Fields in a fixed, readable order (this is what `GET /config` shows). */
function assembleListener(c: ListenerCommon, m: ModePart): ListenerConfig {
  return {
    name: c.name,
    mode: m.mode,
    protocol: c.protocol,
    listen: c.listen,
    target: c.target,
    allow: m.allow,
    serverName: m.serverName,
    verify: m.verify,
    integrity: m.integrity,
    anomaly: c.anomaly,
    limits: c.limits,
    unsafeTarget: m.unsafeTarget,
    unsafeListen: m.unsafeListen,
  };
}

type ListenerCommon = Pick<ListenerConfig, 'name' | 'protocol' | 'listen' | 'target' | 'anomaly' | 'limits'>;
type ModePart = Omit<ListenerConfig, keyof ListenerCommon>;

function checkListenerKeys(ctx: Ctx, o: Obj, path: string, mode: ListenerMode | null): void {
  if (mode === null) {
    checkKeys(ctx, o, path, [...COMMON_LISTENER_KEYS, ...INBOUND_ONLY_KEYS, ...OUTBOUND_ONLY_KEYS]);
  } else if (mode === 'inbound') {
    checkKeys(ctx, o, path, [...COMMON_LISTENER_KEYS, ...INBOUND_ONLY_KEYS], {
      misplaced: misplacedAs(OUTBOUND_ONLY_KEYS, 'is for outbound listeners only'),
    });
  } else {
    checkKeys(ctx, o, path, [...COMMON_LISTENER_KEYS, ...OUTBOUND_ONLY_KEYS], {
      misplaced: misplacedAs(INBOUND_ONLY_KEYS, 'is for inbound listeners only'),
    });
  }
}

/** Inbound: TLS in, plaintext out to the local app, so the target stays on loopback unless said otherwise. */
function validateInboundPart(
  ctx: Ctx,
  o: Obj,
  path: string,
  common: ListenerCommon,
  keysDir: string | null,
): ModePart {
  const unsafeTarget = read(ctx, o, path, 'unsafeTarget', booleanValue, false);
  if (common.target !== UNSET_ADDRESS && !unsafeTarget && !isLoopbackHost(common.target.host)) {
    report(
      ctx,
      at(path, 'target'),
      `${formatHostPort(common.target)} is off loopback; an inbound listener sends plaintext to its target, so set unsafeTarget: true if this is intended`,
    );
  }
  return {
    mode: 'inbound',
    allow: validateAllow(ctx, o.allow, at(path, 'allow')),
    serverName: common.target.host,
    verify: EMPTY_VERIFY,
    integrity: validateListenerIntegrity(ctx, o.integrity, at(path, 'integrity'), 'inbound', common.protocol, keysDir),
    unsafeTarget,
    unsafeListen: false,
  };
}

/** Outbound: plaintext in from the local app, so the listen address stays on loopback unless said otherwise. */
function validateOutboundPart(ctx: Ctx, o: Obj, path: string, common: ListenerCommon, keysDir: string | null): ModePart {
  const unsafeListen = read(ctx, o, path, 'unsafeListen', booleanValue, false);
  if (common.listen !== UNSET_ADDRESS && !unsafeListen && !isLoopbackHost(common.listen.host)) {
    report(
      ctx,
      at(path, 'listen'),
      `${formatHostPort(common.listen)} is off loopback; an outbound listener accepts plaintext, so set unsafeListen: true if this is intended`,
    );
  }
  return {
    mode: 'outbound',
    allow: EMPTY_ALLOW,
    serverName: read(ctx, o, path, 'serverName', serverNameValue, common.target.host),
    verify: validateVerify(ctx, o.verify, at(path, 'verify')),
    integrity: validateListenerIntegrity(ctx, o.integrity, at(path, 'integrity'), 'outbound', common.protocol, keysDir),
    unsafeTarget: false,
    unsafeListen,
  };
}

const ALLOW_RULE_MESSAGE = 'at least one of spiffe, dns, cn, spkiPins, or any: true';

function validateAllow(ctx: Ctx, value: unknown, path: string): AllowConfig {
  if (value === undefined) {
    report(ctx, path, ALLOW_RULE_MESSAGE);
    return EMPTY_ALLOW;
  }
  if (!isObject(value)) {
    report(ctx, path, `expected an object with ${ALLOW_RULE_MESSAGE}`);
    return EMPTY_ALLOW;
  }
  checkKeys(ctx, value, path, ['any', 'spiffe', 'dns', 'cn', 'spkiPins']);
  const allow: AllowConfig = {
    any: read(ctx, value, path, 'any', booleanValue, false),
    spiffe: readStringList(ctx, value, path, 'spiffe', spiffeIdProblem),
    dns: readStringList(ctx, value, path, 'dns', dnsNameProblem),
    cn: readStringList(ctx, value, path, 'cn', nonEmptyProblem),
    spkiPins: readStringList(ctx, value, path, 'spkiPins', spkiPinProblem),
  };
  const rules = allow.spiffe.length + allow.dns.length + allow.cn.length + allow.spkiPins.length;
  if (rules === 0 && !allow.any && !hasOwnProblems(value)) report(ctx, path, ALLOW_RULE_MESSAGE);
  return allow;
}

function validateVerify(ctx: Ctx, value: unknown, path: string): VerifyConfig {
  const o = section(ctx, value, path, ['spiffe', 'spkiPins']);
  return {
    spiffe: readStringList(ctx, o, path, 'spiffe', spiffeIdProblem),
    spkiPins: readStringList(ctx, o, path, 'spkiPins', spkiPinProblem),
  };
}

const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const NO_MESSAGES = 'a tcp listener carries no HTTP messages to sign or verify';

function validateListenerIntegrity(
  ctx: Ctx,
  value: unknown,
  path: string,
  mode: ListenerMode,
  protocol: ListenerConfig['protocol'],
  keysDir: string | null,
): ListenerIntegrityConfig {
  const inbound = mode === 'inbound';
  const o = section(ctx, value, path, inbound ? ['verify'] : ['sign', 'keyId'], {
    misplaced: inbound
      ? misplacedAs(['sign', 'keyId'], 'is for outbound listeners only (inbound listeners verify)')
      : misplacedAs(['verify'], 'is for inbound listeners only (outbound listeners sign)'),
  });
  const verify = inbound ? read(ctx, o, path, 'verify', booleanValue, false) : false;
  const sign = inbound ? false : read(ctx, o, path, 'sign', booleanValue, false);
  const keyId = inbound ? null : read(ctx, o, path, 'keyId', nullable(keyIdValue), null);
  const flag = inbound ? 'verify' : 'sign';
  if (verify || sign) {
    if (protocol === 'tcp') report(ctx, at(path, flag), NO_MESSAGES);
    else if (keysDir === null) report(ctx, at(path, flag), 'needs keys.dir (the folder of HMAC key files)');
  }
  if (sign && keyId === null && isAbsent(o.keyId)) {
    report(ctx, at(path, 'keyId'), 'required when sign is true (the id of the key to sign with)');
  }
  return { verify, sign, keyId };
}

function validateAnomaly(ctx: Ctx, value: unknown, path: string): AnomalyConfig {
  const o = section(ctx, value, path, ['mode', 'minSamples', 'threshold', 'maxTrackedPeers']);
  const d = DEFAULT_ANOMALY;
  return {
    mode: read(ctx, o, path, 'mode', oneOf(['off', 'observe', 'block'] as const), d.mode),
    minSamples: read(ctx, o, path, 'minSamples', positiveInteger, d.minSamples),
    threshold: read(ctx, o, path, 'threshold', positiveNumber, d.threshold),
    maxTrackedPeers: read(ctx, o, path, 'maxTrackedPeers', positiveInteger, d.maxTrackedPeers),
  };
}

function validateLimits(ctx: Ctx, value: unknown, path: string): LimitsConfig {
  const o = section(ctx, value, path, Object.keys(DEFAULT_LIMITS));
  const d = DEFAULT_LIMITS;
  const requestsPerSecond = read(ctx, o, path, 'requestsPerSecond', nonNegativeNumber, d.requestsPerSecond);
  const burst = read(ctx, o, path, 'burst', nonNegativeInteger, d.burst);
  const maxConcurrentHandshakes = read(ctx, o, path, 'maxConcurrentHandshakes', positiveInteger, d.maxConcurrentHandshakes);
  // 0 (the default) derives it from the cap; a value above the cap would never apply
  const perSource = read(ctx, o, path, 'maxHandshakesPerSource', nonNegativeInteger, d.maxHandshakesPerSource);
  if (perSource > maxConcurrentHandshakes) {
    report(ctx, at(path, 'maxHandshakesPerSource'), `at most maxConcurrentHandshakes (${maxConcurrentHandshakes}); 0 derives a quarter of it`);
  }
  return {
    maxBodyBytes: read(ctx, o, path, 'maxBodyBytes', positiveInteger, d.maxBodyBytes),
    maxHeaderBytes: read(ctx, o, path, 'maxHeaderBytes', positiveInteger, d.maxHeaderBytes),
    requestsPerSecond,
    // A rate with no burst would refuse everything; 0 means "one second's worth".
    burst: requestsPerSecond > 0 && burst === 0 ? Math.max(1, Math.ceil(requestsPerSecond)) : burst,
    maxConnections: read(ctx, o, path, 'maxConnections', positiveInteger, d.maxConnections),
    maxConcurrentHandshakes,
    maxHandshakesPerSource: perSource === 0 ? Math.max(1, Math.ceil(maxConcurrentHandshakes / 4)) : perSource,
    clientHelloTimeoutSeconds: read(ctx, o, path, 'clientHelloTimeoutSeconds', seconds, d.clientHelloTimeoutSeconds),
    handshakeTimeoutSeconds: read(ctx, o, path, 'handshakeTimeoutSeconds', seconds, d.handshakeTimeoutSeconds),
    headersTimeoutSeconds: read(ctx, o, path, 'headersTimeoutSeconds', seconds, d.headersTimeoutSeconds),
    bodyTimeoutSeconds: read(ctx, o, path, 'bodyTimeoutSeconds', seconds, d.bodyTimeoutSeconds),
    minBodyBytesPerSecond: read(ctx, o, path, 'minBodyBytesPerSecond', nonNegativeInteger, d.minBodyBytesPerSecond),
    idleTimeoutSeconds: read(ctx, o, path, 'idleTimeoutSeconds', seconds, d.idleTimeoutSeconds),
    upstreamTimeoutSeconds: read(ctx, o, path, 'upstreamTimeoutSeconds', seconds, d.upstreamTimeoutSeconds),
  };
}

/* -------------------------------------------------------------- cross checks */

function checkDistinctNames(ctx: Ctx, listeners: readonly ListenerConfig[], path: string): void {
  const seen = new Map<string, number>();
  listeners.forEach((l, i) => {
    if (l.name === '') return;
    const first = seen.get(l.name);
    if (first === undefined) seen.set(l.name, i);
    else report(ctx, `${path}[${i}].name`, `"${l.name}" is already the name of ${path}[${first}]`);
  });
}

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

/* ------------------------------------------------------- sections and keys */

type Obj = Readonly<Record<string, unknown>>;

interface Ctx {
  readonly baseDir: string;
  readonly problems: ConfigProblem[];
}

interface SectionOptions {
  /** absent is a problem rather than "all defaults" */
  readonly required?: boolean;
  /** string values under unknown keys here are taken for inline secrets */
  readonly holdsSecrets?: boolean;
  /** keys that are known elsewhere, with the message to give when they appear here */
  readonly misplaced?: ReadonlyMap<string, string>;
}

/** The object at `path` (empty when absent or not an object, after reporting). */
function section(ctx: Ctx, value: unknown, path: string, keys: readonly string[], opts: SectionOptions = {}): Obj {
  if (value === undefined) {
    if (opts.required === true) report(ctx, path, 'required');
    return {};
  }
  if (!isObject(value)) {
    report(ctx, path, 'expected an object');
    return {};
  }
  checkKeys(ctx, value, path, keys, opts);
  return value;
}

const SECRET_KEY_NAME = /(token|key|secret|password|passwd|passphrase|credentials?|hmac|bearer|pem)s?$/i;
const SECRETS_MESSAGE = 'unknown key; secrets are never written inline: put the secret in a file and name the file (keyFile, tokenFile, keys.dir)';

function checkKeys(
  ctx: Ctx,
  o: Obj,
  path: string,
  allowed: readonly string[],
  opts: Pick<SectionOptions, 'holdsSecrets' | 'misplaced'> = {},
): void {
  for (const key of Object.keys(o)) {
    if (allowed.includes(key)) continue;
    const misplaced = opts.misplaced?.get(key);
    report(ctx, at(path, key), misplaced ?? unknownKeyMessage(key, o[key], allowed, opts.holdsSecrets === true));
  }
}

function unknownKeyMessage(key: string, value: unknown, allowed: readonly string[], holdsSecrets: boolean): string {
  if (typeof value === 'string' && (holdsSecrets || SECRET_KEY_NAME.test(key) || value.includes('-----BEGIN'))) {
    return SECRETS_MESSAGE;
  }
  const suggestion = closestName(key, allowed);
  return suggestion === null ? 'unknown key' : `unknown key (did you mean ${suggestion}?)`;
}

function misplacedAs(keys: readonly string[], message: string): ReadonlyMap<string, string> {
  return new Map(keys.map((k) => [k, message]));
}

/* ------------------------------------------------------------------ readers */

type Parsed<T> = { readonly value: T } | { readonly problem: string };
type Parser<T> = (value: unknown) => Parsed<T>;

const REQUIRED = 'required';

/** Field `key` of `o`: the parsed value; `fallback` when absent (reporting `missing` if given) or invalid. */
function read<T, F = T>(ctx: Ctx, o: Obj, path: string, key: string, parse: Parser<T>, fallback: F, missing?: string): T | F {
  const value = o[key];
  if (value === undefined) {
    if (missing !== undefined) report(ctx, at(path, key), missing);
    return fallback;
  }
  const parsed = parse(value);
  if ('problem' in parsed) {
    report(ctx, at(path, key), parsed.problem);
    return fallback;
  }
  return parsed.value;
}

/** An array of strings, each checked; absent = empty. Problems name the element (`spiffe[2]`). */
function readStringList(ctx: Ctx, o: Obj, path: string, key: string, check: (s: string) => string | null): readonly string[] {
  const value = o[key];
  if (value === undefined) return [];
  const listPath = at(path, key);
  if (!Array.isArray(value)) {
    report(ctx, listPath, 'expected an array of strings');
    return [];
  }
  const out: string[] = [];
  value.forEach((item: unknown, i) => {
    const problem = typeof item === 'string' ? check(item) : 'expected a string';
    if (problem === null) out.push(item as string);
    else report(ctx, `${listPath}[${i}]`, problem);
  });
  return out;
}

/** Whether an allow object says something (valid or not) that was already reported, so no cascade follows. */
function hasOwnProblems(allow: Obj): boolean {
  if (allow.any !== undefined && typeof allow.any !== 'boolean') return true;
  return ['spiffe', 'dns', 'cn', 'spkiPins'].some((k) => {
    const list = allow[k];
    return list !== undefined && !(Array.isArray(list) && list.length === 0);
  });
}

function ok<T>(value: T): Parsed<T> {
  return { value };
}

function bad(problem: string): Parsed<never> {
  return { problem };
}

function nullable<T>(parse: Parser<T>): Parser<T | null> {
  return (v) => (v === null ? ok(null) : parse(v));
}

function oneOf<const T extends string>(allowed: readonly T[]): Parser<T> {
  return (v) =>
    typeof v === 'string' && (allowed as readonly string[]).includes(v)
      ? ok(v as T)
      : bad(`expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
}

const booleanValue: Parser<boolean> = (v) => (typeof v === 'boolean' ? ok(v) : bad('expected true or false'));

const positiveInteger: Parser<number> = (v) =>
  Number.isSafeInteger(v) && (v as number) > 0 ? ok(v as number) : bad('expected a positive integer');

const nonNegativeInteger: Parser<number> = (v) =>
  Number.isSafeInteger(v) && (v as number) >= 0 ? ok(v as number) : bad('expected an integer ≥ 0');

const positiveNumber: Parser<number> = (v) =>
  typeof v === 'number' && Number.isFinite(v) && v > 0 ? ok(v) : bad('expected a positive number');

const nonNegativeNumber: Parser<number> = (v) =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0 ? ok(v) : bad('expected a number ≥ 0');

/** A part of a whole, both ends excluded: 0 would never warn and 1 would always. */
const fractionOfOne: Parser<number> = (v) =>
  typeof v === 'number' && v > 0 && v < 1 ? ok(v) : bad('expected a number between 0 and 1, both excluded (e.g. 0.33 for a third)');

/** Timers beyond 2^31-1 ms fire at once in Node, which would silently turn a timeout off. */
const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

const seconds: Parser<number> = (v) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return bad('expected a positive number of seconds');
  return v <= MAX_TIMER_SECONDS ? ok(v) : bad(`at most ${MAX_TIMER_SECONDS} seconds`);
};

const workerCount: Parser<number | 'auto'> = (v) =>
  v === 'auto' || (Number.isSafeInteger(v) && (v as number) >= 1 && (v as number) <= MAX_WORKERS)
    ? ok(v as number | 'auto')
    : bad(`expected an integer from 1 to ${MAX_WORKERS}, or "auto" (one per CPU of the cgroup quota)`);

function filePath(ctx: Ctx): Parser<string> {
  return (v) =>
    typeof v === 'string' && v.length > 0 ? ok(resolve(ctx.baseDir, v)) : bad('expected a file path (a non-empty string)');
}

/** Stands in for an address that is missing or invalid, so checks that need one can skip it. */
const UNSET_ADDRESS: HostPort = Object.freeze({ host: '', port: 0 });

const listenAddress: Parser<HostPort> = (v) => {
  if (typeof v !== 'string') return bad('expected HOST:PORT (a string)');
  const hp = parseHostPort(v);
  return typeof hp === 'string' ? bad(hp) : ok(hp);
};

const targetAddress: Parser<HostPort> = (v) => {
  const parsed = listenAddress(v);
  if ('value' in parsed && parsed.value.port === 0) return bad('expected HOST:PORT with a port from 1 to 65535');
  return parsed;
};

const tlsMinVersion: Parser<Config['tls']['minVersion']> = (v) => {
  if (v === 'TLSv1.2' || v === 'TLSv1.3') return ok(v);
  if (v === 'TLSv1' || v === 'TLSv1.1' || v === 'SSLv3' || v === 'SSLv2') return bad('TLS below 1.2 is not allowed');
  return bad('expected "TLSv1.2" or "TLSv1.3"');
};

/** The signature `tag` is an sf-string: printable ASCII; quotes and backslashes kept out to avoid escaping. */
const signatureTag: Parser<string> = (v) =>
  typeof v === 'string' && /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(v)
    ? ok(v)
    : bad('expected 1-64 printable ASCII characters other than " and \\');

const listenerName: Parser<string> = (v) =>
  typeof v === 'string' && LISTENER_NAME.test(v)
    ? ok(v)
    : bad('expected lowercase letters, digits, "_" and "-", starting with a letter or digit (it becomes a metric label)');

const serverNameValue: Parser<string> = (v) =>
  typeof v === 'string' && isValidHost(v) ? ok(v) : bad('expected a DNS name or an IP address');

const keyIdValue: Parser<string> = (v) =>
  typeof v === 'string' && KEY_ID.test(v)
    ? ok(v)
    : bad('expected a key id: letters, digits, ".", "_" and "-", not starting with "." (it names a file in keys.dir)');

/* ------------------------------------------------------ identity syntaxes */

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_SPIFFE_ID = 2048;

/** `spiffe://trust-domain/path` (SPIFFE ID syntax), or `spiffe://trust-domain/*` for the whole domain. */
function spiffeIdProblem(id: string): string | null {
  const expected = 'expected spiffe://trust-domain/path or spiffe://trust-domain/*';
  if (!id.startsWith('spiffe://') || id.length > MAX_SPIFFE_ID) return expected;
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return expected;
  if (!TRUST_DOMAIN.test(rest.slice(0, slash))) {
    return `${expected}; a trust domain is lowercase letters, digits, ".", "-" and "_"`;
  }
  const path = rest.slice(slash + 1);
  if (path === '*') return null;
  const segments = path.split('/');
  if (segments.some((s) => !PATH_SEGMENT.test(s) || s === '.' || s === '..')) {
    return `${expected}; path segments are non-empty letters, digits, ".", "-" and "_" (not "." or "..")`;
  }
  return null;
}

function dnsNameProblem(name: string): string | null {
  if (name.includes('*')) return 'wildcard DNS names are not supported; list each name';
  return isDnsName(name) ? null : 'expected a DNS name';
}

function nonEmptyProblem(s: string): string | null {
  return s.length > 0 ? null : 'expected a non-empty string';
}

/** `sha256/` + canonical base64 of 32 bytes (the form `tollgate certs pin` prints). */
function spkiPinProblem(pin: string): string | null {
  return isSpkiPin(pin) ? null : 'expected sha256/ followed by the base64 of 32 bytes (see tollgate certs pin)';
}

/* -------------------------------------------------------------------- misc */

const EMPTY_ALLOW: AllowConfig = Object.freeze({ any: false, spiffe: [], dns: [], cn: [], spkiPins: [] });
const EMPTY_VERIFY: VerifyConfig = Object.freeze({ spiffe: [], spkiPins: [] });

/** A listener that failed early (gateway): enough for the name and address checks. */
function placeholderListener(name: string, listen: HostPort): ListenerConfig {
  return {
    name,
    mode: 'inbound',
    protocol: DEFAULT_PROTOCOL,
    listen,
    target: UNSET_ADDRESS,
    allow: EMPTY_ALLOW,
    serverName: '',
    verify: EMPTY_VERIFY,
    integrity: { verify: false, sign: false, keyId: null },
    anomaly: DEFAULT_ANOMALY,
    limits: DEFAULT_LIMITS,
    unsafeTarget: false,
    unsafeListen: false,
  };
}

function report(ctx: Ctx, path: string, message: string): void {
  ctx.problems.push(Object.freeze({ path, message }));
}

function failure(ctx: Ctx): ConfigResult {
  return Object.freeze({ ok: false, problems: Object.freeze([...ctx.problems]) });
}

/** `admin` + `listen` -> `admin.listen`; keys that are not identifiers are quoted: `x["a b"]`. */
function at(path: string, key: string): string {
  if (!/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path === '' ? key : `${path}.${key}`;
}

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Missing or null: a value that failed to parse has its own problem already. */
function isAbsent(value: unknown): boolean {
  return value === undefined || value === null;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
