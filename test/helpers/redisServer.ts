/**
 * A real redis-server (Debian's package; .ci/run installs it) on a loopback port, for the shared
 * state tests: plaintext, or TLS that requires a client certificate. It can be stopped and
 * started again on the same port (a store that goes away under load and comes back), and is
 * killed at teardown. Nothing is persisted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { freePort } from './process.ts';
import { tempDir, type Teardownable } from './pki.ts';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** why the shared state tests cannot run here, or null */
export function redisMissing(): string | null {
  return existsSync(REDIS_SERVER) ? null : `${REDIS_SERVER} is not installed (apt-get install redis-server)`;
}

export interface RedisTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

export interface TestRedis {
  readonly port: number;
  /** redis://127.0.0.1:PORT, or rediss://localhost:PORT with TLS */
  readonly url: string;
  /** stop the server (SIGKILL: as a crash looks to a client) */
  stop(): Promise<void>;
  /** start it again on the same port */
  start(): Promise<void>;
}

export interface RedisOptions {
  readonly tls?: RedisTls;
  /** a Redis Cluster of one node that holds every slot (the cluster protocol, on one process) */
  readonly cluster?: boolean;
}

export async function startRedis(t: Teardownable, opts: RedisOptions = {}): Promise<TestRedis> {
  const { tls, cluster = false } = opts;
  const port = await freePort();
  const dir = await tempDir(t, 'tollgate-redis-');
  const args = [
    '--dir',
    dir,
    // a node alone never learns its own address from a peer: it announces it
    ...(cluster
      ? [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, 'nodes.conf'),
          '--cluster-announce-ip',
          '127.0.0.1',
        ]
      : []),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--protected-mode',
    'no',
    ...(tls === undefined
      ? ['--port', String(port)]
      : [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--tls-cert-file',
          tls.certFile,
          '--tls-key-file',
          tls.keyFile,
          '--tls-ca-cert-file',
          tls.caFile,
          '--tls-auth-clients',
          'yes',
        ]),
  ];
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    const c = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    child = c;
    const deadline = Date.now() + 10_000;
    while (!(await accepts(port))) {
      if (c.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    if (!cluster) return;
    // the one node takes every slot (kept in nodes.conf across a restart), then the cluster reports ok
    await command(port, ['CLUSTER', 'ADDSLOTSRANGE', '0', '16383']);
    while (!(await command(port, ['CLUSTER', 'INFO'])).includes('cluster_state:ok')) {
      if (Date.now() > deadline) throw new Error('the one-node cluster did not become ok');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = null;
    if (c === null || c.exitCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  };
  await start();
  t.teardown(stop);
  return {
    port,
    url: tls === undefined ? `redis://127.0.0.1:${port}` : `rediss://localhost:${port}`,
    stop,
    start,
  };
}

/** one command in RESP over plain TCP; the reply as text */
function command(port: number, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    s.setEncoding('utf8');
    s.once('connect', () =>
      s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`),
    );
    s.on('data', (d: string) => {
      reply += d;
      // a simple string, an error, or a bulk string whose whole length has arrived
      const bulk = /^\$(\d+)\r\n/.exec(reply);
      if (bulk === null ? reply.endsWith('\r\n') : Buffer.byteLength(reply) >= bulk[0].length + Number(bulk[1]) + 2) {
        s.destroy();
        resolve(reply);
      }
    });
    s.once('error', reject);
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
