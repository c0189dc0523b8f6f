import type { Logger } from 'pino';
import type { Config } from './config/types.ts';
import { checkConfigReload, missingSigningKeys } from './config/reloadCheck.ts';
import type { ReloadPlan } from './config/reloadPlan.ts';
import type { IdentityRuntime, ReloadOutcome, ReloadTrigger } from './certs/identityRuntime.ts';
import type { IntegrityRuntime } from './integrity/integrityRuntime.ts';
import type { AuditSink } from './telemetry/audit.ts';

/**
 * One reload (SIGHUP, POST /reload, the API), in order: the config file (when the sidecar
 * started from one) is read, validated and planned — any problem, or any change that needs a
 * restart, refuses the whole reload and nothing changes; then the key ring; then a check that
 * the ring holds every key the new config signs with; then the certificates; then the config's
 * live settings are swapped in as one snapshot (`apply`). Reloads run one at a time, each
 * planned against the config the previous one left. Ignored while draining.
 */
export interface SidecarReloadOutcome extends ReloadOutcome {
  /** started from a config file: what it changed, and what in it needs a restart */
  readonly config?: ReloadPlan;
}

export interface ReloaderDeps {
  readonly log: Logger;
  readonly audit: AuditSink;
  readonly draining: () => boolean;
  readonly keys: IntegrityRuntime;
  readonly identity: IdentityRuntime;
  /** the config in use */
  readonly current: () => Config;
  /** swap a validated config's live settings in (every listener of every thread, the log level) */
  readonly apply: (next: Config) => void;
}

const DRAINING: ReloadOutcome = Object.freeze({
  ok: false,
  problems: Object.freeze(['tollgate is draining; reload ignored']),
  changed: false,
  ignored: 'draining',
});

export function createReloader(deps: ReloaderDeps): (trigger: ReloadTrigger) => Promise<SidecarReloadOutcome> {
  const { log, audit, keys } = deps;
  let reloading: Promise<unknown> = Promise.resolve();

  async function reloadNow(trigger: ReloadTrigger): Promise<SidecarReloadOutcome> {
    if (deps.draining()) {
      log.info({ trigger }, 'reload ignored while draining');
      return DRAINING;
    }
    // the config file first: a problem in it, or a change that needs a restart, changes nothing at all
    const check = await checkConfigReload(deps.current());
    if (!check.ok) return refused(trigger, check.problems, check.plan);
    // keys and certificates reload independently: a bad key file must not hold back a certificate rotation
    const keyResult = await keys.reloadKeys();
    // a new signing key id must be in the ring now in use (its file added before the reload)
    const missing =
      check.next === null ? [] : missingSigningKeys(check.next, (id) => keys.keys().get(id) !== undefined);
    if (missing.length > 0) return refused(trigger, [...missing, ...keyResult.problems], check.plan);
    const certs = await deps.identity.reload(trigger);
    if (certs.ignored !== null) return certs;
    const configChanged = check.next !== null && check.plan.changed.length > 0;
    if (configChanged) {
      deps.apply(check.next!);
      audit.record('config_reload', { trigger, ok: true, changed: check.plan.changed, restartRequired: [] });
      log.info({ trigger, changed: check.plan.changed, restartRequired: [] }, 'configuration reloaded');
    } else if (check.next !== null) log.debug({ trigger }, 'configuration unchanged');
    const problems = [...keyResult.problems, ...certs.problems];
    const changed = certs.changed || configChanged;
    // started from flags: there is no config file, so no config part to report
    return {
      ok: keyResult.ok && certs.ok,
      problems,
      changed,
      ignored: null,
      ...(check.next === null ? {} : { config: check.plan }),
    };
  }

  /** A config reload refused whole: one error line and one audit event naming every problem and what needs a restart. */
  function refused(trigger: ReloadTrigger, problems: readonly string[], plan: ReloadPlan): SidecarReloadOutcome {
    audit.record('config_reload', { trigger, ok: false, changed: [], restartRequired: plan.restartRequired, problems });
    log.error(
      { trigger, problems, restartRequired: plan.restartRequired },
      'configuration reload refused; nothing changed',
    );
    return {
      ok: false,
      problems,
      changed: false,
      ignored: null,
      config: { changed: [], restartRequired: plan.restartRequired },
    };
  }

  return (trigger) => {
    // one at a time: SIGHUP and POST /reload may cross
    const run = reloading.then(() => reloadNow(trigger));
    reloading = run.catch(() => undefined);
    return run;
  };
}
