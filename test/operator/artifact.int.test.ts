/**
 * The ModelArtifact controller against the real control plane, with the operator as a real process holding only
 * its own RBAC: create → Ready, add a version (sealed by a writer, unsealed and wrapped under the KEK by the
 * operator), KEK rotation on schedule → rewrapped, the retired KEK version destroyed after the retention set in the
 * governance ConfigMap, lineage checked, delete → crypto-shredded (restricted and confidential: their own KEK
 * destroyed) and the finalizer gone.
 */
import { CA_BUNDLE_LABEL, CA_BUNDLE_LABEL_VALUE } from '../../operator/pki/webhook-bundles.ts';
import { WEBHOOK_CONFIGURATION_NAME } from '../../operator/webhook/configuration.ts';
import { describe, expect, inject, it } from 'vitest';
import { ApiException } from '@kubernetes/client-node';
import type { ModelArtifact } from '../../core/api/index.ts';
import { LocalKmsProvider } from '../../core/kms/local.ts';
import {
  dekAad,
  decodeWrapped,
  encodeWrapped,
  recipientSecretName,
} from '../../operator/keys/artifact-keys.ts';
import { SecretKeySetStore } from '../../operator/keys/secret-keyset-store.ts';
import { KEYSET_SECRET } from '../../operator/operator.ts';
import { kubectl } from '../cluster/kubectl.ts';
import { clients, eventually } from '../harness/operator.ts';
import {
  appendVersion,
  artifactBody,
  condition,
  createArtifact,
  getArtifact,
  sealedVersion,
} from '../harness/objects.ts';
import { operatorSuite } from '../harness/suite.ts';

const cluster = inject('cluster');
const suite = operatorSuite(cluster, {
  operatorNamespace: 'strongroom-op',
  namespaces: { ns: { name: 'ml-art', environment: 'dev' } },
  operator: { identity: 'op-a', args: ['--kek-rotation=confidential=8s'] },
  emptyOnTeardown: ['ns'],
  expectCleanExit: true,
});
const opNs = suite.operatorNamespace;
const { ns } = suite.namespaces;
const admin = clients(cluster.kubeconfig);
const deks: Buffer[] = [];

/** The operator's local KMS, opened read-side from the test (as an auditor with access to the Secret would). */
const kms = new LocalKmsProvider(
  new SecretKeySetStore({ core: admin.core, namespace: opNs, name: KEYSET_SECRET }),
);

async function ready(
  name: string,
  predicate: (a: ModelArtifact) => boolean = () => true,
): Promise<ModelArtifact> {
  return eventually(`artifact ${name} Ready`, async () => {
    const a = await getArtifact(admin.custom, ns, name);
    return condition(a, 'Ready')?.status === 'True' && predicate(a) ? a : undefined;
  });
}

describe('ModelArtifact lifecycle', () => {
  it('on first start the local KMS key set is created in a Secret, with one KEK per shared classification', async () => {
    const keyset = await eventually('key set Secret', async () => {
      try {
        return await admin.core.readNamespacedSecret({ namespace: opNs, name: KEYSET_SECRET });
      } catch {
        return undefined;
      }
    });
    expect(keyset.metadata?.labels?.['strongroom.dev/role']).toBe('local-kms-keyset');
    for (const c of ['public', 'internal']) {
      const versions = await eventually(`KEK strongroom-${c}`, async () => {
        try {
          return await kms.versions(`strongroom-${c}`);
        } catch {
          return undefined;
        }
      });
      expect(versions.find((v) => v.primary)?.state).toBe('enabled');
    }
    // Confidential and restricted artifacts get a KEK each; there is no shared one.
    await expect(kms.versions('strongroom-confidential')).rejects.toMatchObject({ code: 'not-found' });
    await expect(kms.versions('strongroom-restricted')).rejects.toMatchObject({ code: 'not-found' });
  });

  it('a new artifact gets its finalizer, a recipient key and Ready=True with observedGeneration', async () => {
    await createArtifact(admin.custom, ns, artifactBody('resnet'));
    const a = await ready('resnet');
    expect(a.metadata.finalizers).toEqual(['strongroom.dev/crypto-shred']);
    expect(a.status?.recipientPublicKey?.algorithm).toBe('HPKE-Base-X25519-SHA256-AES256GCM');
    expect(a.status?.recipientPublicKey?.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(a.status?.observedGeneration).toBe(a.metadata.generation);
    for (const type of ['Ready', 'KeysReady', 'RotationCompliant'])
      expect(condition(a, type)).toMatchObject({ status: 'True', observedGeneration: a.metadata.generation });
    // The private half exists only wrapped, in the operator's namespace.
    const secret = await admin.core.readNamespacedSecret({
      namespace: opNs,
      name: recipientSecretName(a.metadata.uid ?? ''),
    });
    const wrapped = JSON.parse(Buffer.from(secret.data?.wrappedPrivateKey ?? '', 'base64').toString()) as {
      keyId: string;
    };
    expect(wrapped.keyId).toBe('strongroom-internal');
    const table = await kubectl(cluster, ['get', 'modelartifacts', '-n', ns, 'resnet']);
    expect(table.stdout).toMatch(/resnet\s+internal\s+True/);
  });

  it('adding a version records its DEK wrapped under the KEK, bound to the artifact and version', async () => {
    const before = await ready('resnet');
    const readyAt = condition(before, 'Ready')?.lastTransitionTime;
    const { version, dek } = await sealedVersion(before, 'v1');
    deks.push(dek);
    await appendVersion(admin.custom, before, version);
    const a = await ready('resnet', (x) => x.status?.latestVersion === 'v1');
    const key = a.status?.keys?.[0];
    expect(key).toMatchObject({
      version: 'v1',
      state: 'Sealed',
      kekId: 'strongroom-internal',
      kekVersion: '1',
    });
    const unwrapped = await kms.unwrap(decodeWrapped(key?.wrappedKey ?? ''), dekAad(a, 'v1'));
    expect(unwrapped.equals(dek)).toBe(true);
    // Bound to its version: the same wrapped key does not open as another version's.
    await expect(kms.unwrap(decodeWrapped(key?.wrappedKey ?? ''), dekAad(a, 'v2'))).rejects.toMatchObject({
      code: 'unwrap-failed',
    });
    // Ready did not flip, so its transition time did not move.
    expect(condition(a, 'Ready')?.lastTransitionTime).toBe(readyAt);
    expect(condition(a, 'Ready')?.observedGeneration).toBe(a.metadata.generation);
  });

  it('a version sealed for another artifact is refused with a clear condition and no key is recorded', async () => {
    await createArtifact(admin.custom, ns, artifactBody('other'));
    const other = await ready('other');
    const resnet = await ready('resnet');
    // Sealed to resnet's recipient key but for the context of "other": HPKE info binds the artifact.
    const { version } = await sealedVersion({ ...resnet, metadata: other.metadata }, 'v1');
    await appendVersion(admin.custom, other, version);
    const a = await eventually('other not ready', async () => {
      const x = await getArtifact(admin.custom, ns, 'other');
      return condition(x, 'KeysReady')?.status === 'False' ? x : undefined;
    });
    expect(condition(a, 'Ready')?.status).toBe('False');
    expect(condition(a, 'KeysReady')?.message).toMatch(/v1/);
    expect(a.status?.keys ?? []).toEqual([]);
    const events = await kubectl(cluster, [
      'get',
      'events',
      '-n',
      ns,
      '--field-selector',
      'involvedObject.name=other',
    ]);
    expect(events.stdout).toMatch(/FingerprintMismatch|SealedKeyInvalid/);
  });

  it('lineage must name an existing artifact version; creating the parent makes the child Ready', async () => {
    await createArtifact(admin.custom, ns, artifactBody('child'));
    const child = await ready('child');
    const { version } = await sealedVersion(child, 'v1', {
      lineage: { parents: [{ kind: 'ModelArtifact', name: 'base', version: 'v7' }] },
    });
    await appendVersion(admin.custom, child, version);
    const invalid = await eventually('child lineage invalid', async () => {
      const x = await getArtifact(admin.custom, ns, 'child');
      return condition(x, 'Ready')?.status === 'False' ? x : undefined;
    });
    expect(condition(invalid, 'Ready')).toMatchObject({ reason: 'LineageInvalid' });
    expect(condition(invalid, 'Ready')?.message).toMatch(/base/);
    expect(condition(invalid, 'KeysReady')?.status).toBe('True');
    await createArtifact(admin.custom, ns, artifactBody('base'));
    const base = await ready('base');
    const v7 = await sealedVersion(base, 'v7');
    await appendVersion(admin.custom, base, v7.version);
    await ready('child');
  });

  it('the KEK rotates on its schedule, every wrapped key moves to the new version, and the retired version is destroyed after the retention', async () => {
    // A retention of 1m for confidential KEK versions (the table's minimum), from the governance ConfigMap.
    await admin.core.createNamespacedConfigMap({
      namespace: opNs,
      body: {
        metadata: { name: 'strongroom-governance' },
        data: { 'confidential.kekVersionRetention': '1m' },
      },
    });
    await createArtifact(admin.custom, ns, artifactBody('secret-model', 'confidential'));
    const a = await ready('secret-model');
    const kekId = `strongroom-artifact-${a.metadata.uid ?? ''}`;
    const { version, dek } = await sealedVersion(a, 'v1');
    await appendVersion(admin.custom, a, version);
    const sealed = await ready('secret-model', (x) => x.status?.keys?.[0]?.kekVersion === '1');
    // A copy of the wrapped DEK, as an etcd backup or an old status would keep it.
    const saved = decodeWrapped(sealed.status?.keys?.[0]?.wrappedKey ?? '');
    expect(saved.keyId).toBe(kekId);
    // confidential=8s: the operator rotates the artifact's own KEK and rewraps without any help.
    const rotated = await eventually(
      'rewrapped under version 2',
      async () => {
        const x = await getArtifact(admin.custom, ns, 'secret-model');
        return x.status?.keys?.[0]?.kekVersion === '2' ? x : undefined;
      },
      30_000,
    );
    expect(condition(rotated, 'RotationCompliant')?.status).toBe('True');
    const key = rotated.status?.keys?.[0];
    expect(key?.wrappedKey).not.toBe(encodeWrapped(saved));
    expect((await kms.unwrap(decodeWrapped(key?.wrappedKey ?? ''), dekAad(rotated, 'v1'))).equals(dek)).toBe(
      true,
    );
    // The spec (the sealed DEK a writer produced) is untouched: rotation never rewrites what was published.
    expect(rotated.spec.versions?.[0]).toEqual(sealed.spec.versions?.[0]);
    // Within the retention the saved copy still opens: version 1 is retired, not yet destroyed.
    expect((await kms.unwrap(saved, dekAad(sealed, 'v1'))).equals(dek)).toBe(true);
    const versions = await kms.versions(kekId);
    expect(versions.find((v) => v.primary)?.version).not.toBe('1');
    let metrics = (await suite.operator.get('/metrics')).body;
    expect(metrics).toContain(`strongroom_kek_rotations_total{key="${kekId}",classification="confidential"}`);
    expect(metrics).toMatch(/strongroom_key_rewraps_total\{classification="confidential"\} [1-9]/);

    // A minute after version 2 was created (and with every key on the primary), version 1 is destroyed.
    const destroyedAt = await eventually(
      'version 1 destroyed',
      async () => {
        const v1 = (await kms.versions(kekId)).find((v) => v.version === '1');
        return v1?.state === 'destroyed' ? Date.now() : undefined;
      },
      110_000,
    );
    const v2 = (await kms.versions(kekId)).find((v) => v.version === '2');
    expect(destroyedAt - Date.parse(v2?.createdAt ?? '')).toBeGreaterThanOrEqual(60_000);
    await expect(kms.unwrap(saved, dekAad(sealed, 'v1'))).rejects.toMatchObject({ code: 'destroyed' });
    // What the status holds now still opens.
    const current = await getArtifact(admin.custom, ns, 'secret-model');
    const now = decodeWrapped(current.status?.keys?.[0]?.wrappedKey ?? '');
    expect((await kms.unwrap(now, dekAad(current, 'v1'))).equals(dek)).toBe(true);
    metrics = (await suite.operator.get('/metrics')).body;
    expect(metrics).toMatch(/strongroom_kek_versions_destroyed_total\{classification="confidential"\} [1-9]/);
    expect(suite.operator.output()).toContain('destroyed retired KEK versions');
  }, 200_000);

  it('deleting a confidential artifact destroys its own KEK: the current wrapped DEK no longer opens either', async () => {
    const a = await getArtifact(admin.custom, ns, 'secret-model');
    const kekId = `strongroom-artifact-${a.metadata.uid ?? ''}`;
    const current = decodeWrapped(a.status?.keys?.[0]?.wrappedKey ?? '');
    const deleted = await kubectl(cluster, [
      'delete',
      'modelartifact',
      '-n',
      ns,
      'secret-model',
      '--timeout=30s',
    ]);
    expect(deleted.code).toBe(0);
    await expect(kms.unwrap(current, dekAad(a, 'v1'))).rejects.toMatchObject({ code: 'destroyed' });
    expect((await kms.versions(kekId)).every((v) => v.state === 'destroyed')).toBe(true);
  });

  it('deleting a restricted artifact destroys its own KEK: a saved copy of its wrapped DEK no longer opens', async () => {
    await createArtifact(admin.custom, ns, artifactBody('crown-jewels', 'restricted'));
    const a = await ready('crown-jewels');
    const { version, dek } = await sealedVersion(a, 'v1');
    await appendVersion(admin.custom, a, version);
    const sealed = await ready('crown-jewels', (x) => x.status?.keys?.length === 1);
    const kekId = `strongroom-artifact-${a.metadata.uid ?? ''}`;
    const saved = decodeWrapped(sealed.status?.keys?.[0]?.wrappedKey ?? '');
    expect(saved.keyId).toBe(kekId);
    expect((await kms.unwrap(saved, dekAad(sealed, 'v1'))).equals(dek)).toBe(true);

    const deleted = await kubectl(cluster, [
      'delete',
      'modelartifact',
      '-n',
      ns,
      'crown-jewels',
      '--timeout=30s',
    ]);
    expect(deleted.code).toBe(0);
    await expect(getArtifact(admin.custom, ns, 'crown-jewels')).rejects.toBeInstanceOf(ApiException);
    await expect(
      admin.core.readNamespacedSecret({ namespace: opNs, name: recipientSecretName(a.metadata.uid ?? '') }),
    ).rejects.toMatchObject({ code: 404 });
    await expect(kms.unwrap(saved, dekAad(sealed, 'v1'))).rejects.toMatchObject({ code: 'destroyed' });
    const keyset = await admin.core.readNamespacedSecret({ namespace: opNs, name: KEYSET_SECRET });
    const stored = JSON.parse(Buffer.from(keyset.data?.['keyset.json'] ?? '', 'base64').toString()) as {
      keys: Record<string, { versions: { material?: string; state: string }[] }>;
    };
    expect(
      stored.keys[kekId]?.versions.every((v) => v.state === 'destroyed' && v.material === undefined),
    ).toBe(true);
    expect((await suite.operator.get('/metrics')).body).toMatch(/strongroom_crypto_shreds_total [1-9]/);
  });

  it('deleting a shared-KEK artifact removes its recipient key and the finalizer; the object is gone', async () => {
    // "other" is not Ready (its only version was sealed for another artifact): deletion must not depend on that.
    const a = await getArtifact(admin.custom, ns, 'other');
    await kubectl(cluster, ['delete', 'modelartifact', '-n', ns, 'other', '--timeout=30s']);
    await expect(getArtifact(admin.custom, ns, 'other')).rejects.toMatchObject({ code: 404 });
    await expect(
      admin.core.readNamespacedSecret({ namespace: opNs, name: recipientSecretName(a.metadata.uid ?? '') }),
    ).rejects.toMatchObject({ code: 404 });
  });

  it('no DEK, wrapped key or private key ever appears in the operator log', async () => {
    const text = suite.operator.output();
    expect(text.length).toBeGreaterThan(1000);
    for (const dek of deks) {
      expect(text).not.toContain(dek.toString('base64'));
      expect(text).not.toContain(dek.toString('hex'));
    }
    const resnet = await getArtifact(admin.custom, ns, 'resnet');
    expect(text).not.toContain(resnet.status?.keys?.[0]?.wrappedKey ?? 'x');
    expect(text).not.toContain(decodeWrapped(resnet.status?.keys?.[0]?.wrappedKey ?? '').ciphertext);
  });

  it('/metrics exports watch health, artifact counts, KEK age and compliance, queue activity and leadership', async () => {
    // Domain gauges refresh every 5 s.
    const body = await eventually(
      'artifact gauge',
      async () => {
        const m = (await suite.operator.get('/metrics')).body;
        return /strongroom_artifacts\{namespace="ml-art-[^"]+",classification="internal",ready="True"\} [1-9]/.test(
          m,
        )
          ? m
          : undefined;
      },
      15_000,
    );
    expect(body).toMatch(/strongroom_watch_connected\{resource="[^"]*modelartifacts"\} 1/);
    expect(body).toMatch(
      /strongroom_kek_age_seconds\{key="strongroom-internal",classification="internal"\} \d/,
    );
    expect(body).toMatch(
      /strongroom_kek_rotation_compliant\{key="strongroom-internal",classification="internal"\} 1/,
    );
    expect(body).toMatch(/strongroom_leader 1/);
    expect(body).toMatch(/strongroom_reconcile_total\{queue="modelartifact",outcome="success"\} [1-9]/);
    expect(body).toMatch(/strongroom_operator_process_resident_memory_bytes \d/);
    expect((await suite.operator.get('/readyz')).status).toBe(200);
    expect((await suite.operator.get('/healthz')).status).toBe(200);
  });

  it('issues the CA and the serving certificates, and patches the CA bundle into its webhook configurations', async () => {
    const ca = await eventually('CA Secret', async () => {
      try {
        return await admin.core.readNamespacedSecret({ namespace: opNs, name: 'strongroom-ca' });
      } catch {
        return undefined;
      }
    });
    expect(Object.keys(ca.data ?? {}).length).toBeGreaterThan(0);
    for (const name of ['strongroom-webhook-tls', 'strongroom-broker-tls']) {
      const tls = await eventually(name, async () => {
        try {
          return await admin.core.readNamespacedSecret({ namespace: opNs, name });
        } catch {
          return undefined;
        }
      });
      expect(tls.type).toBe('kubernetes.io/tls');
      expect(tls.data?.['ca.crt']).toBeTruthy();
    }
    // The chart's RBAC lets the operator update only the webhook configuration of that name (resourceNames).
    const webhook = WEBHOOK_CONFIGURATION_NAME;
    const created = await kubectl(cluster, ['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingWebhookConfiguration',
        metadata: { name: webhook, labels: { [CA_BUNDLE_LABEL]: CA_BUNDLE_LABEL_VALUE } },
        webhooks: [
          {
            name: 'inject.strongroom.dev',
            admissionReviewVersions: ['v1'],
            sideEffects: 'None',
            failurePolicy: 'Ignore',
            clientConfig: { url: 'https://127.0.0.1:1/mutate' },
            // Matches no namespace: it must never affect another test.
            namespaceSelector: { matchLabels: { 'strongroom.dev/never': 'true' } },
            rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
          },
        ],
      }),
    });
    expect(created.code).toBe(0);
    try {
      const bundle = await eventually('caBundle patched', async () => {
        const out = await kubectl(cluster, [
          'get',
          'mutatingwebhookconfiguration',
          webhook,
          '-o',
          'jsonpath={.webhooks[0].clientConfig.caBundle}',
        ]);
        return out.stdout.length > 0 ? out.stdout : undefined;
      });
      const tls = await admin.core.readNamespacedSecret({ namespace: opNs, name: 'strongroom-webhook-tls' });
      expect(Buffer.from(bundle, 'base64').toString()).toBe(
        Buffer.from(tls.data?.['ca.crt'] ?? '', 'base64').toString(),
      );
    } finally {
      await kubectl(cluster, ['delete', 'mutatingwebhookconfiguration', webhook]);
    }
  });
});
