/**
 * The RFC 6902 JSON Patch that injects the sidecar into a pod. Pure: the pod and the pieces to
 * add in, operations out.
 *
 * JSON Pointer rules that bite (RFC 6901): `/` inside a key is written `~1` and `~` is `~0`
 * (`tollgate.dev/status` -> `tollgate.dev~1status`); `add` into an array or object that does not
 * exist fails, so a missing `annotations`, `initContainers`, `volumes` or `securityContext` is
 * added whole, and existing ones are added to.
 */
import type { Json, JsonObject } from './sidecar.ts';

export interface PatchOperation {
  readonly op: 'add';
  readonly path: string;
  readonly value: Json;
}

export interface InjectionParts {
  readonly container: JsonObject;
  /** true: the first init container (a native sidecar); false: the first app container */
  readonly native: boolean;
  readonly volumes: readonly JsonObject[];
  readonly annotations: Readonly<Record<string, string>>;
  /** a pod fsGroup to add (with fsGroupChangePolicy OnRootMismatch) when the pod has none; null: leave it */
  readonly fsGroup: number | null;
}

/** The parts of a pod the patch depends on: which arrays and maps already exist. */
export interface PodShape {
  readonly hasMetadata: boolean;
  readonly hasAnnotations: boolean;
  readonly hasInitContainers: boolean;
  readonly hasVolumes: boolean;
  readonly hasSecurityContext: boolean;
  readonly hasFsGroupChangePolicy: boolean;
}

/** One reference token of a JSON Pointer. */
export function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function injectionPatch(pod: PodShape, parts: InjectionParts): PatchOperation[] {
  const ops: PatchOperation[] = [];
  const add = (path: string, value: Json): void => {
    ops.push({ op: 'add', path, value });
  };

  const annotations: JsonObject = { ...parts.annotations };
  if (!pod.hasMetadata) add('/metadata', { annotations });
  else if (!pod.hasAnnotations) add('/metadata/annotations', annotations);
  else
    for (const [key, value] of Object.entries(parts.annotations))
      add(`/metadata/annotations/${escapePointerToken(key)}`, value);

  if (!parts.native) add('/spec/containers/0', parts.container);
  else if (pod.hasInitContainers) add('/spec/initContainers/0', parts.container);
  else add('/spec/initContainers', [parts.container]);

  if (pod.hasVolumes) for (const volume of parts.volumes) add('/spec/volumes/-', volume);
  else add('/spec/volumes', [...parts.volumes]);

  if (parts.fsGroup !== null) {
    if (!pod.hasSecurityContext)
      add('/spec/securityContext', { fsGroup: parts.fsGroup, fsGroupChangePolicy: 'OnRootMismatch' });
    else {
      add('/spec/securityContext/fsGroup', parts.fsGroup);
      if (!pod.hasFsGroupChangePolicy) add('/spec/securityContext/fsGroupChangePolicy', 'OnRootMismatch');
    }
  }
  return ops;
}
