import type { Config, ConfigProblem } from './types.ts';

/**
 * Settings this build validates but cannot honour yet. Running with them would silently give
 * less protection than the config asks for, so start (and `tollgate check`) refuse them,
 * each with its path. Each entry goes away when its feature lands.
 */
export function notYetBuilt(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const later = (path: string, what: string): void => {
    problems.push({ path, message: `${what} is not available in this build yet; remove the setting to run without it` });
  };
  if (config.audit.file !== null) later('audit.file', 'the tamper-evident audit log');
  return problems;
}
