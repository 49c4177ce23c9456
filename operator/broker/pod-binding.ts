/**
 * Pure checks behind `Attest`: what a TokenReview result says about the caller (a service account, and the pod its
 * token is bound to), and whether the pod read back from the API server still is that pod.
 */
import type { V1Pod, V1TokenReviewStatus } from '@kubernetes/client-node';
import { isDns1123Label, isDns1123Subdomain } from '../../core/api/validation.ts';

/** The audience every broker token must carry. */
export const BROKER_AUDIENCE = 'strongroom';

/** Who a reviewed token speaks for. */
export interface PodBinding {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podName: string;
  readonly podUid: string;
}

/** Why an attestation was refused; `status` is the gRPC status code name it maps to. */
export type AttestDenial =
  | { readonly status: 'UNAUTHENTICATED'; readonly reason: string }
  | { readonly status: 'PERMISSION_DENIED'; readonly reason: string };

/** A service account's username: `system:serviceaccount:<namespace>:<name>`. */
const SA_USER_PREFIX = 'system:serviceaccount:';
const POD_NAME_KEY = 'authentication.kubernetes.io/pod-name';
const POD_UID_KEY = 'authentication.kubernetes.io/pod-uid';

/**
 * The pod binding of a TokenReview status, or a denial (UNAUTHENTICATED) when the token was not authenticated, is
 * not for the broker's audience, is not a service account's, or is not bound to exactly one pod.
 */
export function bindingFromReview(status: V1TokenReviewStatus | undefined): PodBinding | AttestDenial {
  const deny = (reason: string): AttestDenial => ({ status: 'UNAUTHENTICATED', reason });
  if (status?.authenticated !== true) return deny('the API server did not accept the token');
  if (!(status.audiences ?? []).includes(BROKER_AUDIENCE))
    return deny(`the token is not for audience ${BROKER_AUDIENCE}`);
  const username = status.user?.username ?? '';
  const [namespace = '', serviceAccount = '', ...rest] = username.slice(SA_USER_PREFIX.length).split(':');
  if (
    !username.startsWith(SA_USER_PREFIX) ||
    rest.length > 0 ||
    isDns1123Label(namespace).length > 0 ||
    isDns1123Subdomain(serviceAccount).length > 0
  )
    return deny('the token is not a service account token');
  const extra = status.user?.extra ?? {};
  const podName = extra[POD_NAME_KEY];
  const podUid = extra[POD_UID_KEY];
  if (podName?.length !== 1 || podUid?.length !== 1 || !podName[0] || !podUid[0])
    return deny('the token is not bound to a pod');
  return { namespace, serviceAccount, podName: podName[0], podUid: podUid[0] };
}

/**
 * Whether `pod` (read back from the API server; null when it does not exist) is still the pod the token is bound
 * to: same UID, same service account, not terminating, not finished. Returns null when it is, else a PERMISSION_DENIED denial.
 */
export function checkPod(binding: PodBinding, pod: V1Pod | null): AttestDenial | null {
  const where = `pod ${binding.namespace}/${binding.podName}`;
  const deny = (reason: string): AttestDenial => ({ status: 'PERMISSION_DENIED', reason });
  if (pod === null) return deny(`${where} no longer exists`);
  if (pod.metadata?.uid !== binding.podUid)
    return deny(`${where} is not the pod the token was issued for (UID differs)`);
  if (pod.metadata.namespace !== binding.namespace) return deny(`${where} is in another namespace`);
  if (pod.spec?.serviceAccountName !== binding.serviceAccount)
    return deny(`${where} runs as another service account than the token's`);
  if (pod.metadata.deletionTimestamp !== undefined) return deny(`${where} is terminating`);
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return deny(`${where} has finished (${phase})`);
  return null;
}

/** True for a denial, false for a binding. */
export function isDenial(value: PodBinding | AttestDenial): value is AttestDenial {
  return 'status' in value;
}
