/**
 * The AdmissionReview envelope: what is malformed (the server answers 400 with the message),
 * what is admitted untouched without looking (not a pod CREATE), and that a dry run gets the
 * same answer as the real request.
 */
import t from 'tap';
import { injectorSettings } from '../src/webhook/injectorSettings.ts';
import { parseAdmissionReview, reviewAdmission } from '../src/webhook/review.ts';
import { decodeAnswer, reviewFixtures } from './helpers/admission.ts';

const INJECTOR = injectorSettings('registry.example.com/tollgate:0.1.0');

function fixtureText(name: string): string {
  const f = reviewFixtures().find((x) => x.name === name);
  if (f === undefined) throw new Error(`no fixture ${name}`);
  return f.text;
}

function withRequest(change: (request: Record<string, unknown>) => void, name = 'deployment-pod-native'): string {
  const review = JSON.parse(fixtureText(name)) as { request: Record<string, unknown> };
  change(review.request);
  return JSON.stringify(review);
}

function message(body: string): string {
  const parsed = parseAdmissionReview(body);
  if (parsed.ok) throw new Error('expected a malformed review');
  return parsed.message;
}

t.test('a malformed review is refused with a message that says what is wrong', async (t) => {
  t.match(message('{"apiVersion":'), /^the body is not JSON: /);
  t.match(message(''), /^the body is not JSON/);
  t.equal(message('[]'), 'expected an AdmissionReview object');
  t.equal(message('null'), 'expected an AdmissionReview object');
  t.match(
    message(JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: {} })),
    /apiVersion must be admission\.k8s\.io\/v1 \(got "admission\.k8s\.io\/v1beta1"\); set admissionReviewVersions/,
  );
  t.match(
    message(JSON.stringify({ kind: 'AdmissionReview' })),
    /apiVersion must be admission\.k8s\.io\/v1 \(got nothing\)/,
  );
  t.match(
    message(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'Pod' })),
    /kind must be AdmissionReview \(got "Pod"\)/,
  );
  t.match(
    message(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' })),
    /^request: required/,
  );
  t.match(message(withRequest((r) => delete r.uid)), /request\.uid: required/);
  t.match(message(withRequest((r) => (r.uid = ''))), /request\.uid: required/);
  t.match(message(withRequest((r) => delete r.operation)), /request\.operation: required/);
  t.match(message(withRequest((r) => (r.kind = 'Pod'))), /request\.kind: required/);
  t.match(message(withRequest((r) => (r.object = null))), /request\.object: required for CREATE/);
  t.match(message(withRequest((r) => (r.namespace = 7))), /request\.namespace: expected a string/);
  t.match(message(withRequest((r) => (r.dryRun = 'yes'))), /request\.dryRun: expected a boolean/);
  const several = message(
    withRequest((r) => {
      delete r.uid;
      r.object = 'x';
    }),
  );
  t.match(several, /request\.uid: required.*; request\.object: required/, 'every envelope problem at once');
});

t.test('anything but a pod CREATE is admitted untouched without being looked at', async (t) => {
  const cases: Array<[string, (r: Record<string, unknown>) => void]> = [
    ['an UPDATE', (r) => (r.operation = 'UPDATE')],
    ['a DELETE', (r) => ((r.operation = 'DELETE'), (r.object = null))],
    ['a Service', (r) => (r.kind = { group: '', version: 'v1', kind: 'Service' })],
    ['a pod subresource', (r) => (r.subResource = 'ephemeralcontainers')],
    ['a pod of another API group', (r) => (r.kind = { group: 'example.com', version: 'v1', kind: 'Pod' })],
  ];
  for (const [what, change] of cases) {
    const parsed = parseAdmissionReview(withRequest(change));
    t.ok(parsed.ok, `${what} parses`);
    if (!parsed.ok) continue;
    const { answer, outcome } = reviewAdmission(parsed.request, INJECTOR);
    t.same(
      answer,
      {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        response: { uid: parsed.request.uid, allowed: true },
      },
      what,
    );
    t.equal(outcome, 'not_a_pod_create');
  }
});

t.test('the answer copies the uid and carries the patch as base64 JSON with patchType JSONPatch', async (t) => {
  const parsed = parseAdmissionReview(fixtureText('deployment-pod-native'));
  if (!parsed.ok) throw new Error(parsed.message);
  const { answer, outcome } = reviewAdmission(parsed.request, INJECTOR);
  t.equal(outcome, 'injected');
  t.equal(answer.apiVersion, 'admission.k8s.io/v1');
  t.equal(answer.kind, 'AdmissionReview');
  t.equal(answer.response.uid, '0f4a9c1e-6b7d-4c2a-9e51-2d7f3b8a1c01');
  t.equal(answer.response.allowed, true);
  t.equal(answer.response.patchType, 'JSONPatch');
  t.match(answer.response.patch, /^[A-Za-z0-9+/]+={0,2}$/, 'base64');
  t.ok(Array.isArray(decodeAnswer(answer).patch), 'decodes to a JSON array');
});

t.test('a denial is allowed: false with a Status naming the reason', async (t) => {
  const parsed = parseAdmissionReview(fixtureText('host-network'));
  if (!parsed.ok) throw new Error(parsed.message);
  const { answer, outcome } = reviewAdmission(parsed.request, INJECTOR);
  t.equal(outcome, 'denied');
  t.match(answer.response, {
    uid: 'b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d06',
    allowed: false,
    status: { status: 'Failure', code: 403, reason: 'Forbidden' },
  });
  t.notOk(answer.response.patch, 'no patch with a denial');
  t.notOk(answer.response.patchType);
});

t.test('a dry run gets exactly the answer the real request gets (the webhook has no side effects)', async (t) => {
  for (const name of ['deployment-pod-native', 'deployment-pod-classic', 'host-network', 'opted-out']) {
    const real = parseAdmissionReview(withRequest((r) => (r.dryRun = false), name));
    const dry = parseAdmissionReview(withRequest((r) => (r.dryRun = true), name));
    if (!real.ok || !dry.ok) throw new Error('fixture does not parse');
    t.equal(dry.request.dryRun, true);
    t.same(reviewAdmission(dry.request, INJECTOR).answer, reviewAdmission(real.request, INJECTOR).answer, name);
  }
});
