/**
 * deploy/ as a fresh clone has it, in a temporary directory laid out like the repository: what
 * git ignores under deploy/ (the dev overlay's keys/, made by a README command) is left out, so
 * a developer's own keys never make a test pass that fails in CI.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SimulatedCluster } from './kustomizeCluster.ts';
import { kubernetesSection, readmeCommands, runReadmeCommand } from './kustomizeReadme.ts';

export const REPOSITORY = fileURLToPath(new URL('../../', import.meta.url));

/** the deploy/ paths (relative to the repository) that a .gitignore under deploy/ names */
function ignoredPaths(dir: string): string[] {
  const here = existsSync(join(dir, '.gitignore'))
    ? readFileSync(join(dir, '.gitignore'), 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#'))
    : [];
  for (const pattern of here) {
    if (/[*?[!]/.test(pattern) || pattern.slice(0, -1).includes('/'))
      throw new Error(`${dir}/.gitignore: ${pattern}: only plain names are understood here`);
  }
  const below = readdirSync(dir)
    .filter((n) => statSync(join(dir, n)).isDirectory())
    .flatMap((n) => ignoredPaths(join(dir, n)));
  return [...here.map((p) => relative(REPOSITORY, join(dir, p.replace(/\/$/, '')))), ...below];
}

export interface StagedRepository {
  /** the root: README commands' relative paths resolve against it */
  readonly root: string;
  remove(): void;
}

export function stageRepository(): StagedRepository {
  const root = mkdtempSync(join(tmpdir(), 'tollgate-deploy-'));
  const ignored = new Set(ignoredPaths(join(REPOSITORY, 'deploy')));
  cpSync(join(REPOSITORY, 'deploy'), join(root, 'deploy'), {
    recursive: true,
    filter: (src) => !ignored.has(relative(REPOSITORY, src)),
  });
  return { root, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/**
 * The staged repository after the README's `npx tollgate keys new` commands, as a reader who
 * followed the README has it: what the kustomizations read (the dev overlay's keys) exists.
 */
export async function stageAfterReadmeKeys(): Promise<StagedRepository> {
  const staged = stageRepository();
  const cluster = new SimulatedCluster();
  const commands = readmeCommands(kubernetesSection(readFileSync(join(REPOSITORY, 'README.md'), 'utf8')));
  for (const c of commands.filter((c) => c.argv[0] === 'npx' && c.argv[2] === 'keys'))
    await runReadmeCommand(c, staged.root, cluster, new Set());
  if (cluster.problems.length > 0) throw new Error(`README key commands failed: ${cluster.problems.join('; ')}`);
  return staged;
}
