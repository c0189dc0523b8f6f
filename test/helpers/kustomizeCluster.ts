/**
 * A fresh cluster as far as the README's commands can tell, without a cluster. It records what
 * exists (namespaces, objects, the images nodes can pull, installed API groups), refuses what the
 * API server would refuse (an object before its namespace, a cert-manager object before
 * cert-manager, `create` of what exists), and says why a Deployment's pods could not start: a
 * missing ServiceAccount, Secret or ConfigMap (or key of one) that a volume, envFrom or env names,
 * an image the nodes cannot pull. A Certificate's Secret exists once its issuer can issue. Pods
 * that a mutating webhook selects are checked as admitted: the webhook's backend must be able to
 * start, and tollgate's injector decides (src/webhook) with the flags and config it is deployed
 * with, so the Secrets it mounts into the sidecar are checked too.
 */
import { imageReferenceProblem } from '../../src/webhook/imageReference.ts';
import { decideInjection } from '../../src/webhook/injection.ts';
import { validateWebhookConfig } from '../../src/webhook/webhookConfig.ts';
import { applyJsonPatch, type Operation } from './k8s.ts';
import { imageName, podContainers, podSpecOf, type Container, type K8sObject } from './kustomize.ts';

type Obj = Record<string, unknown>;

const CLUSTER_SCOPED = new Set([
  'Namespace',
  'ClusterIssuer',
  'MutatingWebhookConfiguration',
  'ValidatingWebhookConfiguration',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'PriorityClass',
  'StorageClass',
  'PersistentVolume',
]);
/** API groups every cluster serves; any other needs its CRDs installed first */
const BUILT_IN_GROUPS = new Set([
  '',
  'apps',
  'batch',
  'policy',
  'autoscaling',
  'networking.k8s.io',
  'admissionregistration.k8s.io',
  'rbac.authorization.k8s.io',
]);
/** cert-manager's "cluster resource namespace": where a ClusterIssuer's CA Secret lives */
const CERT_MANAGER_NAMESPACE = 'cert-manager';
/** what cert-manager writes into a Certificate's Secret */
const CERTIFICATE_KEYS = ['tls.crt', 'tls.key', 'ca.crt'];

export function isClusterScoped(kind: string): boolean {
  return CLUSTER_SCOPED.has(kind);
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function groupOf(apiVersion: string): string {
  return apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
}

/** Container args as the kubelet runs them: `$(VAR)` from the container's env, `$$` for a literal `$`. */
export function expandedArgs(container: Container): string[] {
  const env = new Map<string, string>();
  for (const e of (container.env as Array<{ name: string; value?: string }> | undefined) ?? [])
    if (typeof e.value === 'string') env.set(e.name, e.value);
  const expand = (m: string, name?: string): string => (name === undefined ? '$' : (env.get(name) ?? m));
  return ((container.args as string[] | undefined) ?? []).map((arg) =>
    arg.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, expand),
  );
}

/** `--flag value` pairs of an args list */
export function flagValues(args: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < args.length; i++) if (args[i]!.startsWith('--')) m.set(args[i]!.slice(2), args[i + 1]!);
  return m;
}

/** The volume a container sees a file through, and the file's path inside the volume. */
export function mountedFile(container: Container, spec: Obj, file: string): { volume: Obj; inside: string } | null {
  for (const m of (container.volumeMounts as Array<{ name: string; mountPath: string }> | undefined) ?? []) {
    if (!file.startsWith(`${m.mountPath}/`)) continue;
    const volume = ((spec.volumes as Obj[] | undefined) ?? []).find((v) => v.name === m.name);
    if (volume !== undefined) return { volume, inside: file.slice(m.mountPath.length + 1) };
  }
  return null;
}

type Keys = { keys: ReadonlySet<string> } | { missing: string };
/** a reference to a Secret or ConfigMap by name */
type Ref = { name: string; optional?: boolean };

export class SimulatedCluster {
  /** what a command would have refused, each with the command */
  readonly problems: string[] = [];
  private readonly objects = new Map<string, K8sObject>();
  private readonly groups = new Set(BUILT_IN_GROUPS);
  private readonly pullable = new Set<string>();

  constructor() {
    for (const name of ['default', 'kube-system', 'kube-public', 'kube-node-lease'])
      this.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  }

  private key(kind: string, namespace: string | undefined, name: string): string {
    return `${kind}/${CLUSTER_SCOPED.has(kind) ? '' : (namespace ?? 'default')}/${name}`;
  }

  private put(o: K8sObject): void {
    this.objects.set(this.key(o.kind, o.metadata.namespace, o.metadata.name), o);
  }

  get(kind: string, namespace: string | undefined, name: string): K8sObject | undefined {
    return this.objects.get(this.key(kind, namespace, name));
  }

  all(kind: string): K8sObject[] {
    return [...this.objects.values()].filter((o) => o.kind === kind);
  }

  hasNamespace(name: string): boolean {
    return this.get('Namespace', undefined, name) !== undefined;
  }

  /** `kubectl apply`: objects in the order given, each needing its namespace and its API group to exist already */
  apply(objects: readonly K8sObject[], command: string): void {
    for (const o of objects) {
      const what = `${o.kind} ${o.metadata.namespace === undefined ? '' : `${o.metadata.namespace}/`}${o.metadata.name}`;
      if (!this.groups.has(groupOf(o.apiVersion)))
        this.problems.push(`${command}: ${what}: the API group ${groupOf(o.apiVersion)} is not installed`);
      else if (!CLUSTER_SCOPED.has(o.kind) && !this.hasNamespace(o.metadata.namespace ?? 'default')) {
        this.problems.push(`${command}: ${what}: namespace ${o.metadata.namespace} does not exist (yet)`);
      } else this.put(structuredClone(o));
    }
  }

  /** `kubectl create`: as apply, and it refuses what exists */
  create(o: K8sObject, command: string): void {
    if (this.get(o.kind, o.metadata.namespace, o.metadata.name) !== undefined)
      this.problems.push(`${command}: ${o.kind} ${o.metadata.name} already exists`);
    else this.apply([o], command);
  }

  labelNamespace(name: string, labels: Record<string, string>, command: string): void {
    const ns = this.get('Namespace', undefined, name);
    if (ns === undefined) this.problems.push(`${command}: namespace ${name} does not exist (yet)`);
    else ns.metadata.labels = { ...ns.metadata.labels, ...labels };
  }

  requireNamespace(name: string, command: string): void {
    if (!this.hasNamespace(name)) this.problems.push(`${command}: namespace ${name} does not exist (yet)`);
  }

  /** a released manifest that installs an API group's CRDs and controllers in their namespace */
  installAddon(group: string, namespace: string): void {
    this.groups.add(group);
    this.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
  }

  /** an image pushed to a registry the nodes pull from, or loaded into the nodes */
  makePullable(image: string): void {
    this.pullable.add(image);
  }

  /** `kubectl rollout status`: the Deployment (or StatefulSet) exists and its pods can start */
  rolloutStatus(namespace: string, name: string, command: string, kind = 'Deployment'): void {
    const workload = this.get(kind, namespace, name);
    if (workload === undefined) this.problems.push(`${command}: no ${kind} ${namespace}/${name}`);
    else for (const p of this.podProblems(workload)) this.problems.push(`${command}: ${p}`);
  }

  /** The keys of a Secret that exists or that cert-manager will write, or why it never will. */
  secretKeys(namespace: string, name: string, depth = 0): Keys {
    const secret = this.get('Secret', namespace, name);
    if (secret !== undefined)
      return { keys: new Set([...Object.keys(secret.data ?? {}), ...Object.keys(secret.stringData ?? {})]) };
    const cert = this.all('Certificate').find(
      (c) => c.metadata.namespace === namespace && (c.spec as Obj).secretName === name,
    );
    if (cert === undefined)
      return { missing: `Secret ${namespace}/${name} does not exist and no Certificate writes it` };
    const why = this.issuerProblem(
      namespace,
      (cert.spec as { issuerRef: { name: string; kind?: string } }).issuerRef,
      depth,
    );
    if (why !== null)
      return { missing: `Secret ${namespace}/${name}: Certificate ${cert.metadata.name} is never issued: ${why}` };
    return { keys: new Set(CERTIFICATE_KEYS) };
  }

  private issuerProblem(namespace: string, ref: { name: string; kind?: string }, depth: number): string | null {
    const kind = ref.kind ?? 'Issuer';
    const issuer = this.get(kind, namespace, ref.name);
    if (issuer === undefined) return `no ${kind} ${ref.name}${kind === 'Issuer' ? ` in ${namespace}` : ''}`;
    const spec = issuer.spec as Obj;
    if (isObj(spec.selfSigned)) return null;
    if (isObj(spec.ca) && depth < 5) {
      const got = this.secretKeys(
        kind === 'Issuer' ? namespace : CERT_MANAGER_NAMESPACE,
        spec.ca.secretName as string,
        depth + 1,
      );
      return 'missing' in got ? `${kind} ${ref.name}: ${got.missing}` : null;
    }
    return `${kind} ${ref.name} is of a type this check does not know`;
  }

  configMapKeys(namespace: string, name: string): Keys {
    const cm = this.get('ConfigMap', namespace, name);
    if (cm === undefined) return { missing: `ConfigMap ${namespace}/${name} does not exist` };
    return {
      keys: new Set([
        ...Object.keys((cm.data as Obj | undefined) ?? {}),
        ...Object.keys((cm.binaryData as Obj | undefined) ?? {}),
      ]),
    };
  }

  private referenceProblem(
    kind: 'Secret' | 'ConfigMap',
    namespace: string,
    name: string,
    keys: readonly string[],
    optional: unknown,
  ): string | null {
    if (optional === true) return null;
    const got = kind === 'Secret' ? this.secretKeys(namespace, name) : this.configMapKeys(namespace, name);
    if ('missing' in got) return got.missing;
    const absent = keys.filter((k) => !got.keys.has(k));
    return absent.length === 0 ? null : `${kind} ${namespace}/${name} has no ${absent.join(', ')}`;
  }

  /** Why the pods of a workload would not start (stuck in ContainerCreating, ImagePullBackOff, or never created); [] when they would. */
  podProblems(workload: K8sObject): string[] {
    const namespace = workload.metadata.namespace ?? 'default';
    const where = `${workload.kind} ${namespace}/${workload.metadata.name}`;
    const admitted = this.admit(workload);
    if (typeof admitted === 'string') return [`${where}: ${admitted}`];
    const problems: string[] = [];
    const note = (p: string | null): void => void (p !== null && problems.push(`${where}: ${p}`));
    const spec = podSpecOf(admitted)!;
    const sa = (spec.serviceAccountName as string | undefined) ?? 'default';
    if (sa !== 'default' && this.get('ServiceAccount', namespace, sa) === undefined)
      note(`ServiceAccount ${sa} does not exist`);
    for (const v of (spec.volumes as Obj[] | undefined) ?? []) {
      const sources = isObj(v.projected) ? ((v.projected.sources as Obj[] | undefined) ?? []) : [v];
      for (const s of sources) {
        const secret = s.secret as (Ref & { secretName?: string; items?: Array<{ key: string }> }) | undefined;
        const configMap = s.configMap as (Ref & { items?: Array<{ key: string }> }) | undefined;
        const keys = (items: Array<{ key: string }> | undefined): string[] => (items ?? []).map((i) => i.key);
        if (secret !== undefined)
          note(
            this.referenceProblem(
              'Secret',
              namespace,
              secret.secretName ?? secret.name,
              keys(secret.items),
              secret.optional,
            ),
          );
        if (configMap !== undefined)
          note(
            this.referenceProblem('ConfigMap', namespace, configMap.name, keys(configMap.items), configMap.optional),
          );
      }
    }
    for (const c of podContainers(admitted)) {
      for (const from of (c.envFrom as Obj[] | undefined) ?? []) {
        const ref = (from.secretRef ?? from.configMapRef) as Ref;
        note(
          this.referenceProblem(
            from.secretRef !== undefined ? 'Secret' : 'ConfigMap',
            namespace,
            ref.name,
            [],
            ref.optional,
          ),
        );
      }
      for (const e of (c.env as Obj[] | undefined) ?? []) {
        const from = e.valueFrom as
          { secretKeyRef?: Ref & { key: string }; configMapKeyRef?: Ref & { key: string } } | undefined;
        const secret = from?.secretKeyRef;
        const configMap = from?.configMapKeyRef;
        if (secret !== undefined)
          note(this.referenceProblem('Secret', namespace, secret.name, [secret.key], secret.optional));
        if (configMap !== undefined)
          note(this.referenceProblem('ConfigMap', namespace, configMap.name, [configMap.key], configMap.optional));
      }
      // tollgate's image is built by the README's commands; other images are public
      if (
        imageName(c.image ?? '')
          .split('/')
          .pop() === 'tollgate' &&
        !this.pullable.has(c.image!)
      ) {
        note(`container ${c.name}: image ${c.image} was never pushed or loaded into the nodes`);
      }
    }
    return problems;
  }

  /** the pod of a workload as the API server admits it (mutated by webhooks), or why it is refused */
  private admit(workload: K8sObject): K8sObject | string {
    const template = (workload.kind === 'Pod' ? workload : (workload.spec as Obj).template) as {
      metadata?: K8sObject['metadata'];
      spec: Obj;
    };
    const namespace = workload.metadata.namespace ?? 'default';
    let pod: K8sObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        ...structuredClone(template.metadata ?? { name: '' }),
        name: `${workload.metadata.name}-0`,
        namespace,
      },
      spec: structuredClone(template.spec),
    };
    for (const mwc of this.all('MutatingWebhookConfiguration')) {
      for (const hook of (mwc.webhooks as Obj[] | undefined) ?? []) {
        const selected = this.webhookSelects(hook, pod);
        if (typeof selected === 'string') return `webhook ${hook.name as string}: ${selected}`;
        if (!selected) continue;
        const mutated = this.callInjector(hook, pod);
        if (typeof mutated === 'string') return `webhook ${hook.name as string}: ${mutated}`;
        pod = mutated;
      }
    }
    return pod;
  }

  /** rules, namespaceSelector and the annotation comparisons of matchConditions; a string when it cannot tell */
  private webhookSelects(hook: Obj, pod: K8sObject): boolean | string {
    const rules =
      (hook.rules as Array<{ operations: string[]; apiGroups: string[]; resources: string[] }> | undefined) ?? [];
    const podCreates = (r: (typeof rules)[number]): boolean =>
      r.operations.some((o) => o === 'CREATE' || o === '*') &&
      r.apiGroups.includes('') &&
      r.resources.some((x) => x === 'pods' || x === '*');
    if (!rules.some(podCreates)) return false;
    const ns = this.get('Namespace', undefined, pod.metadata.namespace!)!;
    const labels: Record<string, string> = { ...ns.metadata.labels, 'kubernetes.io/metadata.name': ns.metadata.name };
    type Expression = { key: string; operator: string; values?: string[] };
    const selector =
      (hook.namespaceSelector as
        { matchLabels?: Record<string, string>; matchExpressions?: Expression[] } | undefined) ?? {};
    for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
    for (const e of selector.matchExpressions ?? []) {
      const has = e.key in labels;
      const ok =
        e.operator === 'In'
          ? has && e.values!.includes(labels[e.key]!)
          : e.operator === 'NotIn'
            ? !has || !e.values!.includes(labels[e.key]!)
            : e.operator === 'Exists'
              ? has
              : e.operator === 'DoesNotExist'
                ? !has
                : null;
      if (ok === null) return `namespaceSelector operator ${e.operator} is not known to this check`;
      if (!ok) return false;
    }
    for (const condition of (hook.matchConditions as Array<{ expression: string }> | undefined) ?? []) {
      const comparisons = [...condition.expression.matchAll(/annotations\['([^']+)'\]\s*==\s*'([^']*)'/g)];
      if (comparisons.length === 0)
        return `matchCondition ${JSON.stringify(condition.expression)} is not understood by this check`;
      if (!comparisons.every(([, key, value]) => pod.metadata.annotations?.[key!] === value)) return false;
    }
    return true;
  }

  /** the webhook's backend: the Deployment behind its Service, which must be able to start, run as tollgate's injector */
  private callInjector(hook: Obj, pod: K8sObject): K8sObject | string {
    const ref = (hook.clientConfig as { service?: { name: string; namespace: string } }).service;
    if (ref === undefined) return 'no clientConfig.service';
    const svc = this.get('Service', ref.namespace, ref.name);
    if (svc === undefined)
      return `its Service ${ref.namespace}/${ref.name} does not exist, and with failurePolicy Fail no pod is created`;
    const selector = (svc.spec as { selector?: Record<string, string> }).selector ?? {};
    const backend = this.all('Deployment').find(
      (d) =>
        d.metadata.namespace === ref.namespace &&
        Object.entries(selector).every(
          ([k, v]) =>
            ((d.spec as Obj).template as { metadata?: { labels?: Record<string, string> } }).metadata?.labels?.[k] ===
            v,
        ),
    );
    if (backend === undefined) return `no Deployment behind Service ${ref.namespace}/${ref.name}`;
    const down = this.podProblems(backend);
    if (down.length > 0) return `its backend cannot start: ${down.join('; ')}`;
    const container = podContainers(backend)[0]!;
    const args = expandedArgs(container);
    if (args[0] !== 'webhook') return `${backend.metadata.name} does not run tollgate webhook`;
    const flags = flagValues(args);
    const image = flags.get('image') ?? '';
    const imageProblem = imageReferenceProblem(image);
    if (imageProblem !== null) return `tollgate webhook refuses to start: --image ${imageProblem}`;
    let raw: unknown = {};
    const configFile = flags.get('config');
    if (configFile !== undefined) {
      const mounted = mountedFile(container, podSpecOf(backend)!, configFile);
      const cmName = (mounted?.volume.configMap as { name?: string } | undefined)?.name;
      const cm = cmName === undefined ? undefined : this.get('ConfigMap', ref.namespace, cmName);
      const text = (cm?.data as Record<string, string> | undefined)?.[mounted!.inside];
      if (text === undefined) return `tollgate webhook --config ${configFile} is not a file of a mounted ConfigMap`;
      raw = JSON.parse(text);
    }
    const config = validateWebhookConfig(raw, image);
    if (!config.ok) return `tollgate webhook refuses its config: ${JSON.stringify(config.problems)}`;
    const decision = decideInjection(pod, config.config.injector);
    if (decision.kind === 'deny') return decision.message;
    if (decision.kind === 'skip') return pod;
    return applyJsonPatch(pod, decision.patch as unknown as Operation[]);
  }
}
