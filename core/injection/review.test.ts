import { readFileSync } from 'node:fs';
import type { V1ObjectMeta, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  ANNOTATION_INJECTED,
  ANNOTATION_RESOLVED,
  ENV,
  SIDECAR_CONTAINER,
  type SidecarPlan,
} from './contract.ts';
import { InjectionError } from './errors.ts';
import { admit, type AdmissionReview } from './review.ts';
import { SETTINGS, grantsIn, lookupIn } from './testdata/artifacts.ts';
import { applyPatch } from './testdata/json-patch.ts';

interface Fixture {
  apiVersion: string;
  kind: string;
  request: { uid: string; namespace: string; operation: string; object: V1Pod; kind: { kind: string } };
}

function fixture(name: string): Fixture {
  return JSON.parse(readFileSync(new URL(`testdata/${name}.json`, import.meta.url), 'utf8')) as Fixture;
}

const lookup = lookupIn();
const grants = grantsIn();

/** The decoded JSON patch of an allowed response, or undefined when there is none. */
function patchOf(review: AdmissionReview): unknown[] | undefined {
  const response = review.response;
  if (response?.patch === undefined) return undefined;
  expect(response.patchType).toBe('JSONPatch');
  return JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as unknown[];
}

/** Admits the fixture, applies the patch and returns the injected pod. */
function injected(f: Fixture): V1Pod {
  const review = admit(f, lookup, SETTINGS, grants);
  expect(review.response?.allowed).toBe(true);
  const patch = patchOf(review);
  if (patch === undefined) throw new Error('no patch');
  return applyPatch(f.request.object, patch);
}

/** A review of `pod` as it would arrive for a second admission. */
function again(f: Fixture, pod: V1Pod): Fixture {
  const second = structuredClone(f);
  second.request.uid = 'second';
  second.request.object = pod;
  return second;
}

/** The fixture pod's metadata, to change in place (every fixture is parsed afresh). */
function metadataOf(f: Fixture): V1ObjectMeta {
  const metadata = f.request.object.metadata;
  if (metadata === undefined) throw new Error('the fixture pod has no metadata');
  return metadata;
}

describe('admit: fixtures', () => {
  it.each([
    ['training-pod', 'patch'],
    ['job-pod', 'patch'],
    ['injected-pod', 'none'],
    ['operator-namespace', 'none'],
    ['plain-pod', 'none'],
    ['pod-update', 'none'],
    ['bad-relative-path', 'deny'],
    ['bad-withdrawn-version', 'deny'],
    ['label-without-annotations', 'deny'],
  ])('%s -> %s', (name, outcome) => {
    const f = fixture(name);
    const review = admit(f, lookup, SETTINGS, grants);
    expect(review.apiVersion).toBe('admission.k8s.io/v1');
    expect(review.kind).toBe('AdmissionReview');
    expect(review.response?.uid).toBe(f.request.uid);
    expect(review.response?.allowed).toBe(outcome !== 'deny');
    expect(patchOf(review) !== undefined).toBe(outcome === 'patch');
    if (outcome === 'deny') {
      expect(review.response?.status?.code).toBe(400);
      expect(review.response?.status?.message).toMatch(/^strongroom: /);
    } else expect(review.response?.status).toBeUndefined();
  });

  it.each([
    [
      'bad-relative-path',
      'annotation strongroom.dev/artifacts: entry "resnet50@v1:models/resnet50": mount path "models/resnet50" is relative',
    ],
    [
      'bad-withdrawn-version',
      'annotation strongroom.dev/artifacts: entry "resnet50@v3:/models": version v3 of ModelArtifact ml-dev/resnet50 is withdrawn (available: v1, v2)',
    ],
    [
      'label-without-annotations',
      'labelled strongroom.dev/inject=true but has neither annotation strongroom.dev/artifacts nor strongroom.dev/publish',
    ],
  ])('the denial of %s says what is wrong', (name, message) => {
    expect(admit(fixture(name), lookup, SETTINGS, grants).response?.status?.message).toContain(message);
  });
});

describe.each(['training-pod', 'job-pod'])('admit: the injected %s', (name) => {
  const f = fixture(name);
  const pod = injected(f);
  const sidecar = pod.spec?.initContainers?.[0];
  const plan = JSON.parse(sidecar?.env?.find((e) => e.name === ENV.plan)?.value ?? '{}') as SidecarPlan;

  it('starts with the native sidecar and keeps the other init containers after it', () => {
    expect(sidecar?.name).toBe(SIDECAR_CONTAINER);
    expect(sidecar?.restartPolicy).toBe('Always');
    const others = (f.request.object.spec?.initContainers ?? []).map((c) => c.name);
    expect(pod.spec?.initContainers?.slice(1).map((c) => c.name)).toEqual(others);
  });

  it('runs every injected container under the restricted profile', () => {
    const before = new Set(
      [...(f.request.object.spec?.initContainers ?? []), ...(f.request.object.spec?.containers ?? [])].map(
        (c) => c.name,
      ),
    );
    const added = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter(
      (c) => !before.has(c.name),
    );
    expect(added.map((c) => c.name)).toEqual([SIDECAR_CONTAINER]);
    for (const c of added) {
      expect(c.securityContext).toMatchObject({
        runAsNonRoot: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
        readOnlyRootFilesystem: true,
      });
    }
  });

  it('mounts token and ciphertext only in the sidecar, plaintext read-only in the apps', () => {
    const secret = (pod.spec?.volumes ?? [])
      .filter(
        (v) =>
          v.projected?.sources?.some((s) => s.serviceAccountToken?.audience === 'strongroom') ||
          v.persistentVolumeClaim,
      )
      .map((v) => v.name);
    expect(secret.length).toBeGreaterThanOrEqual(2);
    const nonSidecar = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? []).slice(1)];
    for (const c of nonSidecar) for (const m of c.volumeMounts ?? []) expect(secret).not.toContain(m.name);
    for (const c of pod.spec?.containers ?? [])
      for (const m of c.volumeMounts ?? [])
        if (m.name.startsWith('strongroom-plain-')) expect(m.readOnly).toBe(true);
    const plainMounts = (pod.spec?.containers ?? []).flatMap((c) =>
      (c.volumeMounts ?? []).filter((m) => m.name.startsWith('strongroom-plain-')),
    );
    expect(plainMounts).toHaveLength(plan.artifacts.length * (pod.spec?.containers.length ?? 0));
  });

  it('records the resolved versions the plan uses', () => {
    expect(pod.metadata?.annotations?.[ANNOTATION_INJECTED]).toBe('v1');
    expect(pod.metadata?.annotations?.[ANNOTATION_RESOLVED]).toBe(
      plan.artifacts.map((a) => `${a.namespace}/${a.name}@${a.version}`).join(','),
    );
  });

  it('is left alone on a second admission', () => {
    const second = admit(again(f, pod), lookup, SETTINGS, grants);
    expect(second.response).toEqual({ uid: 'second', allowed: true });
  });
});

describe('admit: specifics', () => {
  it('plans the Job pod (generateName, no name) from the request namespace, with publish and output size', () => {
    const f = fixture('job-pod');
    expect(metadataOf(f).name).toBeUndefined();
    delete metadataOf(f).namespace;
    const pod = injected(f);
    const plan = JSON.parse(
      pod.spec?.initContainers?.[0]?.env?.find((e) => e.name === ENV.plan)?.value ?? '{}',
    ) as SidecarPlan;
    expect(plan.artifacts.map((a) => `${a.namespace}/${a.name}@${a.version}`)).toEqual([
      'ml-dev/resnet50@v1',
      'ml-dev/imagenet@2024-06-01',
    ]);
    expect(plan.publish?.version).toBe('v2');
    expect(pod.spec?.volumes?.find((v) => v.name === 'strongroom-output')?.emptyDir).toEqual({
      medium: 'Memory',
      sizeLimit: '2Gi',
    });
    expect(pod.spec?.restartPolicy).toBe('Never');
  });

  it('warns an annotated pod without the opt-in label but injects it', () => {
    const f = fixture('training-pod');
    expect(admit(f, lookup, SETTINGS, grants).response?.warnings).toBeUndefined();
    metadataOf(f).labels = { app: 'train' };
    const review = admit(f, lookup, SETTINGS, grants);
    expect(patchOf(review)).toBeDefined();
    expect(review.response?.warnings?.[0]).toContain('label the pod strongroom.dev/inject=true');
  });

  it.each([{}, { 'strongroom.dev/inject': 'false' }])(
    'allows a pod without annotations labelled %o',
    (labels) => {
      const f = fixture('label-without-annotations');
      metadataOf(f).labels = labels;
      expect(admit(f, lookup, SETTINGS, grants).response).toEqual({ uid: f.request.uid, allowed: true });
    },
  );

  it.each([
    [
      'an eviction (CREATE on pods/eviction)',
      {
        operation: 'CREATE',
        subResource: 'eviction',
        kind: { group: 'policy', version: 'v1', kind: 'Eviction' },
      },
    ],
    ['a pod DELETE', { operation: 'DELETE' }],
    ['another kind', { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }],
  ])('passes %s through untouched', (_, change) => {
    const f = fixture('training-pod');
    Object.assign(f.request, change);
    expect(admit(f, lookup, SETTINGS, grants).response).toEqual({ uid: f.request.uid, allowed: true });
  });

  it.each([
    ['no object', undefined, 'the request carries no pod object'],
    ['no containers', { metadata: {}, spec: { containers: [] } }, 'the pod has no spec.containers'],
    [
      'volumes not a list',
      { spec: { containers: [{ name: 'a' }], volumes: {} } },
      "the pod's spec.volumes is not a list",
    ],
    [
      'annotations not a map',
      { metadata: { annotations: [] }, spec: { containers: [{ name: 'a' }] } },
      "the pod's metadata.annotations is not a map",
    ],
  ])('denies a malformed pod: %s', (_, object, message) => {
    const f = fixture('training-pod');
    Object.assign(f.request, { object });
    const review = admit(f, lookup, SETTINGS, grants);
    expect(review.response?.allowed).toBe(false);
    expect(review.response?.status?.message).toBe(`strongroom: ${message}`);
  });

  it('denies a pod without any namespace', () => {
    const f = fixture('plain-pod');
    Reflect.deleteProperty(f.request, 'namespace');
    delete metadataOf(f).namespace;
    expect(admit(f, lookup, SETTINGS, grants).response?.status?.message).toBe(
      'strongroom: the request names no namespace for the pod',
    );
  });

  it('denies a conflict with the pod as it is', () => {
    const f = fixture('training-pod');
    f.request.object.spec?.volumes?.push({ name: 'strongroom-tmp', emptyDir: {} });
    expect(admit(f, lookup, SETTINGS, grants).response?.status?.message).toContain(
      'strongroom: the pod already has a volume named strongroom-tmp',
    );
  });

  it.each([
    ['null', null],
    [
      'a v1beta1 review',
      { apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'u', kind: {} } },
    ],
    ['a review without a request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }],
    [
      'a request without a uid',
      { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { kind: {} } },
    ],
  ])('throws a request error for %s', (_, body) => {
    let error: unknown;
    try {
      admit(body, lookup, SETTINGS, grants);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InjectionError);
    expect((error as InjectionError).kind).toBe('request');
  });

  it('lets a bug in the lookup surface instead of turning it into a denial', () => {
    const broken = (): never => {
      throw new TypeError('cache exploded');
    };
    expect(() => admit(fixture('training-pod'), broken, SETTINGS, grants)).toThrow('cache exploded');
  });
});
