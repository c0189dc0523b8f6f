/**
 * Pod -> what the injector does with it. Pure: no I/O, no clock.
 *
 *   not opted in (no `tollgate.dev/inject: "enabled"`)  -> skip: admitted untouched
 *   already injected (status + sidecar present)          -> skip: admitted untouched (reinvocation)
 *   opted in, but it cannot be done as asked             -> deny, naming every problem (fail closed:
 *                                                          a pod that asked for protection must not
 *                                                          start without it)
 *   opted in                                             -> inject: the JSON Patch
 */
import { ANNOTATIONS, DEFAULT_CONTAINER_ANNOTATION, INJECT_ENABLED, STATUS_INJECTED } from './annotations.ts';
import type { InjectorSettings } from './injectorSettings.ts';
import { injectionPatch, type PatchOperation } from './patch.ts';
import {
  DEFAULT_ADMIN_PORT,
  DEFAULT_HEALTH_PORT,
  DEFAULT_INBOUND_PORT,
  quote,
  readSidecarSettings,
} from './podSettings.ts';
import { sidecarContainer, sidecarVolumes } from './sidecar.ts';
import { generatedConfig, generatedConfigProblems } from './sidecarConfig.ts';
import { SIDECAR_CONTAINER_NAME, VOLUMES } from './sidecarLayout.ts';

export type SkipReason = 'not_opted_in' | 'already_injected';

export type InjectionDecision =
  | { readonly kind: 'skip'; readonly reason: SkipReason }
  | { readonly kind: 'deny'; readonly message: string }
  | {
      readonly kind: 'inject';
      readonly patch: readonly PatchOperation[];
      readonly warnings: readonly string[];
      readonly native: boolean;
    };

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;

export function decideInjection(pod: unknown, injector: InjectorSettings): InjectionDecision {
  const metadata = isObject(pod) ? pod.metadata : undefined;
  const rawAnnotations = isObject(metadata) ? metadata.annotations : undefined;
  const annotations = stringMap(rawAnnotations);
  if (annotations?.[ANNOTATIONS.inject] !== INJECT_ENABLED) return { kind: 'skip', reason: 'not_opted_in' };

  const deny = (problems: readonly string[]): InjectionDecision => ({
    kind: 'deny',
    message: `tollgate: the pod asks for the tollgate sidecar (${ANNOTATIONS.inject}: ${INJECT_ENABLED}) and it cannot be injected: ${problems.join('; ')}`,
  });

  if (
    !isObject(pod) ||
    !isObject(pod.spec) ||
    !Array.isArray(pod.spec.containers) ||
    pod.spec.containers.length === 0
  ) {
    return deny(['the object is not a pod with spec.containers']);
  }
  const spec = pod.spec;
  const hasSidecar = containerNames(spec).includes(SIDECAR_CONTAINER_NAME);
  const status = annotations[ANNOTATIONS.status];
  if (status !== undefined) {
    if (status === STATUS_INJECTED && hasSidecar) return { kind: 'skip', reason: 'already_injected' };
    if (status === STATUS_INJECTED)
      return deny([
        `${ANNOTATIONS.status} says "${STATUS_INJECTED}" but the pod has no ${SIDECAR_CONTAINER_NAME} container; remove the annotation`,
      ]);
    return deny([`${ANNOTATIONS.status}: ${quote(status)} is written by the injector only; remove the annotation`]);
  }
  if (spec.hostNetwork === true) {
    return deny([
      `the pod uses hostNetwork, where the sidecar's ports would open on the node itself; tollgate is never injected into hostNetwork pods (remove ${ANNOTATIONS.inject} or hostNetwork)`,
    ]);
  }

  const problems: string[] = [];
  if (hasSidecar) problems.push(`the pod already has a container named ${SIDECAR_CONTAINER_NAME}; rename it`);
  const volumeNames = new Set(
    Array.isArray(spec.volumes) ? spec.volumes.map((v) => (isObject(v) ? v.name : undefined)) : [],
  );
  for (const name of Object.values(VOLUMES)) {
    if (volumeNames.has(name)) problems.push(`the pod already has a volume named ${name}; rename it`);
  }
  const read = readSidecarSettings(annotations, injector);
  if (!read.ok) problems.push(...read.problems);
  problems.push(...portClashes(spec, sidecarPorts(annotations)));
  if (problems.length > 0 || !read.ok) return deny(problems);
  const settings = read.settings;

  const written: Record<string, string> = { [ANNOTATIONS.status]: STATUS_INJECTED };
  if (settings.config.kind === 'generated') {
    const config = generatedConfig(settings, settings.config);
    const configProblems = generatedConfigProblems(config);
    if (configProblems.length > 0) return deny(configProblems);
    written[ANNOTATIONS.generatedConfig] = JSON.stringify(config);
  }
  const warnings: string[] = [];
  const firstApp = (spec.containers as unknown[])[0];
  if (!settings.native) {
    warnings.push(
      'tollgate runs as a classic sidecar (tollgate.dev/native-sidecar: "false"): the app may start before it is ready, and a Job will not complete while it runs',
    );
    if (
      annotations[DEFAULT_CONTAINER_ANNOTATION] === undefined &&
      isObject(firstApp) &&
      typeof firstApp.name === 'string'
    ) {
      written[DEFAULT_CONTAINER_ANNOTATION] = firstApp.name;
    }
  }
  const securityContext = isObject(spec.securityContext) ? spec.securityContext : null;
  const fsGroup = securityContext !== null && securityContext.fsGroup !== undefined ? null : injector.runAsUser;
  if (fsGroup !== null) {
    warnings.push(
      `tollgate set the pod's fsGroup to ${fsGroup} so that its sidecar (user ${injector.runAsUser}) can read the mounted Secret files`,
    );
  }
  const patch = injectionPatch(
    {
      hasMetadata: isObject(pod.metadata),
      hasAnnotations: isObject(rawAnnotations),
      hasInitContainers: Array.isArray(spec.initContainers),
      hasVolumes: Array.isArray(spec.volumes),
      hasSecurityContext: securityContext !== null,
      hasFsGroupChangePolicy: securityContext !== null && securityContext.fsGroupChangePolicy !== undefined,
    },
    {
      container: sidecarContainer(settings, injector),
      native: settings.native,
      volumes: sidecarVolumes(settings),
      annotations: written,
      fsGroup,
    },
  );
  return { kind: 'inject', patch, warnings, native: settings.native };
}

/** annotations as a string map; a map with a non-string value is not a valid pod, read as absent */
function stringMap(v: unknown): Readonly<Record<string, string>> | null {
  if (!isObject(v)) return null;
  for (const value of Object.values(v)) if (typeof value !== 'string') return null;
  return v as Record<string, string>;
}

function containerNames(spec: Obj): string[] {
  const names: string[] = [];
  for (const list of CONTAINER_LISTS) {
    const items = spec[list];
    if (!Array.isArray(items)) continue;
    for (const c of items) if (isObject(c) && typeof c.name === 'string') names.push(c.name);
  }
  return names;
}

/** the ports the sidecar will open, as the annotations ask (unreadable values are reported elsewhere) */
function sidecarPorts(annotations: Readonly<Record<string, string>>): Map<number, string> {
  const ports = new Map<number, string>();
  const note = (name: string, fallback: number): void => {
    const value = annotations[name];
    const port = value === undefined ? fallback : /^[0-9]{1,5}$/.test(value) ? Number(value) : null;
    if (port !== null && !ports.has(port)) ports.set(port, name);
  };
  note(ANNOTATIONS.inboundPort, DEFAULT_INBOUND_PORT);
  note(ANNOTATIONS.healthPort, DEFAULT_HEALTH_PORT);
  if (annotations[ANNOTATIONS.config] === undefined) note(ANNOTATIONS.adminPort, DEFAULT_ADMIN_PORT);
  return ports;
}

/** the sidecar's ports must be free in the pod's network namespace */
function portClashes(spec: Obj, ours: ReadonlyMap<number, string>): string[] {
  const problems: string[] = [];
  for (const list of ['initContainers', 'containers'] as const) {
    const items = spec[list];
    if (!Array.isArray(items)) continue;
    for (const c of items) {
      if (!isObject(c) || !Array.isArray(c.ports)) continue;
      for (const p of c.ports) {
        const port = isObject(p) ? p.containerPort : undefined;
        const annotation = typeof port === 'number' ? ours.get(port) : undefined;
        if (annotation !== undefined) {
          problems.push(
            `${annotation}: port ${String(port)} is already a containerPort of container ${quote(String(c.name))}; choose another port`,
          );
        }
      }
    }
  }
  return problems;
}
