/**
 * `tollgate webhook --config FILE` and `--image`: every problem at once with its path, unknown
 * keys refused, defaults that would make sidecars fail refused at startup, images pinned.
 */
import t from 'tap';
import { imageReferenceProblem } from '../src/webhook/imageReference.ts';
import { DEFAULT_SIDECAR_RESOURCES } from '../src/webhook/injectorSettings.ts';
import { defaultWebhookConfig, validateWebhookConfig } from '../src/webhook/webhookConfig.ts';

const IMAGE = 'registry.example.com/tollgate:0.1.0';

function problems(raw: unknown): string[] {
  const r = validateWebhookConfig(raw, IMAGE);
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
}

t.test('an empty config means the defaults', async (t) => {
  const r = validateWebhookConfig({}, IMAGE);
  t.ok(r.ok);
  if (!r.ok) return;
  t.same(r.config, defaultWebhookConfig(IMAGE));
  t.same(r.config.injector.resources, DEFAULT_SIDECAR_RESOURCES);
  t.match(r.config.injector, {
    image: IMAGE,
    imagePullPolicy: 'IfNotPresent',
    runAsUser: 65532,
    nativeSidecar: true,
    logLevel: 'info',
  });
  t.equal(r.config.drainTimeoutSeconds, 10);
});

t.test('every setting is read, and limits can be switched off with null', async (t) => {
  const r = validateWebhookConfig(
    {
      sidecar: {
        imagePullPolicy: 'Always',
        runAsUser: 1337,
        nativeSidecar: false,
        resources: { cpuRequest: '100m', memoryRequest: '96Mi', cpuLimit: null, memoryLimit: '512Mi' },
        allow: { spiffe: ['spiffe://cluster.local/*'], dns: ['producer.pipeline.svc'] },
        logLevel: 'debug',
      },
      log: { level: 'warn' },
      drainTimeoutSeconds: 3,
    },
    IMAGE,
  );
  t.ok(r.ok, JSON.stringify(r.ok ? [] : r.problems));
  if (!r.ok) return;
  t.match(r.config.injector, {
    imagePullPolicy: 'Always',
    runAsUser: 1337,
    nativeSidecar: false,
    resources: { cpuRequest: '100m', memoryRequest: '96Mi', cpuLimit: null, memoryLimit: '512Mi' },
    allow: { spiffe: ['spiffe://cluster.local/*'], dns: ['producer.pipeline.svc'] },
    logLevel: 'debug',
  });
  t.equal(r.config.logLevel, 'warn');
  t.equal(r.config.drainTimeoutSeconds, 3);
});

t.test('every problem is reported at once, with its path', async (t) => {
  const found = problems({
    sidecar: {
      imagePullPolicy: 'Sometimes',
      runAsUser: 0,
      nativeSidecar: 'yes',
      resources: { cpuRequest: 'lots', memoryRequest: '1Gi', memoryLimit: '512Mi', gpu: 1 },
      allow: { spiffe: ['example.org/x'], dns: ['not a name!'] },
      logLevel: 'chatty',
      colour: 'blue',
    },
    log: { level: 'loud' },
    drainTimeoutSeconds: 0,
    extra: true,
  });
  for (const path of [
    'config.extra: unknown key',
    'sidecar.colour: unknown key',
    'sidecar.imagePullPolicy: expected one of Always, IfNotPresent, Never',
    'sidecar.runAsUser: expected a numeric user id above 0',
    'sidecar.nativeSidecar: expected true or false',
    'sidecar.resources.gpu: unknown key',
    'sidecar.resources.cpuRequest: expected a Kubernetes quantity',
    'sidecar.resources.memoryRequest: 1Gi is above memoryLimit 512Mi',
    'sidecar.allow.spiffe[0]: expected SPIFFE IDs',
    'sidecar.allow.dns[0]: ',
    'sidecar.logLevel: expected one of',
    'log.level: expected one of',
    'drainTimeoutSeconds: expected seconds',
  ]) {
    t.ok(
      found.some((p) => p.startsWith(path)),
      path,
    );
  }
  t.same(problems('x'), ['config: expected a JSON object']);
  t.same(problems({ sidecar: [] }), ['sidecar: expected an object']);
});

t.test('the sidecar image must be a pinned reference', async (t) => {
  for (const good of [
    'tollgate:0.1.0',
    'registry.example.com/tollgate:0.1.0',
    'registry.example.com:5000/team/tollgate:0.1.0-rc.1',
    `ghcr.io/org/tollgate@sha256:${'a'.repeat(64)}`,
    `ghcr.io/org/tollgate:0.1.0@sha256:${'b'.repeat(64)}`,
    'tollgate:dev',
  ]) {
    t.equal(imageReferenceProblem(good), null, good);
  }
  t.match(imageReferenceProblem('tollgate'), /no tag, which means latest/);
  t.match(imageReferenceProblem('registry.example.com/tollgate:latest'), /uses the latest tag/);
  for (const bad of [
    '',
    'Tollgate:1',
    'tollgate:1 --privileged',
    'tollgate@sha256:abc',
    'http://registry/tollgate:1',
  ]) {
    t.match(imageReferenceProblem(bad), /is not an image reference/, JSON.stringify(bad));
  }
});
