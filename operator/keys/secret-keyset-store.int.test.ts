/**
 * The local KMS with its key set in a real Secret (what the operator runs): the shared KMS conformance suite, plus
 * optimistic concurrency between two stores and the Secret's shape.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { describeKmsProvider } from '../../core/kms/conformance.ts';
import { LocalKmsProvider } from '../../core/kms/local.ts';
import { KmsError } from '../../core/kms/provider.ts';
import { SecretKeySetStore } from './secret-keyset-store.ts';

const cluster = inject('cluster');
const kc = new KubeConfig();
kc.loadFromFile(cluster.kubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const namespace = `kms-${randomBytes(3).toString('hex')}`;

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: namespace } } });
});
afterAll(async () => {
  await core.deleteNamespace({ name: namespace });
});

let n = 0;
describeKmsProvider('local (key set in a Secret on a real API server)', () =>
  Promise.resolve({
    provider: new LocalKmsProvider(new SecretKeySetStore({ core, namespace, name: 'conformance' })),
    newKeyId: () => `kek-${++n}`,
  }),
);

describe('SecretKeySetStore', () => {
  it('creates the Secret on first save, labelled, with the key set as its only data', async () => {
    const kms = new LocalKmsProvider(new SecretKeySetStore({ core, namespace, name: 'shape' }));
    await kms.createKey('strongroom-internal');
    const secret = await core.readNamespacedSecret({ namespace, name: 'shape' });
    expect(Object.keys(secret.data ?? {})).toEqual(['keyset.json']);
    expect(secret.metadata?.labels?.['strongroom.dev/role']).toBe('local-kms-keyset');
    const data = JSON.parse(Buffer.from(secret.data?.['keyset.json'] ?? '', 'base64').toString()) as {
      format: string;
    };
    expect(data.format).toBe('strongroom-local-kms/v1');
  });

  it('a save based on a stale revision fails with unavailable instead of losing the other change', async () => {
    const a = new SecretKeySetStore({ core, namespace, name: 'race' });
    const b = new SecretKeySetStore({ core, namespace, name: 'race' });
    const kmsA = new LocalKmsProvider(a);
    await kmsA.createKey('k1');
    const seenByB = await b.load();
    await kmsA.createKey('k2');
    const error = await b
      .save({ format: 'strongroom-local-kms/v1', keys: {} }, seenByB?.revision ?? null)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KmsError);
    expect((error as KmsError).code).toBe('unavailable');
    const final = await new SecretKeySetStore({ core, namespace, name: 'race' }).load();
    expect(Object.keys(final?.data.keys ?? {}).sort()).toEqual(['k1', 'k2']);
  });

  it('a Secret that is not a key set is refused, not overwritten', async () => {
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'impostor' }, stringData: { 'keyset.json': '{"format":"something-else"}' } },
    });
    const kms = new LocalKmsProvider(new SecretKeySetStore({ core, namespace, name: 'impostor' }));
    await expect(kms.createKey('x')).rejects.toMatchObject({ code: 'invalid' });
    const secret = await core.readNamespacedSecret({ namespace, name: 'impostor' });
    expect(Buffer.from(secret.data?.['keyset.json'] ?? '', 'base64').toString()).toBe(
      '{"format":"something-else"}',
    );
  });
});
