/**
 * What every config section is read with: the problem list (`Ctx`), sections with their allowed
 * keys (an unknown key is a problem, with a "did you mean" or a warning about inline secrets),
 * and readers that turn one field into a value or a problem named by its path.
 */
import { resolve } from 'node:path';
import { closestName } from '../core/closestName.ts';
import { isValidHost, parseHostPort } from './hostPort.ts';
import { LISTENER_NAME } from './listenerName.ts';
import type { ConfigProblem, HostPort } from './types.ts';

export type Obj = Readonly<Record<string, unknown>>;

export interface Ctx {
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
export function section(
  ctx: Ctx,
  value: unknown,
  path: string,
  keys: readonly string[],
  opts: SectionOptions = {},
): Obj {
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
const SECRETS_MESSAGE =
  'unknown key; secrets are never written inline: put the secret in a file and name the file (keyFile, tokenFile, keys.dir)';

export function checkKeys(
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

export function misplacedAs(keys: readonly string[], message: string): ReadonlyMap<string, string> {
  return new Map(keys.map((k) => [k, message]));
}

export type Parsed<T> = { readonly value: T } | { readonly problem: string };
export type Parser<T> = (value: unknown) => Parsed<T>;

export const REQUIRED = 'required';

/** Field `key` of `o`: the parsed value; `fallback` when absent (reporting `missing` if given) or invalid. */
export function read<T, F = T>(
  ctx: Ctx,
  o: Obj,
  path: string,
  key: string,
  parse: Parser<T>,
  fallback: F,
  missing?: string,
): T | F {
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
export function readStringList(
  ctx: Ctx,
  o: Obj,
  path: string,
  key: string,
  check: (s: string) => string | null,
): readonly string[] {
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

export function ok<T>(value: T): Parsed<T> {
  return { value };
}

export function bad(problem: string): Parsed<never> {
  return { problem };
}

export function nullable<T>(parse: Parser<T>): Parser<T | null> {
  return (v) => (v === null ? ok(null) : parse(v));
}

export function oneOf<const T extends string>(allowed: readonly T[]): Parser<T> {
  return (v) =>
    typeof v === 'string' && (allowed as readonly string[]).includes(v)
      ? ok(v as T)
      : bad(`expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
}

export const booleanValue: Parser<boolean> = (v) => (typeof v === 'boolean' ? ok(v) : bad('expected true or false'));

export const positiveInteger: Parser<number> = (v) =>
  Number.isSafeInteger(v) && (v as number) > 0 ? ok(v as number) : bad('expected a positive integer');

export const nonNegativeInteger: Parser<number> = (v) =>
  Number.isSafeInteger(v) && (v as number) >= 0 ? ok(v as number) : bad('expected an integer ≥ 0');

export const positiveNumber: Parser<number> = (v) =>
  typeof v === 'number' && Number.isFinite(v) && v > 0 ? ok(v) : bad('expected a positive number');

export const nonNegativeNumber: Parser<number> = (v) =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0 ? ok(v) : bad('expected a number ≥ 0');

/** A part of a whole, both ends excluded: 0 would never warn and 1 would always. */
export const fractionOfOne: Parser<number> = (v) =>
  typeof v === 'number' && v > 0 && v < 1
    ? ok(v)
    : bad('expected a number between 0 and 1, both excluded (e.g. 0.33 for a third)');

/** Timers beyond 2^31-1 ms fire at once in Node, which would silently turn a timeout off. */
const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

export const seconds: Parser<number> = (v) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return bad('expected a positive number of seconds');
  return v <= MAX_TIMER_SECONDS ? ok(v) : bad(`at most ${MAX_TIMER_SECONDS} seconds`);
};

export function filePath(ctx: Ctx): Parser<string> {
  return (v) =>
    typeof v === 'string' && v.length > 0
      ? ok(resolve(ctx.baseDir, v))
      : bad('expected a file path (a non-empty string)');
}

/** Stands in for an address that is missing or invalid, so checks that need one can skip it. */
export const UNSET_ADDRESS: HostPort = Object.freeze({ host: '', port: 0 });

export const listenAddress: Parser<HostPort> = (v) => {
  if (typeof v !== 'string') return bad('expected HOST:PORT (a string)');
  const hp = parseHostPort(v);
  return typeof hp === 'string' ? bad(hp) : ok(hp);
};

export const targetAddress: Parser<HostPort> = (v) => {
  const parsed = listenAddress(v);
  if ('value' in parsed && parsed.value.port === 0) return bad('expected HOST:PORT with a port from 1 to 65535');
  return parsed;
};

export function report(ctx: Ctx, path: string, message: string): void {
  ctx.problems.push(Object.freeze({ path, message }));
}

/** `admin` + `listen` -> `admin.listen`; keys that are not identifiers are quoted: `x["a b"]`. */
export function at(path: string, key: string): string {
  if (!/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path === '' ? key : `${path}.${key}`;
}

export function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Missing or null: a value that failed to parse has its own problem already. */
export function isAbsent(value: unknown): boolean {
  return value === undefined || value === null;
}

/** A listener's or a gateway route's name: it becomes a metric label and a log field. */
export const labelName: Parser<string> = (v) =>
  typeof v === 'string' && LISTENER_NAME.test(v)
    ? ok(v)
    : bad(
        'expected lowercase letters, digits, "_" and "-", starting with a letter or digit (it becomes a metric label)',
      );

const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The id of a key in keys.dir (it names the file). */
export const keyIdValue: Parser<string> = (v) =>
  typeof v === 'string' && KEY_ID.test(v)
    ? ok(v)
    : bad('expected a key id: letters, digits, ".", "_" and "-", not starting with "." (it names a file in keys.dir)');

/** A TLS server name to send and check. */
export const serverNameValue: Parser<string> = (v) =>
  typeof v === 'string' && isValidHost(v) ? ok(v) : bad('expected a DNS name or an IP address');
