/**
 * The ModelArtifacts the injection tests resolve against, and a lookup over them. ml-dev holds resnet50 (v1, v2
 * with its own path, v3 withdrawn), imagenet, finetuned (a publish target that is Ready), fresh (no versions, not
 * Ready) and dying (being deleted); ml-shared holds bert, which an AccessGrant there grants to ml-dev/trainer.
 * Stored in S3: llama (MinIO, a prefix, v2 with its own path) and whisper (every optional field left out, the same
 * Secret as llama) and vit (AWS, virtual-hosted style, its own Secret) in ml-dev, and mistral in ml-shared, granted
 * to ml-dev/trainer. The recipient key is a fixed X25519 key.
 */
import { createHash } from 'node:crypto';
import type {
  AccessGrant,
  ModelArtifact,
  ModelArtifactStorageS3,
  ModelArtifactVersion,
} from '../../api/index.ts';
import type { ArtifactLookup, CrossNamespaceAccess, GrantLookup } from '../plan.ts';
import type { InjectionSettings } from '../patch.ts';

export const RECIPIENT_PEM =
  '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEAGBxNUsDUCMpdnO0uW7XRvV10FMHM0aKRllh0THTaS2o=\n-----END PUBLIC KEY-----\n';
export const RECIPIENT_FINGERPRINT =
  'sha256:911dd3860b32bc0833f2e63f6709c001a6d3c1ec04e87331196393b6f0607149';
/** The raw X25519 key inside {@link RECIPIENT_PEM}, base64. */
export const RECIPIENT_RAW = 'GBxNUsDUCMpdnO0uW7XRvV10FMHM0aKRllh0THTaS2o=';

export const MIB = 1024 * 1024;

/** A stable UUID-shaped uid per artifact name, like the API server's. */
export function uidOf(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function version(name: string, size: number, path?: string): ModelArtifactVersion {
  return {
    name,
    digest: `sha256:${name.length.toString(16).padStart(64, '0')}`,
    size,
    ...(path === undefined ? {} : { path }),
    encryption: { format: 'v1', keyFingerprint: RECIPIENT_FINGERPRINT },
    publisher: 'system:serviceaccount:ml-dev:trainer',
    publishedAt: '2026-10-01T00:00:00Z',
  };
}

export interface ArtifactFixture {
  namespace?: string;
  claim?: string;
  /** Stored in S3 instead of the claim. */
  s3?: ModelArtifactStorageS3;
  path?: string;
  versions?: ModelArtifactVersion[];
  withdrawn?: string[];
  ready?: boolean;
  deleting?: boolean;
}

function latestOf(f: ArtifactFixture): { latestVersion?: string } {
  const withdrawn = new Set(f.withdrawn ?? []);
  const latest = (f.versions ?? []).findLast((v) => !withdrawn.has(v.name));
  return latest === undefined ? {} : { latestVersion: latest.name };
}

export function artifact(name: string, f: ArtifactFixture = {}): ModelArtifact {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'ModelArtifact',
    metadata: {
      name,
      namespace: f.namespace ?? 'ml-dev',
      uid: uidOf(name),
      ...(f.deleting === true ? { deletionTimestamp: new Date('2026-12-09T00:00:00Z') } : {}),
    },
    spec: {
      classification: 'internal',
      owner: { team: 'vision' },
      storage: {
        ...(f.s3 === undefined
          ? { persistentVolumeClaim: { claimName: f.claim ?? 'models' } }
          : { s3: f.s3 }),
        path: f.path ?? `store/${name}`,
      },
      versions: f.versions ?? [],
      withdrawnVersions: f.withdrawn ?? [],
    },
    status:
      f.ready === false
        ? {}
        : {
            // What the operator records once a version is sealed: the newest sealed, not withdrawn version.
            ...latestOf(f),
            recipientPublicKey: {
              algorithm: 'HPKE-Base-X25519-SHA256-AES256GCM',
              fingerprint: RECIPIENT_FINGERPRINT,
              publicKeyPem: RECIPIENT_PEM,
            },
          },
  };
}

export const ARTIFACTS: readonly ModelArtifact[] = [
  artifact('resnet50', {
    path: 'vision/resnet50',
    versions: [version('v1', 100 * MIB), version('v2', 2 * 1024 * MIB, 'v2-final'), version('v3', 5)],
    withdrawn: ['v3'],
  }),
  artifact('imagenet', { claim: 'datasets', path: 'imagenet', versions: [version('2024-06-01', 1)] }),
  artifact('finetuned', { path: 'vision/finetuned', versions: [version('v1', 10)] }),
  artifact('fresh', { ready: false }),
  artifact('dying', { versions: [version('v1', 10)], deleting: true }),
  artifact('bert', {
    namespace: 'ml-shared',
    claim: 'shared-store',
    path: 'nlp/bert',
    versions: [version('v1', MIB)],
  }),
  artifact('llama', {
    s3: {
      bucket: 'ml-models',
      prefix: 'teams/nlp',
      endpoint: 'https://minio.storage.svc:9000',
      region: 'eu-central-1',
      forcePathStyle: true,
      credentialsSecretRef: { name: 'minio-reader' },
    },
    path: 'llm/llama',
    versions: [version('v1', 10 * MIB), version('v2', 100 * MIB, 'v2-final')],
  }),
  artifact('whisper', {
    s3: { bucket: 'audio-models', credentialsSecretRef: { name: 'minio-reader' } },
    path: 'speech/whisper',
    versions: [version('v1', MIB)],
  }),
  artifact('vit', {
    s3: {
      bucket: 'vision.models.example.com',
      region: 'us-west-2',
      forcePathStyle: false,
      credentialsSecretRef: { name: 'aws-reader' },
    },
    path: 'vit',
    versions: [version('v1', MIB)],
  }),
  artifact('mistral', {
    namespace: 'ml-shared',
    s3: { bucket: 'shared-models', credentialsSecretRef: { name: 'shared-reader' } },
    path: 'llm/mistral',
    versions: [version('v1', MIB)],
  }),
];

/** A lookup over `artifacts` (default {@link ARTIFACTS}). */
export function lookupIn(artifacts: readonly ModelArtifact[] = ARTIFACTS): ArtifactLookup {
  return (namespace, name) =>
    artifacts.find((a) => a.metadata.namespace === namespace && a.metadata.name === name);
}

export const SETTINGS: InjectionSettings = {
  image: 'registry.example/strongroom:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  brokerAddress: 'strongroom-broker.strongroom-system.svc:9443',
  attestAddress: 'strongroom-broker.strongroom-system.svc:9443',
  caBundlePem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  operatorNamespace: 'strongroom-system',
};

/** A read grant in `namespace` for `artifact` naming `subjects` (`<namespace>/<service account>`). */
export function grant(namespace: string, name: string, artifact: string, subjects: string[]): AccessGrant {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'AccessGrant',
    metadata: { namespace, name, uid: uidOf(`grant-${name}`) },
    spec: {
      artifactRef: { name: artifact },
      versions: { match: 'all' },
      mode: 'read',
      subjects: subjects.map((s) => {
        const [ns = '', sa = ''] = s.split('/');
        return { namespace: ns, serviceAccount: sa };
      }),
    },
  } as AccessGrant;
}

/** ml-shared grants bert and mistral to ml-dev/trainer (the fixture pods' service account); ml-dev grants resnet50
 * to ml-shared/trainer. */
export const GRANTS: readonly AccessGrant[] = [
  grant('ml-shared', 'bert-for-dev', 'bert', ['ml-dev/trainer']),
  grant('ml-shared', 'mistral-for-dev', 'mistral', ['ml-dev/trainer']),
  grant('ml-dev', 'resnet50-for-shared', 'resnet50', ['ml-shared/trainer']),
];

/** A grant lookup over `grants` (default {@link GRANTS}). */
export function grantsIn(grants: readonly AccessGrant[] = GRANTS): GrantLookup {
  return (namespace) => grants.filter((g) => g.metadata.namespace === namespace);
}

/** The fixture pods' service account, ml-dev/trainer, with {@link GRANTS}. */
export const ACCESS: CrossNamespaceAccess = { serviceAccount: 'trainer', grants: grantsIn() };
