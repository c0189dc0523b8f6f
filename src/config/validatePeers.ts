/**
 * Who a listener talks to: an inbound listener's `allow` (the peers it accepts) and an outbound
 * listener's `verify` (the upstream it expects), with the syntaxes of SPIFFE IDs, DNS names and
 * SPKI pins they list.
 */
import { isSpkiPin } from '../core/spkiPin.ts';
import { isDnsName } from './hostPort.ts';
import type { AllowConfig, VerifyConfig } from './types.ts';
import {
  booleanValue,
  checkKeys,
  isObject,
  read,
  readStringList,
  report,
  section,
  type Ctx,
  type Obj,
} from './validateReaders.ts';

const ALLOW_RULE_MESSAGE = 'at least one of spiffe, dns, cn, spkiPins, or any: true';

export function validateAllow(ctx: Ctx, value: unknown, path: string): AllowConfig {
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

export function validateVerify(ctx: Ctx, value: unknown, path: string): VerifyConfig {
  const o = section(ctx, value, path, ['spiffe', 'spkiPins']);
  return {
    spiffe: readStringList(ctx, o, path, 'spiffe', spiffeIdProblem),
    spkiPins: readStringList(ctx, o, path, 'spkiPins', spkiPinProblem),
  };
}

/** Whether an allow object says something (valid or not) that was already reported, so no cascade follows. */
function hasOwnProblems(allow: Obj): boolean {
  if (allow.any !== undefined && typeof allow.any !== 'boolean') return true;
  return ['spiffe', 'dns', 'cn', 'spkiPins'].some((k) => {
    const list = allow[k];
    return list !== undefined && !(Array.isArray(list) && list.length === 0);
  });
}

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

export const EMPTY_ALLOW: AllowConfig = Object.freeze({ any: false, spiffe: [], dns: [], cn: [], spkiPins: [] });
export const EMPTY_VERIFY: VerifyConfig = Object.freeze({ spiffe: [], spkiPins: [] });
