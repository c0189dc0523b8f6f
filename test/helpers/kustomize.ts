/**
 * A kustomize renderer for tests, so deploy/ is checked as `kubectl apply -k` would see it without
 * the kustomize binary. It does exactly what deploy/ uses, the way kustomize does it (compared
 * with `kubectl kustomize` when kubectl is installed: test/deploy-kustomize.test.ts):
 *
 * - `resources`: YAML files and directories holding a kustomization.yaml;
 * - `configMapGenerator` / `secretGenerator`: `name`, `namespace`, `files` (`path` or `key=path`)
 *   and `literals`, with `generatorOptions.disableNameSuffixHash: true`;
 * - `patches`: inline JSON 6902 operations with a `target` (kind, name, namespace);
 * - `images`: `name`, `newName`, `newTag`, `digest`, applied to containers' `image` and to the
 *   extra image fields that a `configurations` file declares (inherited by including kustomizations);
 * - output in kustomize's default ("legacy") order: namespaces first, webhooks last.
 *
 * Any other field, sub-field or form (a strategic merge patch, a patch file, name hashes, remote
 * resources) is an error naming the file and the field: this renderer never quietly builds
 * something different from what kubectl would apply.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve, sep } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { applyJsonPatch, type Operation } from './k8s.ts';

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
};

export interface ImageEntry {
  name: string;
  newName?: string;
  newTag?: string;
  digest?: string;
}

export interface GeneratorEntry {
  name: string;
  namespace?: string;
  files?: string[];
  literals?: string[];
}

export interface PatchEntry {
  target: { kind?: string; name?: string; namespace?: string };
  patch: string;
}

export interface Kustomization {
  apiVersion: 'kustomize.config.k8s.io/v1beta1';
  kind: 'Kustomization';
  resources?: string[];
  configurations?: string[];
  configMapGenerator?: GeneratorEntry[];
  secretGenerator?: GeneratorEntry[];
  generatorOptions?: { disableNameSuffixHash: true };
  patches?: PatchEntry[];
  images?: ImageEntry[];
}

/** an extra image field: `path` is kustomize's field path (`a/b[]/c`, `[]` walks a list) */
export interface ImageFieldSpec {
  path: string;
  kind: string;
}

/** every field this renderer understands, and the sub-fields it understands in each */
const KUSTOMIZATION_FIELDS: Readonly<Record<string, readonly string[] | null>> = {
  apiVersion: null,
  kind: null,
  resources: null,
  configurations: null,
  configMapGenerator: ['name', 'namespace', 'files', 'literals'],
  secretGenerator: ['name', 'namespace', 'files', 'literals'],
  generatorOptions: ['disableNameSuffixHash'],
  patches: ['target', 'patch'],
  images: ['name', 'newName', 'newTag', 'digest'],
};
const PATCH_TARGET_FIELDS = ['kind', 'name', 'namespace'];
const CONFIGURATION_FIELDS: Readonly<Record<string, readonly string[]>> = { images: ['path', 'kind'] };

/** kinds whose pod spec podSpecOf finds */
const POD_SPEC_KINDS = new Set(['Pod', 'Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);

/** kustomize's legacy order (sigs.k8s.io/kustomize/api/resid/gvk.go): kinds first, the rest by group/version/kind */
const ORDER_FIRST = [
  'Namespace',
  'ResourceQuota',
  'StorageClass',
  'CustomResourceDefinition',
  'ServiceAccount',
  'PodSecurityPolicy',
  'Role',
  'ClusterRole',
  'RoleBinding',
  'ClusterRoleBinding',
  'ConfigMap',
  'Secret',
  'Endpoints',
  'Service',
  'LimitRange',
  'PriorityClass',
  'PersistentVolume',
  'PersistentVolumeClaim',
  'Deployment',
  'StatefulSet',
  'CronJob',
  'PodDisruptionBudget',
];
const ORDER_LAST = ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'];

/** Kubernetes reads manifests as YAML 1.1 (sigs.k8s.io/yaml), so do we. */
export function readYamlDocuments(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { version: '1.1' });
  return docs
    .map((d, i) => {
      if (d.errors.length > 0) throw new Error(`${file} document ${i}: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS() as unknown;
    })
    .filter((d) => d !== null);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unsupported(file: string, what: string): never {
  throw new Error(
    `${file}: ${what} is not supported by test/helpers/kustomize.ts (add it there, checked against kubectl, before using it)`,
  );
}

function checkEntries(file: string, field: string, value: unknown, allowed: readonly string[]): void {
  const entries = field === 'generatorOptions' ? [value] : value;
  if (!Array.isArray(entries)) unsupported(file, `${field} that is not a list`);
  for (const [i, entry] of entries.entries()) {
    if (!isRecord(entry)) unsupported(file, `${field}[${i}] that is not a mapping`);
    for (const key of Object.keys(entry)) if (!allowed.includes(key)) unsupported(file, `${field}[${i}].${key}`);
    if (field === 'patches') {
      if (!isRecord(entry.target)) unsupported(file, `patches[${i}] without a target`);
      for (const key of Object.keys(entry.target))
        if (!PATCH_TARGET_FIELDS.includes(key)) unsupported(file, `patches[${i}].target.${key}`);
      if (typeof entry.patch !== 'string') unsupported(file, `patches[${i}] without an inline patch`);
    }
  }
}

/** The kustomization in `dir`, refused when it uses anything this renderer does not do. */
export function readKustomization(dir: string): Kustomization {
  for (const other of ['kustomization.yml', 'Kustomization'])
    if (existsSync(join(dir, other))) unsupported(join(dir, other), 'this file name');
  const file = join(dir, 'kustomization.yaml');
  if (!existsSync(file)) throw new Error(`${dir}: no kustomization.yaml`);
  const k = parseYaml(readFileSync(file, 'utf8'), { version: '1.1' }) as unknown;
  if (!isRecord(k)) throw new Error(`${file}: not a mapping`);
  for (const [field, value] of Object.entries(k)) {
    if (!(field in KUSTOMIZATION_FIELDS)) unsupported(file, `field ${field}`);
    const allowed = KUSTOMIZATION_FIELDS[field];
    if (allowed !== null && allowed !== undefined) checkEntries(file, field, value, allowed);
  }
  if (k.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || k.kind !== 'Kustomization') {
    unsupported(file, `apiVersion/kind ${String(k.apiVersion)} ${String(k.kind)}`);
  }
  if (
    k.generatorOptions !== undefined &&
    (k.generatorOptions as Record<string, unknown>).disableNameSuffixHash !== true
  ) {
    unsupported(file, 'generatorOptions.disableNameSuffixHash other than true');
  }
  return k as unknown as Kustomization;
}

/** Problems with a kustomization's references: every resource exists. */
export function kustomizationProblems(dir: string): string[] {
  const k = readKustomization(dir);
  const problems: string[] = [];
  for (const r of k.resources ?? []) {
    const path = resolve(dir, r);
    if (!existsSync(path)) problems.push(`${dir}: resource ${r} does not exist`);
    else if (statSync(path).isDirectory() && !existsSync(join(path, 'kustomization.yaml')))
      problems.push(`${dir}: resource ${r} has no kustomization`);
  }
  for (const c of k.configurations ?? [])
    if (!existsSync(resolve(dir, c))) problems.push(`${dir}: configuration ${c} does not exist`);
  return problems;
}

/** The files a kustomization reads itself (resource files, configurations), not those of included kustomizations. */
export function kustomizationFiles(dir: string): string[] {
  const k = readKustomization(dir);
  return [...(k.resources ?? []), ...(k.configurations ?? [])]
    .map((r) => resolve(dir, r))
    .filter((p) => !statSync(p).isDirectory());
}

interface Accumulated {
  objects: K8sObject[];
  imageFields: ImageFieldSpec[];
}

/** What `kubectl kustomize dir` prints, as objects in the same order. */
export function build(dir: string): K8sObject[] {
  return sortLegacy(accumulate(resolve(dir)).objects);
}

function idOf(o: K8sObject): string {
  return `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
}

function addObject(file: string, into: K8sObject[], o: K8sObject): void {
  if (
    !isRecord(o) ||
    typeof o.kind !== 'string' ||
    typeof o.apiVersion !== 'string' ||
    typeof o.metadata?.name !== 'string'
  ) {
    throw new Error(`${file}: a document without apiVersion, kind and metadata.name`);
  }
  // kustomize sets images in every pod template; this renderer knows these places only
  const podTemplate = isRecord(o.spec) && ('template' in o.spec || 'jobTemplate' in o.spec);
  if (podTemplate && !POD_SPEC_KINDS.has(o.kind)) unsupported(file, `kind ${o.kind} (a pod template)`);
  if (into.some((x) => idOf(x) === idOf(o)))
    throw new Error(`${file}: ${idOf(o)} is defined twice (kustomize refuses that)`);
  into.push(o);
}

function accumulate(dir: string): Accumulated {
  const k = readKustomization(dir);
  const file = join(dir, 'kustomization.yaml');
  const objects: K8sObject[] = [];
  const imageFields: ImageFieldSpec[] = [];
  for (const r of k.resources ?? []) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(r)) unsupported(file, `remote resource ${r}`);
    const path = resolve(dir, r);
    if (!existsSync(path)) throw new Error(`${file}: resource ${r} does not exist`);
    if (statSync(path).isDirectory()) {
      const sub = accumulate(path);
      for (const o of sub.objects) addObject(file, objects, o);
      imageFields.push(...sub.imageFields);
    } else {
      for (const o of readYamlDocuments(path)) addObject(path, objects, o as K8sObject);
    }
  }
  for (const c of k.configurations ?? []) imageFields.push(...readConfiguration(resolve(dir, c)));
  // kustomize's order: generators (ConfigMaps, then Secrets), then patches, then images
  for (const g of k.configMapGenerator ?? [])
    addObject(file, objects, generate(dir, 'ConfigMap', g, k.generatorOptions));
  for (const g of k.secretGenerator ?? []) addObject(file, objects, generate(dir, 'Secret', g, k.generatorOptions));
  let patched = objects;
  for (const p of k.patches ?? []) patched = applyPatch(file, patched, p);
  for (const image of k.images ?? []) patched = patched.map((o) => setImages(o, image, imageFields));
  return { objects: patched, imageFields };
}

function readConfiguration(file: string): ImageFieldSpec[] {
  const c = parseYaml(readFileSync(file, 'utf8'), { version: '1.1' }) as unknown;
  if (!isRecord(c)) throw new Error(`${file}: not a mapping`);
  const specs: ImageFieldSpec[] = [];
  for (const [field, value] of Object.entries(c)) {
    const allowed = CONFIGURATION_FIELDS[field];
    if (allowed === undefined) unsupported(file, `transformer configuration ${field}`);
    checkEntries(file, field, value, allowed);
    for (const spec of value as Array<Record<string, unknown>>) {
      if (typeof spec.path !== 'string' || typeof spec.kind !== 'string')
        unsupported(file, `${field} entry without path and kind`);
      specs.push({ path: spec.path, kind: spec.kind });
    }
  }
  return specs;
}

/** a generator's file, inside the kustomization's directory as kustomize's load restrictor demands */
function generatorFile(dir: string, file: string, source: string): { key: string; bytes: Buffer } {
  const eq = source.indexOf('=');
  const key = eq === -1 ? basename(source) : source.slice(0, eq);
  const path = resolve(dir, eq === -1 ? source : source.slice(eq + 1));
  if (!path.startsWith(dir + sep)) throw new Error(`${file}: ${source} is outside ${dir} (kustomize refuses that)`);
  if (!existsSync(path)) throw new Error(`${file}: generator file ${source} does not exist (${path})`);
  return { key, bytes: readFileSync(path) };
}

function generate(
  dir: string,
  kind: 'ConfigMap' | 'Secret',
  g: GeneratorEntry,
  options: Kustomization['generatorOptions'],
): K8sObject {
  const file = join(dir, 'kustomization.yaml');
  if (options?.disableNameSuffixHash !== true)
    unsupported(file, `${kind} ${g.name} with a name suffix hash (generatorOptions.disableNameSuffixHash: true)`);
  const entries: Array<[string, Buffer]> = [];
  for (const source of g.files ?? []) {
    const { key, bytes } = generatorFile(dir, file, source);
    entries.push([key, bytes]);
  }
  for (const literal of g.literals ?? []) {
    const eq = literal.indexOf('=');
    if (eq <= 0) throw new Error(`${file}: literal ${literal} is not key=value`);
    entries.push([literal.slice(0, eq), Buffer.from(literal.slice(eq + 1))]);
  }
  const data: Record<string, string> = {};
  for (const [key, bytes] of entries) {
    if (key in data) throw new Error(`${file}: ${kind} ${g.name} has key ${key} twice`);
    if (kind === 'Secret') data[key] = bytes.toString('base64');
    else if (Buffer.from(bytes.toString('utf8')).equals(bytes)) data[key] = bytes.toString('utf8');
    else unsupported(file, `binary data in ConfigMap ${g.name} (binaryData)`);
  }
  const metadata = { name: g.name, ...(g.namespace !== undefined ? { namespace: g.namespace } : {}) };
  return kind === 'Secret'
    ? { apiVersion: 'v1', kind, metadata, type: 'Opaque', data }
    : { apiVersion: 'v1', kind, metadata, data };
}

/** kustomize selects by anchored regular expressions */
function matches(pattern: string | undefined, value: string | undefined): boolean {
  return pattern === undefined || new RegExp(`^(?:${pattern})$`).test(value ?? '');
}

function applyPatch(file: string, objects: K8sObject[], p: PatchEntry): K8sObject[] {
  const ops = parseYaml(p.patch, { version: '1.1' }) as unknown;
  if (!Array.isArray(ops)) unsupported(file, `a strategic merge patch (target ${JSON.stringify(p.target)})`);
  let matched = 0;
  const out = objects.map((o) => {
    if (
      !matches(p.target.kind, o.kind) ||
      !matches(p.target.name, o.metadata.name) ||
      !matches(p.target.namespace, o.metadata.namespace)
    )
      return o;
    matched++;
    return applyJsonPatch(o, ops as Operation[]);
  });
  // kustomize ignores a patch that matches nothing; a patch we wrote for nothing is a mistake
  if (matched === 0) throw new Error(`${file}: patch target ${JSON.stringify(p.target)} matches nothing`);
  return out;
}

/** `registry:5000/a/b:tag@sha256:…` -> its name (without tag or digest) */
export function imageName(ref: string): string {
  const noDigest = ref.split('@')[0]!;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

export function imageTag(ref: string): string | null {
  const noDigest = ref.split('@')[0]!;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > slash ? noDigest.slice(colon + 1) : null;
}

/** kustomize's image update: a new tag or digest replaces both the old tag and digest */
export function updatedImage(ref: string, image: ImageEntry): string {
  if (imageName(ref) !== image.name) return ref;
  let tag = imageTag(ref);
  let digest: string | null = ref.includes('@') ? ref.slice(ref.indexOf('@') + 1) : null;
  if (image.newTag !== undefined || image.digest !== undefined) {
    tag = image.newTag ?? null;
    digest = image.digest ?? null;
  }
  return `${image.newName ?? image.name}${tag === null ? '' : `:${tag}`}${digest === null ? '' : `@${digest}`}`;
}

/** every string at a kustomize field path (`spec/template/spec/containers[]/env[]/value`), with a setter */
function fieldsAt(node: unknown, segments: readonly string[]): Array<{ value: string; set: (v: string) => void }> {
  if (!isRecord(node) || segments.length === 0) return [];
  const [head, ...rest] = segments as [string, ...string[]];
  const list = head.endsWith('[]');
  const key = list ? head.slice(0, -2) : head;
  const child = node[key];
  if (list) return Array.isArray(child) ? child.flatMap((item) => fieldsAt(item, rest)) : [];
  if (rest.length > 0) return fieldsAt(child, rest);
  return typeof child === 'string' ? [{ value: child, set: (v) => (node[key] = v) }] : [];
}

function setImages(o: K8sObject, image: ImageEntry, imageFields: readonly ImageFieldSpec[]): K8sObject {
  const copy = structuredClone(o);
  for (const c of podContainers(copy)) if (typeof c.image === 'string') c.image = updatedImage(c.image, image);
  for (const spec of imageFields) {
    if (spec.kind !== copy.kind) continue;
    for (const field of fieldsAt(copy, spec.path.split('/'))) field.set(updatedImage(field.value, image));
  }
  return copy;
}

function kindRank(kind: string): number {
  const first = ORDER_FIRST.indexOf(kind);
  if (first !== -1) return first - ORDER_FIRST.length;
  const last = ORDER_LAST.indexOf(kind);
  return last === -1 ? 0 : 1 + last;
}

/** kustomize's group_version_kind string, `~G` for the core group */
function gvkString(o: K8sObject): string {
  const slash = o.apiVersion.indexOf('/');
  const group = slash === -1 ? '~G' : o.apiVersion.slice(0, slash);
  return `${group}_${o.apiVersion.slice(slash + 1)}_${o.kind}`;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortLegacy(objects: K8sObject[]): K8sObject[] {
  return [...objects].sort(
    (a, b) =>
      kindRank(a.kind) - kindRank(b.kind) ||
      compareStrings(gvkString(a), gvkString(b)) ||
      compareStrings(a.metadata.namespace ?? '', b.metadata.namespace ?? '') ||
      compareStrings(a.metadata.name, b.metadata.name),
  );
}

/** The pod spec of a Pod or of a workload's template, or null. */
export function podSpecOf(o: K8sObject): Record<string, unknown> | null {
  if (o.kind === 'Pod') return (o.spec as Record<string, unknown>) ?? null;
  const template = (o.spec as { template?: { spec?: Record<string, unknown> } } | undefined)?.template;
  return template?.spec ?? null;
}

export type Container = Record<string, unknown> & { name: string; image?: string };

export function podContainers(o: K8sObject): Container[] {
  const spec = podSpecOf(o);
  if (spec === null) return [];
  return [
    ...((spec.initContainers as Container[] | undefined) ?? []),
    ...((spec.containers as Container[] | undefined) ?? []),
  ];
}
