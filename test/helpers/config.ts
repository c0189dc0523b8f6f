/** Unwrapping a ConfigResult in tests: the wrong outcome throws with what came instead. */
import type { Config, ConfigProblem, ConfigResult } from '../../src/config/types.ts';
import { formatProblem } from '../../src/config/validate.ts';

export function expectConfig(result: ConfigResult): Config {
  if (!result.ok) throw new Error(`expected a valid config, got:\n${result.problems.map(formatProblem).join('\n')}`);
  return result.config;
}

export function expectProblems(result: ConfigResult): readonly ConfigProblem[] {
  if (result.ok) throw new Error('expected problems, got a valid config');
  return result.problems;
}
