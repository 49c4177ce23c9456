/**
 * The admission decision for one pod: the pure core of the mutating webhook. It takes an admission.k8s.io/v1
 * AdmissionReview and answers with one: allowed without a patch (not a pod CREATE, the operator's namespace, an
 * already injected pod, a pod that has not opted in), allowed with the injection patch, or denied with a message
 * saying what is wrong.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { parseInjectionRequest } from './annotation.ts';
import { ANNOTATION_ARTIFACTS, ANNOTATION_INJECTED, ANNOTATION_PUBLISH, LABEL_INJECT } from './contract.ts';
import { InjectionError } from './errors.ts';
import { buildPatch, type InjectionSettings } from './patch.ts';
import { planInjection, type ArtifactLookup, type GrantLookup } from './plan.ts';
import { admissionProblem, expectedSidecar, pemBodies, verifyInjectedPod } from './verify.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

/** The parts of an admission.k8s.io/v1 AdmissionRequest the webhook reads. */
export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  readonly resource?: { readonly group: string; readonly version: string; readonly resource: string };
  readonly subResource?: string;
  readonly operation: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
  /** The object's namespace; for pods created with generateName the name is still empty. */
  readonly namespace?: string;
  readonly name?: string;
  readonly object?: unknown;
  readonly dryRun?: boolean;
}

/** A metav1.Status, as carried in a denial. */
export interface AdmissionStatus {
  readonly status: 'Failure';
  readonly code: number;
  readonly reason: string;
  readonly message: string;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: AdmissionStatus;
  readonly patchType?: 'JSONPatch';
  /** Base64 of the JSON patch. */
  readonly patch?: string;
  readonly warnings?: readonly string[];
}

export interface AdmissionReview {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: 'AdmissionReview';
  readonly request?: AdmissionRequest;
  readonly response?: AdmissionResponse;
}

/** Prefix of every denial message, so that users can tell who refused their pod. */
export const DENIAL_PREFIX = 'strongroom: ';

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The request of a well-formed v1 AdmissionReview; throws InjectionError (kind `request`) otherwise. */
function requestOf(review: unknown): AdmissionRequest {
  if (!isRecord(review) || review.apiVersion !== ADMISSION_API_VERSION || review.kind !== 'AdmissionReview')
    throw new InjectionError('request', `the body is not an ${ADMISSION_API_VERSION} AdmissionReview`);
  const request = review.request;
  if (!isRecord(request) || typeof request.uid !== 'string' || request.uid === '' || !isRecord(request.kind))
    throw new InjectionError('request', 'the AdmissionReview has no request with a uid and a kind');
  return request as unknown as AdmissionRequest;
}

function respond(response: AdmissionResponse): AdmissionReview {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

function deny(uid: string, message: string): AdmissionReview {
  return respond({
    uid,
    allowed: false,
    status: { status: 'Failure', code: 400, reason: 'BadRequest', message: `${DENIAL_PREFIX}${message}` },
  });
}

/** Pods must have a spec with at least one container, each with a name; anything else is denied, not guessed at. */
function podOf(object: unknown): V1Pod | string {
  if (!isRecord(object)) return 'the request carries no pod object';
  const spec = object.spec;
  if (!isRecord(spec) || !Array.isArray(spec.containers) || spec.containers.length === 0)
    return 'the pod has no spec.containers';
  for (const field of ['containers', 'initContainers', 'ephemeralContainers', 'volumes'])
    if (spec[field] !== undefined && !Array.isArray(spec[field]))
      return `the pod's spec.${field} is not a list`;
  const metadata = object.metadata;
  if (metadata !== undefined && !isRecord(metadata)) return 'the pod has malformed metadata';
  for (const field of ['annotations', 'labels'])
    if (isRecord(metadata) && metadata[field] !== undefined && !isRecord(metadata[field]))
      return `the pod's metadata.${field} is not a map`;
  return object;
}

/**
 * Decides one admission review. Throws {@link InjectionError} (kind `request`) only when `review` is not an
 * admission.k8s.io/v1 AdmissionReview request at all (the server answers that with HTTP 400); every decision about
 * a pod, including a denial, is an AdmissionReview response echoing the request's uid.
 */
export function admit(
  review: unknown,
  lookup: ArtifactLookup,
  settings: InjectionSettings,
  grants: GrantLookup,
): AdmissionReview {
  const request = requestOf(review);
  const { uid } = request;
  const allow = (): AdmissionReview => respond({ uid, allowed: true });
  const isPod =
    request.kind.group === '' && request.kind.kind === 'Pod' && (request.subResource ?? '') === '';
  if (!isPod || request.operation !== 'CREATE') return allow();
  const found = podOf(request.object);
  if (typeof found === 'string') return deny(uid, found);
  const pod = found;
  const namespace = request.namespace ?? pod.metadata?.namespace;
  if (namespace === undefined || namespace === '')
    return deny(uid, 'the request names no namespace for the pod');
  if (namespace === settings.operatorNamespace) return allow();
  const annotations = pod.metadata?.annotations ?? {};
  if (annotations[ANNOTATION_INJECTED] !== undefined) {
    // Already injected (a second admission changes nothing); a pod that only claims to be is refused here, as
    // Attest would refuse it later.
    const trusted = new Set(pemBodies(settings.caBundlePem));
    const problem = verifyInjectedPod(
      pod,
      expectedSidecar(settings, () => trusted),
    );
    return problem === undefined
      ? allow()
      : deny(uid, `the pod carries ${ANNOTATION_INJECTED} but is not as Strongroom injects it: ${problem}`);
  }
  const optedIn = pod.metadata?.labels?.[LABEL_INJECT] === 'true';
  try {
    const parsed = parseInjectionRequest(annotations);
    if (parsed === undefined) {
      if (!optedIn) return allow();
      return deny(
        uid,
        `the pod is labelled ${LABEL_INJECT}=true but has neither annotation ${ANNOTATION_ARTIFACTS} nor ${ANNOTATION_PUBLISH}; add one, or remove the label`,
      );
    }
    const problem = admissionProblem(pod);
    if (problem !== undefined) return deny(uid, problem);
    const plan = planInjection(parsed, namespace, lookup, {
      serviceAccount: pod.spec?.serviceAccountName ?? 'default',
      grants,
    });
    const patch = buildPatch(pod, plan, settings);
    return respond({
      uid,
      allowed: true,
      patchType: 'JSONPatch',
      patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
      ...(optedIn
        ? {}
        : {
            warnings: [
              `${DENIAL_PREFIX}label the pod ${LABEL_INJECT}=true so that it is refused, not started without its sidecar, when the webhook is unavailable`,
            ],
          }),
    });
  } catch (error) {
    if (error instanceof InjectionError) return deny(uid, error.message);
    throw error;
  }
}
