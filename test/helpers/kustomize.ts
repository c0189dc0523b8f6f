/**
 * Enough of kustomize to build this repository's deploy/ trees without the kustomize binary:
 * `resources` (files and directories), inline JSON 6902 `patches` with a kind/name target, and
 * `images` (newName, newTag, digest). Any other kustomization field is an error here, so the
 * manifests cannot drift into features this check does not understand.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { applyJsonPatch, type Operation } from './k8s.ts';

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
};

export interface Kustomization {
  apiVersion?: string;
  kind?: string;
  resources?: string[];
  images?: Array<{ name: string; newName?: string; newTag?: string; digest?: string }>;
  patches?: Array<{ target: { kind?: string; name?: string; namespace?: string }; patch: string }>;
}

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'images', 'patches']);

/** Kubernetes reads manifests as YAML 1.1 (sigs.k8s.io/yaml), so do we. */
export function readYamlDocuments(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { version: '1.1' });
  return docs.map((d, i) => {
    if (d.errors.length > 0) throw new Error(`${file} document ${i}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as unknown;
  }).filter((d) => d !== null);
}

export function readKustomization(dir: string): Kustomization {
  const file = join(dir, 'kustomization.yaml');
  const k = parseYaml(readFileSync(file, 'utf8'), { version: '1.1' }) as Kustomization;
  for (const key of Object.keys(k)) if (!KNOWN_FIELDS.has(key)) throw new Error(`${file}: field ${key} is not understood by this check`);
  return k;
}

/** Problems with a kustomization's references: every resource exists. */
export function kustomizationProblems(dir: string): string[] {
  const k = readKustomization(dir);
  const problems: string[] = [];
  if (k.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || k.kind !== 'Kustomization') problems.push(`${dir}: apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization`);
  for (const r of k.resources ?? []) {
    const path = resolve(dir, r);
    if (!existsSync(path)) problems.push(`${dir}: resource ${r} does not exist`);
    else if (statSync(path).isDirectory() && !existsSync(join(path, 'kustomization.yaml'))) problems.push(`${dir}: resource ${r} is a directory without kustomization.yaml`);
  }
  return problems;
}

export function build(dir: string): K8sObject[] {
  const k = readKustomization(dir);
  let objects: K8sObject[] = [];
  for (const r of k.resources ?? []) {
    const path = resolve(dir, r);
    objects.push(...(statSync(path).isDirectory() ? build(path) : (readYamlDocuments(path) as K8sObject[])));
  }
  for (const p of k.patches ?? []) {
    const ops = parseYaml(p.patch, { version: '1.1' }) as Operation[];
    let matched = 0;
    objects = objects.map((o) => {
      if (!targets(p.target, o)) return o;
      matched++;
      return applyJsonPatch(o, ops);
    });
    if (matched === 0) throw new Error(`${dir}: patch target ${JSON.stringify(p.target)} matches nothing`);
  }
  for (const image of k.images ?? []) objects = objects.map((o) => setImages(o, image));
  return objects;
}

function targets(target: { kind?: string; name?: string; namespace?: string }, o: K8sObject): boolean {
  return (
    (target.kind === undefined || target.kind === o.kind) &&
    (target.name === undefined || target.name === o.metadata.name) &&
    (target.namespace === undefined || target.namespace === o.metadata.namespace)
  );
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

function setImages(o: K8sObject, image: NonNullable<Kustomization['images']>[number]): K8sObject {
  const copy = structuredClone(o);
  for (const c of podContainers(copy)) {
    if (typeof c.image !== 'string' || imageName(c.image) !== image.name) continue;
    const name = image.newName ?? image.name;
    const tag = image.newTag ?? imageTag(c.image);
    c.image = image.digest !== undefined ? `${name}@${image.digest}` : tag === null ? name : `${name}:${tag}`;
  }
  return copy;
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
  return [...((spec.initContainers as Container[] | undefined) ?? []), ...((spec.containers as Container[] | undefined) ?? [])];
}
