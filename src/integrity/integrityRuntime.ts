import type { Logger } from 'pino';
import type { Config, ListenerConfig, ListenerIntegrityConfig } from '../config/types.ts';
import type { Clock } from '../core/clock.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import type { IntegrityStage } from './integrityStage.ts';
import { keyRingFromEntries, loadKeyRing, watchKeyRing, type KeyRing, type KeyRingWatcher } from './keyRing.ts';
import { createReplayCache, type ReplayCache } from './replayCache.ts';
import { MacKeys } from './hmac.ts';
import { NonceSource, SignatureTemplates } from './signer.ts';

/**
 * What message integrity needs at runtime, built once per sidecar: the watched key ring
 * and ONE replay cache shared by every inbound listener (a nonce seen on one listener is
 * a replay on all of them). Each listener gets its stage: verify, sign, or nothing.
 */
export interface IntegrityRuntime {
  /** the stage for a listener's (or a gateway route's) integrity settings */
  stageFor(settings: { readonly integrity: ListenerIntegrityConfig }): IntegrityStage | null;
  /** re-read keys.dir now (SIGHUP and admin reload call this with the certificates) */
  reloadKeys(): Promise<{ ok: boolean; problems: readonly string[] }>;
  /** the key ring in use (empty without integrity) */
  keys(): KeyRing;
  /** a config reload changed which keys listeners sign with: a later key ring must hold those */
  useListeners(listeners: readonly ListenerConfig[]): void;
  close(): void;
}

export type IntegrityStart =
  | { readonly ok: true; readonly runtime: IntegrityRuntime }
  | { readonly ok: false; readonly problems: readonly string[] };

export interface IntegrityDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  readonly clock: Clock;
  /** the replay cache (with workers: the one every thread shares); a private one when not given */
  readonly replay?: ReplayCache;
  /**
   * A worker thread: the ring comes from the main thread (which watches keys.dir) through this
   * source; nothing is read or watched here and reloadKeys() changes nothing.
   */
  readonly keysFrom?: () => KeyRing;
  /** the main thread with workers: called with every new ring the watcher swaps in */
  readonly onKeys?: (ring: KeyRing) => void;
}

export async function startIntegrity(config: Config, deps: IntegrityDeps): Promise<IntegrityStart> {
  const users = config.listeners.filter(usesKeys);
  if (users.length === 0 || config.keys.dir === null) return { ok: true, runtime: NO_INTEGRITY };
  if (deps.keysFrom !== undefined) {
    return {
      ok: true,
      runtime: integrityFor(config, deps, deps.keysFrom, {
        reloadKeys: async () => ({ ok: true, problems: [] }),
        close: () => undefined,
        useListeners: () => undefined,
      }),
    };
  }

  const loaded = await loadKeys(config);
  if (!loaded.ok) return loaded;
  const log = deps.log.child({ component: 'keys' });
  for (const w of loaded.warnings) log.warn({ warning: w }, 'key file permissions');
  let validate = signingKeysPresent(config.listeners);

  deps.metrics.keyRingKeys.set(loaded.ring.size);
  const watcher: KeyRingWatcher = watchKeyRing(loaded.ring, {
    dir: config.keys.dir,
    log,
    audit: deps.audit,
    validate: (ring) => validate(ring),
    onReload: (result, ring) => {
      deps.metrics.keyRingReloads.labels(result).inc();
      deps.metrics.keyRingKeys.set(ring.size);
      if (result === 'success') deps.onKeys?.(ring);
    },
  });
  const control = {
    reloadKeys: () => watcher.reload(),
    close: () => watcher.close(),
    useListeners: (listeners: readonly ListenerConfig[]) => void (validate = signingKeysPresent(listeners)),
  };
  return { ok: true, runtime: integrityFor(config, deps, () => watcher.current(), control) };
}

/** The stages over a key source and the replay cache. */
function integrityFor(
  config: Config,
  deps: IntegrityDeps,
  keys: () => KeyRing,
  control: Pick<IntegrityRuntime, 'reloadKeys' | 'close' | 'useListeners'>,
): IntegrityRuntime {
  const p = config.integrity;
  const replay =
    deps.replay ??
    createReplayCache({
      ttlMs: (p.maxAgeSeconds + p.skewSeconds) * 1000,
      maxEntries: p.replayCacheEntries,
      clock: deps.clock,
    });
  deps.metrics.readReplayCacheEntriesFrom(() => replay.size);
  const macs = new MacKeys();
  const verifier = {
    macs,
    profile: {
      tag: p.tag,
      skewSeconds: p.skewSeconds,
      maxAgeSeconds: p.maxAgeSeconds,
      requiredComponents: p.requiredComponents,
    },
    keys,
    replay,
    clock: deps.clock,
  };
  return {
    stageFor(l) {
      if (l.integrity.verify)
        return { kind: 'verify', verifier, bodyMode: p.bodyMode, maxBufferedBytes: p.maxBufferedBytes };
      if (l.integrity.sign && l.integrity.keyId !== null)
        return {
          kind: 'sign',
          keyId: l.integrity.keyId,
          keys,
          macs,
          nonces: new NonceSource(),
          templates: new SignatureTemplates(),
          tag: p.tag,
          maxBufferedBytes: p.maxBufferedBytes,
        };
      return null;
    },
    keys,
    ...control,
  };
}

/** Load keys.dir as start does, with its checks (used by `tollgate check` too); ok with an empty ring when nothing signs or verifies. */
export async function loadKeys(
  config: Config,
): Promise<{ ok: true; ring: KeyRing; warnings: readonly string[] } | { ok: false; problems: readonly string[] }> {
  const used = config.listeners.some(usesKeys);
  if (!used || config.keys.dir === null) return { ok: true, ring: keyRingFromEntries([]), warnings: [] };
  const loaded = await loadKeyRing(config.keys.dir);
  if (!loaded.ok) return { ok: false, problems: loaded.problems.map((p) => `keys.dir: ${p}`) };
  const problem = signingKeysPresent(config.listeners)(loaded.ring);
  if (problem !== null) return { ok: false, problems: [problem] };
  return { ok: true, ring: loaded.ring, warnings: loaded.warnings.map((w) => `keys.dir: ${w}`) };
}

/** A key ring must hold every key a listener signs with, and at least one key when anything verifies. */
function signingKeysPresent(listeners: readonly ListenerConfig[]): (ring: KeyRing) => string | null {
  return (ring) => {
    if (ring.size === 0) return 'keys.dir: holds no key files (write one with `tollgate keys new --out DIR --id ID`)';
    for (const [i, l] of listeners.entries()) {
      if (l.integrity.sign && l.integrity.keyId !== null && ring.get(l.integrity.keyId) === undefined) {
        return `listeners[${i}].integrity.keyId: key ${l.integrity.keyId} is not in keys.dir`;
      }
      for (const [j, r] of l.routes.entries()) {
        if (r.integrity.sign && r.integrity.keyId !== null && ring.get(r.integrity.keyId) === undefined)
          return `listeners[${i}].routes[${j}].integrity.keyId: key ${r.integrity.keyId} is not in keys.dir`;
      }
    }
    return null;
  };
}

/** a listener, or one of a gateway's routes, signs or verifies */
function usesKeys(l: ListenerConfig): boolean {
  return l.integrity.verify || l.integrity.sign || l.routes.some((r) => r.integrity.verify || r.integrity.sign);
}

const EMPTY_RING = keyRingFromEntries([]);

const NO_INTEGRITY: IntegrityRuntime = Object.freeze({
  stageFor: () => null,
  keys: () => EMPTY_RING,
  reloadKeys: async () => ({ ok: true, problems: [] }),
  close: () => undefined,
  useListeners: () => undefined,
});
