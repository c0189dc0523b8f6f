/**
 * The tollgate config an injected sidecar runs with when the pod names no ConfigMap: one inbound
 * listener (inbound-port -> 127.0.0.1:app-port), health on the pod IP, admin on loopback, the key
 * ring when a keys Secret is mounted. It is checked with the same validation `tollgate run` uses,
 * so a pod is never admitted with a sidecar that would refuse to start on its config.
 */
import { validateConfig } from '../config/validate.ts';
import { ANNOTATIONS } from './annotations.ts';
import type { ConfigSource, SidecarSettings } from './podSettings.ts';
import { CONFIG_PATH, IDENTITY_FILES, MOUNTS } from './sidecarLayout.ts';

type Generated = Extract<ConfigSource, { kind: 'generated' }>;

export const GENERATED_LISTENER_NAME = 'inbound';

export function generatedConfig(settings: SidecarSettings, source: Generated): Record<string, unknown> {
  const allow: Record<string, string[]> = {};
  if (source.allow.spiffe.length > 0) allow.spiffe = [...source.allow.spiffe];
  if (source.allow.dns.length > 0) allow.dns = [...source.allow.dns];
  const verify = settings.keysSecret !== null && source.protocol === 'http';
  return {
    admin: { listen: `127.0.0.1:${source.adminPort}` },
    health: { listen: `0.0.0.0:${settings.healthPort}` },
    identity: { ...IDENTITY_FILES },
    ...(settings.keysSecret !== null ? { keys: { dir: MOUNTS.keys } } : {}),
    log: { level: source.logLevel },
    listeners: [
      {
        name: GENERATED_LISTENER_NAME,
        mode: 'inbound',
        protocol: source.protocol,
        listen: `0.0.0.0:${settings.inboundPort}`,
        target: `127.0.0.1:${source.appPort}`,
        allow,
        ...(verify ? { integrity: { verify: true } } : {}),
      },
    ],
  };
}

/** Where a config problem came from, named the way the pod's author wrote it. */
const PROBLEM_SOURCES: ReadonlyArray<readonly [string, string]> = [
  ['listeners[0].allow.spiffe', ANNOTATIONS.allowSpiffe],
  ['listeners[0].allow.dns', ANNOTATIONS.allowDns],
  ['listeners[0].allow', `${ANNOTATIONS.allowSpiffe} or ${ANNOTATIONS.allowDns}`],
  ['listeners[0].target', ANNOTATIONS.appPort],
  ['listeners[0].listen', ANNOTATIONS.inboundPort],
  ['health.listen', ANNOTATIONS.healthPort],
  ['admin.listen', ANNOTATIONS.adminPort],
];

/** The problems `tollgate run` would report for this config, each named by the annotation behind it. */
export function generatedConfigProblems(raw: Record<string, unknown>): string[] {
  const result = validateConfig(raw, { baseDir: MOUNTS.config, source: CONFIG_PATH });
  if (result.ok) return [];
  return result.problems.map((p) => {
    const source = PROBLEM_SOURCES.find(
      ([prefix]) => p.path === prefix || p.path.startsWith(`${prefix}[`) || p.path.startsWith(`${prefix}.`),
    );
    return source === undefined
      ? `generated config ${p.path}: ${p.message}`
      : `${source[1]}: ${p.message} (generated config ${p.path})`;
  });
}
