/**
 * AdmissionReview fixtures (test/fixtures/admission/NAME.review.json) and what the webhook
 * answered, decoded: the patch as operations rather than base64.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AdmissionReviewAnswer } from '../../src/webhook/review.ts';
import type { Operation } from './k8s.ts';

export const FIXTURE_DIR = fileURLToPath(new URL('../fixtures/admission/', import.meta.url));

export interface ReviewFixture {
  readonly name: string;
  readonly review: { request: { uid: string; namespace?: string; object: PodObject } };
  readonly text: string;
}

export type PodObject = {
  apiVersion: string;
  kind: string;
  metadata: {
    name?: string;
    generateName?: string;
    namespace?: string;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  spec: {
    containers: ContainerObject[];
    initContainers?: ContainerObject[];
    volumes?: Array<{ name: string; [k: string]: unknown }>;
    securityContext?: Record<string, unknown>;
    [k: string]: unknown;
  };
};

export type ContainerObject = {
  name: string;
  image?: string;
  restartPolicy?: string;
  env?: Array<{ name: string; value?: string; valueFrom?: Record<string, unknown> }>;
  envFrom?: unknown[];
  ports?: Array<{ containerPort: number; name?: string }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  securityContext?: Record<string, unknown>;
  [k: string]: unknown;
};

/** What the golden files hold: the answer with its patch decoded. */
export interface DecodedAnswer {
  uid: string;
  allowed: boolean;
  patch?: Operation[];
  warnings?: string[];
  message?: string;
}

export function reviewFixtures(): ReviewFixture[] {
  return readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.review.json'))
    .sort()
    .map((f) => {
      const text = readFileSync(`${FIXTURE_DIR}${f}`, 'utf8');
      return { name: f.replace(/\.review\.json$/, ''), review: JSON.parse(text), text };
    });
}

export function decodeAnswer(answer: AdmissionReviewAnswer): DecodedAnswer {
  const r = answer.response;
  return {
    uid: r.uid,
    allowed: r.allowed,
    ...(r.patch !== undefined
      ? { patch: JSON.parse(Buffer.from(r.patch, 'base64').toString('utf8')) as Operation[] }
      : {}),
    ...(r.warnings !== undefined ? { warnings: [...r.warnings] } : {}),
    ...(r.status !== undefined ? { message: r.status.message } : {}),
  };
}

export function goldenFile(name: string): string {
  return `${FIXTURE_DIR}${name}.expected.json`;
}
