/**
 * `sharedState`: where replicas keep one replay cache and one set of rate-limit buckets (Redis
 * or Valkey). The URL carries no secret (a password is named by file); TLS needs the CA that
 * signs the server and may present our client certificate; plaintext stays on loopback unless
 * said otherwise.
 */
import { DEFAULT_SHARED_STATE } from './defaults.ts';
import { isLoopbackHost, isValidHost } from './hostPort.ts';
import type { SharedStateConfig } from './types.ts';
import {
  at,
  bad,
  booleanValue,
  filePath,
  nullable,
  ok,
  oneOf,
  read,
  report,
  REQUIRED,
  section,
  type Ctx,
  type Parser,
} from './validateReaders.ts';

const KEYS = [
  'url',
  'topology',
  'caFile',
  'certFile',
  'keyFile',
  'passwordFile',
  'keyPrefix',
  'timeoutMs',
  'onUnavailable',
  'replay',
  'rateLimits',
  'unsafePlaintext',
];
/** what a request may wait for the store: beyond a few seconds a shared check is worse than none */
const MAX_TIMEOUT_MS = 5_000;

export function validateSharedState(ctx: Ctx, value: unknown, path: string): SharedStateConfig {
  const o = section(ctx, value, path, KEYS);
  const d = DEFAULT_SHARED_STATE;
  const url = read(ctx, o, path, 'url', redisUrl, '', REQUIRED);
  const file = nullable(filePath(ctx));
  const state: SharedStateConfig = {
    url,
    topology: read(ctx, o, path, 'topology', oneOf(['standalone', 'cluster'] as const), d.topology),
    caFile: read(ctx, o, path, 'caFile', file, null),
    certFile: read(ctx, o, path, 'certFile', file, null),
    keyFile: read(ctx, o, path, 'keyFile', file, null),
    passwordFile: read(ctx, o, path, 'passwordFile', file, null),
    keyPrefix: read(ctx, o, path, 'keyPrefix', keyPrefix, d.keyPrefix),
    timeoutMs: read(ctx, o, path, 'timeoutMs', timeoutMs, d.timeoutMs),
    onUnavailable: read(ctx, o, path, 'onUnavailable', oneOf(['refuse', 'local'] as const), d.onUnavailable),
    replay: read(ctx, o, path, 'replay', booleanValue, d.replay),
    rateLimits: read(ctx, o, path, 'rateLimits', booleanValue, d.rateLimits),
    unsafePlaintext: read(ctx, o, path, 'unsafePlaintext', booleanValue, false),
  };
  if (url === '') return state;
  const parsed = new URL(url);
  const tls = parsed.protocol === 'rediss:';
  if (tls && state.caFile === null)
    report(ctx, at(path, 'caFile'), 'required with rediss:// (the CA bundle that signs the server certificate)');
  if (!tls && (state.caFile !== null || state.certFile !== null || state.keyFile !== null))
    report(ctx, at(path, 'url'), 'caFile, certFile and keyFile are for TLS: use rediss://');
  if ((state.certFile === null) !== (state.keyFile === null))
    report(ctx, at(path, state.certFile === null ? 'certFile' : 'keyFile'), 'certFile and keyFile go together');
  const host = hostOf(parsed);
  if (!tls && !state.unsafePlaintext && !isLoopbackHost(host))
    report(
      ctx,
      at(path, 'url'),
      `redis:// to ${host} is plaintext off loopback: use rediss:// (or set unsafePlaintext: true if this is intended)`,
    );
  return state;
}

/** redis:// or rediss://, a host, an optional port and database, and no password (secrets only by file) */
const redisUrl: Parser<string> = (v) => {
  if (typeof v !== 'string') return bad('expected a redis:// or rediss:// URL');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return bad('expected a redis:// or rediss:// URL');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return bad('expected a redis:// or rediss:// URL');
  if (u.password !== '') return bad('a URL carries no password: put it in a file and name it in passwordFile');
  if (!isValidHost(hostOf(u))) return bad('expected a host name or IP address in the URL');
  if (u.search !== '' || u.hash !== '') return bad('no query or fragment: the other settings have keys of their own');
  if (u.pathname !== '' && u.pathname !== '/' && !/^\/([0-9]|1[0-5])$/.test(u.pathname))
    return bad('the path, when given, is a database number from 0 to 15 (/0)');
  return ok(v);
};

const keyPrefix: Parser<string> = (v) =>
  typeof v === 'string' && /^[A-Za-z0-9:_.{}-]{1,64}$/.test(v)
    ? ok(v)
    : bad('expected 1 to 64 of letters, digits, ":", "_", ".", "-" and "{}" (a Redis Cluster hash tag)');

const timeoutMs: Parser<number> = (v) =>
  Number.isSafeInteger(v) && (v as number) > 0 && (v as number) <= MAX_TIMEOUT_MS
    ? ok(v as number)
    : bad(`expected milliseconds from 1 to ${MAX_TIMEOUT_MS}`);

function hostOf(u: URL): string {
  return u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
}
