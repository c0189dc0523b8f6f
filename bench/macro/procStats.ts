/**
 * CPU time and memory of a process and its descendants, from /proc (Linux). CPU is
 * utime + stime in clock ticks (`getconf CLK_TCK`); memory is VmRSS (current) and VmHWM
 * (lifetime peak) in bytes. Off Linux every figure is null.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond: number | null = null;
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === null) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

interface Stat {
  ppid: number;
  ticks: number;
}

function readStat(pid: number): Stat | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null;
  }
}

/** The pid and every live descendant. */
export function processTree(root: number): number[] {
  let pids: number[];
  try {
    pids = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  } catch {
    return [root];
  }
  const children = new Map<number, number[]>();
  for (const pid of pids) {
    const s = readStat(pid);
    if (s === null) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(pid);
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** CPU seconds (utime + stime) of each root and its descendants, summed; null when /proc is not there. */
export function cpuSeconds(roots: readonly number[]): number | null {
  let ticks = 0;
  let seen = false;
  for (const root of roots) {
    for (const pid of processTree(root)) {
      const s = readStat(pid);
      if (s === null) continue;
      ticks += s.ticks;
      seen = true;
    }
  }
  return seen ? ticks / clockTicksPerSecond() : null;
}

function statusField(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Sum over the trees of a /proc/PID/status field, in bytes. */
export function memoryBytes(roots: readonly number[], field: 'VmRSS' | 'VmHWM'): number | null {
  let total = 0;
  let seen = false;
  for (const root of roots) {
    for (const pid of processTree(root)) {
      const v = statusField(pid, field);
      if (v === null) continue;
      total += v;
      seen = true;
    }
  }
  return seen ? total : null;
}

/** Samples the summed VmRSS every intervalMs until stopped; returns the peak seen. */
export class RssSampler {
  private peak = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly roots: readonly number[];

  constructor(roots: readonly number[], intervalMs = 100) {
    this.roots = roots;
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    const v = memoryBytes(this.roots, 'VmRSS');
    if (v !== null && v > this.peak) this.peak = v;
  }

  stop(): number | null {
    clearInterval(this.timer);
    this.sample();
    return this.peak > 0 ? this.peak : null;
  }
}
