import type { Config } from './types.ts';
import { loadConfigFile } from './load.ts';
import { reloadPlan, type ReloadPlan } from './reloadPlan.ts';

/**
 * The config half of a reload (SIGHUP, POST /reload): re-read the file the running config came
 * from, validate it exactly as startup does (every problem, each with its path), and plan it
 * against the running config. Any problem, or any change that needs a restart, refuses the
 * whole file: the caller then changes nothing. A config built from flags has no file: nothing
 * to read, nothing changes.
 */
export type ConfigReloadCheck =
  | { readonly ok: true; readonly next: Config | null; readonly plan: ReloadPlan }
  | { readonly ok: false; readonly problems: readonly string[]; readonly plan: ReloadPlan };

export const NO_CHANGE: ReloadPlan = Object.freeze({ changed: Object.freeze([]), restartRequired: Object.freeze([]) });

export async function checkConfigReload(current: Config): Promise<ConfigReloadCheck> {
  if (current.source === null) return { ok: true, next: null, plan: NO_CHANGE };
  const loaded = await loadConfigFile(current.source);
  if (!loaded.ok)
    return { ok: false, problems: loaded.problems.map((p) => `${p.path}: ${p.message}`), plan: NO_CHANGE };
  const next = loaded.config;
  const plan = reloadPlan(current, next);
  if (plan.restartRequired.length > 0) {
    const problems = plan.restartRequired.map(
      (path) => `${path}: changed, and cannot change while running: restart to apply it (nothing was changed)`,
    );
    return { ok: false, problems, plan };
  }
  return { ok: true, next, plan };
}

/** Listeners that would sign with a key the ring does not hold (checked against the ring in use, after the key reload). */
export function missingSigningKeys(config: Config, has: (keyId: string) => boolean): string[] {
  const problems: string[] = [];
  config.listeners.forEach((l, i) => {
    if (l.integrity.sign && l.integrity.keyId !== null && !has(l.integrity.keyId)) {
      problems.push(
        `listeners[${i}].integrity.keyId: key ${l.integrity.keyId} is not in keys.dir (add the key file first, then reload)`,
      );
    }
    l.routes.forEach((r, j) => {
      if (r.integrity.sign && r.integrity.keyId !== null && !has(r.integrity.keyId))
        problems.push(
          `listeners[${i}].routes[${j}].integrity.keyId: key ${r.integrity.keyId} is not in keys.dir (add the key file first, then reload)`,
        );
    });
  });
  return problems;
}
