/**
 * A Kubernetes Secret (or ConfigMap) volume on disk, laid out and updated the way the kubelet
 * does it: the files live in a timestamped folder `dir/..2026_…`, `dir/..data` is a symlink to
 * it, and each visible name is a symlink `dir/NAME -> ..data/NAME`. An update writes a new
 * timestamped folder, points `..data_tmp` at it, renames `..data_tmp` over `..data` (one atomic
 * step), adds symlinks for new names and removes the old folder.
 *
 *   const vol = await secretVolume(join(w.dir, 'tls'), { 'tls.crt': leaf.certPem, 'tls.key': leaf.keyPem, 'ca.crt': ca.certPem });
 *   await vol.update({ 'tls.crt': next.certPem, 'tls.key': next.keyPem, 'ca.crt': ca.certPem });
 */
import { chmod, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface SecretVolume {
  readonly dir: string;
  /** the visible path of a file: dir/NAME */
  path(name: string): string;
  /** swap in a new set of files atomically */
  update(files: Readonly<Record<string, string>>): Promise<void>;
}

export async function secretVolume(dir: string, files: Readonly<Record<string, string>>): Promise<SecretVolume> {
  await mkdir(dir, { recursive: true });
  let generation = 0;
  let current: string | null = null;
  const linked = new Set<string>();

  const writeGeneration = async (content: Readonly<Record<string, string>>): Promise<string> => {
    generation += 1;
    const name = `..2026_11_23_00_00_0${generation}.${process.pid}`;
    await mkdir(join(dir, name));
    for (const [file, text] of Object.entries(content)) {
      await writeFile(join(dir, name, file), text);
      await chmod(join(dir, name, file), file.endsWith('.key') ? 0o600 : 0o644);
    }
    return name;
  };

  const linkNames = async (content: Readonly<Record<string, string>>): Promise<void> => {
    for (const file of Object.keys(content)) {
      if (linked.has(file)) continue;
      await symlink(join('..data', file), join(dir, file));
      linked.add(file);
    }
  };

  current = await writeGeneration(files);
  await symlink(current, join(dir, '..data'));
  await linkNames(files);

  return {
    dir,
    path: (name) => join(dir, name),
    async update(content) {
      const next = await writeGeneration(content);
      await symlink(next, join(dir, '..data_tmp'));
      await rename(join(dir, '..data_tmp'), join(dir, '..data'));
      await linkNames(content);
      if (current !== null) await rm(join(dir, current), { recursive: true, force: true });
      current = next;
    },
  };
}
