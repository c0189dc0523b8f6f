/**
 * deploy/ without a cluster: every manifest parses (as YAML 1.1, the way Kubernetes reads it),
 * validates against the Kubernetes object models with no unknown fields, every kustomization's
 * resources exist and every tree builds (patches apply, the dev overlay's Secrets generated from
 * the keys the README's command makes), and the pieces agree with each other and with tollgate
 * itself: the webhook's flags and config, the certificate's names, the gateway config, the
 * example workload run through the injector.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseHostPort } from '../src/config/hostPort.ts';
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
import { exitWithin, startTollgate } from './helpers/process.ts';
import { stageAfterReadmeKeys } from './helpers/kustomizeStage.ts';

const DEPLOY = fileURLToPath(new URL('../deploy/', import.meta.url));
const TREES = ['injector', 'gateway', 'examples', 'overlays/dev', 'overlays/production'];

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

t.test("the gateway's config passes `tollgate check` with the files its Secrets hold in place", async (t) => {
  const objects = build(join(DEPLOY, 'gateway'));
  const { spec, container, configPath, text } = gatewayParts(objects);
  // the pod's filesystem under a temporary root: every mounted path moves there
  const root = await tempDir(t, 'gateway-check-');
  const mounts = (container.volumeMounts as Array<{ mountPath: string }>).map((m) => m.mountPath);
  const rooted = (path: string): string => (mounts.some((m) => path.startsWith(`${m}/`)) ? join(root, path) : path);
  const raw = JSON.parse(text, (_key, value: unknown) => (typeof value === 'string' ? rooted(value) : value));
  const config = validateConfig(raw, { baseDir: root, source: null });
  t.ok(config.ok, `valid config: ${JSON.stringify(config.ok ? [] : config.problems)}`);
  if (!config.ok) return;

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

  const checked = await exitWithin(startTollgate(t, ['check', '--config', file]), 15_000);
  t.equal(checked.code, 0, `tollgate check: ${checked.stdout}${checked.stderr}`);
  t.match(checked.stdout, /listener edge: gateway/, 'the gateway listener is named');
});

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
