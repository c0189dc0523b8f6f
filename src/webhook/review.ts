/**
 * admission.k8s.io/v1 AdmissionReview in, AdmissionReview out. Parsing checks the envelope the
 * answer depends on (apiVersion, kind, request.uid, operation, the object) and says exactly
 * what is wrong; the server answers 400 with that message. The answer copies the uid, says
 * allowed, and carries the patch as base64 of the JSON Patch (patchType JSONPatch).
 *
 * Only pod CREATEs are looked at (the webhook's rules send nothing else; anything else that
 * arrives is admitted untouched). A dry run gets the same answer as a real request: the
 * webhook has no side effects.
 */
import { decideInjection, type InjectionDecision } from './injection.ts';
import type { InjectorSettings } from './injectorSettings.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const ADMISSION_KIND = 'AdmissionReview';

export interface AdmissionRequest {
  readonly uid: string;
  readonly operation: string;
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  readonly subResource: string | null;
  /** the request's namespace: pods made by a controller carry none in their metadata */
  readonly namespace: string | null;
  readonly object: unknown;
  readonly dryRun: boolean;
}

export type ParsedReview =
  { readonly ok: true; readonly request: AdmissionRequest } | { readonly ok: false; readonly message: string };

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly patchType?: 'JSONPatch';
  readonly patch?: string;
  readonly warnings?: readonly string[];
  readonly status?: {
    readonly status: 'Failure';
    readonly code: number;
    readonly reason: string;
    readonly message: string;
  };
}

export interface AdmissionReviewAnswer {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: typeof ADMISSION_KIND;
  readonly response: AdmissionResponse;
}

/** what happened, for the log line and tests */
export type Outcome = 'injected' | 'not_opted_in' | 'already_injected' | 'denied' | 'not_a_pod_create';

type Obj = Record<string, unknown>;
function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseAdmissionReview(body: string): ParsedReview {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch (err) {
    return { ok: false, message: `the body is not JSON: ${(err as Error).message}` };
  }
  if (!isObject(raw)) return { ok: false, message: 'expected an AdmissionReview object' };
  if (raw.apiVersion !== ADMISSION_API_VERSION) {
    return {
      ok: false,
      message: `apiVersion must be ${ADMISSION_API_VERSION} (got ${JSON.stringify(raw.apiVersion) ?? 'nothing'}); set admissionReviewVersions: ["v1"] on the webhook`,
    };
  }
  if (raw.kind !== ADMISSION_KIND)
    return { ok: false, message: `kind must be ${ADMISSION_KIND} (got ${JSON.stringify(raw.kind) ?? 'nothing'})` };
  const r = raw.request;
  if (!isObject(r))
    return { ok: false, message: 'request: required (an AdmissionReview sent to a webhook carries a request)' };
  const problems: string[] = [];
  if (typeof r.uid !== 'string' || r.uid.length === 0) problems.push('request.uid: required (a non-empty string)');
  if (typeof r.operation !== 'string') problems.push('request.operation: required (CREATE, UPDATE, DELETE or CONNECT)');
  const kind = r.kind;
  if (
    !isObject(kind) ||
    typeof kind.kind !== 'string' ||
    typeof kind.version !== 'string' ||
    (kind.group !== undefined && typeof kind.group !== 'string')
  ) {
    problems.push('request.kind: required ({group, version, kind})');
  }
  if (r.operation === 'CREATE' && !isObject(r.object))
    problems.push('request.object: required for CREATE (the object being created)');
  if (r.namespace !== undefined && typeof r.namespace !== 'string')
    problems.push('request.namespace: expected a string');
  if (r.subResource !== undefined && typeof r.subResource !== 'string')
    problems.push('request.subResource: expected a string');
  if (r.dryRun !== undefined && typeof r.dryRun !== 'boolean') problems.push('request.dryRun: expected a boolean');
  if (problems.length > 0) return { ok: false, message: problems.join('; ') };
  const k = kind as Obj;
  return {
    ok: true,
    request: {
      uid: r.uid as string,
      operation: r.operation as string,
      kind: { group: (k.group as string | undefined) ?? '', version: k.version as string, kind: k.kind as string },
      subResource: typeof r.subResource === 'string' && r.subResource.length > 0 ? r.subResource : null,
      namespace: typeof r.namespace === 'string' && r.namespace.length > 0 ? r.namespace : null,
      object: r.object,
      dryRun: r.dryRun === true,
    },
  };
}

function isPodCreate(request: AdmissionRequest): boolean {
  return (
    request.operation === 'CREATE' &&
    request.kind.group === '' &&
    request.kind.version === 'v1' &&
    request.kind.kind === 'Pod' &&
    request.subResource === null
  );
}

/** The answer to one admission request, and what happened. */
export function reviewAdmission(
  request: AdmissionRequest,
  injector: InjectorSettings,
): { answer: AdmissionReviewAnswer; outcome: Outcome; decision: InjectionDecision | null } {
  if (!isPodCreate(request))
    return { answer: answer({ uid: request.uid, allowed: true }), outcome: 'not_a_pod_create', decision: null };
  const decision = decideInjection(request.object, injector);
  switch (decision.kind) {
    case 'skip':
      return { answer: answer({ uid: request.uid, allowed: true }), outcome: decision.reason, decision };
    case 'deny':
      return {
        answer: answer({
          uid: request.uid,
          allowed: false,
          status: { status: 'Failure', code: 403, reason: 'Forbidden', message: decision.message },
        }),
        outcome: 'denied',
        decision,
      };
    case 'inject':
      return {
        answer: answer({
          uid: request.uid,
          allowed: true,
          patchType: 'JSONPatch',
          patch: Buffer.from(JSON.stringify(decision.patch)).toString('base64'),
          ...(decision.warnings.length > 0 ? { warnings: decision.warnings } : {}),
        }),
        outcome: 'injected',
        decision,
      };
  }
}

function answer(response: AdmissionResponse): AdmissionReviewAnswer {
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, response };
}
