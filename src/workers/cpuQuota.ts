/**
 * How many event loops `workers: "auto"` means: the CPUs the container may use. The cgroup CPU
 * quota (what Kubernetes sets from `resources.limits.cpu`) wins over the host's CPU count,
 * because a pod limited to 2 CPUs on a 64-core node must not start 64 threads that are then
 * throttled. cgroup v2: /sys/fs/cgroup/cpu.max ("max 100000" or "QUOTA PERIOD"); cgroup v1:
 * cpu.cfs_quota_us / cpu.cfs_period_us (-1 = no quota). A fractional quota rounds up (1.5 CPUs:
 * 2 loops). Without a quota: os.availableParallelism() (which honours the affinity mask).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { MAX_WORKERS } from '../config/defaults.ts';

/** reads a file's text, or null when it cannot be read (tests pass a fake) */
export type ReadText = (path: string) => string | null;

const CGROUP_V2_CPU_MAX = '/sys/fs/cgroup/cpu.max';
const CGROUP_V1_DIRS = ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct'];

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** CPUs the cgroup quota allows (may be fractional), or null when there is no quota. */
export function cgroupCpuLimit(read: ReadText = readText): number | null {
  const v2 = read(CGROUP_V2_CPU_MAX);
  if (v2 !== null) {
    const [quota, period] = v2.trim().split(/\s+/);
    if (quota === 'max') return null;
    const q = Number(quota);
    const p = Number(period ?? '100000');
    return q > 0 && p > 0 ? q / p : null;
  }
  for (const dir of CGROUP_V1_DIRS) {
    const quota = read(`${dir}/cpu.cfs_quota_us`);
    const period = read(`${dir}/cpu.cfs_period_us`);
    if (quota === null || period === null) continue;
    const q = Number(quota.trim());
    const p = Number(period.trim());
    return q > 0 && p > 0 ? q / p : null;
  }
  return null;
}

/** `workers` as configured -> the number of event loops to run (1..MAX_WORKERS). */
export function resolveWorkers(
  setting: number | 'auto',
  read: ReadText = readText,
  cpus: number = availableParallelism(),
): number {
  if (setting !== 'auto') return setting;
  const limit = cgroupCpuLimit(read);
  const n = limit === null ? cpus : Math.min(Math.ceil(limit), cpus);
  return Math.max(1, Math.min(MAX_WORKERS, n));
}

/** What `tollgate check` prints for `workers`: the resolved count and, for "auto", where it came from. */
export function describeWorkers(
  setting: number | 'auto',
  read: ReadText = readText,
  cpus: number = availableParallelism(),
): string {
  const n = resolveWorkers(setting, read, cpus);
  const loops = `${n} event loop${n === 1 ? '' : 's'}`;
  if (setting !== 'auto') return `workers ${loops}`;
  const limit = cgroupCpuLimit(read);
  const plural = cpus === 1 ? '' : 's';
  const source =
    limit === null
      ? `no cgroup CPU quota, ${cpus} CPU${plural} available`
      : `cgroup CPU quota ${limit} of ${cpus} CPU${plural}`;
  return `workers ${loops} ("auto": ${source})`;
}

/** SO_REUSEPORT through net's `reusePort`: Node 22.12+, 23.1+. */
export function reusePortSupported(version: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}
