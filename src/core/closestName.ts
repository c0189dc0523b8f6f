/**
 * "Did you mean …?" for a mistyped name: config keys (`listeners[0].allwo`) and command-line
 * flags (`--lisen`) use the same rule, so a typo gets the same help wherever it is made.
 */

/** The candidate within edit distance 2 of `name` (or equal ignoring case), closest first; null when none is close enough to be a typo. */
export function closestName(name: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = candidate.toLowerCase() === name.toLowerCase() ? 0 : editDistance(name, candidate);
    // less than half the candidate: a two-letter name is never "close" to another two-letter name
    if (d < bestDistance && d < candidate.length / 2) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance (insert, delete, substitute), one row at a time. */
export function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, (row[j - 1] ?? 0) + cost);
    }
    row = next;
  }
  return row[b.length] ?? 0;
}

/** `unknown flag (did you mean --listen?)` for a command line's `--lisen`; `known` without dashes. */
export function unknownFlagMessage(name: string, known: Iterable<string>): string {
  const suggestion = closestName(name, known);
  return suggestion === null ? 'unknown flag' : `unknown flag (did you mean --${suggestion}?)`;
}
