import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Every file under `dir`, in every folder below it, whose name matches `names`: full paths, sorted. */
export function filesUnder(dir: string, names: RegExp): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path, names));
    else if (names.test(entry.name)) out.push(path);
  }
  return out.sort();
}
