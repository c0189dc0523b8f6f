/**
 * `tollgate inbound …` / `tollgate outbound …` flags -> ConfigResult. The flags are turned
 * into the raw object a config file with one listener would hold, and that goes through
 * validateConfig, so the quick commands obey exactly the same rules. Problems are then
 * renamed to the flag they came from (`listeners[0].target` -> `--target`).
 *
 * parseArgs runs non-strict with tokens so that every bad flag is reported at once; the
 * checks strict mode would make (unknown flags, missing values, stray arguments) are
 * made here, one problem each; an unknown flag gets "did you mean" like a config key.
 *
 * The flag table also describes each flag for `--help` (quickModeFlags), so the help lists
 * exactly the flags the parser takes.
 */
import { parseArgs } from 'node:util';
import { unknownFlagMessage } from '../core/closestName.ts';
import type { ConfigProblem, ConfigResult } from './types.ts';
import { validateConfig } from './validate.ts';

export type QuickMode = 'inbound' | 'outbound';

/** One flag of the quick commands: how it parses and the line `--help` shows for it. */
interface QuickFlagSpec {
  /** the value's placeholder (`H:P`, `F`); absent for a boolean flag */
  readonly value?: string;
  readonly repeatable?: boolean;
  /** the command it belongs to; both when absent */
  readonly only?: QuickMode;
  readonly required?: boolean;
  /** one line for the help, or one per command when the flag means something different in each */
  readonly description: string | Readonly<Record<QuickMode, string>>;
}

const FLAGS: Readonly<Record<string, QuickFlagSpec>> = Object.freeze({
  listen: {
    value: 'H:P',
    required: true,
    description: {
      inbound: 'address to accept mTLS connections on',
      outbound: 'address the local app sends plain requests to (loopback unless --unsafe-listen)',
    },
  },
  target: {
    value: 'H:P',
    required: true,
    description: {
      inbound: 'the local app, spoken to in plain HTTP or TCP (loopback unless --unsafe-target)',
      outbound: 'the remote mTLS endpoint (another tollgate, or any mTLS server)',
    },
  },
  cert: {
    value: 'F',
    required: true,
    description: "this sidecar's certificate, PEM (reloaded when its folder changes, and on SIGHUP)",
  },
  key: { value: 'F', required: true, description: 'its private key, PEM (not readable by others)' },
  ca: { value: 'F', required: true, description: "the CA bundle peers' certificates must chain to, PEM" },
  crl: { value: 'F', description: 'certificate revocation lists, PEM, signed by a CA of --ca' },
  protocol: {
    value: 'http|tcp',
    description: 'http (default): checks, limits and signatures per request; tcp: bytes only',
  },
  keys: {
    value: 'DIR',
    description: {
      inbound: 'HMAC key directory: every request must carry a valid signature (RFC 9421)',
      outbound: 'HMAC key directory: every request is signed with --sign-key-id (RFC 9421)',
    },
  },
  admin: {
    value: 'H:P',
    description: 'admin API address: /status, /metrics, /reload (loopback unless --admin-token-file)',
  },
  'admin-token-file': { value: 'F', description: 'a file holding the bearer token the admin API requires' },
  'log-level': { value: 'LEVEL', description: 'trace, debug, info (default), warn, error, fatal or silent' },
  'access-log': {
    description: 'one JSON line per request (msg "access"): peer, method, path, status, sizes, times, ERR_ code',
  },
  'max-body-bytes': { value: 'N', description: 'the largest request body accepted, in bytes' },
  'idle-timeout': { value: 'SECONDS', description: 'close a connection idle for this long' },
  'allow-spiffe': {
    value: 'ID',
    repeatable: true,
    only: 'inbound',
    description: 'admit peers whose certificate carries this SPIFFE ID',
  },
  'allow-dns': {
    value: 'NAME',
    repeatable: true,
    only: 'inbound',
    description: 'admit peers whose certificate carries this DNS name',
  },
  'allow-cn': {
    value: 'CN',
    repeatable: true,
    only: 'inbound',
    description: 'admit peers with this subject common name',
  },
  'allow-spki-pin': {
    value: 'PIN',
    repeatable: true,
    only: 'inbound',
    description: 'admit peers whose key has this pin (from tollgate certs pin)',
  },
  'allow-any': { only: 'inbound', description: 'admit any peer --ca vouches for, instead of an allow-list' },
  'unsafe-target': { only: 'inbound', description: 'allow a --target off loopback (the hop to it is plain text)' },
  'server-name': {
    value: 'NAME',
    only: 'outbound',
    description: 'the name sent as SNI and checked in the certificate (default: the --target host)',
  },
  'verify-spiffe': {
    value: 'ID',
    repeatable: true,
    only: 'outbound',
    description: "the upstream's certificate must carry this SPIFFE ID",
  },
  'verify-spki-pin': {
    value: 'PIN',
    repeatable: true,
    only: 'outbound',
    description: "the upstream's key must have this pin",
  },
  'sign-key-id': { value: 'ID', only: 'outbound', description: 'the key in --keys to sign with' },
  'unsafe-listen': { only: 'outbound', description: "allow a --listen off loopback (the app's side is plain text)" },
} satisfies Record<string, QuickFlagSpec>);

/** A flag as `--help` shows it and the parser takes it (the shape of the CLI's FlagSpec). */
export interface QuickFlag {
  readonly name: string;
  readonly value?: string;
  readonly repeatable?: boolean;
  readonly required?: boolean;
  readonly description: string;
}

/** Every flag `tollgate inbound|outbound` takes, in the order of the table: the help lists exactly these. */
export function quickModeFlags(mode: QuickMode): readonly QuickFlag[] {
  return Object.entries(FLAGS)
    .filter(([, spec]) => spec.only === undefined || spec.only === mode)
    .map(([name, spec]) => ({
      name,
      ...(spec.value === undefined ? {} : { value: spec.value }),
      ...(spec.repeatable === true ? { repeatable: true } : {}),
      ...(spec.required === true ? { required: true } : {}),
      description: typeof spec.description === 'string' ? spec.description : spec.description[mode],
    }));
}

/** What the command line said: string flags (all values, in order) and boolean flags present. */
interface Given {
  readonly strings: Map<string, string[]>;
  readonly booleans: Set<string>;
}

export function configFromFlags(mode: QuickMode, argv: string[], cwd: string): ConfigResult {
  const problems: ConfigProblem[] = [];
  const given = readFlags(mode, argv, problems);
  checkRequiredFlags(given, problems);
  checkFlagCombinations(mode, given, problems);
  const raw = rawConfig(mode, given);
  const result = validateConfig(raw, { baseDir: cwd, source: null });
  if (result.ok && problems.length === 0) return result;
  const reported = new Set(problems.map((p) => p.path));
  if (!result.ok) {
    for (const p of result.problems) {
      const renamed = renameProblem(p, given);
      const seen = problems.some((q) => q.path === renamed.path && q.message === renamed.message);
      if (!reported.has(renamed.path) && !seen) problems.push(renamed);
    }
  }
  return Object.freeze({ ok: false, problems: Object.freeze(problems.map((p) => Object.freeze(p))) });
}

/* ------------------------------------------------------------- reading argv */

function readFlags(mode: QuickMode, argv: string[], problems: ConfigProblem[]): Given {
  const options = Object.fromEntries(
    Object.entries(FLAGS).map(
      ([name, s]) =>
        [name, { type: s.value === undefined ? 'boolean' : 'string', multiple: s.repeatable === true }] as const,
    ),
  );
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const given: Given = { strings: new Map(), booleans: new Set() };
  // the word after an unknown flag is taken for its value, not reported as a stray argument
  let valueOfUnknownAt = -1;
  for (const token of tokens) {
    if (token.kind === 'positional') {
      if (token.index !== valueOfUnknownAt)
        problems.push({ path: token.value, message: 'unexpected argument (flags are --name VALUE)' });
    } else if (token.kind === 'option') {
      const problem = flagTokenProblem(mode, token.name, token.value, token.inlineValue, given);
      if (problem !== null) problems.push({ path: token.rawName, message: problem });
      else recordFlag(given, token.name, token.value);
      if (FLAGS[token.name] === undefined && token.inlineValue !== true) valueOfUnknownAt = token.index + 1;
    }
  }
  return given;
}

function flagTokenProblem(
  mode: QuickMode,
  name: string,
  value: string | undefined,
  inline: boolean | undefined,
  given: Given,
): string | null {
  const spec = FLAGS[name];
  if (spec === undefined)
    return unknownFlagMessage(
      name,
      quickModeFlags(mode).map((f) => f.name),
    );
  if (spec.only !== undefined && spec.only !== mode) return `is for ${spec.only} only`;
  if (spec.value === undefined) {
    if (value !== undefined) return 'takes no value';
    return given.booleans.has(name) ? 'given more than once' : null;
  }
  // Non-strict parseArgs hands a string flag the next word even when it is another flag.
  if (value === undefined) return 'needs a value';
  if (inline !== true && value.startsWith('-')) return `needs a value (the next word, ${value}, is a flag)`;
  if (spec.repeatable !== true && given.strings.has(name)) return 'given more than once';
  return null;
}

function recordFlag(given: Given, name: string, value: string | undefined): void {
  if (value === undefined) {
    given.booleans.add(name);
    return;
  }
  const values = given.strings.get(name) ?? [];
  values.push(value);
  given.strings.set(name, values);
}

function one(given: Given, name: string): string | undefined {
  return given.strings.get(name)?.[0];
}

function all(given: Given, name: string): string[] | undefined {
  return given.strings.get(name);
}

/* --------------------------------------------------------- flag-level rules */

function checkRequiredFlags(given: Given, problems: ConfigProblem[]): void {
  for (const [name, spec] of Object.entries(FLAGS)) {
    const flag = `--${name}`;
    if (spec.required === true && !given.strings.has(name) && !problems.some((p) => p.path === flag)) {
      problems.push({ path: flag, message: 'required' });
    }
  }
}

const NO_MESSAGES = 'a tcp listener carries no HTTP messages to sign or verify';

function checkFlagCombinations(mode: QuickMode, given: Given, problems: ConfigProblem[]): void {
  const tcp = one(given, 'protocol') === 'tcp';
  if (tcp && given.strings.has('keys')) problems.push({ path: '--keys', message: NO_MESSAGES });
  if (tcp && given.strings.has('sign-key-id')) problems.push({ path: '--sign-key-id', message: NO_MESSAGES });
  if (!tcp && mode === 'outbound' && given.strings.has('keys') && !given.strings.has('sign-key-id')) {
    problems.push({ path: '--keys', message: 'needs --sign-key-id (the id of the key to sign with)' });
  }
}

/* ------------------------------------------------------ flags -> raw config */

function rawConfig(mode: QuickMode, given: Given): Record<string, unknown> {
  const tcp = one(given, 'protocol') === 'tcp';
  const keysDir = tcp ? undefined : one(given, 'keys');
  return withoutUndefined({
    admin: withoutUndefined({ listen: one(given, 'admin') ?? null, tokenFile: one(given, 'admin-token-file') }),
    identity: withoutUndefined({
      certFile: one(given, 'cert'),
      keyFile: one(given, 'key'),
      caFile: one(given, 'ca'),
      crlFile: one(given, 'crl'),
    }),
    keys: keysDir === undefined ? undefined : { dir: keysDir },
    log:
      given.strings.has('log-level') || given.booleans.has('access-log')
        ? withoutUndefined({
            level: one(given, 'log-level'),
            access: given.booleans.has('access-log') ? true : undefined,
          })
        : undefined,
    listeners: [mode === 'inbound' ? rawInbound(given, keysDir) : rawOutbound(given, tcp)],
  });
}

function rawListenerCommon(mode: QuickMode, given: Given): Record<string, unknown> {
  const limits = withoutUndefined({
    maxBodyBytes: numberOrText(one(given, 'max-body-bytes')),
    idleTimeoutSeconds: numberOrText(one(given, 'idle-timeout')),
  });
  return withoutUndefined({
    name: mode,
    mode,
    protocol: one(given, 'protocol'),
    listen: one(given, 'listen'),
    target: one(given, 'target'),
    limits: Object.keys(limits).length > 0 ? limits : undefined,
  });
}

function rawInbound(given: Given, keysDir: string | undefined): Record<string, unknown> {
  const allow = withoutUndefined({
    any: given.booleans.has('allow-any') ? true : undefined,
    spiffe: all(given, 'allow-spiffe'),
    dns: all(given, 'allow-dns'),
    cn: all(given, 'allow-cn'),
    spkiPins: all(given, 'allow-spki-pin'),
  });
  return withoutUndefined({
    ...rawListenerCommon('inbound', given),
    allow: Object.keys(allow).length > 0 ? allow : undefined,
    integrity: keysDir === undefined ? undefined : { verify: true },
    unsafeTarget: given.booleans.has('unsafe-target') ? true : undefined,
  });
}

function rawOutbound(given: Given, tcp: boolean): Record<string, unknown> {
  const keyId = tcp ? undefined : one(given, 'sign-key-id');
  return withoutUndefined({
    ...rawListenerCommon('outbound', given),
    serverName: one(given, 'server-name'),
    verify: withoutUndefined({ spiffe: all(given, 'verify-spiffe'), spkiPins: all(given, 'verify-spki-pin') }),
    integrity: keyId === undefined ? undefined : { sign: true, keyId },
    unsafeListen: given.booleans.has('unsafe-listen') ? true : undefined,
  });
}

/** `"42"` -> 42 so the validator sees a number; anything else stays text and gets its problem there. */
function numberOrText(text: string | undefined): number | string | undefined {
  if (text === undefined) return undefined;
  return /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : text;
}

function withoutUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/* ------------------------------------------------- config paths -> flags */

/** Config path prefix -> the flag that sets it; the most specific prefix first. */
const FLAG_FOR_PATH: readonly (readonly [string, string])[] = [
  ['listeners[0].listen', '--listen'],
  ['listeners[0].target', '--target'],
  ['listeners[0].protocol', '--protocol'],
  ['listeners[0].serverName', '--server-name'],
  ['listeners[0].unsafeTarget', '--unsafe-target'],
  ['listeners[0].unsafeListen', '--unsafe-listen'],
  ['listeners[0].allow.spiffe', '--allow-spiffe'],
  ['listeners[0].allow.dns', '--allow-dns'],
  ['listeners[0].allow.cn', '--allow-cn'],
  ['listeners[0].allow.spkiPins', '--allow-spki-pin'],
  ['listeners[0].allow.any', '--allow-any'],
  ['listeners[0].allow', '--allow-*'],
  ['listeners[0].verify.spiffe', '--verify-spiffe'],
  ['listeners[0].verify.spkiPins', '--verify-spki-pin'],
  ['listeners[0].integrity.keyId', '--sign-key-id'],
  ['listeners[0].integrity.sign', '--sign-key-id'],
  ['listeners[0].integrity.verify', '--keys'],
  ['listeners[0].limits.maxBodyBytes', '--max-body-bytes'],
  ['listeners[0].limits.idleTimeoutSeconds', '--idle-timeout'],
  ['identity.certFile', '--cert'],
  ['identity.keyFile', '--key'],
  ['identity.caFile', '--ca'],
  ['identity.crlFile', '--crl'],
  ['keys.dir', '--keys'],
  ['admin.listen', '--admin'],
  ['admin.tokenFile', '--admin-token-file'],
  ['log.level', '--log-level'],
  ['log.access', '--access-log'],
];

/** Config vocabulary inside messages -> flag vocabulary. */
const MESSAGE_TERMS: readonly (readonly [string, string])[] = [
  [
    'spiffe, dns, cn, spkiPins, or any: true',
    '--allow-spiffe, --allow-dns, --allow-cn, --allow-spki-pin, or --allow-any',
  ],
  ['set unsafeTarget: true', 'add --unsafe-target'],
  ['set unsafeListen: true', 'add --unsafe-listen'],
  ['keys.dir', '--keys'],
];

function renameProblem(problem: ConfigProblem, given: Given): ConfigProblem {
  const match = FLAG_FOR_PATH.find(([prefix]) => isPathWithin(problem.path, prefix));
  if (match === undefined) return problem;
  const [prefix, flag] = match;
  let message = problem.message;
  for (const [term, replacement] of MESSAGE_TERMS) message = message.split(term).join(replacement);
  // `allow.spiffe[2]` -> name the offending value, since the flag may be given several times.
  const element = /^\[(\d+)\]$/.exec(problem.path.slice(prefix.length));
  const value = element?.[1] === undefined ? undefined : all(given, flag.slice(2))?.[Number(element[1])];
  return { path: flag, message: value === undefined ? message : `${JSON.stringify(value)}: ${message}` };
}

/**
 * A startup problem (`listeners[0].listen: 127.0.0.1:8443: EADDRINUSE`, `identity.certFile
 * /x.crt: ENOENT`) in the words of the command line that built the config (`--listen:
 * 127.0.0.1:8443: EADDRINUSE`, `--cert /x.crt: ENOENT`). A problem no flag stands for is
 * returned as it is.
 */
export function problemInFlagTerms(problem: string): string {
  // the path is the first word, followed by `: ` or by a space and what it names
  const m = /^([^\s:]+)(:?\s)([\s\S]*)$/.exec(problem);
  if (m === null) return problem;
  const [, path = '', separator = '', rest = ''] = m;
  const renamed = renameProblem({ path, message: rest }, { strings: new Map(), booleans: new Set() });
  return renamed.path === path ? problem : `${renamed.path}${separator}${renamed.message}`;
}

function isPathWithin(path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false;
  const next = path.charAt(prefix.length);
  return next === '' || next === '.' || next === '[';
}
