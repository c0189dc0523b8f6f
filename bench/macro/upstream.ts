/**
 * The upstream every target forwards to: nginx when installed (generated config in a temp
 * folder, one worker, no access log, 200 with a small body once the whole request body is
 * read), else the node:http server of upstreamServer.ts in its own process.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startChild, stopChild, type Child } from './children.ts';
import { freePort, waitForPort } from './net.ts';

export interface Upstream {
  readonly kind: 'nginx' | 'node';
  readonly port: number;
  readonly child: Child;
  stop(): Promise<void>;
}

const HERE = fileURLToPath(new URL('.', import.meta.url));

function nginxConf(dir: string, port: number): string {
  return `worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  tcp_nodelay on;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    client_max_body_size 2m;
    client_body_buffer_size 2m;
    open_file_cache max=16 inactive=300s;
    # read the whole request body before answering, as an app would (the mirror module reads
    # it in the precontent phase; \`return\` alone would answer first and discard the body after)
    location / {
      mirror /sink;
      mirror_request_body on;
      root ${dir}/www;
      default_type text/plain;
      try_files /ok.txt =404;
      error_page 405 =200 @ok;
    }
    location = /sink { internal; return 204; }
    location @ok { default_type text/plain; return 200 "ok\\n"; }
  }
}
`;
}

function deadCheck(child: Child): () => string | null {
  return () =>
    child.proc.exitCode !== null || child.proc.signalCode !== null ? `${child.name} exited: ${child.output()}` : null;
}

export async function startUpstream(nginx: string | null, workDir: string): Promise<Upstream> {
  const port = await freePort();
  if (nginx !== null) {
    const dir = join(workDir, 'nginx');
    await mkdir(dir, { recursive: true });
    await mkdir(join(dir, 'www'), { recursive: true });
    // nginx's worker may run as another user (nobody, when started by root): let it reach www/
    await chmod(workDir, 0o711);
    await chmod(dir, 0o755);
    await chmod(join(dir, 'www'), 0o755);
    await writeFile(join(dir, 'www', 'ok.txt'), 'ok\n');
    await writeFile(join(dir, 'nginx.conf'), nginxConf(dir, port));
    const child = startChild('nginx', nginx, ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')]);
    await waitForPort(port, 10_000, deadCheck(child));
    return { kind: 'nginx', port, child, stop: () => stopChild(child) };
  }
  const child = startChild('node upstream', process.execPath, [join(HERE, 'upstreamServer.ts'), String(port)]);
  await waitForPort(port, 10_000, deadCheck(child));
  return { kind: 'node', port, child, stop: () => stopChild(child) };
}

export { deadCheck };
