/**
 * The identity in use (certificate, key, CA bundle, CRLs) and how it is replaced.
 *
 * A reload builds the complete new state (loadIdentity validates it: key matches certificate,
 * chain verifies against the NEW CA bundle, nothing expired, CRLs parse and are signed by a CA
 * of the bundle), builds its client context, then swaps: inbound servers get the new material
 * for new handshakes (server.setSecureContext), outbound reads the new client context for each
 * new connection, open connections keep what they negotiated. On any problem the old state
 * stays. Files whose content did not change change nothing (no swap, no audit event).
 *
 * Reloads come from a change in a directory holding one of the files (watched, debounced),
 * SIGHUP, or the admin API; one runs at a time, in order. While draining, none runs.
 */
import tls, { type SecureContext } from 'node:tls';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { debounce, type Debounced } from '../core/debounce.ts';
import { watchDir, type DirWatch } from '../core/dirWatch.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { AuditSink } from '../telemetry/audit.ts';
import { secureContextOptions, type TlsMaterial } from '../tls/contexts.ts';
import type { TlsPolicy } from '../tls/policy.ts';
import { spkiPinOf } from '../tls/peerIdentity.ts';
import {
  loadIdentity,
  madeOf,
  readIdentityFiles,
  validateIdentity,
  type IdentityBundle,
  type IdentityFiles,
} from './identityBundle.ts';
import { crlsToApply, revokedToApply, type CrlStalePolicy } from './crl.ts';
import { createIdentityMonitor, type IdentityMonitor, type MonitorTiming } from './identityMonitor.ts';

export type ReloadTrigger = 'sighup' | 'admin' | 'watch' | 'api';

export interface ReloadOutcome {
  readonly ok: boolean;
  readonly problems: readonly string[];
  /** a new identity (or a new set of CRLs) is in use */
  readonly changed: boolean;
  /** why nothing was attempted, or null */
  readonly ignored: 'draining' | 'starting' | null;
}

/** What a reload is applied to: an inbound listener's TLS server. */
export interface TlsServerTarget {
  setTlsMaterial(material: TlsMaterial): void;
}

export interface IdentityTiming extends MonitorTiming {
  /** quiet time after a directory change before reloading; default 200 ms */
  readonly watchDebounceMs?: number;
}

export interface IdentityRuntimeDeps {
  readonly files: IdentityFiles & { readonly crlStale: CrlStalePolicy };
  readonly policy: TlsPolicy;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly audit: AuditSink;
  readonly clock: Clock;
  readonly isDraining: () => boolean;
  readonly timing?: IdentityTiming;
}

export interface IdentityStatus {
  readonly subject: string;
  readonly serial: string;
  readonly notAfter: string;
  readonly spkiPin: string;
  readonly revocation: { crls: number; stale: boolean; nextUpdate: string | null; checking: boolean } | null;
  readonly lastReload: { at: string; ok: boolean; trigger: ReloadTrigger; changed: boolean } | null;
}

export interface IdentityRuntime {
  current(): IdentityBundle;
  /** the material inbound servers are created with */
  material(): TlsMaterial;
  /** the client context for the next outbound connection */
  clientContext(): SecureContext;
  /** from now on, apply every swap to these servers, watch the identity directories and run the timers */
  activate(servers: readonly TlsServerTarget[]): void;
  reload(trigger: ReloadTrigger): Promise<ReloadOutcome>;
  status(): IdentityStatus;
  close(): void;
}

export type IdentityStart =
  | { readonly ok: true; readonly runtime: IdentityRuntime }
  | { readonly ok: false; readonly problems: readonly string[] };

export const DEFAULT_WATCH_DEBOUNCE_MS = 200;
/** with crlStale "warn", a CRL is taken from OpenSSL this long before its nextUpdate */
const STALE_LEAD_MS = 1_000;

interface State {
  readonly bundle: IdentityBundle;
  readonly material: TlsMaterial;
  readonly client: SecureContext;
}

/** Load the identity (problems are named `identity.…`) and return the runtime that keeps it. */
export async function startIdentity(deps: IdentityRuntimeDeps): Promise<IdentityStart> {
  const loaded = await loadIdentity(deps.files, new Date(deps.clock.now()));
  if (!loaded.ok) return { ok: false, problems: loaded.problems.map((p) => `identity.${p}`) };
  let state: State;
  try {
    state = buildState(loaded.bundle, deps);
  } catch (err) {
    return { ok: false, problems: [`identity: ${(err as Error).message}`] };
  }
  return { ok: true, runtime: identityRuntime(state, deps) };
}

function buildState(bundle: IdentityBundle, deps: IdentityRuntimeDeps): State {
  const at = new Date(deps.clock.now() + STALE_LEAD_MS);
  const crlStale = deps.files.crlStale;
  const material: TlsMaterial = Object.freeze({
    certPem: bundle.certPem,
    keyPem: bundle.keyPem,
    caPem: bundle.caPem,
    crls: crlsToApply(bundle.crls, crlStale, at),
    revoked: revokedToApply(bundle.crls, crlStale, at),
  });
  // createSecureContext throws on what OpenSSL refuses; the server contexts take the same options
  return Object.freeze({
    bundle,
    material,
    client: tls.createSecureContext(secureContextOptions(material, deps.policy)),
  });
}

function sameCrls(a: TlsMaterial, b: TlsMaterial): boolean {
  return a.crls.length === b.crls.length && a.crls.every((c, i) => c.equals(b.crls[i]!));
}

function identityRuntime(initial: State, deps: IdentityRuntimeDeps): IdentityRuntime {
  const { log, metrics, audit, clock } = deps;
  let state = initial;
  let servers: readonly TlsServerTarget[] = [];
  let lastReload: IdentityStatus['lastReload'] = null;
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;
  let watches: DirWatch[] = [];
  const pending: Debounced = debounce(
    deps.timing?.watchDebounceMs ?? DEFAULT_WATCH_DEBOUNCE_MS,
    () => void reload('watch'),
  );
  const monitor: IdentityMonitor = createIdentityMonitor({
    log,
    metrics,
    clock,
    crlStale: deps.files.crlStale,
    expiryWarningFraction: deps.files.expiryWarningFraction,
    staleLeadMs: STALE_LEAD_MS,
    onCrlDeadline: () => void serialized(refreshCrls),
    ...(deps.timing === undefined ? {} : { timing: deps.timing }),
  });

  /** one state change at a time, in order, so an older read never replaces a newer one */
  function serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  }

  /** every server gets the new material, or (should one refuse it) every server keeps the old */
  function swap(next: State): void {
    const done: TlsServerTarget[] = [];
    try {
      for (const s of servers) {
        s.setTlsMaterial(next.material);
        done.push(s);
      }
    } catch (err) {
      for (const s of done) s.setTlsMaterial(state.material);
      throw err;
    }
    state = next;
  }

  function fail(trigger: ReloadTrigger, problems: readonly string[]): ReloadOutcome {
    metrics.certReloads.labels('failure').inc();
    log.error({ trigger, problems }, 'certificate reload failed; keeping the current identity');
    audit.record('reload', { ok: false, trigger, problems: [...problems] });
    lastReload = { at: new Date(clock.now()).toISOString(), ok: false, trigger, changed: false };
    return { ok: false, problems, changed: false, ignored: null };
  }

  async function attempt(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    if (closed || deps.isDraining()) {
      log.info({ trigger }, 'reload ignored while draining');
      return { ok: false, problems: ['tollgate is draining; reload ignored'], changed: false, ignored: 'draining' };
    }
    await Promise.all(watches.map((w) => w.refresh()));
    const read = await readIdentityFiles(deps.files);
    if (closed)
      return { ok: false, problems: ['tollgate is draining; reload ignored'], changed: false, ignored: 'draining' };
    if (!read.ok)
      return fail(
        trigger,
        read.problems.map((p) => `identity.${p}`),
      );
    if (madeOf(state.bundle, read.pems)) {
      // the same bytes as the identity in use: nothing to validate or swap. From the directory
      // watch that is not a reload at all, so it is not counted: the watch sees editors' temp
      // files and, after a Kubernetes `..data` swap was applied (counted once, as success),
      // the removal of the old timestamped folder, which must not count the same swap again
      // as unchanged. `unchanged` answers a reload someone asked for (SIGHUP, admin, API).
      if (trigger === 'watch') log.debug({ trigger, changed: false }, 'certificates reloaded');
      else {
        metrics.certReloads.labels('unchanged').inc();
        log.info({ trigger, changed: false }, 'certificates reloaded');
        lastReload = { at: new Date(clock.now()).toISOString(), ok: true, trigger, changed: false };
      }
      applyCrlState();
      monitor.observe(state.bundle, false);
      return { ok: true, problems: [], changed: false, ignored: null };
    }
    const loaded = await validateIdentity(read.pems, deps.files, new Date(clock.now()));
    if (closed)
      return { ok: false, problems: ['tollgate is draining; reload ignored'], changed: false, ignored: 'draining' };
    if (!loaded.ok)
      return fail(
        trigger,
        loaded.problems.map((p) => `identity.${p}`),
      );
    let next: State;
    try {
      next = buildState(loaded.bundle, deps);
    } catch (err) {
      return fail(trigger, [`identity: ${(err as Error).message}`]);
    }
    try {
      swap(next);
    } catch (err) {
      return fail(trigger, [`identity: ${(err as Error).message}`]);
    }
    const leaf = next.bundle.leaf;
    metrics.certReloads.labels('success').inc();
    log.info(
      {
        trigger,
        changed: true,
        subject: leaf.subject,
        serial: leaf.serialNumber,
        notAfter: leaf.validTo,
        cas: next.bundle.cas.length,
        crls: next.material.crls.length,
      },
      'certificates reloaded',
    );
    audit.record('reload', {
      ok: true,
      trigger,
      serial: leaf.serialNumber,
      spkiPin: spkiPinOf(leaf),
      notAfter: leaf.validTo,
      cas: next.bundle.cas.length,
      crls: next.bundle.crls.length,
    });
    lastReload = { at: new Date(clock.now()).toISOString(), ok: true, trigger, changed: true };
    monitor.observe(next.bundle, true);
    return { ok: true, problems: [], changed: true, ignored: null };
  }

  function reload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    return serialized(() => attempt(trigger)).catch((err: unknown) =>
      fail(trigger, [`reload failed unexpectedly: ${(err as Error).message}`]),
    );
  }

  /** the same files, but the CRLs handed to OpenSSL may have to change with time (crlStale "warn") */
  function applyCrlState(): void {
    try {
      const next = buildState(state.bundle, deps);
      if (sameCrls(state.material, next.material)) return;
      swap(next);
      const checking = next.material.crls.length > 0;
      log.warn(
        { checking },
        checking
          ? 'revocation checking from crlFile resumed'
          : 'revocation checking from crlFile is off: a CRL is about to pass its nextUpdate (identity.crlStale is warn)',
      );
      audit.record('reload', { ok: true, trigger: 'crl_next_update', revocationChecking: checking });
    } catch (err) {
      log.error({ err: (err as Error).message }, 'applying the CRL state failed; keeping the current contexts');
    }
  }

  /** at a CRL deadline */
  async function refreshCrls(): Promise<void> {
    if (closed) return;
    applyCrlState();
    monitor.observe(state.bundle, false);
  }

  function watchDirectories(): DirWatch[] {
    const f = deps.files;
    const dirs = new Set(
      [f.certFile, f.keyFile, f.caFile, ...(f.crlFile === null ? [] : [f.crlFile])].map((p) => dirname(p)),
    );
    return [...dirs].map((dir) =>
      watchDir({
        dir,
        log,
        what: 'identity directory',
        keeping: 'the current identity',
        onChange: () => pending.trigger(),
      }),
    );
  }

  return {
    current: () => state.bundle,
    material: () => state.material,
    clientContext: () => state.client,
    activate(targets) {
      if (closed) return;
      servers = [...targets];
      watches = watchDirectories();
      monitor.observe(state.bundle, true);
    },
    reload,
    status() {
      const leaf = state.bundle.leaf;
      const crl = monitor.crlStatus();
      return {
        subject: leaf.subject,
        serial: leaf.serialNumber,
        notAfter: leaf.validTo,
        spkiPin: spkiPinOf(leaf),
        revocation: crl === null ? null : { ...crl, checking: state.material.crls.length > 0 },
        lastReload,
      };
    },
    close() {
      closed = true;
      pending.cancel();
      for (const w of watches) w.close();
      watches = [];
      monitor.close();
    },
  };
}
