/**
 * `tollgate webhook --config FILE`: the injector's own settings (JSON), every problem reported
 * at once with its path, unknown keys refused. Everything is optional:
 *
 *   {
 *     "sidecar": {
 *       "imagePullPolicy": "IfNotPresent",
 *       "runAsUser": 65532,
 *       "nativeSidecar": true,
 *       "resources": { "cpuRequest": "50m", "memoryRequest": "64Mi", "cpuLimit": "1", "memoryLimit": "256Mi" },
 *       "allow": { "spiffe": ["spiffe://cluster.local/*"], "dns": [] },
 *       "logLevel": "info"
 *     },
 *     "log": { "level": "info" },
 *     "drainTimeoutSeconds": 10
 *   }
 */
import { readFile } from 'node:fs/promises';
import { validateConfig } from '../config/validate.ts';
import { parseQuantity } from './quantity.ts';
import {
  DEFAULT_SIDECAR_RESOURCES,
  injectorSettings,
  PULL_POLICIES,
  SIDECAR_LOG_LEVELS,
  type InjectorSettings,
  type PullPolicy,
  type SidecarLogLevel,
  type SidecarResources,
} from './injectorSettings.ts';

export type WebhookLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export interface WebhookConfig {
  readonly injector: InjectorSettings;
  readonly logLevel: WebhookLogLevel;
  readonly drainTimeoutSeconds: number;
}

export interface WebhookConfigProblem {
  readonly path: string;
  readonly message: string;
}

export type WebhookConfigResult =
  | { readonly ok: true; readonly config: WebhookConfig }
  | { readonly ok: false; readonly problems: readonly WebhookConfigProblem[] };

export const DEFAULT_WEBHOOK_DRAIN_SECONDS = 10;
const LOG_LEVELS: readonly WebhookLogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const MAX_UID = 2 ** 31 - 1;

type Obj = Record<string, unknown>;
function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export async function loadWebhookConfigFile(file: string, image: string): Promise<WebhookConfigResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return {
      ok: false,
      problems: [
        {
          path: '--config',
          message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
        },
      ],
    };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    return { ok: false, problems: [{ path: '--config', message: `${file} is not JSON: ${(err as Error).message}` }] };
  }
  return validateWebhookConfig(raw, image);
}

export function defaultWebhookConfig(image: string): WebhookConfig {
  return { injector: injectorSettings(image), logLevel: 'info', drainTimeoutSeconds: DEFAULT_WEBHOOK_DRAIN_SECONDS };
}

export function validateWebhookConfig(raw: unknown, image: string): WebhookConfigResult {
  const problems: WebhookConfigProblem[] = [];
  const problem = (path: string, message: string): void => {
    problems.push({ path, message });
  };
  if (!isObject(raw)) return { ok: false, problems: [{ path: 'config', message: 'expected a JSON object' }] };
  const section = (value: unknown, path: string, keys: readonly string[]): Obj => {
    if (value === undefined) return {};
    if (!isObject(value)) {
      problem(path, 'expected an object');
      return {};
    }
    for (const key of Object.keys(value))
      if (!keys.includes(key)) problem(`${path}.${key}`, `unknown key (expected one of ${keys.join(', ')})`);
    return value;
  };
  const top = section(raw, 'config', ['sidecar', 'log', 'drainTimeoutSeconds']);
  const sidecar = section(top.sidecar, 'sidecar', [
    'imagePullPolicy',
    'runAsUser',
    'nativeSidecar',
    'resources',
    'allow',
    'logLevel',
  ]);

  const oneOf = <T extends string>(value: unknown, path: string, allowed: readonly T[], fallback: T): T => {
    if (value === undefined) return fallback;
    if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
    problem(path, `expected one of ${allowed.join(', ')}`);
    return fallback;
  };
  const imagePullPolicy = oneOf<PullPolicy>(
    sidecar.imagePullPolicy,
    'sidecar.imagePullPolicy',
    PULL_POLICIES,
    'IfNotPresent',
  );
  const logLevel = oneOf<SidecarLogLevel>(sidecar.logLevel, 'sidecar.logLevel', SIDECAR_LOG_LEVELS, 'info');
  let runAsUser: number | undefined;
  if (sidecar.runAsUser !== undefined) {
    if (
      typeof sidecar.runAsUser === 'number' &&
      Number.isInteger(sidecar.runAsUser) &&
      sidecar.runAsUser > 0 &&
      sidecar.runAsUser <= MAX_UID
    )
      runAsUser = sidecar.runAsUser;
    else problem('sidecar.runAsUser', 'expected a numeric user id above 0 (the sidecar never runs as root)');
  }
  let nativeSidecar: boolean | undefined;
  if (sidecar.nativeSidecar !== undefined) {
    if (typeof sidecar.nativeSidecar === 'boolean') nativeSidecar = sidecar.nativeSidecar;
    else problem('sidecar.nativeSidecar', 'expected true or false');
  }

  const res = section(sidecar.resources, 'sidecar.resources', [
    'cpuRequest',
    'memoryRequest',
    'cpuLimit',
    'memoryLimit',
  ]);
  const quantity = (key: keyof SidecarResources, nullable: boolean): string | null => {
    const value = res[key];
    if (value === undefined) return DEFAULT_SIDECAR_RESOURCES[key];
    if (value === null && nullable) return null;
    if (typeof value === 'string') {
      const n = parseQuantity(value);
      if (n !== null && n > 0) return value;
    }
    problem(
      `sidecar.resources.${key}`,
      `expected a Kubernetes quantity above zero, such as "100m" or "128Mi"${nullable ? ', or null for no limit' : ''}`,
    );
    return DEFAULT_SIDECAR_RESOURCES[key];
  };
  const resources: SidecarResources = {
    cpuRequest: quantity('cpuRequest', false) ?? DEFAULT_SIDECAR_RESOURCES.cpuRequest,
    memoryRequest: quantity('memoryRequest', false) ?? DEFAULT_SIDECAR_RESOURCES.memoryRequest,
    cpuLimit: quantity('cpuLimit', true),
    memoryLimit: quantity('memoryLimit', true),
  };
  const notAbove = (request: 'cpuRequest' | 'memoryRequest', limit: 'cpuLimit' | 'memoryLimit'): void => {
    const r = parseQuantity(resources[request]);
    const l = resources[limit] === null ? null : parseQuantity(resources[limit]);
    if (r !== null && l !== null && r > l)
      problem(`sidecar.resources.${request}`, `${resources[request]} is above ${limit} ${String(resources[limit])}`);
  };
  notAbove('cpuRequest', 'cpuLimit');
  notAbove('memoryRequest', 'memoryLimit');

  const allowRaw = section(sidecar.allow, 'sidecar.allow', ['spiffe', 'dns']);
  const list = (value: unknown, path: string, check: (s: string) => boolean, what: string): string[] => {
    if (value === undefined) return [];
    if (!Array.isArray(value)) {
      problem(path, `expected an array of ${what}`);
      return [];
    }
    const out: string[] = [];
    value.forEach((v: unknown, i) => {
      if (typeof v === 'string' && check(v)) out.push(v);
      else problem(`${path}[${i}]`, `expected ${what}`);
    });
    return out;
  };
  const allow = {
    spiffe: list(
      allowRaw.spiffe,
      'sidecar.allow.spiffe',
      (s) => s.startsWith('spiffe://'),
      'SPIFFE IDs (spiffe://trust-domain/path)',
    ),
    dns: list(allowRaw.dns, 'sidecar.allow.dns', (s) => s.length > 0, 'DNS names'),
  };
  for (const p of allowListProblems(allow)) problem(p.path, p.message);

  const log = section(top.log, 'log', ['level']);
  const webhookLogLevel = oneOf<WebhookLogLevel>(log.level, 'log.level', LOG_LEVELS, 'info');
  let drainTimeoutSeconds = DEFAULT_WEBHOOK_DRAIN_SECONDS;
  if (top.drainTimeoutSeconds !== undefined) {
    const d = top.drainTimeoutSeconds;
    if (typeof d === 'number' && Number.isFinite(d) && d > 0 && d <= 300) drainTimeoutSeconds = d;
    else problem('drainTimeoutSeconds', 'expected seconds, more than 0 and at most 300');
  }
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    config: Object.freeze({
      injector: injectorSettings(image, {
        imagePullPolicy,
        logLevel,
        resources,
        allow,
        ...(runAsUser !== undefined ? { runAsUser } : {}),
        ...(nativeSidecar !== undefined ? { nativeSidecar } : {}),
      }),
      logLevel: webhookLogLevel,
      drainTimeoutSeconds,
    }),
  };
}

/**
 * The default allow-list checked the way `tollgate run` will check it in every sidecar that
 * uses it, so a bad default stops the injector at startup instead of denying pods later.
 */
function allowListProblems(allow: { spiffe: string[]; dns: string[] }): WebhookConfigProblem[] {
  if (allow.spiffe.length + allow.dns.length === 0) return [];
  const probe = {
    identity: { certFile: '/c', keyFile: '/k', caFile: '/ca' },
    listeners: [{ name: 'inbound', mode: 'inbound', listen: '0.0.0.0:15443', target: '127.0.0.1:8080', allow }],
  };
  const result = validateConfig(probe, { baseDir: '/', source: null });
  if (result.ok) return [];
  return result.problems
    .filter((p) => p.path.startsWith('listeners[0].allow'))
    .map((p) => ({ path: p.path.replace('listeners[0].allow', 'sidecar.allow'), message: p.message }));
}
