/**
 * The integrity sections: the instance's signature profile (`integrity`) and each listener's
 * `integrity` (inbound listeners verify, outbound listeners sign with a key id from keys.dir).
 */
import { DEFAULT_INTEGRITY } from './defaults.ts';
import type { Config, ListenerConfig, ListenerIntegrityConfig, ListenerMode } from './types.ts';
import {
  at,
  bad,
  booleanValue,
  isAbsent,
  misplacedAs,
  nullable,
  ok,
  oneOf,
  positiveInteger,
  read,
  readStringList,
  report,
  seconds,
  section,
  type Ctx,
  type Parser,
  keyIdValue,
} from './validateReaders.ts';

export function validateIntegrityProfile(ctx: Ctx, value: unknown, path: string): Config['integrity'] {
  const o = section(ctx, value, path, [
    'tag',
    'skewSeconds',
    'maxAgeSeconds',
    'bodyMode',
    'maxBufferedBytes',
    'replayCacheEntries',
    'requiredComponents',
  ]);
  const d = DEFAULT_INTEGRITY;
  const profile: Config['integrity'] = {
    tag: read(ctx, o, path, 'tag', signatureTag, d.tag),
    skewSeconds: read(ctx, o, path, 'skewSeconds', seconds, d.skewSeconds),
    maxAgeSeconds: read(ctx, o, path, 'maxAgeSeconds', seconds, d.maxAgeSeconds),
    bodyMode: read(ctx, o, path, 'bodyMode', oneOf(['buffer', 'stream'] as const), d.bodyMode),
    maxBufferedBytes: read(ctx, o, path, 'maxBufferedBytes', positiveInteger, d.maxBufferedBytes),
    replayCacheEntries: read(ctx, o, path, 'replayCacheEntries', positiveInteger, d.replayCacheEntries),
    requiredComponents:
      o.requiredComponents === undefined
        ? d.requiredComponents
        : readStringList(ctx, o, path, 'requiredComponents', componentNameProblem),
  };
  if (profile.skewSeconds > profile.maxAgeSeconds) {
    report(ctx, at(path, 'skewSeconds'), `must not exceed maxAgeSeconds (${profile.maxAgeSeconds})`);
  }
  return profile;
}

const DERIVED_COMPONENTS = new Set([
  '@method',
  '@authority',
  '@path',
  '@query',
  '@target-uri',
  '@scheme',
  '@request-target',
]);
const FIELD_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

/** A component the verifier can demand on top of the floor: a request-derived name, or a lowercase field name. */
function componentNameProblem(name: string): string | null {
  if (name.startsWith('@'))
    return DERIVED_COMPONENTS.has(name)
      ? null
      : `${name} is not a request component (one of ${[...DERIVED_COMPONENTS].join(', ')})`;
  return FIELD_NAME.test(name) ? null : `"${name}" is not a lowercase HTTP field name`;
}

const NO_MESSAGES = 'a tcp listener carries no HTTP messages to sign or verify';

export function validateListenerIntegrity(
  ctx: Ctx,
  value: unknown,
  path: string,
  mode: ListenerMode,
  protocol: ListenerConfig['protocol'],
  keysDir: string | null,
): ListenerIntegrityConfig {
  const inbound = mode !== 'outbound';
  const o = section(ctx, value, path, inbound ? ['verify'] : ['sign', 'keyId'], {
    misplaced:
      mode === 'gateway'
        ? misplacedAs(
            ['sign', 'keyId'],
            "is set per route on a gateway (a route's integrity.sign re-signs its requests)",
          )
        : inbound
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

/** The signature `tag` is an sf-string: printable ASCII; quotes and backslashes kept out to avoid escaping. */
const signatureTag: Parser<string> = (v) =>
  typeof v === 'string' && /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(v)
    ? ok(v)
    : bad('expected 1-64 printable ASCII characters other than " and \\');
