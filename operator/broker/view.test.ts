import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { SIDECAR_CONTAINER } from '../../core/injection/contract.ts';
import { expectedSidecar, pemBodies, verifyInjectedPod } from '../../core/injection/verify.ts';
import { asInjected, defaultInjection, setInjection } from '../../test/harness/workload.ts';
import { slimPod } from './view.ts';

const IMAGE = 'registry.example/strongroom:1';
const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const INJECTION = { ...defaultInjection('strongroom-system', CA), image: IMAGE };
setInjection(INJECTION);
const EXPECTED = expectedSidecar(INJECTION, () => new Set(pemBodies(CA)));

function pod(): V1Pod {
  return asInjected(
    {
      metadata: { name: 'p', namespace: 'ns', uid: 'u', labels: { app: 'a' } },
      spec: { serviceAccountName: 'sa', containers: [{ name: 'main', image: 'busybox' }] },
    },
    IMAGE,
  );
}

describe('slimPod', () => {
  it('keeps the identity, the labels and what verifyInjectedPod reads, with the same verdict', () => {
    const slim = slimPod(pod());
    expect(slim.metadata).toMatchObject({ name: 'p', namespace: 'ns', uid: 'u', labels: { app: 'a' } });
    expect(slim.spec?.serviceAccountName).toBe('sa');
    expect(verifyInjectedPod(slim, EXPECTED)).toBeUndefined();
    // Of the env, only the values the check compares (endpoints, CA bundle) are kept, never the plan.
    expect(JSON.stringify(slim)).not.toContain('STRONGROOM_PLAN","value"');
  });

  it('keeps a changed sidecar image and an ephemeral container mounting the token, so the broker refuses them', () => {
    const retooled = pod();
    const sidecar = retooled.spec?.initContainers?.find((c) => c.name === SIDECAR_CONTAINER);
    if (sidecar === undefined) throw new Error('no sidecar');
    sidecar.image = 'registry.example/evil:1';
    expect(verifyInjectedPod(slimPod(retooled), EXPECTED)).toContain('not the configured sidecar image');
    const debugged = pod();
    if (debugged.spec === undefined) throw new Error('no spec');
    debugged.spec.ephemeralContainers = [
      { name: 'debug', image: 'busybox', volumeMounts: [{ name: 'strongroom-token', mountPath: '/t' }] },
    ];
    expect(verifyInjectedPod(slimPod(debugged), EXPECTED)).toContain(
      'ephemeral container debug mounts volume',
    );
  });

  it('keeps nothing of the spec of a pod that is not injected', () => {
    const plain = slimPod({ metadata: { name: 'q' }, spec: { containers: [{ name: 'c', image: 'x' }] } });
    expect(plain.spec?.containers).toEqual([]);
    expect(verifyInjectedPod(plain, EXPECTED)).toContain('does not carry the annotation');
  });
});
