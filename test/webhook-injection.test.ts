/**
 * What the injector does to a pod, as behaviours: the patch applied the way the API server
 * applies it, then the resulting pod inspected. Pure functions only; the HTTPS server is
 * tested in webhook-server.test.ts.
 */
import t from 'tap';
import { validateConfig } from '../src/config/validate.ts';
import { decideInjection, type InjectionDecision } from '../src/webhook/injection.ts';
import { injectorSettings, type InjectorSettings } from '../src/webhook/injectorSettings.ts';
import { escapePointerToken } from '../src/webhook/patch.ts';
import { parseQuantity } from '../src/webhook/quantity.ts';
import { reviewFixtures, type ContainerObject, type PodObject } from './helpers/admission.ts';
import { applyJsonPatch, kubernetesProblems, type Operation } from './helpers/k8s.ts';

const IMAGE = 'registry.example.com/tollgate:0.1.0';
const INJECTOR = injectorSettings(IMAGE);
const SECRET_MOUNTS = ['/var/run/secrets/tollgate/identity', '/var/run/secrets/tollgate/keys'];

function fixturePod(name: string): PodObject {
  const f = reviewFixtures().find((x) => x.name === name);
  if (f === undefined) throw new Error(`no fixture ${name}`);
  return structuredClone(f.review.request.object);
}

/** A Deployment's pod as the webhook sees it, with the given annotations. */
function pod(annotations: Record<string, string> | null, spec: Partial<PodObject['spec']> = {}): PodObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'ingest-6b8f9c7d5-', ...(annotations !== null ? { annotations } : {}) },
    spec: {
      containers: [{ name: 'app', image: 'registry.example.com/ingest:2.4.1', ports: [{ containerPort: 8080 }] }],
      ...spec,
    },
  };
}

const OPTED_IN = {
  'tollgate.dev/inject': 'enabled',
  'tollgate.dev/app-port': '8080',
  'tollgate.dev/identity-secret': 'ingest-identity',
  'tollgate.dev/allow-spiffe': 'spiffe://example.org/producer',
};

function inject(
  p: PodObject,
  injector: InjectorSettings = INJECTOR,
): { decision: Extract<InjectionDecision, { kind: 'inject' }>; patched: PodObject; patch: Operation[] } {
  const decision = decideInjection(p, injector);
  if (decision.kind !== 'inject') throw new Error(`expected an injection, got ${JSON.stringify(decision)}`);
  const patch = decision.patch as unknown as Operation[];
  return { decision, patch, patched: applyJsonPatch(p, patch) };
}

function denial(p: PodObject, injector: InjectorSettings = INJECTOR): string {
  const decision = decideInjection(p, injector);
  if (decision.kind !== 'deny') throw new Error(`expected a denial, got ${JSON.stringify(decision).slice(0, 300)}`);
  return decision.message;
}

function sidecarOf(p: PodObject): ContainerObject {
  const all = [...(p.spec.initContainers ?? []), ...p.spec.containers];
  const found = all.filter((c) => c.name === 'tollgate');
  if (found.length !== 1) throw new Error(`expected one tollgate container, found ${found.length}`);
  return found[0]!;
}

t.test(
  'native mode: the sidecar is the first init container, restartPolicy Always, gated by a startupProbe on the health port /readyz',
  async (t) => {
    for (const name of ['deployment-pod-native', 'job-pod-configmap']) {
      const { patched } = inject(fixturePod(name));
      const first = patched.spec.initContainers?.[0];
      t.equal(first?.name, 'tollgate', `${name}: tollgate is initContainers[0]`);
      t.equal(first?.restartPolicy, 'Always', `${name}: a restartable init container (native sidecar)`);
      t.same(first?.startupProbe, {
        httpGet: { path: '/readyz', port: 15021, scheme: 'HTTP' },
        periodSeconds: 1,
        timeoutSeconds: 1,
        failureThreshold: 120,
      });
      t.match(first?.readinessProbe, { httpGet: { path: '/readyz', port: 15021 } }, `${name}: readiness probe`);
      t.match(first?.livenessProbe, { httpGet: { path: '/livez', port: 15021 } }, `${name}: liveness probe`);
      t.notOk(
        patched.spec.containers.some((c) => c.name === 'tollgate'),
        `${name}: not among the app containers`,
      );
    }
    const job = inject(fixturePod('job-pod-configmap')).patched;
    t.same(
      job.spec.initContainers?.map((c) => c.name),
      ['tollgate', 'wait-for-schema'],
      "the app's own init containers run after tollgate is ready, so they can use it too",
    );
  },
);

t.test(
  'classic mode (native-sidecar "false"): the sidecar is the first app container and kubectl still defaults to the app',
  async (t) => {
    const { patched, decision } = inject(fixturePod('deployment-pod-classic'));
    t.same(
      patched.spec.containers.map((c) => c.name),
      ['tollgate', 'collector', 'log-shipper'],
    );
    t.notOk(patched.spec.initContainers, 'no init containers were added');
    t.notOk(sidecarOf(patched).restartPolicy, 'no restartPolicy on a regular container');
    t.equal(
      patched.metadata.annotations?.['kubectl.kubernetes.io/default-container'],
      'collector',
      'kubectl logs/exec still pick the app',
    );
    t.match(decision.warnings.join('\n'), /classic sidecar/, 'the API server shows a warning about startup order');
    t.ok(sidecarOf(patched).startupProbe, 'the startup probe still keeps liveness off until tollgate is ready');

    const chosen = inject(
      pod({ ...OPTED_IN, 'tollgate.dev/native-sidecar': 'false', 'kubectl.kubernetes.io/default-container': 'app' }),
    ).patched;
    t.equal(
      chosen.metadata.annotations?.['kubectl.kubernetes.io/default-container'],
      'app',
      'an existing default-container choice is kept',
    );
  },
);

t.test('the injector default decides the mode when the pod does not say', async (t) => {
  const classic = inject(pod(OPTED_IN), injectorSettings(IMAGE, { nativeSidecar: false })).patched;
  t.equal(classic.spec.containers[0]?.name, 'tollgate');
  const native = inject(
    pod({ ...OPTED_IN, 'tollgate.dev/native-sidecar': 'true' }),
    injectorSettings(IMAGE, { nativeSidecar: false }),
  ).patched;
  t.equal(native.spec.initContainers?.[0]?.name, 'tollgate');
});

t.test('reinvoking the webhook on its own output changes nothing (reinvocationPolicy IfNeeded)', async (t) => {
  for (const f of reviewFixtures()) {
    const first = decideInjection(f.review.request.object, INJECTOR);
    if (first.kind !== 'inject') continue;
    const patched = applyJsonPatch(f.review.request.object, first.patch as unknown as Operation[]);
    t.same(
      decideInjection(patched, INJECTOR),
      { kind: 'skip', reason: 'already_injected' },
      `${f.name}: second pass is a no-op`,
    );
    // another webhook adding a container in between (why reinvocation happens) changes nothing either
    const touched = structuredClone(patched);
    touched.spec.containers.push({ name: 'other-webhooks-sidecar', image: 'registry.example.com/other:1.0.0' });
    t.same(
      decideInjection(touched, INJECTOR),
      { kind: 'skip', reason: 'already_injected' },
      `${f.name}: still a no-op after another mutation`,
    );
  }
});

t.test("the app's containers, init containers and their settings are untouched", async (t) => {
  for (const name of ['deployment-pod-native', 'deployment-pod-classic', 'job-pod-configmap']) {
    const before = fixturePod(name);
    const { patched } = inject(before);
    t.same(
      patched.spec.containers.filter((c) => c.name !== 'tollgate'),
      before.spec.containers,
      `${name}: containers as they were`,
    );
    t.same(
      (patched.spec.initContainers ?? []).filter((c) => c.name !== 'tollgate'),
      before.spec.initContainers ?? [],
      `${name}: init containers as they were`,
    );
    for (const [key, value] of Object.entries(before.metadata.annotations ?? {})) {
      t.equal(patched.metadata.annotations?.[key], value, `${name}: annotation ${key} kept`);
    }
    t.same(
      patched.spec.volumes?.slice(0, before.spec.volumes?.length ?? 0),
      before.spec.volumes ?? [],
      `${name}: the pod's own volumes kept, in order`,
    );
  }
});

t.test(
  'Secrets are mounted read-only (mode 0400) into the sidecar only and never reach environment variables',
  async (t) => {
    const { patched } = inject(fixturePod('deployment-pod-native'));
    const sidecar = sidecarOf(patched);
    const byName = new Map((patched.spec.volumes ?? []).map((v) => [v.name, v]));
    t.same(byName.get('tollgate-identity'), {
      name: 'tollgate-identity',
      secret: {
        secretName: 'ingest-identity',
        defaultMode: 0o400,
        items: ['tls.crt', 'tls.key', 'ca.crt'].map((k) => ({ key: k, path: k })),
      },
    });
    t.same(byName.get('tollgate-keys'), {
      name: 'tollgate-keys',
      secret: { secretName: 'ingest-keys', defaultMode: 0o400 },
    });
    for (const mount of sidecar.volumeMounts ?? []) {
      if (SECRET_MOUNTS.includes(mount.mountPath)) t.equal(mount.readOnly, true, `${mount.mountPath} is read-only`);
    }
    t.same(
      (sidecar.volumeMounts ?? []).filter((m) => m.name !== 'tollgate-tmp').every((m) => m.readOnly === true),
      true,
      'every sidecar mount but the scratch /tmp is read-only',
    );
    for (const c of [...patched.spec.containers, ...(patched.spec.initContainers ?? [])].filter(
      (c) => c.name !== 'tollgate',
    )) {
      t.notOk(
        (c.volumeMounts ?? []).some((m) => m.name.startsWith('tollgate-')),
        `${c.name} mounts none of tollgate's volumes`,
      );
    }
    t.same(
      sidecar.env,
      [
        { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      ],
      'only the downward API in the environment',
    );
    t.notOk(sidecar.envFrom, 'no envFrom');
    t.notMatch(JSON.stringify(sidecar.env), /secretKeyRef/, 'no Secret in env');
  },
);

t.test(
  'the sidecar runs as a numeric non-root user with a read-only root filesystem, no capabilities and RuntimeDefault seccomp',
  async (t) => {
    const { patched } = inject(fixturePod('deployment-pod-native'));
    t.same(sidecarOf(patched).securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const other = inject(pod(OPTED_IN), injectorSettings(IMAGE, { runAsUser: 4242 })).patched;
    t.match(
      sidecarOf(other).securityContext,
      { runAsUser: 4242, runAsGroup: 4242 },
      'the injector config sets the user',
    );
    t.equal(other.spec.securityContext?.fsGroup, 4242, 'and the fsGroup it adds');
  },
);

t.test(
  'the pod fsGroup is added only when the pod has none, so the sidecar can read its 0400 Secret files',
  async (t) => {
    const none = inject(pod(OPTED_IN));
    t.same(none.patched.spec.securityContext, { fsGroup: 65532, fsGroupChangePolicy: 'OnRootMismatch' });
    t.match(none.decision.warnings.join('\n'), /fsGroup to 65532/, 'and says so in a warning');
    const some = inject(pod(OPTED_IN, { securityContext: { runAsNonRoot: true } })).patched;
    t.same(some.spec.securityContext, { runAsNonRoot: true, fsGroup: 65532, fsGroupChangePolicy: 'OnRootMismatch' });
    const own = inject(pod(OPTED_IN, { securityContext: { fsGroup: 2000 } }));
    t.same(
      own.patched.spec.securityContext,
      { fsGroup: 2000 },
      "the pod's own fsGroup is kept (the sidecar gets it as a supplementary group)",
    );
    t.notOk(
      own.patch.some((op) => op.path.startsWith('/spec/securityContext')),
      'no securityContext operation at all',
    );
    const policy = inject(pod(OPTED_IN, { securityContext: { fsGroupChangePolicy: 'Always' } })).patched;
    t.same(
      policy.spec.securityContext,
      { fsGroupChangePolicy: 'Always', fsGroup: 65532 },
      "the pod's change policy is kept",
    );
  },
);

t.test(
  'the generated config is valid for `tollgate run` and reaches the sidecar as a file through the downward API',
  async (t) => {
    const { patched } = inject(fixturePod('deployment-pod-native'));
    const text = patched.metadata.annotations?.['tollgate.dev/generated-config'];
    t.type(text, 'string', 'the config is in an annotation');
    const raw = JSON.parse(text!) as Record<string, unknown>;
    const result = validateConfig(raw, { baseDir: '/etc/tollgate', source: '/etc/tollgate/config.json' });
    t.ok(result.ok, `it validates: ${JSON.stringify(result.ok ? [] : result.problems)}`);
    if (!result.ok) return;
    const c = result.config;
    t.same(c.health.listen, { host: '0.0.0.0', port: 15021 }, 'health on the pod IP');
    t.same(c.admin.listen, { host: '127.0.0.1', port: 15000 }, 'admin on loopback');
    t.equal(c.keys.dir, '/var/run/secrets/tollgate/keys', 'the key ring from the keys Secret');
    t.equal(c.identity.certFile, '/var/run/secrets/tollgate/identity/tls.crt');
    const l = c.listeners[0]!;
    t.match(l, {
      mode: 'inbound',
      protocol: 'http',
      listen: { host: '0.0.0.0', port: 15443 },
      target: { host: '127.0.0.1', port: 8080 },
    });
    t.same(
      l.allow.spiffe,
      ['spiffe://example.org/producer', 'spiffe://example.org/backfill'],
      'comma-separated allow list, trimmed',
    );
    t.equal(l.integrity.verify, true, 'signatures verified because a keys Secret is mounted');

    const volume = patched.spec.volumes?.find((v) => v.name === 'tollgate-config');
    t.same(volume, {
      name: 'tollgate-config',
      downwardAPI: {
        defaultMode: 0o444,
        items: [
          { path: 'config.json', fieldRef: { fieldPath: "metadata.annotations['tollgate.dev/generated-config']" } },
        ],
      },
    });
    t.same(sidecarOf(patched).args, ['run', '--config', '/etc/tollgate/config.json']);
    t.match(sidecarOf(patched).volumeMounts, [
      { name: 'tollgate-identity' },
      { name: 'tollgate-keys' },
      { name: 'tollgate-config', mountPath: '/etc/tollgate', readOnly: true },
      { name: 'tollgate-tmp', mountPath: '/tmp' },
    ]);
  },
);

t.test('the generated config is valid for this build', async (t) => {
  const { patched } = inject(fixturePod('deployment-pod-native'));
  const result = validateConfig(JSON.parse(patched.metadata.annotations!['tollgate.dev/generated-config']!), {
    baseDir: '/etc/tollgate',
    source: null,
  });
  t.ok(result.ok, `valid config: ${JSON.stringify(result.ok ? [] : result.problems)}`);
});

t.test('a ConfigMap named by tollgate.dev/config replaces the generated config', async (t) => {
  const { patched } = inject(fixturePod('job-pod-configmap'));
  t.notOk(patched.metadata.annotations?.['tollgate.dev/generated-config'], 'no generated config');
  t.same(
    patched.spec.volumes?.find((v) => v.name === 'tollgate-config'),
    {
      name: 'tollgate-config',
      configMap: {
        name: 'backfill-tollgate',
        defaultMode: 0o444,
        items: [{ key: 'config.json', path: 'config.json' }],
      },
    },
  );
  const both = denial(pod({ ...OPTED_IN, 'tollgate.dev/config': 'ingest-tollgate' }));
  t.match(
    both,
    'tollgate.dev/app-port: not used with tollgate.dev/config',
    'app-port with a ConfigMap is ambiguous: denied',
  );
  t.match(both, 'tollgate.dev/allow-spiffe: not used with tollgate.dev/config');
});

t.test('a pod that did not opt in is admitted untouched, whatever else it carries', async (t) => {
  const variants: Array<[string, PodObject]> = [
    ['no annotations at all', pod(null)],
    ['inject "disabled"', pod({ ...OPTED_IN, 'tollgate.dev/inject': 'disabled' })],
    ['inject "true" (only "enabled" opts in)', pod({ ...OPTED_IN, 'tollgate.dev/inject': 'true' })],
    ['inject "Enabled"', pod({ ...OPTED_IN, 'tollgate.dev/inject': 'Enabled' })],
    [
      'broken tollgate annotations but no opt-in',
      pod({ 'tollgate.dev/app-port': 'x', 'tollgate.dev/native-sidecar': 'maybe' }),
    ],
    ['hostNetwork, not opted in', pod(null, { hostNetwork: true })],
    ['the fixture', fixturePod('opted-out')],
  ];
  for (const [what, p] of variants)
    t.same(decideInjection(p, INJECTOR), { kind: 'skip', reason: 'not_opted_in' }, what);
  t.same(decideInjection('not a pod', INJECTOR), { kind: 'skip', reason: 'not_opted_in' }, 'not even an object');
});

t.test(
  'an opted-in hostNetwork pod is denied: tollgate is never injected there, and the pod asked for protection',
  async (t) => {
    t.match(denial(fixturePod('host-network')), /hostNetwork/);
  },
);

t.test(
  'an opted-in pod that cannot be injected as asked is denied, naming every problem with its annotation',
  async (t) => {
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      [
        'no identity secret',
        { ...OPTED_IN, 'tollgate.dev/identity-secret': undefined as unknown as string },
        /tollgate\.dev\/identity-secret: required/,
      ],
      [
        'no app port',
        { ...OPTED_IN, 'tollgate.dev/app-port': undefined as unknown as string },
        /tollgate\.dev\/app-port: required unless tollgate\.dev\/config/,
      ],
      [
        'no allow-list',
        { ...OPTED_IN, 'tollgate.dev/allow-spiffe': undefined as unknown as string },
        /tollgate\.dev\/allow-spiffe or tollgate\.dev\/allow-dns: required/,
      ],
      ['an empty allow-list', { ...OPTED_IN, 'tollgate.dev/allow-spiffe': ' , ' }, /allow-dns: empty/],
      [
        'a bad DNS name',
        { ...OPTED_IN, 'tollgate.dev/allow-dns': 'not a name!' },
        /tollgate\.dev\/allow-dns: .*generated config listeners\[0\]\.allow\.dns\[0\]/,
      ],
      ['port 0', { ...OPTED_IN, 'tollgate.dev/inbound-port': '0' }, /inbound-port: "0" is not a port number/],
      ['port 70000', { ...OPTED_IN, 'tollgate.dev/health-port': '70000' }, /health-port: "70000" is not a port number/],
      [
        'inbound port on the app port',
        { ...OPTED_IN, 'tollgate.dev/inbound-port': '8080' },
        /app-port: port 8080 is also tollgate\.dev\/inbound-port/,
      ],
      [
        'a bad secret name',
        { ...OPTED_IN, 'tollgate.dev/keys-secret': 'Ingest_Keys' },
        /keys-secret: "Ingest_Keys" is not a Kubernetes object name/,
      ],
      ['a bad protocol', { ...OPTED_IN, 'tollgate.dev/protocol': 'grpc' }, /protocol: "grpc" is not http or tcp/],
      [
        'keys with tcp',
        { ...OPTED_IN, 'tollgate.dev/protocol': 'tcp', 'tollgate.dev/keys-secret': 'k' },
        /keys-secret: a tcp listener carries no HTTP messages/,
      ],
      ['a bad log level', { ...OPTED_IN, 'tollgate.dev/log-level': 'loud' }, /log-level: "loud" is not one of/],
      [
        'a request above its limit',
        { ...OPTED_IN, 'tollgate.dev/memory-request': '1Gi', 'tollgate.dev/memory-limit': '512Mi' },
        /memory-request: the request 1Gi is above the limit 512Mi/,
      ],
      [
        'a request above the default limit',
        { ...OPTED_IN, 'tollgate.dev/cpu-request': '2' },
        /cpu-request: the request 2 is above the limit 1/,
      ],
      ['a zero quantity', { ...OPTED_IN, 'tollgate.dev/cpu-limit': '0' }, /cpu-limit: "0" must be more than zero/],
      [
        'native-sidecar "yes"',
        { ...OPTED_IN, 'tollgate.dev/native-sidecar': 'yes' },
        /native-sidecar: "yes" is not "true" or "false"/,
      ],
      [
        'a status written by hand',
        { ...OPTED_IN, 'tollgate.dev/status': 'pending' },
        /tollgate\.dev\/status: "pending" is written by the injector only/,
      ],
      [
        'status "injected" without the sidecar',
        { ...OPTED_IN, 'tollgate.dev/status': 'injected' },
        /says "injected" but the pod has no tollgate container/,
      ],
    ];
    for (const [what, annotations, expected] of cases) {
      const clean = Object.fromEntries(Object.entries(annotations).filter(([, v]) => v !== undefined));
      t.match(denial(pod(clean)), expected, what);
    }
    const all = denial(fixturePod('invalid-annotations'));
    for (const name of [
      'native-sidecar',
      'identity-secret',
      'app-port',
      'allow-spiffe',
      'memory-limit',
      'health-port',
    ]) {
      t.match(all, `tollgate.dev/${name}:`, `all problems at once: ${name}`);
    }
    t.match(
      all,
      /^tollgate: the pod asks for the tollgate sidecar \(tollgate\.dev\/inject: enabled\) and it cannot be injected: /,
      'the message says why the pod is refused',
    );
  },
);

t.test('names and ports the pod already uses are refused rather than shadowed', async (t) => {
  t.match(
    denial(pod(OPTED_IN, { containers: [{ name: 'tollgate', image: 'registry.example.com/fake:1.0.0' }] })),
    /already has a container named tollgate/,
  );
  t.match(
    denial(pod(OPTED_IN, { volumes: [{ name: 'tollgate-config', emptyDir: {} }] })),
    /already has a volume named tollgate-config/,
  );
  t.match(
    denial(
      pod(OPTED_IN, {
        initContainers: [
          {
            name: 'metrics',
            image: 'registry.example.com/m:1.0.0',
            restartPolicy: 'Always',
            ports: [{ containerPort: 15000 }],
          },
        ],
      }),
    ),
    /tollgate\.dev\/admin-port: port 15000 is already a containerPort of container "metrics"/,
  );
  t.match(denial({ ...pod(OPTED_IN), spec: { containers: [] } } as PodObject), /not a pod with spec\.containers/);
});

t.test('the injector default allow-list serves pods that name none; a pod list replaces it', async (t) => {
  const injector = injectorSettings(IMAGE, { allow: { spiffe: ['spiffe://cluster.local/*'], dns: [] } });
  const annotations: Record<string, string> = { ...OPTED_IN };
  delete annotations['tollgate.dev/allow-spiffe'];
  const config = (p: PodObject): { allow: Record<string, unknown> } =>
    (
      JSON.parse(inject(p, injector).patched.metadata.annotations!['tollgate.dev/generated-config']!) as {
        listeners: Array<{ allow: Record<string, unknown> }>;
      }
    ).listeners[0]!;
  t.same(config(pod(annotations)).allow, { spiffe: ['spiffe://cluster.local/*'] });
  t.same(config(pod({ ...annotations, 'tollgate.dev/allow-dns': 'producer.pipeline.svc' })).allow, {
    dns: ['producer.pipeline.svc'],
  });
});

t.test('resources come from annotations, with defaults and optional limits', async (t) => {
  t.same(sidecarOf(inject(pod(OPTED_IN)).patched).resources, {
    requests: { cpu: '50m', memory: '64Mi' },
    limits: { cpu: '1', memory: '256Mi' },
  });
  const custom = pod({
    ...OPTED_IN,
    'tollgate.dev/cpu-request': '250m',
    'tollgate.dev/memory-request': '128Mi',
    'tollgate.dev/cpu-limit': '2',
    'tollgate.dev/memory-limit': '1Gi',
  });
  t.same(sidecarOf(inject(custom).patched).resources, {
    requests: { cpu: '250m', memory: '128Mi' },
    limits: { cpu: '2', memory: '1Gi' },
  });
  const noLimits = injectorSettings(IMAGE, {
    resources: { cpuRequest: '10m', memoryRequest: '32Mi', cpuLimit: null, memoryLimit: null },
  });
  t.same(sidecarOf(inject(pod(OPTED_IN), noLimits).patched).resources, { requests: { cpu: '10m', memory: '32Mi' } });
  t.equal(parseQuantity('1.5Gi'), 1.5 * 2 ** 30);
  t.equal(parseQuantity('250m'), 0.25);
  t.equal(parseQuantity('1e3'), 1000);
  t.equal(parseQuantity('-1'), null);
  t.equal(parseQuantity('12 Mi'), null);
});

t.test('JSON Pointer tokens escape "/" as ~1 and "~" as ~0; missing maps and arrays are added whole', async (t) => {
  t.equal(escapePointerToken('tollgate.dev/status'), 'tollgate.dev~1status');
  t.equal(escapePointerToken('a~b/c'), 'a~0b~1c');
  const { patch } = inject(pod(OPTED_IN));
  t.same(
    patch.map((op) => `${op.op} ${op.path}`),
    [
      'add /metadata/annotations/tollgate.dev~1status',
      'add /metadata/annotations/tollgate.dev~1generated-config',
      'add /spec/initContainers',
      'add /spec/volumes',
      'add /spec/securityContext',
    ],
    'a pod without init containers, volumes or securityContext gets each added whole',
  );
  const existing = inject(
    pod(OPTED_IN, {
      initContainers: [{ name: 'setup', image: 'registry.example.com/setup:1.0.0' }],
      volumes: [{ name: 'data', emptyDir: {} }],
    }),
  ).patch;
  t.same(
    existing
      .filter((op) => op.path.startsWith('/spec/initContainers') || op.path.startsWith('/spec/volumes'))
      .map((op) => op.path),
    ['/spec/initContainers/0', '/spec/volumes/-', '/spec/volumes/-', '/spec/volumes/-'],
    'existing arrays are added to',
  );
  for (const op of patch)
    t.notMatch(op.path.split('/').slice(3).join('/'), /\//, `${op.path}: no raw "/" inside a token`);
});

t.test('every injected pod from the annotation matrix is a valid Kubernetes pod', async (t) => {
  const matrix: Array<Record<string, string>> = [
    OPTED_IN,
    { ...OPTED_IN, 'tollgate.dev/native-sidecar': 'false' },
    {
      ...OPTED_IN,
      'tollgate.dev/keys-secret': 'ingest-keys',
      'tollgate.dev/inbound-port': '9443',
      'tollgate.dev/health-port': '9021',
      'tollgate.dev/admin-port': '9000',
    },
    { ...OPTED_IN, 'tollgate.dev/protocol': 'tcp', 'tollgate.dev/log-level': 'debug' },
    { 'tollgate.dev/inject': 'enabled', 'tollgate.dev/config': 'custom', 'tollgate.dev/identity-secret': 'id' },
  ];
  for (const [i, annotations] of matrix.entries()) {
    for (const [j, spec] of [
      {},
      {
        initContainers: [{ name: 'setup', image: 'registry.example.com/setup:1.0.0' }],
        volumes: [{ name: 'data', emptyDir: {} }],
        securityContext: { runAsNonRoot: true },
      },
    ].entries()) {
      const { patched } = inject(pod(annotations, spec));
      t.same(
        kubernetesProblems(patched),
        [],
        `annotation set ${i}, ${j === 0 ? 'a bare pod' : 'a pod with init containers, volumes and securityContext'}`,
      );
      const names = [...(patched.spec.initContainers ?? []), ...patched.spec.containers].map((c) => c.name);
      t.equal(new Set(names).size, names.length, 'container names are unique');
      const volumes = new Set((patched.spec.volumes ?? []).map((v) => v.name));
      t.ok(
        sidecarOf(patched).volumeMounts?.every((m) => volumes.has(m.name)),
        'every sidecar mount refers to a volume of the pod',
      );
    }
  }
});
