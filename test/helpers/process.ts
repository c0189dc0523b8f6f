/**
 * `bin/tollgate.js` as a real child process: output collected as it arrives, JSON log lines
 * parsed, killed in teardown if a test leaves it running.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Teardownable } from './pki.ts';
import { strictJsonProblem } from './strictJson.ts';

export const BIN = fileURLToPath(new URL('../../bin/tollgate.js', import.meta.url));

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  readonly pid: number;
  stdout(): string;
  stderr(): string;
  logs(): Array<Record<string, unknown>>;
  readonly exited: Promise<Finished>;
  exitCode(): number | null;
  running(): boolean;
  kill(signal: NodeJS.Signals): void;
}

export function startTollgate(t: Teardownable, args: string[], cwd?: string): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: cwd ?? process.cwd(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<Finished>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    // every JSON line the process logged must be strict JSON (no repeated key)
    // (a log line is one JSON object on one line; a pretty-printed --json report spans several and is not checked here)
    const problems = out
      .split('\n')
      .filter((l) => l.startsWith('{') && parseLine(l).length === 1)
      .flatMap((l) => {
        const problem = strictJsonProblem(l);
        return problem === null ? [] : [`${problem}: ${l}`];
      });
    if (problems.length > 0)
      throw new Error(
        `tollgate logged ${problems.length} line(s) that are not strict JSON:\n${problems.slice(0, 5).join('\n')}`,
      );
  });
  return {
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    logs: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .flatMap(parseLine),
    exited,
    exitCode: () => child.exitCode,
    running: () => child.exitCode === null && child.signalCode === null,
    kill: (signal) => child.kill(signal),
  };
}

function parseLine(line: string): Array<Record<string, unknown>> {
  try {
    return [JSON.parse(line) as Record<string, unknown>];
  } catch {
    return [];
  }
}

/** Resolve with the exit, or kill the process and reject once `ms` have passed. */
export async function exitWithin(p: Running, ms: number, what = 'tollgate'): Promise<Finished> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`${what} did not exit within ${ms} ms\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`));
    }, ms);
  });
  try {
    return await Promise.race([p.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A loopback port nothing listens on right now, for a child that must be told its port up
 * front (its admin address is not logged). Another process could take it in between: a small
 * race the callers accept.
 */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

/** Where the openssl CLI is (Debian's package; .ci/run installs it). */
export const OPENSSL = '/usr/bin/openssl';

/** Run the openssl CLI with stdin closed (s_client connects, then quits); killed after `ms`. Output is stdout and stderr together. */
export async function runOpenssl(args: string[], ms: number): Promise<{ code: number | null; out: string }> {
  const child = spawn(OPENSSL, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, out };
}

/** What a fresh TCP connection to 127.0.0.1:port gets: 'connected', or the error code. */
export function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}
