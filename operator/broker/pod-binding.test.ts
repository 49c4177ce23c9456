import type { V1Pod, V1TokenReviewStatus } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { bindingFromReview, checkPod, isDenial, type PodBinding } from './pod-binding.ts';

const UID = '0f8b1c2d-3e4f-4a5b-8c6d-7e8f90a1b2c3';

function review(
  overrides: Partial<V1TokenReviewStatus> = {},
  extra?: Record<string, string[]>,
): V1TokenReviewStatus {
  return {
    authenticated: true,
    audiences: ['strongroom'],
    user: {
      username: 'system:serviceaccount:research:trainer',
      extra: extra ?? {
        'authentication.kubernetes.io/pod-name': ['trainer-0'],
        'authentication.kubernetes.io/pod-uid': [UID],
      },
    },
    ...overrides,
  };
}

function without(field: 'authenticated' | 'audiences'): V1TokenReviewStatus {
  return Object.fromEntries(Object.entries(review()).filter(([key]) => key !== field));
}

const binding: PodBinding = {
  namespace: 'research',
  serviceAccount: 'trainer',
  podName: 'trainer-0',
  podUid: UID,
};

function pod(
  overrides: { uid?: string; sa?: string; namespace?: string; deleting?: boolean; phase?: string } = {},
): V1Pod {
  return {
    metadata: {
      name: 'trainer-0',
      namespace: overrides.namespace ?? 'research',
      uid: overrides.uid ?? UID,
      ...(overrides.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: { serviceAccountName: overrides.sa ?? 'trainer', containers: [] },
    status: { phase: overrides.phase ?? 'Running' },
  };
}

describe('bindingFromReview', () => {
  it('reads namespace, service account and the bound pod', () => {
    expect(bindingFromReview(review())).toEqual(binding);
  });

  it.each<[string, V1TokenReviewStatus | undefined]>([
    ['no status', undefined],
    ['an unauthenticated token', review({ authenticated: false, error: 'invalid bearer token' })],
    ['authenticated missing', without('authenticated')],
    ['another audience', review({ audiences: ['https://kubernetes.default.svc'] })],
    ['no audiences', without('audiences')],
    [
      'a user that is not a service account',
      review({ user: { username: 'alice', extra: review().user?.extra ?? {} } }),
    ],
    [
      'a malformed service account user',
      review({ user: { username: 'system:serviceaccount:research', extra: {} } }),
    ],
    ['a token not bound to a pod', review({}, {})],
    ['a token bound to a secret', review({}, { 'authentication.kubernetes.io/credential-id': ['JTI=x'] })],
    ['a pod name without a UID', review({}, { 'authentication.kubernetes.io/pod-name': ['trainer-0'] })],
    [
      'two pod UIDs',
      review(
        {},
        {
          'authentication.kubernetes.io/pod-name': ['trainer-0'],
          'authentication.kubernetes.io/pod-uid': [UID, UID],
        },
      ),
    ],
    [
      'an empty pod name',
      review(
        {},
        { 'authentication.kubernetes.io/pod-name': [''], 'authentication.kubernetes.io/pod-uid': [UID] },
      ),
    ],
  ])('is UNAUTHENTICATED for %s', (_what, status) => {
    const result = bindingFromReview(status);
    expect(isDenial(result)).toBe(true);
    expect(result).toMatchObject({ status: 'UNAUTHENTICATED' });
  });
});

describe('checkPod', () => {
  it('accepts the same pod, running', () => {
    expect(checkPod(binding, pod())).toBeNull();
    expect(checkPod(binding, pod({ phase: 'Pending' }))).toBeNull();
  });

  it.each<[string, V1Pod | null, RegExp]>([
    ['a pod that no longer exists', null, /no longer exists/],
    [
      'a pod recreated under the same name',
      pod({ uid: '11111111-2222-4333-8444-555555555555' }),
      /UID differs/,
    ],
    ['a pod running as another service account', pod({ sa: 'admin' }), /another service account/],
    ['a pod in another namespace', pod({ namespace: 'prod' }), /another namespace/],
    ['a terminating pod', pod({ deleting: true }), /terminating/],
    ['a succeeded pod', pod({ phase: 'Succeeded' }), /finished/],
    ['a failed pod', pod({ phase: 'Failed' }), /finished/],
  ])('is PERMISSION_DENIED for %s', (_what, candidate, message) => {
    const denial = checkPod(binding, candidate);
    expect(denial?.status).toBe('PERMISSION_DENIED');
    expect(denial?.reason).toMatch(message);
  });

  it('treats a pod without a service account name as a mismatch (fails closed)', () => {
    const bare = pod();
    delete bare.spec?.serviceAccountName;
    expect(checkPod(binding, bare)?.status).toBe('PERMISSION_DENIED');
  });
});
