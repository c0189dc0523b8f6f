/**
 * README.md's "Kubernetes" commands, in the order written, on a fresh cluster (simulated: no
 * cluster here). Each walkthrough is the section's prerequisites and then its subsections; every
 * command must work when it is run (no object before its namespace, no secret created twice,
 * no image deployed before it is pushed or loaded), and every workload they create must be able
 * to start: its ServiceAccount, Secrets and ConfigMaps (with the keys it names) exist, including
 * those the injector mounts into the sidecar it adds. The check is shown to catch the README's
 * old order and an overlay without its Secrets.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { K8sObject } from './helpers/kustomize.ts';
import { SimulatedCluster } from './helpers/kustomizeCluster.ts';
import { kubernetesSection, readmeCommands, runReadmeCommand, type ReadmeCommand } from './helpers/kustomizeReadme.ts';
import { REPOSITORY, stageRepository } from './helpers/kustomizeStage.ts';

const COMMANDS = readmeCommands(kubernetesSection(readFileSync(join(REPOSITORY, 'README.md'), 'utf8')));
/** each walkthrough starts on a fresh cluster with the section's prerequisites (the commands before its first subsection) */
const WALKTHROUGHS: Readonly<Record<string, readonly string[]>> = {
  'a development cluster': ['Try it on a development cluster', "Share state across the gateway's replicas"],
  'a cluster of your own': ['Install the injector', 'Annotate a workload', 'Run the gateway'],
};

async function walk(commands: readonly ReadmeCommand[], prepare?: (root: string) => void): Promise<SimulatedCluster> {
  const staged = stageRepository();
  try {
    prepare?.(staged.root);
    const cluster = new SimulatedCluster();
    const built = new Set<string>();
    for (const c of commands) await runReadmeCommand(c, staged.root, cluster, built);
    return cluster;
  } finally {
    staged.remove();
  }
}

function commandsOf(sections: readonly string[]): ReadmeCommand[] {
  return COMMANDS.filter((c) => c.section === '' || sections.includes(c.section));
}

function secretValue(cluster: SimulatedCluster, namespace: string, name: string, key: string): string | undefined {
  return (cluster.get('Secret', namespace, name)?.data as Record<string, string> | undefined)?.[key];
}

interface GatewayRoute {
  name: string;
  targets: string[];
  integrity?: { sign?: boolean; keyId?: string };
}

/** the gateway re-signs with keys its Secret holds, and each workload a re-signing route forwards to verifies with the same bytes */
function signingKeyProblems(cluster: SimulatedCluster): string[] {
  const cm = cluster.get('ConfigMap', 'tollgate-gateway', 'tollgate-gateway');
  if (cm === undefined) return ['no gateway ConfigMap'];
  const config = JSON.parse((cm.data as Record<string, string>)['config.json']!) as {
    listeners: Array<{ mode: string; routes?: GatewayRoute[] }>;
  };
  const signing = config.listeners
    .filter((l) => l.mode === 'gateway')
    .flatMap((l) => l.routes ?? [])
    .filter((r) => r.integrity?.sign === true);
  if (signing.length === 0) return ['no gateway route re-signs'];
  const problems: string[] = [];
  for (const route of signing) {
    const keyId = route.integrity!.keyId!;
    const mine = secretValue(cluster, 'tollgate-gateway', 'tollgate-gateway-keys', keyId);
    if (mine === undefined) problems.push(`tollgate-gateway-keys has no ${keyId}`);
    for (const target of route.targets) {
      const [service, namespace] = target.split('.') as [string, string];
      const selector =
        (cluster.get('Service', namespace, service)?.spec as { selector: Record<string, string> } | undefined)
          ?.selector ?? {};
      const workload = cluster
        .all('Deployment')
        .find(
          (d) =>
            d.metadata.namespace === namespace &&
            Object.entries(selector).every(
              ([k, v]) => (d.spec as { template: K8sObject }).template.metadata.labels?.[k] === v,
            ),
        );
      const keysSecret = (workload?.spec as { template: K8sObject } | undefined)?.template.metadata.annotations?.[
        'tollgate.dev/keys-secret'
      ];
      if (keysSecret === undefined)
        problems.push(`route ${route.name}: no workload with a keys Secret behind ${target}`);
      else if (secretValue(cluster, namespace, keysSecret, keyId) !== mine)
        problems.push(`route ${route.name}: ${namespace}/${keysSecret} does not hold the gateway's ${keyId}`);
    }
  }
  return problems;
}

t.test("the Kubernetes section's commands are the prerequisites and the walkthroughs this test runs", async (t) => {
  const sections = [...new Set(COMMANDS.map((c) => c.section))];
  t.same(
    sections.filter((s) => s !== '').sort(),
    Object.values(WALKTHROUGHS).flat().sort(),
    'every subsection with commands belongs to one walkthrough',
  );
  t.ok(
    COMMANDS.some((c) => c.section === '' && c.text.includes('cert-manager')),
    'cert-manager is installed first',
  );
  for (const [name, subsections] of Object.entries(WALKTHROUGHS))
    t.ok(
      commandsOf(subsections).some((c) => c.argv[1] === 'apply'),
      `${name} applies something`,
    );
});

for (const [name, subsections] of Object.entries(WALKTHROUGHS)) {
  t.test(
    `on a fresh cluster, ${name}: every command works in the order written and every workload can start`,
    async (t) => {
      const cluster = await walk(commandsOf(subsections));
      t.same(cluster.problems, [], 'no command refused');
      const deployments = cluster.all('Deployment');
      t.same(
        deployments.map((d) => d.metadata.name).sort(),
        ['ingest', 'tollgate-gateway', 'tollgate-injector'],
        'the injector, the gateway and the example',
      );
      for (const d of deployments)
        t.same(cluster.podProblems(d), [], `${d.metadata.namespace}/${d.metadata.name} can start`);
      // the development cluster's gateway replicas share state in a Valkey of their own
      const statefulSets = cluster.all('StatefulSet');
      t.same(
        statefulSets.map((s) => s.metadata.name),
        subsections.includes("Share state across the gateway's replicas") ? ['tollgate-redis'] : [],
        'Valkey where the gateway shares state',
      );
      for (const s of statefulSets)
        t.same(cluster.podProblems(s), [], `${s.metadata.namespace}/${s.metadata.name} can start`);
      t.same(signingKeyProblems(cluster), [], 'the gateway signs with a key the example verifies with');
    },
  );
}

t.test(
  'the check catches the README of before: a namespace labelled and given a Secret before it exists',
  async (t) => {
    const old = [
      'docker build -t registry.example.com/tollgate:0.1.0 .',
      'docker push registry.example.com/tollgate:0.1.0',
      'kubectl apply -k deploy/injector',
      'kubectl label namespace pipeline tollgate.dev/injection=enabled',
      'npx tollgate keys new --out keys --id k1',
      'kubectl -n pipeline create secret generic ingest-keys --from-file=keys/',
      'kubectl apply -k deploy/examples',
      'kubectl -n pipeline rollout status deploy/ingest',
    ].map((text): ReadmeCommand => ({ section: 'before', text, argv: text.split(' ') }));
    const cluster = await walk([...COMMANDS.filter((c) => c.section === ''), ...old]);
    t.match(cluster.problems, [
      /^kubectl label namespace pipeline .*: namespace pipeline does not exist/,
      /^kubectl -n pipeline create secret .*: namespace pipeline does not exist/,
      /^kubectl -n pipeline rollout status deploy\/ingest: .*Secret pipeline\/ingest-identity: Certificate ingest-identity is never issued: no ClusterIssuer/,
      /^kubectl -n pipeline rollout status deploy\/ingest: .*Secret pipeline\/ingest-keys does not exist/,
    ]);
    t.equal(cluster.problems.length, 4, 'and nothing else');
  },
);

t.test("the check catches a dev overlay without its generated Secrets: the example's pods never start", async (t) => {
  const dev = COMMANDS.filter((c) => c.section === '' || c.section === WALKTHROUGHS['a development cluster']![0]);
  const cluster = await walk(dev, (root) => {
    const file = join(root, 'deploy/overlays/dev/kustomization.yaml');
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.replace(/^secretGenerator:\n(?: {2}.*\n)+generatorOptions:\n(?: {2}.*\n)+/m, ''));
  });
  t.match(cluster.problems, [
    /^kubectl -n pipeline rollout status deploy\/ingest: Deployment pipeline\/ingest: Secret pipeline\/ingest-keys does not exist/,
  ]);
  t.match(
    cluster.problems.join('\n'),
    /tollgate-gateway: Secret tollgate-gateway\/tollgate-gateway-keys does not exist/,
  );
});

t.test(
  "the check catches a Redis overlay without its certificates: neither Valkey nor the gateway's pods start",
  async (t) => {
    const dev = commandsOf(WALKTHROUGHS['a development cluster']!);
    const cluster = await walk(dev, (root) => {
      const file = join(root, 'deploy/overlays/gateway-redis-dev/kustomization.yaml');
      writeFileSync(file, readFileSync(file, 'utf8').replace(/^ {2}- certificates\.yaml\n/m, ''));
    });
    t.match(
      cluster.problems.join('\n'),
      /statefulset\/tollgate-redis: .*Secret tollgate-gateway\/tollgate-redis-tls does not exist/,
    );
    t.match(
      cluster.problems.join('\n'),
      /deploy\/tollgate-gateway: .*Secret tollgate-gateway\/tollgate-gateway-redis-client does not exist/,
    );
  },
);

t.test(
  'the check catches an injector whose sidecar image is not set: it refuses to start, so no opted-in pod is created',
  async (t) => {
    const dev = COMMANDS.filter((c) => c.section === '' || c.section === WALKTHROUGHS['a development cluster']![0]);
    const cluster = await walk(dev, (root) => {
      const file = join(root, 'deploy/injector/deployment.yaml');
      writeFileSync(file, readFileSync(file, 'utf8').replace(/ {10}env:\n(?: {12}.*\n)+/, ''));
      t.notMatch(readFileSync(file, 'utf8'), /TOLLGATE_SIDECAR_IMAGE\n\s+value/, 'the variable is gone');
    });
    t.match(
      cluster.problems.join('\n'),
      /deploy\/ingest: .*tollgate webhook refuses to start: --image "\$\(TOLLGATE_SIDECAR_IMAGE\)" is not an image reference/,
    );
  },
);

t.test('the check catches a local image that was never loaded into the nodes', async (t) => {
  const dev = COMMANDS.filter(
    (c) => (c.section === '' || c.section === WALKTHROUGHS['a development cluster']![0]) && c.argv[0] !== 'kind',
  );
  const cluster = await walk(dev);
  t.match(
    cluster.problems.join('\n'),
    /deploy\/tollgate-injector: .*image tollgate:dev was never pushed or loaded into the nodes/,
  );
});

t.test(
  'the check reads the manifests a command applies: a namespaced object in a namespace nothing creates is refused',
  async (t) => {
    const text = 'kubectl apply -f deploy/examples/serviceaccount.yaml';
    const cluster = await walk([{ section: '', text, argv: text.split(' ') }]);
    t.match(cluster.problems, [/ServiceAccount pipeline\/ingest: namespace pipeline does not exist/]);
  },
);
