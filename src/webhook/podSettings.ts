/**
 * A pod's `tollgate.dev/*` annotations -> what to inject, or every problem found, each named by
 * its annotation. Pure: no I/O, no clock. Annotations that cannot be honoured are problems,
 * never silently ignored, because the pod asked for protection and a typo must not weaken it.
 */
import { ANNOTATIONS } from './annotations.ts';
import { parseQuantity } from './quantity.ts';
import {
  SIDECAR_LOG_LEVELS,
  type InjectorSettings,
  type SidecarLogLevel,
  type SidecarResources,
} from './injectorSettings.ts';

export const DEFAULT_INBOUND_PORT = 15443;
export const DEFAULT_HEALTH_PORT = 15021;
export const DEFAULT_ADMIN_PORT = 15000;

export type SidecarProtocol = 'http' | 'tcp';

/** Where the sidecar's config comes from. */
export type ConfigSource =
  | { readonly kind: 'configMap'; readonly name: string }
  | {
      readonly kind: 'generated';
      readonly appPort: number;
      readonly protocol: SidecarProtocol;
      readonly allow: { readonly spiffe: readonly string[]; readonly dns: readonly string[] };
      readonly logLevel: SidecarLogLevel;
      readonly adminPort: number;
    };

export interface SidecarSettings {
  readonly native: boolean;
  readonly inboundPort: number;
  readonly healthPort: number;
  readonly identitySecret: string;
  readonly keysSecret: string | null;
  readonly config: ConfigSource;
  readonly resources: SidecarResources;
}

export type SettingsResult =
  | { readonly ok: true; readonly settings: SidecarSettings }
  | { readonly ok: false; readonly problems: readonly string[] };

/** annotations that only shape a generated config; with tollgate.dev/config they would be silently unused */
const GENERATED_ONLY = [
  ANNOTATIONS.appPort,
  ANNOTATIONS.adminPort,
  ANNOTATIONS.allowSpiffe,
  ANNOTATIONS.allowDns,
  ANNOTATIONS.protocol,
  ANNOTATIONS.logLevel,
] as const;

/** DNS-1123 subdomain: what Secret and ConfigMap names must be */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const MAX_SUBDOMAIN = 253;
const PORT = /^[1-9][0-9]{0,4}$/;
const MAX_PORT = 65535;

export function readSidecarSettings(
  annotations: Readonly<Record<string, string>>,
  injector: InjectorSettings,
): SettingsResult {
  const problems: string[] = [];
  const get = (name: string): string | undefined => annotations[name];
  const problem = (name: string, message: string): void => {
    problems.push(`${name}: ${message}`);
  };

  const native = readBoolean(get(ANNOTATIONS.nativeSidecar), injector.nativeSidecar, (m) =>
    problem(ANNOTATIONS.nativeSidecar, m),
  );
  const inboundPort = readPort(get(ANNOTATIONS.inboundPort), DEFAULT_INBOUND_PORT, (m) =>
    problem(ANNOTATIONS.inboundPort, m),
  );
  const healthPort = readPort(get(ANNOTATIONS.healthPort), DEFAULT_HEALTH_PORT, (m) =>
    problem(ANNOTATIONS.healthPort, m),
  );

  const identityValue = get(ANNOTATIONS.identitySecret);
  let identitySecret = '';
  if (identityValue === undefined) {
    problem(
      ANNOTATIONS.identitySecret,
      'required: the Secret holding the sidecar certificate (tls.crt, tls.key, ca.crt)',
    );
  } else if (readObjectName(identityValue, (m) => problem(ANNOTATIONS.identitySecret, m))) {
    identitySecret = identityValue;
  }
  const keysValue = get(ANNOTATIONS.keysSecret);
  const keysSecret =
    keysValue !== undefined && readObjectName(keysValue, (m) => problem(ANNOTATIONS.keysSecret, m)) ? keysValue : null;

  const configMap = get(ANNOTATIONS.config);
  const config: ConfigSource =
    configMap !== undefined
      ? readConfigMapSource(configMap, get, problem)
      : readGeneratedSource(get, injector, problem);
  if (config.kind === 'generated') {
    if (config.protocol === 'tcp' && keysSecret !== null) {
      problem(
        ANNOTATIONS.keysSecret,
        'a tcp listener carries no HTTP messages to verify; remove it, or use tollgate.dev/protocol: http',
      );
    }
    checkDistinctPorts(
      [
        [ANNOTATIONS.inboundPort, inboundPort],
        [ANNOTATIONS.healthPort, healthPort],
        [ANNOTATIONS.adminPort, config.adminPort],
        [ANNOTATIONS.appPort, config.appPort],
      ],
      problem,
    );
  } else {
    checkDistinctPorts(
      [
        [ANNOTATIONS.inboundPort, inboundPort],
        [ANNOTATIONS.healthPort, healthPort],
      ],
      problem,
    );
  }

  const resources = readResources(get, injector.resources, problem);
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    settings: Object.freeze({ native, inboundPort, healthPort, identitySecret, keysSecret, config, resources }),
  };
}

function readConfigMapSource(
  name: string,
  get: (name: string) => string | undefined,
  problem: (name: string, message: string) => void,
): ConfigSource {
  readObjectName(name, (m) => problem(ANNOTATIONS.config, m));
  for (const annotation of GENERATED_ONLY) {
    if (get(annotation) !== undefined)
      problem(
        annotation,
        `not used with ${ANNOTATIONS.config} (the ConfigMap's config says this); remove one of the two`,
      );
  }
  return { kind: 'configMap', name };
}

function readGeneratedSource(
  get: (name: string) => string | undefined,
  injector: InjectorSettings,
  problem: (name: string, message: string) => void,
): ConfigSource {
  const appValue = get(ANNOTATIONS.appPort);
  let appPort = 0;
  if (appValue === undefined) {
    problem(
      ANNOTATIONS.appPort,
      `required unless ${ANNOTATIONS.config} names a ConfigMap: the app's port on 127.0.0.1 that verified traffic goes to`,
    );
  } else {
    appPort = readPort(appValue, 0, (m) => problem(ANNOTATIONS.appPort, m));
  }
  const adminPort = readPort(get(ANNOTATIONS.adminPort), DEFAULT_ADMIN_PORT, (m) => problem(ANNOTATIONS.adminPort, m));
  const protocolValue = get(ANNOTATIONS.protocol) ?? 'http';
  let protocol: SidecarProtocol = 'http';
  if (protocolValue === 'http' || protocolValue === 'tcp') protocol = protocolValue;
  else problem(ANNOTATIONS.protocol, `${quote(protocolValue)} is not http or tcp`);

  const logValue = get(ANNOTATIONS.logLevel) ?? injector.logLevel;
  let logLevel: SidecarLogLevel = injector.logLevel;
  if ((SIDECAR_LOG_LEVELS as readonly string[]).includes(logValue)) logLevel = logValue as SidecarLogLevel;
  else problem(ANNOTATIONS.logLevel, `${quote(logValue)} is not one of ${SIDECAR_LOG_LEVELS.join(', ')}`);

  const spiffeValue = get(ANNOTATIONS.allowSpiffe);
  const dnsValue = get(ANNOTATIONS.allowDns);
  const named = spiffeValue !== undefined || dnsValue !== undefined;
  const allow = named
    ? { spiffe: splitList(spiffeValue), dns: splitList(dnsValue) }
    : { spiffe: [...injector.allow.spiffe], dns: [...injector.allow.dns] };
  if (allow.spiffe.length + allow.dns.length === 0) {
    problem(
      `${ANNOTATIONS.allowSpiffe} or ${ANNOTATIONS.allowDns}`,
      named
        ? 'empty: name at least one peer allowed to connect'
        : 'required: who may connect to the inbound port (the injector has no default allow-list)',
    );
  }
  for (const id of allow.spiffe) {
    if (!id.startsWith('spiffe://'))
      problem(ANNOTATIONS.allowSpiffe, `${quote(id)} is not a SPIFFE ID (spiffe://trust-domain/path)`);
  }
  return { kind: 'generated', appPort, protocol, allow, logLevel, adminPort };
}

function readResources(
  get: (name: string) => string | undefined,
  defaults: SidecarResources,
  problem: (name: string, message: string) => void,
): SidecarResources {
  const quantity = (name: string, fallback: string | null): string | null => {
    const value = get(name);
    if (value === undefined) return fallback;
    const n = parseQuantity(value);
    if (n === null) problem(name, `${quote(value)} is not a Kubernetes quantity (such as 100m, 1, 128Mi)`);
    else if (n <= 0) problem(name, `${quote(value)} must be more than zero`);
    return value;
  };
  const cpuRequest = quantity(ANNOTATIONS.cpuRequest, defaults.cpuRequest) ?? defaults.cpuRequest;
  const memoryRequest = quantity(ANNOTATIONS.memoryRequest, defaults.memoryRequest) ?? defaults.memoryRequest;
  const cpuLimit = quantity(ANNOTATIONS.cpuLimit, defaults.cpuLimit);
  const memoryLimit = quantity(ANNOTATIONS.memoryLimit, defaults.memoryLimit);
  const notAbove = (requestName: string, request: string, limitName: string, limit: string | null): void => {
    if (limit === null) return;
    const r = parseQuantity(request);
    const l = parseQuantity(limit);
    if (r !== null && l !== null && r > l) {
      problem(
        get(requestName) !== undefined ? requestName : limitName,
        `the request ${request} is above the limit ${limit}`,
      );
    }
  };
  notAbove(ANNOTATIONS.cpuRequest, cpuRequest, ANNOTATIONS.cpuLimit, cpuLimit);
  notAbove(ANNOTATIONS.memoryRequest, memoryRequest, ANNOTATIONS.memoryLimit, memoryLimit);
  return Object.freeze({ cpuRequest, memoryRequest, cpuLimit, memoryLimit });
}

function checkDistinctPorts(
  ports: ReadonlyArray<readonly [string, number]>,
  problem: (name: string, message: string) => void,
): void {
  const seen = new Map<number, string>();
  for (const [name, port] of ports) {
    if (port === 0) continue; // already reported as invalid or missing
    const other = seen.get(port);
    if (other !== undefined)
      problem(name, `port ${port} is also ${other}; each needs its own port in the pod's network namespace`);
    else seen.set(port, name);
  }
}

function readBoolean(value: string | undefined, fallback: boolean, problem: (m: string) => void): boolean {
  if (value === undefined) return fallback;
  if (value === 'true') return true;
  if (value === 'false') return false;
  problem(`${quote(value)} is not "true" or "false"`);
  return fallback;
}

function readPort(value: string | undefined, fallback: number, problem: (m: string) => void): number {
  if (value === undefined) return fallback;
  if (!PORT.test(value) || Number(value) > MAX_PORT) {
    problem(`${quote(value)} is not a port number (1-65535)`);
    return 0;
  }
  return Number(value);
}

function readObjectName(value: string, problem: (m: string) => void): boolean {
  if (value.length <= MAX_SUBDOMAIN && DNS_SUBDOMAIN.test(value)) return true;
  problem(
    `${quote(value)} is not a Kubernetes object name (lower-case letters, digits, '-' and '.', at most ${MAX_SUBDOMAIN} characters)`,
  );
  return false;
}

function splitList(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** a value as it appears in a message: quoted, and cut short so a huge annotation cannot bloat the answer */
export function quote(value: string): string {
  const MAX = 80;
  return JSON.stringify(value.length > MAX ? `${value.slice(0, MAX)}…` : value);
}
