/** Which external programs are on PATH (nginx, haproxy, wrk, ab, h2load); smoke mode forces the Node fallbacks. */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface Tools {
  nginx: string | null;
  haproxy: string | null;
  wrk: string | null;
  ab: string | null;
  /** nghttp2-client's h2load: the HTTP/2 load generator */
  h2load: string | null;
  versions: Record<string, string>;
}

function which(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* next */
    }
  }
  return null;
}

function versionOf(path: string, args: string[], pattern: RegExp): string {
  // some print their version on stderr (nginx -v), some exit non-zero (wrk -v)
  const r = spawnSync(path, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5_000 });
  return pattern.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? 'unknown';
}

export function detectTools(forceFallbacks: boolean): Tools {
  const none: Tools = { nginx: null, haproxy: null, wrk: null, ab: null, h2load: null, versions: {} };
  if (forceFallbacks) return none;
  const tools: Tools = {
    nginx: which('nginx'),
    haproxy: which('haproxy'),
    wrk: which('wrk'),
    ab: which('ab'),
    h2load: which('h2load'),
    versions: {},
  };
  if (tools.nginx) tools.versions.nginx = versionOf(tools.nginx, ['-v'], /nginx\/(\S+)/);
  if (tools.haproxy) tools.versions.haproxy = versionOf(tools.haproxy, ['-v'], /version (\S+)/);
  if (tools.wrk) tools.versions.wrk = versionOf(tools.wrk, ['-v'], /wrk (\S+)/);
  if (tools.ab) tools.versions.ab = versionOf(tools.ab, ['-V'], /Version (\S+)/);
  if (tools.h2load) tools.versions.h2load = versionOf(tools.h2load, ['--version'], /nghttp2\/(\S+)/);
  return tools;
}
