/** ModelArtifact and AccessGrant objects for the operator tests, and a writer's side of publishing a version. */
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { ApiException, type CustomObjectsApi } from '@kubernetes/client-node';
import {
  ACCESS_GRANT_PLURAL,
  API_VERSION,
  GROUP,
  MODEL_ARTIFACT_PLURAL,
  VERSION,
  type AccessGrant,
  type AccessGrantSpec,
  type Classification,
  type ModelArtifact,
  type ModelArtifactVersion,
} from '../../core/api/index.ts';
import { newDek, sealDek } from '../../core/envelope/index.ts';
import { mergePatch } from '../../operator/controllers/status-writer.ts';

export function artifactBody(name: string, classification: Classification = 'internal'): ModelArtifact {
  return {
    apiVersion: API_VERSION,
    kind: 'ModelArtifact',
    metadata: { name },
    spec: {
      classification,
      owner: { team: 'vision' },
      storage: { persistentVolumeClaim: { claimName: 'models' }, path: name },
    },
  };
}

export async function createArtifact(
  custom: CustomObjectsApi,
  namespace: string,
  body: ModelArtifact,
): Promise<ModelArtifact> {
  return (await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: MODEL_ARTIFACT_PLURAL,
    body,
  })) as ModelArtifact;
}

export async function getArtifact(
  custom: CustomObjectsApi,
  namespace: string,
  name: string,
): Promise<ModelArtifact> {
  return (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: MODEL_ARTIFACT_PLURAL,
    name,
  })) as ModelArtifact;
}

export async function getGrant(
  custom: CustomObjectsApi,
  namespace: string,
  name: string,
): Promise<AccessGrant> {
  return (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: ACCESS_GRANT_PLURAL,
    name,
  })) as AccessGrant;
}

/** The raw X25519 key (base64) behind status.recipientPublicKey.publicKeyPem. */
export function rawRecipientKey(publicKeyPem: string): string {
  const jwk = createPublicKey(publicKeyPem).export({ format: 'jwk' });
  return Buffer.from(jwk.x ?? '', 'base64url').toString('base64');
}

/** What a publishing writer does: a fresh DEK sealed to the artifact's recipient key, described as a version. */
export async function sealedVersion(
  artifact: ModelArtifact,
  name: string,
  extra: Partial<ModelArtifactVersion> = {},
): Promise<{ version: ModelArtifactVersion; dek: Buffer }> {
  const key = artifact.status?.recipientPublicKey;
  if (!key) throw new Error(`artifact ${artifact.metadata.name} has no recipient key yet`);
  const dek = newDek();
  const sealed = await sealDek(rawRecipientKey(key.publicKeyPem), dek, {
    artifactUid: artifact.metadata.uid ?? '',
    artifactName: artifact.metadata.name ?? '',
    version: name,
  });
  const plaintextDigest = createHash('sha256').update(randomBytes(64)).digest('hex');
  return {
    dek,
    version: {
      name,
      digest: `sha256:${plaintextDigest}`,
      size: 1024,
      encryption: { format: 'v1', keyFingerprint: key.fingerprint, sealedKey: sealed },
      publisher: 'system:serviceaccount:ml:trainer',
      publishedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      ...extra,
    },
  };
}

export async function appendVersion(
  custom: CustomObjectsApi,
  artifact: ModelArtifact,
  version: ModelArtifactVersion,
): Promise<void> {
  // The operator writes status concurrently, which moves resourceVersion: retry a conflict with a fresh read.
  for (let attempt = 1; ; attempt++) {
    try {
      await appendOnce(custom, artifact, version);
      return;
    } catch (error) {
      if (!(error instanceof ApiException && error.code === 409) || attempt >= 20) throw error;
    }
  }
}

async function appendOnce(
  custom: CustomObjectsApi,
  artifact: ModelArtifact,
  version: ModelArtifactVersion,
): Promise<void> {
  const fresh = await getArtifact(custom, artifact.metadata.namespace ?? '', artifact.metadata.name ?? '');
  await custom.patchNamespacedCustomObject(
    {
      group: GROUP,
      version: VERSION,
      namespace: artifact.metadata.namespace ?? '',
      plural: MODEL_ARTIFACT_PLURAL,
      name: artifact.metadata.name ?? '',
      body: {
        metadata: { resourceVersion: fresh.metadata.resourceVersion },
        spec: { versions: [...(fresh.spec.versions ?? []), version] },
      },
    },
    mergePatch,
  );
}

/** The cluster admin user of the tests: the requester of the grants they create (never an approver). */
export const TEST_ADMIN = 'strongroom-test-admin';

/** A sign-off by `approver` in the default approver group (the admission policy would check both). */
export function approval(approver: string): { approver: string; groups: string[]; approvedAt: string } {
  return {
    approver,
    groups: ['strongroom:approvers'],
    approvedAt: new Date().toISOString().replace(/\.\d+Z$/u, 'Z'),
  };
}

export function grantBody(
  name: string,
  artifact: string,
  spec: Partial<AccessGrantSpec> & Pick<AccessGrantSpec, 'subjects'>,
): AccessGrant {
  return {
    apiVersion: API_VERSION,
    kind: 'AccessGrant',
    metadata: { name },
    spec: {
      requester: TEST_ADMIN,
      artifactRef: { name: artifact },
      versions: { match: 'latest' },
      mode: 'read',
      purpose: 'integration test',
      expiresAt: new Date(Date.now() + 3600_000).toISOString(),
      ...spec,
    },
  };
}

export async function createGrant(
  custom: CustomObjectsApi,
  namespace: string,
  body: AccessGrant,
): Promise<AccessGrant> {
  return (await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: ACCESS_GRANT_PLURAL,
    body,
  })) as AccessGrant;
}

/** Deletes grant `name` in `namespace` through the API (what a revocation starts from). */
export async function deleteGrant(custom: CustomObjectsApi, namespace: string, name: string): Promise<void> {
  await custom.deleteNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: ACCESS_GRANT_PLURAL,
    name,
  });
}

export function condition(
  object: {
    status?: {
      conditions?: {
        type: string;
        status: string;
        reason: string;
        message: string;
        lastTransitionTime: string;
        observedGeneration?: number;
      }[];
    };
  },
  type: string,
) {
  return object.status?.conditions?.find((c) => c.type === type);
}
