/**
 * Helpers shared by the plan and patch tests: planning from annotations in ml-dev over the fixture artifacts, the
 * refusal a plan throws, a two-container pod with or without its lists, and the sidecar of an injected pod.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { expect } from 'vitest';
import { parseInjectionRequest } from '../annotation.ts';
import { ANNOTATION_ARTIFACTS, ANNOTATION_PUBLISH, SIDECAR_CONTAINER } from '../contract.ts';
import { InjectionError } from '../errors.ts';
import { planInjection, type InjectionPlan } from '../plan.ts';
import { ACCESS, lookupIn } from './artifacts.ts';

/** Parses and plans `annotations` for a pod in `namespace`. */
export function planOf(
  annotations: Record<string, string>,
  namespace = 'ml-dev',
  lookup = lookupIn(),
  access = ACCESS,
): InjectionPlan {
  const request = parseInjectionRequest(annotations);
  if (request === undefined) throw new Error('no request');
  return planInjection(request, namespace, lookup, access);
}

/** The InjectionError `fn` throws; fails the test when it throws nothing or something else. */
export function errorOf(fn: () => unknown): InjectionError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(InjectionError);
    return error as InjectionError;
  }
  throw new Error('expected an InjectionError, nothing was thrown');
}

/** The refusal of planning `annotations`. */
export function refusal(
  annotations: Record<string, string>,
  namespace = 'ml-dev',
  lookup = lookupIn(),
  access = ACCESS,
): InjectionError {
  return errorOf(() => planOf(annotations, namespace, lookup, access));
}

/** Two artifacts read (resnet50@latest at /models/resnet50, imagenet at /data) and finetuned@v2 published at /output. */
export const READ_AND_PUBLISH = planOf({
  [ANNOTATION_ARTIFACTS]: 'resnet50@latest:/models/resnet50,imagenet@2024-06-01:/data',
  [ANNOTATION_PUBLISH]: 'finetuned@v2:/output',
});

/** A pod with two app containers and every list already present (so the patch appends) or none (so it creates them). */
export function appPod(withLists: boolean): V1Pod {
  const app = (name: string): V1Container => ({
    name,
    image: 'trainer:1',
    ...(withLists ? { volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }] } : {}),
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'train',
      namespace: 'ml-dev',
      ...(withLists ? { annotations: { team: 'vision' } } : {}),
    },
    spec: {
      containers: [app('trainer'), app('logger')],
      ...(withLists
        ? {
            initContainers: [{ name: 'fetch-config', image: 'busybox' }],
            volumes: [{ name: 'scratch', emptyDir: {} }],
          }
        : {}),
    },
  };
}

/** The injected sidecar, which must be the first init container. */
export function sidecarOf(p: V1Pod): V1Container {
  const first = p.spec?.initContainers?.[0];
  if (first?.name !== SIDECAR_CONTAINER) throw new Error('the sidecar is not the first init container');
  return first;
}
