import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { PROBE_PORT, SIDECAR_CONTAINER, VOLUME_TOKEN } from './contract.ts';
import { buildPatch } from './patch.ts';
import { SETTINGS } from './testdata/artifacts.ts';
import { READ_AND_PUBLISH, appPod as pod, errorOf } from './testdata/plans.ts';

describe('buildPatch conflicts', () => {
  const conflicting = (change: (p: V1Pod) => void): V1Pod => {
    const p = pod(true);
    change(p);
    return p;
  };
  it.each([
    [
      'a volume named like an injected one',
      conflicting((p) => p.spec?.volumes?.push({ name: 'strongroom-plain-1', emptyDir: {} })),
      'already has a volume named strongroom-plain-1',
    ],
    [
      'a volume named like the token',
      conflicting((p) => p.spec?.volumes?.push({ name: VOLUME_TOKEN, emptyDir: {} })),
      `already has a volume named ${VOLUME_TOKEN}`,
    ],
    [
      'an init container named like the sidecar',
      conflicting((p) => p.spec?.initContainers?.push({ name: SIDECAR_CONTAINER })),
      `already has a container named ${SIDECAR_CONTAINER}`,
    ],
    [
      'an app container named like the sidecar',
      conflicting((p) => p.spec?.containers.push({ name: SIDECAR_CONTAINER })),
      `already has a container named ${SIDECAR_CONTAINER}`,
    ],
    [
      'an app container mounting at a requested path',
      conflicting((p) => p.spec?.containers[1]?.volumeMounts?.push({ name: 'scratch', mountPath: '/data/' })),
      'container logger already mounts volume scratch at /data, where Strongroom was asked to mount an artifact',
    ],
    [
      'an app container mounting at the output path',
      conflicting((p) =>
        p.spec?.containers[0]?.volumeMounts?.push({ name: 'scratch', mountPath: '/output' }),
      ),
      'container trainer already mounts volume scratch at /output',
    ],
    [
      'the probe port',
      conflicting((p) => {
        if (p.spec?.containers[0]) p.spec.containers[0].ports = [{ containerPort: PROBE_PORT }];
      }),
      `container trainer uses port ${String(PROBE_PORT)}`,
    ],
    [
      'no spec',
      conflicting((p) => {
        delete p.spec;
      }),
      'the pod has no spec',
    ],
  ])('refuses %s', (_, p, message) => {
    const error = errorOf(() => buildPatch(p, READ_AND_PUBLISH, SETTINGS));
    expect(error.kind).toBe('conflict');
    expect(error.message).toContain(message);
  });
});
