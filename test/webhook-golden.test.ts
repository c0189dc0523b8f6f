/**
 * Golden AdmissionReviews: pods as controllers create them (generateName, no name, the
 * namespace only in the request) -> the exact answer, patch decoded. Every patch is applied to
 * its pod the way the API server applies it, and the result must be a valid Kubernetes pod
 * with no unknown fields. Regenerate after a deliberate change with TOLLGATE_UPDATE_GOLDEN=1
 * and review the diff.
 */
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { injectorSettings } from '../src/webhook/injectorSettings.ts';
import { parseAdmissionReview, reviewAdmission } from '../src/webhook/review.ts';
import { decodeAnswer, goldenFile, reviewFixtures, type DecodedAnswer, type PodObject } from './helpers/admission.ts';
import { applyJsonPatch, kubernetesProblems } from './helpers/k8s.ts';

const INJECTOR = injectorSettings('registry.example.com/tollgate:0.1.0');
const UPDATE = process.env.TOLLGATE_UPDATE_GOLDEN === '1';

function answerFor(text: string): DecodedAnswer {
  const parsed = parseAdmissionReview(text);
  if (!parsed.ok) throw new Error(`fixture does not parse: ${parsed.message}`);
  return decodeAnswer(reviewAdmission(parsed.request, INJECTOR).answer);
}

const fixtures = reviewFixtures();

t.test('there are golden fixtures for injected, classic, job, opted-out, hostNetwork and invalid pods', async (t) => {
  t.same(
    fixtures.map((f) => f.name),
    [
      'deployment-pod-classic',
      'deployment-pod-native',
      'host-network',
      'invalid-annotations',
      'job-pod-configmap',
      'opted-out',
    ],
  );
  for (const f of fixtures) {
    t.notOk(f.review.request.object.metadata.name, `${f.name}: the pod has no name yet (generateName only)`);
    t.ok(f.review.request.object.metadata.generateName, `${f.name}: the pod has a generateName`);
    t.notOk(f.review.request.object.metadata.namespace, `${f.name}: the namespace is only in the request`);
    t.ok(f.review.request.namespace, `${f.name}: the request names the namespace`);
    t.same(kubernetesProblems(f.review.request.object), [], `${f.name}: the fixture pod itself is a valid pod`);
  }
});

for (const f of fixtures) {
  t.test(`${f.name}: the webhook's answer matches the golden file`, async (t) => {
    const got = answerFor(f.text);
    const file = goldenFile(f.name);
    if (UPDATE) writeFileSync(file, JSON.stringify(got, null, 2) + '\n');
    t.ok(existsSync(file), `${file} exists (TOLLGATE_UPDATE_GOLDEN=1 writes it)`);
    const expected = JSON.parse(readFileSync(file, 'utf8')) as DecodedAnswer;
    t.same(got, expected);
    t.equal(got.uid, f.review.request.uid, 'the uid is copied from the request');
  });

  t.test(`${f.name}: the patched pod is a valid Kubernetes pod with no unknown fields`, async (t) => {
    const got = answerFor(f.text);
    const pod = f.review.request.object;
    const patched: PodObject = got.patch === undefined ? pod : applyJsonPatch(pod, got.patch);
    t.same(kubernetesProblems(patched), []);
  });
}
