/**
 * deploy/ without a cluster: every manifest parses (as YAML 1.1, the way Kubernetes reads it),
 * validates against the Kubernetes object models with no unknown fields, every kustomization's
 * resources exist and every tree builds (patches apply, the dev overlay's Secrets generated from
 * the keys the README's command makes), and the pieces agree with each other and with tollgate
 * itself: the webhook's flags and config, the certificate's names, the gateway config, the
 * example workload run through the injector.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseHostPort } from '../src/config/hostPort.ts';
import type { Config } from '../src/config/types.ts';
import { validateConfig } from '../src/config/validate.ts';
import { imageReferenceProblem } from '../src/webhook/imageReference.ts';
import { decideInjection } from '../src/webhook/injection.ts';
import { validateWebhookConfig } from '../src/webhook/webhookConfig.ts';
import { applyJsonPatch, kubernetesProblems, type Operation } from './helpers/k8s.ts';
import {
  build as buildIn,
  imageTag,
  kustomizationFiles,
  kustomizationProblems,
  podContainers,
  podSpecOf,
  readKustomization,
  readYamlDocuments,
  type K8sObject,
} from './helpers/kustomize.ts';
import { expandedArgs, flagValues as flags, mountedFile } from './helpers/kustomizeCluster.ts';
import { makeCa, makeLeaf, tempDir, writeIdentityDir } from './helpers/pki.ts';
import { exitWithin, freePort, startTollgate, tryConnect } from './helpers/process.ts';
import { stageAfterReadmeKeys } from './helpers/kustomizeStage.ts';
import { REDIS_SERVER, redisMissing } from './helpers/redisServer.ts';
import { eventually, type Test } from './helpers/world.ts';

const DEPLOY = fileURLToPath(new URL('../deploy/', import.meta.url));
const TREES = [
  'injector',
  'gateway',
  'examples',
  'overlays/dev',
  'overlays/production',
  'overlays/gateway-redis-dev',
  'overlays/gateway-redis-production',
];
/** Debian's redis-cli (redis-tools, which redis-server brings): the dev overlay's Valkey probe is run with it */
const REDIS_CLI = '/usr/bin/redis-cli';

// trees are built from a copy of deploy/ as a fresh clone has it, after the README's key commands
const staged = await stageAfterReadmeKeys();
t.teardown(staged.remove);
const build = (dir: string): K8sObject[] => buildIn(join(staged.root, 'deploy', relative(DEPLOY, dir)));
/** transformer configurations (`configurations:`) are kustomize's files, not Kubernetes objects */
const CONFIGURATIONS = new Set(
  TREES.flatMap((tree) =>
    (readKustomization(join(DEPLOY, tree)).configurations ?? []).map((c) => join(DEPLOY, tree, c)),
  ),
);

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return yamlFiles(path);
    return name.endsWith('.yaml') || name.endsWith('.yml') ? [path] : [];
  });
}

function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`no ${kind} ${name}`);
  return o;
}

function get<T>(o: unknown, ...path: Array<string | number>): T {
  let cur: unknown = o;
  for (const key of path) cur = (cur as Record<string | number, unknown> | undefined)?.[key];
  return cur as T;
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  return selector !== undefined && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

t.test(
  'every YAML file in deploy/ parses and every object is a valid Kubernetes object with no unknown fields',
  async (t) => {
    const files = yamlFiles(DEPLOY);
    t.ok(files.length >= 25, `found ${files.length} files`);
    for (const file of files) {
      const docs = readYamlDocuments(file);
      t.ok(docs.length > 0, `${relative(DEPLOY, file)} has documents`);
      if (file.endsWith('kustomization.yaml') || CONFIGURATIONS.has(file)) continue;
      for (const doc of docs) {
        const o = doc as K8sObject;
        t.same(kubernetesProblems(o), [], `${relative(DEPLOY, file)}: ${o.kind} ${o.metadata?.name}`);
      }
    }
  },
);

t.test('every kustomization names resources that exist, and every tree builds into valid objects', async (t) => {
  for (const tree of TREES) {
    const dir = join(DEPLOY, tree);
    t.ok(existsSync(join(dir, 'kustomization.yaml')), `${tree} is a kustomization`);
    t.same(kustomizationProblems(dir), [], `${tree}: resources exist`);
    const objects = build(dir);
    t.ok(objects.length > 0, `${tree} builds`);
    for (const o of objects) t.same(kubernetesProblems(o), [], `${tree}: ${o.kind} ${o.metadata.name}`);
    const keys = objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
    t.equal(new Set(keys).size, keys.length, `${tree}: no object defined twice`);
  }
  const files = yamlFiles(DEPLOY).filter((f) => !f.endsWith('kustomization.yaml'));
  const referenced = new Set(TREES.flatMap((tree) => kustomizationFiles(join(DEPLOY, tree))));
  for (const f of files) t.ok(referenced.has(f), `${relative(DEPLOY, f)} is part of a kustomization`);
});

t.test(
  'every container runs as a numeric non-root user with a read-only root filesystem, no capabilities and a pinned image',
  async (t) => {
    for (const tree of TREES) {
      for (const o of build(join(DEPLOY, tree))) {
        const spec = podSpecOf(o);
        if (spec === null) continue;
        const podSc = (spec.securityContext as Record<string, unknown> | undefined) ?? {};
        t.equal(
          get(spec, 'seccompProfile') ?? get(podSc, 'seccompProfile', 'type'),
          'RuntimeDefault',
          `${tree} ${o.metadata.name}: seccomp RuntimeDefault`,
        );
        t.equal(spec.automountServiceAccountToken, false, `${tree} ${o.metadata.name}: no API token mounted`);
        for (const c of podContainers(o)) {
          const sc = (c.securityContext as Record<string, unknown> | undefined) ?? {};
          const where = `${tree} ${o.metadata.name}/${c.name}`;
          t.equal(sc.runAsNonRoot ?? podSc.runAsNonRoot, true, `${where}: runAsNonRoot`);
          const uid = sc.runAsUser ?? podSc.runAsUser;
          t.ok(typeof uid === 'number' && uid > 0, `${where}: numeric non-root runAsUser (${String(uid)})`);
          t.equal(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
          t.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation false`);
          t.same(get(sc, 'capabilities', 'drop'), ['ALL'], `${where}: capabilities drop ALL`);
          const tag = imageTag(c.image ?? '');
          t.ok(tag !== null && tag !== 'latest', `${where}: image ${c.image} has a version tag`);
          t.notMatch(JSON.stringify(c.env ?? []), /secretKeyRef/, `${where}: no Secret in env`);
          t.notOk(c.envFrom, `${where}: no envFrom`);
        }
      }
    }
  },
);

t.test(
  'the injector: webhook contract, certificate and Service agree, and its flags and config are valid for tollgate webhook',
  async (t) => {
    const objects = build(join(DEPLOY, 'injector'));
    const mwc = find(objects, 'MutatingWebhookConfiguration', 'tollgate-injector');
    const hooks = get<Array<Record<string, unknown>>>(mwc, 'webhooks');
    t.equal(hooks.length, 1);
    const hook = hooks[0]!;
    t.match(hook, {
      name: 'inject.tollgate.dev',
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Fail',
      reinvocationPolicy: 'IfNeeded',
      matchPolicy: 'Equivalent',
    });
    t.ok((hook.timeoutSeconds as number) >= 1 && (hook.timeoutSeconds as number) <= 10, 'a short timeout');
    t.same(hook.rules, [
      { operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' },
    ]);
    const expressions = get<Array<{ key: string; operator: string; values: string[] }>>(
      hook,
      'namespaceSelector',
      'matchExpressions',
    );
    t.match(expressions, [
      { key: 'tollgate.dev/injection', operator: 'In', values: ['enabled'] },
      { key: 'kubernetes.io/metadata.name', operator: 'NotIn' },
    ]);
    t.ok(
      expressions[1]!.values.includes('tollgate-system') && expressions[1]!.values.includes('kube-system'),
      'never its own namespace or kube-system',
    );
    t.match(
      get<string>(hook, 'matchConditions', 0, 'expression'),
      /'tollgate\.dev\/inject'.*== 'enabled'/s,
      'only opted-in pods are sent',
    );

    const service = get<{ name: string; namespace: string; path: string; port: number }>(
      hook,
      'clientConfig',
      'service',
    );
    t.equal(service.path, '/mutate');
    const svc = find(objects, 'Service', service.name);
    t.equal(svc.metadata.namespace, service.namespace, 'the webhook calls the injector Service');
    t.equal(get<number>(svc, 'spec', 'ports', 0, 'port'), service.port);

    const [certNs, certName] = mwc.metadata.annotations!['cert-manager.io/inject-ca-from']!.split('/');
    const cert = find(objects, 'Certificate', certName!);
    t.equal(cert.metadata.namespace, certNs, 'inject-ca-from names the serving Certificate');
    t.ok(
      get<string[]>(cert, 'spec', 'dnsNames').includes(`${service.name}.${service.namespace}.svc`),
      'the certificate names <svc>.<ns>.svc',
    );
    const issuer = find(objects, 'Issuer', get<string>(cert, 'spec', 'issuerRef', 'name'));
    const caCert = objects.find(
      (o) => o.kind === 'Certificate' && get(o, 'spec', 'secretName') === get(issuer, 'spec', 'ca', 'secretName'),
    );
    t.ok(caCert, "the serving certificate's CA issuer is backed by a CA Certificate");
    t.equal(get(caCert, 'spec', 'isCA'), true);

    const deployment = find(objects, 'Deployment', 'tollgate-injector');
    t.equal(get(deployment, 'spec', 'replicas'), 2, 'two replicas');
    t.ok(
      selects(get(svc, 'spec', 'selector'), get(deployment, 'spec', 'template', 'metadata', 'labels')),
      'the Service selects the injector pods',
    );
    const spec = podSpecOf(deployment)!;
    const container = podContainers(deployment)[0]!;
    const args = expandedArgs(container);
    t.equal(args[0], 'webhook');
    const f = flags(args);
    t.same([...f.keys()].sort(), ['cert', 'config', 'image', 'key', 'listen']);
    t.equal(
      flags(container.args as string[]).get('image'),
      '$(TOLLGATE_SIDECAR_IMAGE)',
      '--image comes from the variable that kustomize sets with the image',
    );
    t.equal(imageReferenceProblem(f.get('image')!), null, '--image is a pinned reference');
    t.equal(f.get('image'), container.image, 'the injected sidecar image is the injector image');
    const listen = parseHostPort(f.get('listen')!);
    t.equal(
      typeof listen === 'object' ? listen.port : null,
      get(container, 'ports', 0, 'containerPort'),
      '--listen is the container port',
    );
    t.equal(get(svc, 'spec', 'ports', 0, 'targetPort'), get(container, 'ports', 0, 'name'));
    for (const flag of ['cert', 'key']) {
      const m = mountedFile(container, spec, f.get(flag)!);
      t.equal(
        get(m?.volume, 'secret', 'secretName'),
        get(cert, 'spec', 'secretName'),
        `--${flag} is a file of the certificate's Secret`,
      );
      t.ok(
        (get<Array<{ path: string }>>(m?.volume, 'secret', 'items') ?? []).some((i) => i.path === m?.inside),
        `--${flag} names an item of the volume`,
      );
    }
    const configFile = mountedFile(container, spec, f.get('config')!);
    const configMap = find(objects, 'ConfigMap', get<string>(configFile?.volume, 'configMap', 'name'));
    const webhookConfig = validateWebhookConfig(
      JSON.parse(get<string>(configMap, 'data', configFile!.inside)),
      f.get('image')!,
    );
    t.ok(
      webhookConfig.ok,
      `the injector config is valid: ${JSON.stringify(webhookConfig.ok ? [] : webhookConfig.problems)}`,
    );
    for (const probe of ['readinessProbe', 'livenessProbe'])
      t.equal(get(container, probe, 'httpGet', 'scheme'), 'HTTPS', `${probe} over HTTPS`);

    const pdb = find(objects, 'PodDisruptionBudget', 'tollgate-injector');
    t.ok(
      selects(get(pdb, 'spec', 'selector', 'matchLabels'), get(deployment, 'spec', 'template', 'metadata', 'labels')),
      'the PDB covers the injector pods',
    );
    const policy = find(objects, 'NetworkPolicy', 'tollgate-injector');
    t.same(
      get(policy, 'spec', 'ingress'),
      [{ ports: [{ port: 8443, protocol: 'TCP' }] }],
      'only the webhook port is admitted',
    );
    t.same(get(policy, 'spec', 'egress'), [], 'no egress');
  },
);

/** The gateway's Deployment, its container and the config its ConfigMap mounts, as the pod would read it. */
function gatewayParts(objects: K8sObject[]) {
  const deployment = find(objects, 'Deployment', 'tollgate-gateway');
  const spec = podSpecOf(deployment)!;
  const container = podContainers(deployment)[0]!;
  const configPath = flags(container.args as string[]).get('config')!;
  const file = mountedFile(container, spec, configPath);
  const configMap = find(objects, 'ConfigMap', get<string>(file?.volume, 'configMap', 'name'));
  const text = get<string>(configMap, 'data', file!.inside);
  return { deployment, spec, container, configPath, text };
}

type Port = { port: number; protocol: string };
type PolicyRule = { from?: unknown[]; to?: Array<Record<string, unknown>>; ports: Port[] };

/** Whether an egress rule's pod selector takes the pods labelled `app.kubernetes.io/name: name`. */
function selectsPodsNamed(rule: PolicyRule, name: string): boolean {
  const selector = get<{ matchLabels?: Record<string, string>; matchExpressions?: Array<Record<string, unknown>> }>(
    rule.to?.[0],
    'podSelector',
  );
  const key = 'app.kubernetes.io/name';
  if (selector?.matchLabels?.[key] === name) return true;
  return (selector?.matchExpressions ?? []).some(
    (e) => e.key === key && e.operator === 'In' && (e.values as string[]).includes(name),
  );
}

t.test(
  'the gateway: one gateway listener with its routes, probes on the health server, and Service, HPA, PDB and NetworkPolicy agree with the Deployment',
  async (t) => {
    const objects = build(join(DEPLOY, 'gateway'));
    const { deployment, spec, container, configPath, text } = gatewayParts(objects);
    t.equal(get(deployment, 'spec', 'replicas'), undefined, 'the HPA owns the replica count');
    const result = validateConfig(JSON.parse(text), { baseDir: '/etc/tollgate', source: configPath });
    t.ok(result.ok, `valid config: ${JSON.stringify(result.ok ? [] : result.problems)}`);
    if (!result.ok) return;
    const config = result.config;
    for (const path of [config.identity.certFile, config.identity.keyFile, config.identity.caFile]) {
      const secretName = get(mountedFile(container, spec, path)?.volume, 'secret', 'secretName');
      t.equal(secretName, 'tollgate-gateway-identity', `${path} is mounted from the identity Secret`);
    }
    const cert = find(objects, 'Certificate', 'tollgate-gateway');
    t.equal(get(cert, 'spec', 'secretName'), 'tollgate-gateway-identity');
    t.ok(mountedFile(container, spec, `${config.keys.dir}/k1`), 'the key ring directory is mounted');

    t.same(
      config.listeners.map((l) => l.mode),
      ['gateway'],
      'one gateway listener: no inbound-to-outbound chaining over loopback',
    );
    const gateway = config.listeners[0]!;
    t.ok(
      gateway.routes.length >= 2,
      `a route per ingestion endpoint (${gateway.routes.map((r) => r.name).join(', ')})`,
    );
    t.equal(config.workers, 'auto', 'one event loop per CPU of the limit');
    t.ok(
      gateway.routes.some((r) => r.upstreamTls !== null && r.integrity.sign),
      'a route forwards over mTLS and re-signs with the gateway key',
    );

    const health = config.health.listen;
    t.ok(health !== null && health.host === '0.0.0.0', 'the health server listens on the pod IP');
    const listenerPorts = config.listeners.map((l) => l.listen.port);
    const ports = container.ports as Array<{ name: string; containerPort: number }>;
    t.same(
      ports.map((p) => p.containerPort),
      [...listenerPorts, health!.port],
      'the container publishes the gateway port and the health port',
    );
    const healthPortName = ports.find((p) => p.containerPort === health!.port)?.name;
    for (const [probe, path] of [
      ['startupProbe', '/readyz'],
      ['readinessProbe', '/readyz'],
      ['livenessProbe', '/livez'],
    ] as const) {
      t.same(
        get(container, probe, 'httpGet'),
        { path, port: healthPortName },
        `${probe}: GET ${path} on the health port (a TCP connect to the mTLS port is a failed handshake)`,
      );
      t.equal(get(container, probe, 'tcpSocket'), undefined, `${probe}: no TCP probe`);
    }

    const svc = find(objects, 'Service', 'tollgate-gateway');
    const labels = get<Record<string, string>>(deployment, 'spec', 'template', 'metadata', 'labels');
    t.ok(selects(get(svc, 'spec', 'selector'), labels), 'the Service selects the gateway pods');
    t.same(
      get<Array<{ port: number }>>(svc, 'spec', 'ports').map((p) => p.port),
      listenerPorts,
      'the Service exposes the gateway port only, not the health port',
    );
    const hpa = find(objects, 'HorizontalPodAutoscaler', 'tollgate-gateway');
    t.same(get(hpa, 'spec', 'scaleTargetRef'), { apiVersion: 'apps/v1', kind: 'Deployment', name: 'tollgate-gateway' });
    t.ok(get<number>(hpa, 'spec', 'minReplicas') >= 2, 'at least two replicas');
    t.ok(
      selects(get(find(objects, 'PodDisruptionBudget', 'tollgate-gateway'), 'spec', 'selector', 'matchLabels'), labels),
      'the PDB covers the pods',
    );
    const policy = find(objects, 'NetworkPolicy', 'tollgate-gateway');
    t.ok(selects(get(policy, 'spec', 'podSelector', 'matchLabels'), labels), 'the NetworkPolicy applies to the pods');
    t.same(
      get(policy, 'spec', 'ingress'),
      [{ ports: listenerPorts.map((port) => ({ port, protocol: 'TCP' })) }],
      'only the gateway port is admitted (kubelet probes from the node need no rule)',
    );
    const egress = get<PolicyRule[]>(policy, 'spec', 'egress');
    const namespaceOf = (rule: PolicyRule): unknown =>
      get(rule.to?.[0], 'namespaceSelector', 'matchLabels', 'kubernetes.io/metadata.name');
    t.ok(
      egress.some(
        (r) =>
          namespaceOf(r) === 'kube-system' &&
          ['UDP', 'TCP'].every((protocol) => r.ports.some((p) => p.port === 53 && p.protocol === protocol)),
      ),
      'DNS over UDP and TCP to kube-dns (targets are re-resolved)',
    );
    for (const route of gateway.routes) {
      for (const target of route.targets) {
        // NAME.NAMESPACE.svc.cluster.local, whose pods carry app.kubernetes.io/name: NAME (as deploy/examples' ingest)
        const [service, namespace] = target.host.split('.');
        t.ok(
          egress.some(
            (r) =>
              namespaceOf(r) === namespace &&
              selectsPodsNamed(r, service!) &&
              r.ports.some((p) => p.port === target.port),
          ),
          `route ${route.name}: egress to ${target.host}:${target.port} is admitted`,
        );
      }
    }
    const targetPorts = gateway.routes.flatMap((r) => r.targets.map((x) => `${x.host.split('.')[1]}:${x.port}`));
    for (const rule of egress) {
      const dns = namespaceOf(rule) === 'kube-system' && rule.ports.every((p) => p.port === 53);
      const toTarget = rule.ports.every((p) => targetPorts.includes(`${String(namespaceOf(rule))}:${p.port}`));
      t.ok(dns || toTarget, `egress ${JSON.stringify(rule.ports)} is DNS or a route's target: nothing else goes out`);
    }
  },
);

/** The gateway pod's files under a temporary root, as its Secrets and ConfigMap put them there. */
interface GatewayPod {
  /** a path as the pod sees it -> where it is under the root (paths outside every mount stay) */
  readonly rooted: (path: string) => string;
  /** the config file, written */
  readonly file: string;
  readonly config: Config;
}

/**
 * The gateway pod's filesystem under a temporary root: every mounted path of the config moves
 * there, the identity Secret is written as cert-manager writes it from the Certificate, the keys
 * Secret holds a key for each key id a route signs with, and the config file is written (after
 * `adjust`, which may change what a test must, such as an address it cannot reach). null when
 * the config is not valid (a failed assertion says why).
 */
async function gatewayPod(
  t: Test,
  objects: K8sObject[],
  adjust: (raw: Record<string, unknown>) => Record<string, unknown> = (raw) => raw,
): Promise<GatewayPod | null> {
  const { spec, container, configPath, text } = gatewayParts(objects);
  const root = await tempDir(t, 'gateway-check-');
  const mounts = (container.volumeMounts as Array<{ mountPath: string }>).map((m) => m.mountPath);
  const rooted = (path: string): string => (mounts.some((m) => path.startsWith(`${m}/`)) ? join(root, path) : path);
  const raw = adjust(JSON.parse(text, (_key, value: unknown) => (typeof value === 'string' ? rooted(value) : value)));
  const config = validateConfig(raw, { baseDir: root, source: null });
  t.ok(config.ok, `valid config: ${JSON.stringify(config.ok ? [] : config.problems)}`);
  if (!config.ok) return null;

  // the identity Secret as cert-manager writes it from the Certificate
  const cert = find(objects, 'Certificate', 'tollgate-gateway');
  const ca = await makeCa();
  const leaf = await makeLeaf(ca, {
    cn: get<string>(cert, 'spec', 'commonName'),
    spiffe: get<string[]>(cert, 'spec', 'uris'),
    dns: get<string[]>(cert, 'spec', 'dnsNames'),
    ips: [],
  });
  const identityDir = dirname(config.config.identity.certFile);
  t.ok(mountedFile(container, spec, identityDir.slice(root.length) + '/tls.crt'), 'the identity is a mounted Secret');
  await writeIdentityDir(identityDir, leaf, ca);
  // the keys Secret: every key id a route signs with
  const keysDir = config.config.keys.dir!;
  await mkdir(keysDir, { recursive: true });
  const signing = config.config.listeners.flatMap((l) =>
    l.routes.flatMap((r) => (r.integrity.sign ? [r.integrity.keyId!] : [])),
  );
  t.ok(signing.length > 0, `the routes sign with ${signing.join(', ')}`);
  for (const id of new Set(signing))
    await writeFile(join(keysDir, id), randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
  const file = rooted(configPath);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(raw));
  return { rooted, file, config: config.config };
}

t.test("the gateway's config passes `tollgate check` with the files its Secrets hold in place", async (t) => {
  const pod = await gatewayPod(t, build(join(DEPLOY, 'gateway')));
  if (pod === null) return;
  const checked = await exitWithin(startTollgate(t, ['check', '--config', pod.file]), 15_000);
  t.equal(checked.code, 0, `tollgate check: ${checked.stdout}${checked.stderr}`);
  t.match(checked.stdout, /listener edge: gateway/, 'the gateway listener is named');
});

/* ------------------------------------------------------------------ the gateway's replicas on one Redis/Valkey */

const REDIS_OVERLAYS = ['overlays/gateway-redis-dev', 'overlays/gateway-redis-production'];

/** the items of a Secret volume, by key */
function secretItems(volume: Record<string, unknown> | undefined): string[] {
  return (get<Array<{ key: string }>>(volume, 'secret', 'items') ?? []).map((i) => i.key);
}

t.test(
  "the Redis overlays: the gateway's config is deploy/gateway's plus sharedState, its files come from one Secret, and the gateway may go out to the store",
  async (t) => {
    const base = build(join(DEPLOY, 'gateway'));
    const baseConfig: unknown = JSON.parse(gatewayParts(base).text);
    const baseEgress = get<PolicyRule[]>(find(base, 'NetworkPolicy', 'tollgate-gateway'), 'spec', 'egress');
    for (const name of REDIS_OVERLAYS) {
      const objects = build(join(DEPLOY, name));
      const { spec, container, configPath, text } = gatewayParts(objects);
      const { sharedState, ...rest } = JSON.parse(text) as Record<string, unknown>;
      t.strictSame(rest, baseConfig, `${name}: nothing but sharedState differs from deploy/gateway's config`);
      const result = validateConfig(JSON.parse(text), { baseDir: '/etc/tollgate', source: configPath });
      t.ok(result.ok, `${name}: valid config: ${JSON.stringify(result.ok ? [] : result.problems)}`);
      t.ok(sharedState !== undefined, `${name}: the config has sharedState`);
      if (!result.ok || sharedState === undefined) continue;
      const s = result.config.sharedState!;
      const url = new URL(s.url);
      t.equal(url.protocol, 'rediss:', `${name}: TLS to the store`);
      t.equal(s.onUnavailable, 'refuse', `${name}: fail closed while the store is away`);
      t.ok(s.replay && s.rateLimits, `${name}: replay claims and rate limits both shared`);

      const files = [s.caFile, s.certFile, s.keyFile, s.passwordFile].filter((f): f is string => f !== null);
      t.ok(s.caFile !== null && s.certFile !== null, `${name}: the store's CA and a client certificate`);
      const secrets = new Set<string>();
      for (const f of files) {
        const m = mountedFile(container, spec, f);
        t.ok(m !== null && secretItems(m.volume).includes(m.inside), `${name}: ${f} is an item of a mounted Secret`);
        secrets.add(get<string>(m?.volume, 'secret', 'secretName'));
      }
      t.equal(secrets.size, 1, `${name}: the files of one Secret (${[...secrets].join(', ')})`);

      const egress = get<PolicyRule[]>(find(objects, 'NetworkPolicy', 'tollgate-gateway'), 'spec', 'egress');
      t.strictSame(egress.slice(0, baseEgress.length), baseEgress, `${name}: deploy/gateway's egress rules unchanged`);
      const added = egress.slice(baseEgress.length);
      t.equal(added.length, 1, `${name}: one rule more`);
      t.strictSame(
        added[0]?.ports,
        [{ port: Number(url.port || 6379), protocol: 'TCP' }],
        `${name}: out to the store's port only`,
      );
      if (name.endsWith('-dev')) {
        t.ok(
          selectsPodsNamed(added[0]!, 'tollgate-redis') && added[0]!.to![0]!.namespaceSelector === undefined,
          `${name}: to the Valkey pods of the gateway's own namespace`,
        );
      } else {
        // the Secret is the operator's: nothing here makes it, and the kustomization says how to
        const [secret] = [...secrets];
        t.notOk(
          objects.some(
            (o) => (o.kind === 'Secret' && o.metadata.name === secret) || get(o, 'spec', 'secretName') === secret,
          ),
          `${name}: ${secret} is created by the operator`,
        );
        const how = readFileSync(join(DEPLOY, name, 'kustomization.yaml'), 'utf8');
        t.match(how, `create secret generic ${secret!}`, `${name}: the kustomization says how to create ${secret}`);
        for (const f of files)
          t.match(how, `--from-file=${f.slice(f.lastIndexOf('/') + 1)}=`, `${name}: and with ${f}`);
        t.ok(
          typeof get(added[0], 'to', 0, 'ipBlock', 'cidr') === 'string',
          `${name}: to the store's addresses (an ipBlock: a NetworkPolicy cannot name a host)`,
        );
      }
    }
  },
);

/** A Valkey config's directives (`name value…`), each the last of its name. */
function directives(conf: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of conf.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#')) continue;
    const [key, ...value] = line.split(/\s+/);
    m.set(key!, value.join(' '));
  }
  return m;
}

/** The dev overlay's Valkey: its StatefulSet, container, config text and where the config says what. */
function valkeyParts(objects: K8sObject[]) {
  const statefulSet = find(objects, 'StatefulSet', 'tollgate-redis');
  const spec = podSpecOf(statefulSet)!;
  const container = podContainers(statefulSet)[0]!;
  const command = container.command as string[];
  const configFile = mountedFile(container, spec, command[1]!);
  const configMap = find(objects, 'ConfigMap', get<string>(configFile?.volume, 'configMap', 'name'));
  const text = get<string>(configMap, 'data', configFile!.inside);
  return { statefulSet, spec, container, command, text, conf: directives(text) };
}

t.test(
  'gateway-redis-dev: one Valkey keeps its data on a volume and serves TLS to certificates of its own CA, under the name dialled, to the gateway alone',
  async (t) => {
    const objects = build(join(DEPLOY, 'overlays/gateway-redis-dev'));
    const { statefulSet, spec, container, command, conf } = valkeyParts(objects);
    t.equal(get(statefulSet, 'spec', 'replicas'), 1, 'one Valkey');
    t.equal(command[0], 'valkey-server', 'runs valkey-server with the mounted config');
    t.equal(conf.get('port'), '0', 'no plaintext port');
    t.equal(conf.get('tls-auth-clients'), 'yes', 'a client certificate is required');
    t.equal(conf.get('appendonly'), 'yes', 'claims are persisted: a restart does not forget live nonces');
    t.equal(conf.get('maxmemory-policy'), 'noeviction', 'a live nonce is never evicted');
    const claim = get<Array<{ metadata: { name: string } }>>(statefulSet, 'spec', 'volumeClaimTemplates')[0]!;
    const dataMount = (container.volumeMounts as Array<{ name: string; mountPath: string }>).find(
      (m) => m.name === claim.metadata.name,
    );
    t.equal(conf.get('dir'), dataMount?.mountPath, 'the append-only file is on the claimed volume');
    const tlsVolumes = new Set<string>();
    for (const key of ['tls-cert-file', 'tls-key-file', 'tls-ca-cert-file']) {
      const m = mountedFile(container, spec, conf.get(key)!);
      t.ok(m !== null && secretItems(m.volume).includes(m.inside), `${key} is an item of a mounted Secret`);
      tlsVolumes.add(get<string>(m?.volume, 'secret', 'secretName'));
    }
    t.equal(tlsVolumes.size, 1, 'of one Secret');
    const [tlsSecret] = [...tlsVolumes];

    // the name and port the gateway dials
    const { container: gateway, spec: gatewaySpec, configPath, text } = gatewayParts(objects);
    const config = validateConfig(JSON.parse(text), { baseDir: '/etc/tollgate', source: configPath });
    if (!config.ok) return t.fail('the gateway config is valid (the test above says why not)');
    const url = new URL(config.config.sharedState!.url);
    const svc = find(objects, 'Service', get<string>(statefulSet, 'spec', 'serviceName'));
    t.equal(get(svc, 'spec', 'clusterIP'), 'None', "the StatefulSet's governing Service is headless");
    const podLabels = get<Record<string, string>>(statefulSet, 'spec', 'template', 'metadata', 'labels');
    t.ok(selects(get(svc, 'spec', 'selector'), podLabels), 'the Service selects the Valkey pod');
    t.equal(url.hostname, `${svc.metadata.name}.${svc.metadata.namespace}.svc`, 'the gateway dials the Service');
    const svcPort = get<{ port: number; targetPort: string }>(svc, 'spec', 'ports', 0);
    const containerPort = (container.ports as Array<{ name: string; containerPort: number }>).find(
      (p) => p.name === svcPort.targetPort,
    );
    t.equal(Number(url.port), svcPort.port, "the URL's port is the Service's");
    t.equal(String(containerPort?.containerPort), conf.get('tls-port'), "which is Valkey's TLS port");

    // the certificates: Valkey's carries the name dialled; both it and the gateway's come from one CA of their own
    const certFor = (secretName: string): K8sObject | undefined =>
      objects.find((o) => o.kind === 'Certificate' && get(o, 'spec', 'secretName') === secretName);
    const server = certFor(tlsSecret!);
    t.ok(
      get<string[]>(server, 'spec', 'dnsNames').includes(url.hostname),
      "Valkey's certificate names the host dialled",
    );
    const clientSecret = get<string>(
      mountedFile(gateway, gatewaySpec, config.config.sharedState!.certFile!)?.volume,
      'secret',
      'secretName',
    );
    const client = certFor(clientSecret);
    t.ok(get<string[]>(client, 'spec', 'usages').includes('client auth'), "the gateway's client certificate");
    const issuerRef = get<{ name: string; kind: string }>(server, 'spec', 'issuerRef');
    t.same(get(client, 'spec', 'issuerRef'), issuerRef, 'one issuer for both');
    t.equal(issuerRef.kind, 'Issuer', "a namespaced issuer, not the mesh's ClusterIssuer");
    const issuer = find(objects, 'Issuer', issuerRef.name);
    t.equal(get(certFor(get<string>(issuer, 'spec', 'ca', 'secretName')), 'spec', 'isCA'), true, 'a CA of their own');

    // only the gateway's pods reach it
    const policy = find(objects, 'NetworkPolicy', 'tollgate-redis');
    t.ok(selects(get(policy, 'spec', 'podSelector', 'matchLabels'), podLabels), 'the NetworkPolicy applies to Valkey');
    t.same(get(policy, 'spec', 'policyTypes'), ['Ingress', 'Egress'], 'in and out');
    const ingress = get<Array<{ from: Array<Record<string, unknown>>; ports: Port[] }>>(policy, 'spec', 'ingress');
    t.equal(ingress.length, 1, 'one ingress rule');
    t.strictSame(ingress[0]!.ports, [{ port: containerPort?.containerPort, protocol: 'TCP' }], 'the TLS port');
    t.equal(ingress[0]!.from.length, 1, 'from one kind of peer');
    t.equal(ingress[0]!.from[0]!.namespaceSelector, undefined, 'from its own namespace');
    const gatewayLabels = get<Record<string, string>>(
      find(objects, 'Deployment', 'tollgate-gateway'),
      'spec',
      'template',
      'metadata',
      'labels',
    );
    t.ok(selects(get(ingress[0]!.from[0], 'podSelector', 'matchLabels'), gatewayLabels), 'from the gateway pods');
    t.same(get(policy, 'spec', 'egress'), [], 'nothing out');
  },
);

t.test(
  "gateway-redis-dev: Valkey's config serves TLS to client certificates on redis-server, its probe answers, and the gateway's `tollgate check` reaches it",
  {
    skip:
      redisMissing() ?? (existsSync(REDIS_CLI) ? false : `${REDIS_CLI} is not installed (apt-get install redis-tools)`),
  },
  async (t) => {
    const objects = build(join(DEPLOY, 'overlays/gateway-redis-dev'));
    const { spec, container, command, text, conf } = valkeyParts(objects);
    // Valkey's pod filesystem under a temporary root, as the gateway's (gatewayPod)
    const root = await tempDir(t, 'valkey-');
    const mounts = (container.volumeMounts as Array<{ mountPath: string }>).map((m) => m.mountPath);
    const rooted = (path: string): string =>
      mounts.some((m) => path === m || path.startsWith(`${m}/`)) ? join(root, path) : path;

    // the Secrets as cert-manager writes them: Valkey's certificate (with localhost as well, where this test
    // reaches it) and the gateway's client certificate, both from the Redis CA
    const cert = (name: string): K8sObject => find(objects, 'Certificate', name);
    const ca = await makeCa({ cn: get<string>(cert('tollgate-redis-ca'), 'spec', 'commonName') });
    const server = await makeLeaf(ca, {
      cn: get<string>(cert('tollgate-redis'), 'spec', 'commonName'),
      dns: [...get<string[]>(cert('tollgate-redis'), 'spec', 'dnsNames'), 'localhost'],
      ips: [],
    });
    const client = await makeLeaf(ca, {
      cn: get<string>(cert('tollgate-gateway-redis-client'), 'spec', 'commonName'),
      dns: [],
      ips: [],
      eku: 'client',
    });
    const tlsMount = mountedFile(container, spec, conf.get('tls-cert-file')!)!;
    t.equal(
      get(tlsMount.volume, 'secret', 'secretName'),
      get(cert('tollgate-redis'), 'spec', 'secretName'),
      "Valkey's TLS files are its Certificate's Secret",
    );
    await writeIdentityDir(dirname(rooted(conf.get('tls-cert-file')!)), server, ca);
    await mkdir(rooted(conf.get('dir')!), { recursive: true });
    const configFile = rooted(command[1]!);
    await mkdir(dirname(configFile), { recursive: true });
    await writeFile(
      configFile,
      text.replace(/(?<=\s)\/\S+/g, (path) => rooted(path)),
    );

    // on a loopback port of this run: the command line overrides the config's port and bind
    const port = await freePort();
    const valkey = spawn(REDIS_SERVER, [configFile, '--tls-port', String(port), '--bind', '127.0.0.1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    valkey.stdout.on('data', (b: Buffer) => (log += b.toString()));
    valkey.stderr.on('data', (b: Buffer) => (log += b.toString()));
    t.teardown(() => void valkey.kill('SIGKILL'));
    await eventually(
      async () => valkey.exitCode === null && (await tryConnect(port)) === 'connected',
      10_000,
      'redis-server with the overlay config',
    );

    // the readiness probe as the kubelet runs it (valkey-cli and redis-cli take the same flags)
    const probe = get<string[]>(container, 'readinessProbe', 'exec', 'command').map((arg) =>
      arg === 'valkey-cli' ? REDIS_CLI : arg === conf.get('tls-port') ? String(port) : rooted(arg),
    );
    const cli = (args: string[]): Promise<{ code: number | null; out: string }> =>
      new Promise((resolve) => {
        const p = spawn(args[0]!, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.on('data', (b: Buffer) => (out += b.toString()));
        p.stderr.on('data', (b: Buffer) => (out += b.toString()));
        p.once('close', (code) => resolve({ code, out }));
      });
    t.same(await cli(probe), { code: 0, out: 'PONG\n' }, 'the probe answers PONG');
    t.match((await cli([...probe.slice(0, -1), 'info', 'persistence'])).out, /aof_enabled:1/, 'append-only');
    const certificateFlag = (arg: string | undefined): boolean => arg === '--cert' || arg === '--key';
    const withoutCertificate = probe.filter((arg, i) => !certificateFlag(arg) && !certificateFlag(probe[i - 1]));
    t.notMatch((await cli(withoutCertificate)).out, /PONG/, 'a client without a certificate is refused');
    t.match(log, /did not return a certificate/, 'and the server says why');

    // the gateway, its URL pointed at this server, the client certificate Secret where its Deployment mounts it
    const pod = await gatewayPod(t, objects, (raw) => ({
      ...raw,
      sharedState: { ...(raw.sharedState as object), url: `rediss://localhost:${port}` },
    }));
    if (pod === null) return;
    const shared = pod.config.sharedState!;
    await writeIdentityDir(dirname(shared.certFile!), client, ca);
    t.equal(shared.caFile, join(dirname(shared.certFile!), 'ca.crt'), "the CA is the client Secret's ca.crt");
    const checked = await exitWithin(startTollgate(t, ['check', '--config', pod.file]), 20_000);
    t.equal(checked.code, 0, `tollgate check: ${checked.stdout}${checked.stderr}`);
    t.match(checked.stdout, /shared state rediss:\/\/localhost:\d+ answers \(onUnavailable: refuse\)/);
  },
);

t.test(
  'the example workload: its pods get the sidecar from the injector, and only the sidecar port is reachable',
  async (t) => {
    const objects = build(join(DEPLOY, 'examples'));
    const namespace = find(objects, 'Namespace', 'pipeline');
    t.equal(
      namespace.metadata.labels?.['tollgate.dev/injection'],
      'enabled',
      "the namespace matches the injector's namespaceSelector",
    );
    const deployment = find(objects, 'Deployment', 'ingest');
    type Template = {
      metadata: { labels: Record<string, string>; annotations: Record<string, string> };
      spec: Record<string, unknown>;
    };
    const template = get<Template>(deployment, 'spec', 'template');
    t.equal(template.metadata.annotations['tollgate.dev/inject'], 'enabled');

    // the pod the ReplicaSet would create, as the webhook sees it
    const metadata = { generateName: 'ingest-5c9d8f7b6-', ...structuredClone(template.metadata) };
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata, spec: structuredClone(template.spec) };
    const decision = decideInjection(pod, {
      ...(await import('../src/webhook/injectorSettings.ts')).injectorSettings('registry.example.com/tollgate:0.1.0'),
    });
    t.equal(decision.kind, 'inject', `injected: ${decision.kind === 'deny' ? decision.message : ''}`);
    if (decision.kind !== 'inject') return;
    const patched = applyJsonPatch(pod, decision.patch as unknown as Operation[]) as unknown as K8sObject;
    t.same(kubernetesProblems(patched), [], 'the injected pod is valid');
    t.same(decision.warnings, [], "no warnings: native mode, and the pod's own fsGroup is used");

    const cert = find(objects, 'Certificate', 'ingest-identity');
    t.equal(
      get(cert, 'spec', 'secretName'),
      template.metadata.annotations['tollgate.dev/identity-secret'],
      'the identity Secret is the Certificate',
    );
    t.ok(
      get<string[]>(cert, 'spec', 'uris').some((u) => u.startsWith('spiffe://')),
      'with a SPIFFE ID',
    );
    const inboundPort = Number(template.metadata.annotations['tollgate.dev/inbound-port'] ?? 15443);
    const svc = find(objects, 'Service', 'ingest');
    t.same(
      get<Array<{ targetPort: number }>>(svc, 'spec', 'ports').map((p) => p.targetPort),
      [inboundPort],
      'the Service targets the sidecar port only',
    );
    const policy = find(objects, 'NetworkPolicy', 'ingest-only-mtls');
    t.ok(
      selects(get(policy, 'spec', 'podSelector', 'matchLabels'), template.metadata.labels),
      'the policy applies to the pods',
    );
    t.same(get(policy, 'spec', 'policyTypes'), ['Ingress']);
    t.same(
      get(policy, 'spec', 'ingress'),
      [{ ports: [{ port: inboundPort, protocol: 'TCP' }] }],
      'only the sidecar port is admitted',
    );
    t.match(
      (podContainers(deployment)[0]!.args as string[]).join(' '),
      /127\.0\.0\.1:8080/,
      'the app listens on loopback only',
    );
  },
);

t.test(
  'the overlays: dev runs a local image with a self-signed mesh CA and generated key Secrets, production pins the image',
  async (t) => {
    const dev = build(join(DEPLOY, 'overlays/dev'));
    const devInjector = find(dev, 'Deployment', 'tollgate-injector');
    t.equal(podContainers(devInjector)[0]!.image, 'tollgate:dev');
    t.equal(
      flags(expandedArgs(podContainers(devInjector)[0]!)).get('image'),
      'tollgate:dev',
      'the injected sidecar is the local image too',
    );
    t.equal(podContainers(find(dev, 'Deployment', 'tollgate-gateway'))[0]!.image, 'tollgate:dev');
    t.ok(find(dev, 'ClusterIssuer', 'tollgate-ca'), 'the mesh CA the gateway and example certificates use');
    for (const [namespace, name] of [
      ['pipeline', 'ingest-keys'],
      ['tollgate-gateway', 'tollgate-gateway-keys'],
    ] as const) {
      const secret = find(dev, 'Secret', name);
      t.equal(secret.metadata.namespace, namespace, `${name} is generated in ${namespace}`);
      t.same(Object.keys(get(secret, 'data')), ['k1'], `${name} holds the key k1`);
      t.ok(
        Buffer.from(get<string>(secret, 'data', 'k1'), 'base64').length >= 32,
        `${name}: the key file as tollgate keys new writes it`,
      );
    }
    t.equal(
      get(find(dev, 'PodDisruptionBudget', 'tollgate-injector'), 'spec', 'maxUnavailable'),
      1,
      'one replica does not block node drains',
    );

    const prod = build(join(DEPLOY, 'overlays/production'));
    const prodInjector = find(prod, 'Deployment', 'tollgate-injector');
    t.equal(get(prodInjector, 'spec', 'replicas'), 3);
    t.equal(
      flags(expandedArgs(podContainers(prodInjector)[0]!)).get('image'),
      podContainers(prodInjector)[0]!.image,
      'the sidecar image is the injector image',
    );
    for (const issuer of [find(prod, 'Certificate', 'tollgate-gateway')])
      t.equal(get(issuer, 'spec', 'issuerRef', 'name'), 'tollgate-ca');
  },
);
