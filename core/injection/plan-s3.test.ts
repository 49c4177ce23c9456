import { describe, expect, it } from 'vitest';
import { ANNOTATION_ARTIFACTS, ANNOTATION_CIPHERTEXT_CLAIM, ANNOTATION_PUBLISH } from './contract.ts';
import { artifact, lookupIn, uidOf, version } from './testdata/artifacts.ts';
import { planOf as plan, refusal } from './testdata/plans.ts';

describe('planInjection: reading from S3', () => {
  it('hands the sidecar the S3 source instead of a ciphertext path, and mounts no ciphertext volume', () => {
    const p = plan({ [ANNOTATION_ARTIFACTS]: 'llama@latest:/models/llama' });
    expect(p.ciphertext).toEqual([]);
    expect(p.resolved).toEqual(['ml-dev/llama@v2']);
    expect(p.sidecar.artifacts).toEqual([
      {
        namespace: 'ml-dev',
        name: 'llama',
        uid: uidOf('llama'),
        version: 'v2',
        digest: version('v2', 1).digest,
        ciphertextPath: '',
        s3: {
          endpoint: 'https://minio.storage.svc:9000',
          region: 'eu-central-1',
          bucket: 'ml-models',
          keyPrefix: 'teams/nlp/llm/llama/v2-final/',
          forcePathStyle: true,
          credentialsEnv: {
            accessKeyId: 'STRONGROOM_S3_0_ACCESS_KEY_ID',
            secretAccessKey: 'STRONGROOM_S3_0_SECRET_ACCESS_KEY',
          },
        },
        plaintextDir: '/var/run/strongroom/plain/0',
        mountPath: '/models/llama',
      },
    ]);
    expect(p.s3Credentials).toEqual([
      {
        secretName: 'minio-reader',
        accessKeyIdEnv: 'STRONGROOM_S3_0_ACCESS_KEY_ID',
        secretAccessKeyEnv: 'STRONGROOM_S3_0_SECRET_ACCESS_KEY',
      },
    ]);
    expect(p.plaintext).toEqual([
      {
        name: 'strongroom-plain-0',
        sizeLimit: '126Mi',
        sidecarPath: '/var/run/strongroom/plain/0',
        mountPath: '/models/llama',
      },
    ]);
  });

  it('fills in the defaults of a spec that leaves every optional field out: no endpoint, us-east-1, path style', () => {
    const [planned] = plan({ [ANNOTATION_ARTIFACTS]: 'whisper@v1:/m' }).sidecar.artifacts;
    expect(planned?.s3).toEqual({
      region: 'us-east-1',
      bucket: 'audio-models',
      keyPrefix: 'speech/whisper/v1/',
      forcePathStyle: true,
      credentialsEnv: {
        accessKeyId: 'STRONGROOM_S3_0_ACCESS_KEY_ID',
        secretAccessKey: 'STRONGROOM_S3_0_SECRET_ACCESS_KEY',
      },
    });
    expect(planned !== undefined && 'endpoint' in (planned.s3 ?? {})).toBe(false);
    expect(planned?.ciphertextPath).toBe('');
  });

  it('keeps virtual-hosted style and the region when the spec asks for them', () => {
    const [planned] = plan({ [ANNOTATION_ARTIFACTS]: 'vit@v1:/m' }).sidecar.artifacts;
    expect(planned?.s3).toMatchObject({
      region: 'us-west-2',
      bucket: 'vision.models.example.com',
      keyPrefix: 'vit/v1/',
      forcePathStyle: false,
    });
  });

  it('takes one pair of variables per distinct Secret, numbered in order of first use, next to claims', () => {
    const p = plan({
      [ANNOTATION_ARTIFACTS]: 'vit@v1:/a,resnet50@v1:/b,llama@v1:/c,whisper@v1:/d',
    });
    expect(p.s3Credentials.map((c) => [c.secretName, c.accessKeyIdEnv, c.secretAccessKeyEnv])).toEqual([
      ['aws-reader', 'STRONGROOM_S3_0_ACCESS_KEY_ID', 'STRONGROOM_S3_0_SECRET_ACCESS_KEY'],
      ['minio-reader', 'STRONGROOM_S3_1_ACCESS_KEY_ID', 'STRONGROOM_S3_1_SECRET_ACCESS_KEY'],
    ]);
    expect(p.sidecar.artifacts.map((a) => a.s3?.credentialsEnv.accessKeyId)).toEqual([
      'STRONGROOM_S3_0_ACCESS_KEY_ID',
      undefined,
      'STRONGROOM_S3_1_ACCESS_KEY_ID',
      'STRONGROOM_S3_1_ACCESS_KEY_ID',
    ]);
    expect(p.sidecar.artifacts.map((a) => a.ciphertextPath)).toEqual([
      '',
      '/var/run/strongroom/cipher/0/vision/resnet50/v1',
      '',
      '',
    ]);
    expect(p.ciphertext.map((c) => c.claimName)).toEqual(['models']);
  });

  it('reads a granted S3 artifact from another namespace without any annotation (the Secret is the pod’s)', () => {
    const p = plan({ [ANNOTATION_ARTIFACTS]: 'ml-shared/mistral@v1:/m' });
    expect(p.resolved).toEqual(['ml-shared/mistral@v1']);
    expect(p.ciphertext).toEqual([]);
    expect(p.s3Credentials.map((c) => c.secretName)).toEqual(['shared-reader']);
    expect(p.sidecar.artifacts[0]?.s3?.keyPrefix).toBe('llm/mistral/v1/');
  });

  it('refuses the ciphertext-claim annotation for an artifact stored in S3', () => {
    const error = refusal({
      [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/a,llama@v1:/b',
      [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror',
    });
    expect(error.kind).toBe('resolution');
    expect(error.annotation).toBe(ANNOTATION_ARTIFACTS);
    expect(error.message).toBe(
      `annotation ${ANNOTATION_ARTIFACTS}: entry "llama@v1:/b": ModelArtifact ml-dev/llama stores its ciphertext in S3, not on a PersistentVolumeClaim, so ${ANNOTATION_CIPHERTEXT_CLAIM} cannot apply to it; remove the annotation (an S3 artifact in another namespace needs its credentials Secret minio-reader in ml-dev instead)`,
    );
  });

  it('still answers an ungranted S3 artifact in another namespace with the uniform message', () => {
    const error = refusal({ [ANNOTATION_ARTIFACTS]: 'ml-shared/mistral@v1:/m' }, 'ml-dev', lookupIn(), {
      serviceAccount: 'someone-else',
      grants: () => [],
    });
    expect(error.message).toContain(
      'ModelArtifact ml-shared/mistral is not available to service account ml-dev/someone-else',
    );
    expect(error.message).not.toMatch(/S3|bucket|shared-reader/);
  });

  it('refuses publishing from a pod to an artifact stored in S3', () => {
    const error = refusal({ [ANNOTATION_PUBLISH]: 'llama@v3:/out' });
    expect(error.kind).toBe('resolution');
    expect(error.annotation).toBe(ANNOTATION_PUBLISH);
    expect(error.message).toBe(
      `annotation ${ANNOTATION_PUBLISH}: entry "llama@v3:/out": ModelArtifact ml-dev/llama stores its ciphertext in S3; publishing from a pod (${ANNOTATION_PUBLISH}) writes only to a PersistentVolumeClaim; publish it with \`strongroom publish\` instead`,
    );
  });

  it.each([
    ['a storage path with a ".." segment', { path: '..' }, 'spec.storage.path ".." must not contain'],
    [
      'a prefix with a ".." segment',
      { prefix: 'a/../..' },
      'spec.storage.s3.prefix "a/../.." must not contain',
    ],
    ['an absolute prefix', { prefix: '/etc' }, 'spec.storage.s3.prefix "/etc" must be relative'],
    ['a version path with a ".." segment', { versionPath: '../other' }, 'leaves the artifact'],
    ['an IP-address bucket', { bucket: '10.0.0.1' }, 'must not be formatted as an IP address'],
    [
      'an endpoint with a path',
      { endpoint: 'https://s3.example.com/evil' },
      'spec.storage.s3.endpoint "https://s3.example.com/evil" must not have a path',
    ],
    ['an upper-case region', { region: 'EU' }, 'spec.storage.s3.region "EU"'],
  ])('refuses, whatever the cache holds, %s', (_, change, message) => {
    const { path, versionPath, ...s3 } = change as {
      path?: string;
      versionPath?: string;
      prefix?: string;
      bucket?: string;
      endpoint?: string;
      region?: string;
    };
    const odd = artifact('odd', {
      s3: { bucket: 'ml-models', credentialsSecretRef: { name: 'r' }, ...s3 },
      path: path ?? 'odd',
      versions: [version('v1', 1, versionPath)],
    });
    const error = refusal({ [ANNOTATION_ARTIFACTS]: 'odd@v1:/m' }, 'ml-dev', lookupIn([odd]));
    expect(error.kind).toBe('resolution');
    expect(error.message).toContain(message);
  });

  it('drops empty segments: a one-segment path and no prefix still give "<path>/<version>/"', () => {
    const a = artifact('flat', {
      s3: { bucket: 'ml-models', credentialsSecretRef: { name: 'r' } },
      path: 'flat',
      versions: [version('v1', 1)],
    });
    const p = plan({ [ANNOTATION_ARTIFACTS]: 'flat@v1:/m' }, 'ml-dev', lookupIn([a]));
    expect(p.sidecar.artifacts[0]?.s3?.keyPrefix).toBe('flat/v1/');
  });
});
