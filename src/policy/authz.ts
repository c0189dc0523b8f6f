import type { AllowConfig, VerifyConfig } from '../config/types.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';

/**
 * An inbound allow-list, compiled once at load: exact SPIFFE IDs, trust-domain
 * wildcards (`spiffe://domain/*`), DNS SANs, CNs, and SPKI pins. A peer is allowed when
 * one identity rule matches (or `any`), and, when pins are configured, its SPKI pin is
 * one of them (several pins, so a key can rotate).
 */
export interface CompiledAllow {
  readonly any: boolean;
  readonly spiffe: ReadonlySet<string>;
  readonly trustDomains: ReadonlySet<string>;
  readonly dns: ReadonlySet<string>;
  readonly cn: ReadonlySet<string>;
  readonly pins: ReadonlySet<string>;
}

export function compileAllow(allow: AllowConfig): CompiledAllow {
  const spiffe = new Set<string>();
  const trustDomains = new Set<string>();
  for (const id of allow.spiffe) {
    const domain = trustDomainWildcard(id);
    if (domain === null) spiffe.add(id);
    else trustDomains.add(domain);
  }
  return Object.freeze({
    any: allow.any,
    spiffe,
    trustDomains,
    dns: new Set(allow.dns.map((d) => d.toLowerCase())),
    cn: new Set(allow.cn),
    pins: new Set(allow.spkiPins),
  });
}

/** `spiffe://domain/*` -> `domain`; anything else -> null. */
function trustDomainWildcard(id: string): string | null {
  if (!id.startsWith('spiffe://') || !id.endsWith('/*')) return null;
  const domain = id.slice('spiffe://'.length, -2);
  return domain.length > 0 && !domain.includes('/') ? domain : null;
}

export function trustDomainOf(spiffeId: string): string {
  const rest = spiffeId.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  return slash < 0 ? rest : rest.slice(0, slash);
}

export type AuthzResult = { readonly allowed: true } | { readonly allowed: false; readonly why: 'identity' | 'pin' };

const ALLOWED: AuthzResult = Object.freeze({ allowed: true });
const DENIED_IDENTITY: AuthzResult = Object.freeze({ allowed: false, why: 'identity' });
const DENIED_PIN: AuthzResult = Object.freeze({ allowed: false, why: 'pin' });

export function authorizePeer(allow: CompiledAllow, peer: PeerIdentity): AuthzResult {
  if (!allow.any && !identityMatches(allow, peer)) return DENIED_IDENTITY;
  if (allow.pins.size > 0 && !allow.pins.has(peer.spkiPin)) return DENIED_PIN;
  return ALLOWED;
}

function identityMatches(allow: CompiledAllow, peer: PeerIdentity): boolean {
  for (const id of peer.spiffe) {
    if (allow.spiffe.has(id) || allow.trustDomains.has(trustDomainOf(id))) return true;
  }
  for (const name of peer.dns) if (allow.dns.has(name)) return true;
  if (peer.cn !== null && allow.cn.has(peer.cn)) return true;
  return false;
}

/** What an outbound listener demands of the server beyond chain and name: a SPIFFE ID and/or a pin. */
export interface CompiledVerify {
  readonly spiffe: ReadonlySet<string>;
  readonly trustDomains: ReadonlySet<string>;
  readonly pins: ReadonlySet<string>;
}

export function compileVerify(verify: VerifyConfig): CompiledVerify {
  const c = compileAllow({ any: false, spiffe: verify.spiffe, dns: [], cn: [], spkiPins: verify.spkiPins });
  return Object.freeze({ spiffe: c.spiffe, trustDomains: c.trustDomains, pins: c.pins });
}

/** null when the server is acceptable, else why not (for the error message and logs). */
export function verifyServer(verify: CompiledVerify, peer: PeerIdentity): string | null {
  if (verify.spiffe.size > 0 || verify.trustDomains.size > 0) {
    const ok = peer.spiffe.some((id) => verify.spiffe.has(id) || verify.trustDomains.has(trustDomainOf(id)));
    if (!ok) return `server SPIFFE ID ${peer.spiffe.join(',') || '(none)'} is not expected`;
  }
  if (verify.pins.size > 0 && !verify.pins.has(peer.spkiPin)) return 'server SPKI pin does not match';
  return null;
}
