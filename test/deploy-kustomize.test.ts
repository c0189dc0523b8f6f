/**
 * The kustomize renderer the deploy tests use (test/helpers/kustomize.ts) builds what
 * `kubectl kustomize` builds, and refuses what it does not implement; with it, deploy/'s
 * kustomizations set the image once and put every namespace before what goes in it.
 * The comparisons with kubectl run where kubectl is installed and are skipped elsewhere.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import {
  build,
  imageName,
  podContainers,
  readKustomization,
  updatedImage,
  type ImageEntry,
  type K8sObject,
} from './helpers/kustomize.ts';
import { expandedArgs, flagValues, isClusterScoped } from './helpers/kustomizeCluster.ts';
import { stageAfterReadmeKeys } from './helpers/kustomizeStage.ts';
import type { Test } from './helpers/world.ts';

const TREES = [
  'injector',
  'gateway',
  'examples',
  'overlays/dev',
  'overlays/production',
  'overlays/gateway-redis-dev',
  'overlays/gateway-redis-production',
];
const IMAGE = 'registry.example.com/tollgate';
/** the image the bases run unless an overlay says otherwise */
const BASE_IMAGE = `${IMAGE}:0.1.0`;
const SIDECAR_IMAGE_VARIABLE = 'TOLLGATE_SIDECAR_IMAGE';

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
const needsKubectl = { skip: kubectl ? false : 'kubectl is not installed' };

function kubectlKustomize(dir: string): unknown[] {
  const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${run.stderr}`);
  return parseAllDocuments(run.stdout, { version: '1.1' })
    .map((d) => d.toJS() as unknown)
    .filter((d) => d !== null);
}

/** a throwaway directory of files (path -> text) */
function fixture(t: Test, files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'tollgate-kustomize-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

const staged = await stageAfterReadmeKeys();
t.teardown(staged.remove);
const tree = (name: string): string => join(staged.root, 'deploy', name);

t.test(
  'every deploy/ tree renders to exactly the objects, in the order, that kubectl kustomize prints',
  needsKubectl,
  async (t) => {
    for (const name of TREES) t.same(build(tree(name)), kubectlKustomize(tree(name)), name);
  },
);

const FEATURES: Record<string, string> = {
  'base/kustomization.yaml': `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [deployment.yaml, namespace.yaml]
configurations: [images.yaml]
`,
  'base/images.yaml': 'images:\n  - path: spec/template/spec/containers[]/env[]/value\n    kind: Deployment\n',
  'base/namespace.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata: {name: zeta}\n',
  'base/deployment.yaml': `apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: zeta}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      initContainers:
        - {name: init, image: "example.org/tool@sha256:${'a'.repeat(64)}"}
      containers:
        - name: main
          image: example.org/app:1.0
          env:
            - {name: SAME, value: "example.org/app:1.0"}
            - {name: OTHER, value: "example.org/apples:1.0"}
        - {name: helper, image: "example.org/tool:2"}
`,
  'overlay/kustomization.yaml': `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../base, extra.yaml]
configMapGenerator:
  - name: settings
    namespace: zeta
    files: [conf/app.json, renamed.txt=conf/notes.txt]
    literals: [mode=dev, empty=]
secretGenerator:
  - {name: creds, namespace: zeta, files: [conf/key]}
generatorOptions:
  disableNameSuffixHash: true
patches:
  - target: {kind: Deploy.*, name: app}
    patch: |-
      - op: add
        path: /spec/replicas
        value: 2
images:
  - {name: example.org/app, newName: registry.test/app}
  - {name: example.org/tool, newTag: "3", digest: "sha256:${'b'.repeat(64)}"}
`,
  'overlay/extra.yaml': [
    'apiVersion: v1\nkind: Namespace\nmetadata: {name: alpha}\n',
    'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: zeta}\n',
  ].join('---\n'),
  'overlay/conf/app.json': '{"a": 1}\n',
  'overlay/conf/notes.txt': 'notes\n',
  'overlay/conf/key': 'c2VjcmV0\n',
};

t.test('the renderer builds each feature deploy/ uses as kustomize does', async (t) => {
  const root = fixture(t, FEATURES);
  const objects = build(join(root, 'overlay'));
  const order = [
    'Namespace/alpha',
    'Namespace/zeta',
    'ServiceAccount/sa',
    'ConfigMap/settings',
    'Secret/creds',
    'Deployment/app',
  ];
  t.same(
    objects.map((o) => `${o.kind}/${o.metadata.name}`),
    order,
    "kustomize's order",
  );
  const byKind = (kind: string): K8sObject => objects.find((o) => o.kind === kind)!;
  t.same(
    byKind('ConfigMap').data,
    { 'app.json': '{"a": 1}\n', 'renamed.txt': 'notes\n', mode: 'dev', empty: '' },
    'files, key=file and literals',
  );
  const data = { key: Buffer.from('c2VjcmV0\n').toString('base64') };
  const metadata = { name: 'creds', namespace: 'zeta' };
  t.same(
    byKind('Secret'),
    { apiVersion: 'v1', kind: 'Secret', metadata, type: 'Opaque', data },
    'a Secret in its namespace',
  );
  const deployment = byKind('Deployment');
  t.equal((deployment.spec as { replicas: number }).replicas, 2, 'a JSON 6902 patch, its target a regular expression');
  const [init, main, helper] = podContainers(deployment);
  t.equal(main!.image, 'registry.test/app:1.0', 'newName keeps the tag');
  t.equal(init!.image, `example.org/tool:3@sha256:${'b'.repeat(64)}`, 'newTag and digest replace a digest');
  t.equal(helper!.image, `example.org/tool:3@sha256:${'b'.repeat(64)}`, 'and a tag');
  const env = [
    { name: 'SAME', value: 'registry.test/app:1.0' },
    { name: 'OTHER', value: 'example.org/apples:1.0' },
  ];
  t.same(main!.env, env, 'an image field declared by a base configuration; other values untouched');
});

t.test('the renderer and kubectl kustomize agree on that fixture', needsKubectl, async (t) => {
  const root = fixture(t, FEATURES);
  t.same(build(join(root, 'overlay')), kubectlKustomize(join(root, 'overlay')));
});

t.test('the renderer refuses every kustomization feature it does not implement, naming it', async (t) => {
  const head = 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [cm.yaml]\n';
  const noHash = 'generatorOptions: {disableNameSuffixHash: true}\n';
  const cm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: b}\n';
  const cases: Record<string, [string, RegExp]> = {
    'a namespace for everything': [`${head}namespace: other\n`, /field namespace is not supported/],
    'a name prefix': [`${head}namePrefix: x-\n`, /field namePrefix is not supported/],
    labels: [`${head}labels:\n  - pairs: {a: b}\n`, /field labels is not supported/],
    'common labels': [`${head}commonLabels: {a: b}\n`, /field commonLabels is not supported/],
    replacements: [`${head}replacements: []\n`, /field replacements is not supported/],
    components: [`${head}components: [c]\n`, /field components is not supported/],
    'a strategic merge patch': [
      `${head}patches:\n  - target: {kind: ConfigMap}\n    patch: |-\n      metadata: {labels: {a: b}}\n`,
      /a strategic merge patch/,
    ],
    'a patch file': [`${head}patches:\n  - path: p.yaml\n`, /patches\[0\]\.path is not supported/],
    'a patch target by label': [
      `${head}patches:\n  - target: {labelSelector: a=b}\n    patch: "[]"\n`,
      /patches\[0\]\.target\.labelSelector is not supported/,
    ],
    'an image tag suffix': [`${head}images:\n  - {name: x, tagSuffix: y}\n`, /images\[0\]\.tagSuffix is not supported/],
    'a generator from an env file': [
      `${head}secretGenerator:\n  - {name: s, envs: [a.env]}\n${noHash}`,
      /secretGenerator\[0\]\.envs is not supported/,
    ],
    'a secret type': [
      `${head}secretGenerator:\n  - {name: s, type: kubernetes.io/tls}\n${noHash}`,
      /secretGenerator\[0\]\.type is not supported/,
    ],
    'a name suffix hash': [`${head}configMapGenerator:\n  - {name: g, literals: [a=b]}\n`, /name suffix hash/],
    'generator labels': [
      `${head}generatorOptions: {disableNameSuffixHash: true, labels: {a: b}}\n`,
      /generatorOptions\[0\]\.labels is not supported/,
    ],
    'a remote resource': [
      'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [https://example.com/x.yaml]\n',
      /remote resource/,
    ],
    'another transformer configuration': [
      `${head}configurations: [t.yaml]\n`,
      /transformer configuration namePrefix is not supported/,
    ],
    'a CronJob (a pod template in another place)': [
      'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [cj.yaml]\n',
      /kind CronJob/,
    ],
  };
  for (const [what, [kustomization, error]] of Object.entries(cases)) {
    const root = fixture(t, {
      'kustomization.yaml': kustomization,
      'cm.yaml': cm,
      't.yaml': 'namePrefix:\n  - path: metadata/name\n',
      'cj.yaml':
        'apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: j}\nspec: {schedule: "* * * * *", jobTemplate: {spec: {template: {}}}}\n',
    });
    t.throws(() => build(root), error, what);
  }
  const generating = (file: string): string =>
    `${head.replace('[cm.yaml]', '[]')}secretGenerator:\n  - {name: s, files: [${file}]}\n${noHash}`;
  const outside = fixture(t, { 'k/kustomization.yaml': generating('../secret'), secret: 'x' });
  t.throws(() => build(join(outside, 'k')), /outside/, 'a generator file outside the kustomization');
  const missing = fixture(t, { 'kustomization.yaml': generating('keys/k1') });
  t.throws(() => build(missing), /generator file keys\/k1 does not exist/, 'a generator file that does not exist');
});

/** the images entries that hold for a tree: its own, or else those of the overlay it builds on (gateway-redis-dev on dev) */
function imageEntries(dir: string): ImageEntry[] {
  const k = readKustomization(dir);
  if (k.images !== undefined) return k.images;
  const overlay = (k.resources ?? []).find((r) => /^\.\.\/[a-z-]+$/.test(r));
  return overlay === undefined ? [] : imageEntries(join(dir, overlay));
}

/** every place a rendered tree names tollgate's image: containers, the sidecar image variable, the injector's --image */
function tollgateImages(objects: readonly K8sObject[]): Array<{ where: string; image: string }> {
  const found: Array<{ where: string; image: string }> = [];
  for (const o of objects) {
    for (const c of podContainers(o)) {
      const where = `${o.metadata.name}/${c.name}`;
      if (imageName(c.image ?? '').endsWith('tollgate')) found.push({ where, image: c.image! });
      for (const e of (c.env as Array<{ name: string; value?: string }> | undefined) ?? []) {
        if (e.name === SIDECAR_IMAGE_VARIABLE) found.push({ where: `${where} env`, image: e.value! });
      }
      const sidecar = flagValues(expandedArgs(c)).get('image');
      if ((c.args as string[] | undefined)?.[0] === 'webhook')
        found.push({ where: `${where} --image`, image: sidecar ?? '(none)' });
    }
  }
  return found;
}

t.test(
  "the image is set once: an overlay's one images entry reaches every container and the injector's sidecar image, with no patch",
  async (t) => {
    for (const name of TREES) {
      const k = readKustomization(tree(name));
      const entries = (k.images ?? []).filter((i) => i.name === IMAGE);
      const inherited = imageEntries(tree(name)).filter((i) => i.name === IMAGE);
      const expected = inherited.length === 0 ? BASE_IMAGE : updatedImage(BASE_IMAGE, inherited[0]!);
      t.ok(
        entries.length <= 1 && (k.images ?? []).length === entries.length,
        `${name}: at most one images entry, for ${IMAGE}`,
      );
      for (const p of k.patches ?? []) {
        const paths = (parseYaml(p.patch) as Array<{ path: string }>).map((op) => op.path);
        t.same(
          paths.filter((path) => /\/(image|args|env)(\/|$)/.test(path)),
          [],
          `${name}: no patch touches an image, args or env`,
        );
      }
      const found = tollgateImages(build(tree(name)));
      if (name !== 'examples') t.ok(found.length >= 1, `${name}: runs tollgate`);
      for (const f of found) t.equal(f.image, expected, `${name}: ${f.where}`);
      if (name === 'injector' || name.startsWith('overlays/'))
        t.ok(
          found.some((f) => f.where.endsWith('--image')),
          `${name}: the injector's sidecar image too`,
        );
    }
    t.equal(
      updatedImage(BASE_IMAGE, readKustomization(tree('overlays/dev')).images![0]!),
      'tollgate:dev',
      'dev runs the local build',
    );
    t.equal(
      updatedImage(BASE_IMAGE, imageEntries(tree('overlays/gateway-redis-dev'))[0]!),
      'tollgate:dev',
      "gateway-redis-dev runs dev's image: it sets none of its own",
    );
  },
);

t.test('in every tree each namespace comes before the objects in it, so one apply creates it first', async (t) => {
  // cert-manager's own namespace exists once cert-manager is installed (README: Kubernetes)
  const prerequisites = new Set(['cert-manager']);
  for (const name of TREES) {
    const created = new Set<string>();
    for (const o of build(tree(name))) {
      if (o.kind === 'Namespace') created.add(o.metadata.name);
      else if (isClusterScoped(o.kind))
        t.equal(o.metadata.namespace, undefined, `${name}: ${o.kind} ${o.metadata.name} is cluster-scoped`);
      else {
        const ns = o.metadata.namespace;
        t.ok(
          ns !== undefined && (created.has(ns) || prerequisites.has(ns)),
          `${name}: ${o.kind} ${ns}/${o.metadata.name} after its namespace`,
        );
      }
    }
  }
});
