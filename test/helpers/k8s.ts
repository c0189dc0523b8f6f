/**
 * Kubernetes objects checked without a cluster: the kubernetes-models schemas (types, required
 * fields, enums) plus a round trip through @kubernetes/client-node's serializer, which drops any
 * field the API does not know; a dropped field is a typo or an invented field.
 */
import { ObjectSerializer } from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import jsonpatch from 'fast-json-patch';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhookConfiguration';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { ClusterIssuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/ClusterIssuer';
import { Issuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer';

interface Model {
  validate(): void;
}

/** apiVersion/kind -> the model class and the client-node serializer type (none for CRDs) */
const MODELS: Readonly<Record<string, { readonly make: (data: object) => Model; readonly serializer: string | null }>> =
  {
    'v1/Pod': { make: (d) => new Pod(d), serializer: 'V1Pod' },
    'v1/Namespace': { make: (d) => new Namespace(d), serializer: 'V1Namespace' },
    'v1/ServiceAccount': { make: (d) => new ServiceAccount(d), serializer: 'V1ServiceAccount' },
    'v1/Service': { make: (d) => new Service(d), serializer: 'V1Service' },
    'v1/ConfigMap': { make: (d) => new ConfigMap(d), serializer: 'V1ConfigMap' },
    'v1/Secret': { make: (d) => new Secret(d), serializer: 'V1Secret' },
    'apps/v1/Deployment': { make: (d) => new Deployment(d), serializer: 'V1Deployment' },
    'apps/v1/StatefulSet': { make: (d) => new StatefulSet(d), serializer: 'V1StatefulSet' },
    'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': {
      make: (d) => new MutatingWebhookConfiguration(d as ConstructorParameters<typeof MutatingWebhookConfiguration>[0]),
      serializer: 'V1MutatingWebhookConfiguration',
    },
    'policy/v1/PodDisruptionBudget': { make: (d) => new PodDisruptionBudget(d), serializer: 'V1PodDisruptionBudget' },
    'networking.k8s.io/v1/NetworkPolicy': { make: (d) => new NetworkPolicy(d), serializer: 'V1NetworkPolicy' },
    'autoscaling/v2/HorizontalPodAutoscaler': {
      make: (d) => new HorizontalPodAutoscaler(d as ConstructorParameters<typeof HorizontalPodAutoscaler>[0]),
      serializer: 'V2HorizontalPodAutoscaler',
    },
    'cert-manager.io/v1/Certificate': {
      make: (d) => new Certificate(d as ConstructorParameters<typeof Certificate>[0]),
      serializer: null,
    },
    'cert-manager.io/v1/Issuer': {
      make: (d) => new Issuer(d as ConstructorParameters<typeof Issuer>[0]),
      serializer: null,
    },
    'cert-manager.io/v1/ClusterIssuer': {
      make: (d) => new ClusterIssuer(d as ConstructorParameters<typeof ClusterIssuer>[0]),
      serializer: null,
    },
  };

export const KNOWN_KINDS = Object.keys(MODELS);

/** Every problem with a Kubernetes object: schema violations and fields the API would drop. */
export function kubernetesProblems(obj: unknown): string[] {
  if (typeof obj !== 'object' || obj === null) return ['not an object'];
  const { apiVersion, kind } = obj as { apiVersion?: unknown; kind?: unknown };
  const key = `${String(apiVersion)}/${String(kind)}`;
  const entry = MODELS[key];
  if (entry === undefined) return [`no model for ${key} (known: ${KNOWN_KINDS.join(', ')})`];
  const problems: string[] = [];
  try {
    entry.make(structuredClone(obj)).validate();
  } catch (err) {
    problems.push(`schema: ${(err as Error).message}`);
  }
  if (entry.serializer !== null) {
    const copy = structuredClone(obj);
    const back = ObjectSerializer.serialize(
      ObjectSerializer.deserialize(copy, entry.serializer, ''),
      entry.serializer,
      '',
    ) as object;
    for (const op of jsonpatch.compare(obj as object, back)) {
      problems.push(
        op.op === 'remove' ? `unknown field ${op.path}` : `field ${op.path} changed in a round trip (${op.op})`,
      );
    }
  }
  return problems;
}

export type Operation = jsonpatch.Operation;

/** Apply a JSON Patch the way the API server does: strictly, to a copy; throws on a bad operation. */
export function applyJsonPatch<T>(doc: T, ops: readonly Operation[]): T {
  return jsonpatch.applyPatch(structuredClone(doc), structuredClone(ops as Operation[]), true, false).newDocument;
}
