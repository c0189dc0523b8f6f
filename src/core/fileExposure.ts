/**
 * Who besides this process can use a file that holds a secret (a key file, the audit log), judged
 * from its permission bits, its group and this process's groups.
 *
 * Group read is fine when the group is one of the process's own and nobody else gets more: with
 * Kubernetes `fsGroup` the kubelet makes Secret files 0440, owned by root with group fsGroup, and
 * gives the pod's containers that group; only containers that mount the volume see the file. Still
 * exposed: anything for others, group write, and any access for a group this process is not in.
 */

/** The part of fs.Stats this needs. */
export interface FileAccess {
  readonly mode: number;
  readonly gid: number;
}

/** This process's primary and supplementary group ids (empty where the platform has none, e.g. Windows). */
export function processGroupIds(): ReadonlySet<number> {
  const ids = new Set<number>(process.getgroups?.() ?? []);
  const gid = process.getgid?.();
  if (gid !== undefined) ids.add(gid);
  return ids;
}

/** "mode 0644 lets others read it", or null when only the owner (and, reading, the process's own group) has access. */
export function fileExposure(file: FileAccess, ownGroups: ReadonlySet<number>): string | null {
  const others = file.mode & 0o007;
  const group = (file.mode & 0o070) >> 3;
  const ownGroup = ownGroups.has(file.gid);
  const who: string[] = [];
  if (others !== 0) who.push(`others ${verbs(others)} it`);
  if (group !== 0 && !ownGroup) who.push(`group ${file.gid} (not a group of this process) ${verbs(group)} it`);
  else if ((group & 0o2) !== 0) who.push(`group ${file.gid} write it`);
  if (who.length === 0) return null;
  return `mode ${octal(file.mode)} lets ${who.join(' and ')}`;
}

function verbs(bits: number): string {
  const out: string[] = [];
  if ((bits & 0o4) !== 0) out.push('read');
  if ((bits & 0o2) !== 0) out.push('write');
  if ((bits & 0o1) !== 0) out.push('execute');
  return out.join('/');
}

function octal(mode: number): string {
  return '0' + (mode & 0o777).toString(8).padStart(3, '0');
}
