/**
 * Every child process the benchmark starts, registered so that all of them are killed on
 * exit, on error and on SIGINT/SIGTERM. Each is killed by its own pid (its process group
 * when started detached), never by name.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { rmSync } from 'node:fs';

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** stdout + stderr so far (the last 64 KiB) */
  output(): string;
  /** resolves with the exit code (or signal name) once the process has exited */
  readonly exited: Promise<number | string>;
}

const live = new Set<Child>();
const MAX_OUTPUT = 64 * 1024;

export function startChild(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): Child {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...options });
  if (proc.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  let out = '';
  const keep = (chunk: Buffer): void => {
    out += chunk.toString();
    if (out.length > MAX_OUTPUT) out = out.slice(-MAX_OUTPUT);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<number | string>((resolve) => {
    proc.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    proc.once('error', (err) => resolve(`error: ${err.message}`));
  });
  const child: Child = { name, proc, pid: proc.pid, output: () => out, exited };
  live.add(child);
  void exited.then(() => live.delete(child));
  return child;
}

function signalGroup(child: Child, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid, signal); // its own process group (detached), so its workers go too
  } catch {
    try {
      child.proc.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves once it has exited. */
export async function stopChild(child: Child, graceMs = 3_000): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  signalGroup(child, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(timer);
  signalGroup(child, 'SIGKILL'); // leftovers of its group, if any
}

export function killAllNow(): void {
  for (const child of live) signalGroup(child, 'SIGKILL');
}

const foldersToRemove = new Set<string>();
/** Remove this folder on exit too (a SIGINT skips the caller's finally blocks). */
export function removeOnExit(dir: string): void {
  foldersToRemove.add(dir);
}

function removeFolders(): void {
  for (const dir of foldersToRemove) rmSync(dir, { recursive: true, force: true });
}

let installed = false;
/** Kill every child on exit, uncaught errors and SIGINT/SIGTERM. */
export function installCleanup(): void {
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    killAllNow();
    removeFolders();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping ${live.size} child process(es)\n`);
      killAllNow();
      process.exit(130);
    });
  }
}
