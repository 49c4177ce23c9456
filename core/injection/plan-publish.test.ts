import { createHash, createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateRecipientKeyPair, newDek, sealDek, unsealDek } from '../envelope/seal.ts';
import {
  ANNOTATION_ARTIFACTS,
  ANNOTATION_OUTPUT_SIZE,
  ANNOTATION_PUBLISH,
  DEFAULT_OUTPUT_SIZE,
  SIDECAR_OUTPUT_DIR,
} from './contract.ts';
import { ARTIFACTS, RECIPIENT_RAW, artifact, lookupIn, uidOf, version } from './testdata/artifacts.ts';
import { planOf as plan, refusal } from './testdata/plans.ts';

describe('planInjection: publishing', () => {
  it('plans the output volume and mounts the target claim read-write, shared with readers of the same claim', () => {
    const p = plan({
      [ANNOTATION_ARTIFACTS]: 'imagenet@latest:/data,resnet50@v1:/models',
      [ANNOTATION_PUBLISH]: 'finetuned@v2:/output',
    });
    expect(p.ciphertext).toEqual([
      {
        name: 'strongroom-cipher-0',
        claimName: 'datasets',
        readOnly: true,
        sidecarPath: '/var/run/strongroom/cipher/0',
      },
      {
        name: 'strongroom-cipher-1',
        claimName: 'models',
        readOnly: false,
        sidecarPath: '/var/run/strongroom/cipher/1',
      },
    ]);
    expect(p.sidecar.publish).toEqual({
      namespace: 'ml-dev',
      name: 'finetuned',
      uid: uidOf('finetuned'),
      version: 'v2',
      outputDir: SIDECAR_OUTPUT_DIR,
      ciphertextPath: '/var/run/strongroom/cipher/1/vision/finetuned/v2',
      recipientPublicKey: RECIPIENT_RAW,
      mountPath: '/output',
    });
    expect(p.output).toEqual({
      name: 'strongroom-output',
      sizeLimit: DEFAULT_OUTPUT_SIZE,
      sidecarPath: SIDECAR_OUTPUT_DIR,
      mountPath: '/output',
    });
    expect(p.resolved).toEqual(['ml-dev/imagenet@2024-06-01', 'ml-dev/resnet50@v1']);
  });

  it('sizes the output volume from the output-size annotation', () => {
    expect(
      plan({ [ANNOTATION_PUBLISH]: 'finetuned@v2:/o', [ANNOTATION_OUTPUT_SIZE]: '3Gi' }).output?.sizeLimit,
    ).toBe('3Gi');
  });

  it('hands the sidecar a raw X25519 key that seals a DEK the recipient opens', async () => {
    const pair = await generateRecipientKeyPair();
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(pair.publicKey, 'base64').toString('base64url') },
      format: 'jwk',
    });
    const der = key.export({ type: 'spki', format: 'der' });
    const target = artifact('target', { versions: [] });
    target.status = {
      recipientPublicKey: {
        algorithm: 'HPKE-Base-X25519-SHA256-AES256GCM',
        fingerprint: `sha256:${createHash('sha256').update(der).digest('hex')}`,
        publicKeyPem: key.export({ type: 'spki', format: 'pem' }).toString(),
      },
    };
    const planned = plan({ [ANNOTATION_PUBLISH]: 'target@v1:/o' }, 'ml-dev', lookupIn([target])).sidecar
      .publish;
    expect(planned?.recipientPublicKey).toBe(pair.publicKey);
    const dek = newDek();
    const context = { artifactUid: uidOf('target'), artifactName: 'target', version: 'v1' };
    const sealed = await sealDek(planned?.recipientPublicKey ?? '', dek, context);
    expect((await unsealDek(pair.privateKey, sealed, context)).equals(dek)).toBe(true);
  });

  const broken = (change: (a: ReturnType<typeof artifact>) => void): ReturnType<typeof artifact> => {
    const a = artifact('target', { versions: [version('v1', 1)] });
    change(a);
    return a;
  };
  it.each([
    [
      'an existing version',
      'finetuned@v1:/o',
      ARTIFACTS,
      'already has a version v1; published versions are immutable',
    ],
    ['a missing artifact', 'nope@v1:/o', ARTIFACTS, 'ModelArtifact ml-dev/nope does not exist'],
    ['an artifact being deleted', 'dying@v2:/o', ARTIFACTS, 'is being deleted'],
    [
      'an artifact that is not Ready',
      'fresh@v1:/o',
      ARTIFACTS,
      'has no status.recipientPublicKey yet (not Ready)',
    ],
    ['a withdrawn version name', 'resnet50@v3:/o', ARTIFACTS, 'already has a version v3'],
    [
      'a key that does not match its fingerprint',
      'target@v2:/o',
      [
        broken((a) => {
          if (a.status?.recipientPublicKey)
            a.status.recipientPublicKey.fingerprint = `sha256:${'0'.repeat(64)}`;
        }),
      ],
      'does not match its fingerprint',
    ],
    [
      'a key that is not PEM',
      'target@v2:/o',
      [
        broken((a) => {
          if (a.status?.recipientPublicKey) a.status.recipientPublicKey.publicKeyPem = 'garbage';
        }),
      ],
      'is not a valid PEM public key',
    ],
    [
      'a key that is not X25519',
      'target@v2:/o',
      [
        broken((a) => {
          if (a.status?.recipientPublicKey) {
            a.status.recipientPublicKey.publicKeyPem =
              '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAZtVAaGrsqS23Ora678shOAOnxEomH/bP3Mv7N+YRCGE=\n-----END PUBLIC KEY-----\n';
            a.status.recipientPublicKey.fingerprint =
              'sha256:aa0be6dfafd1ed3df7baec888b2f680e026a2420e4356d2e55e3d243a11ec66d';
          }
        }),
      ],
      'is not an X25519 key',
    ],
    [
      'another namespace without a claim',
      'ml-shared/bert@v2:/o',
      ARTIFACTS,
      'set strongroom.dev/ciphertext-claim',
    ],
  ])('refuses to publish to %s', (_, value, artifacts, message) => {
    const error = refusal({ [ANNOTATION_PUBLISH]: value }, 'ml-dev', lookupIn(artifacts));
    expect(error.kind).toBe('resolution');
    expect(error.annotation).toBe(ANNOTATION_PUBLISH);
    expect(error.message).toContain(`annotation ${ANNOTATION_PUBLISH}: entry "${value}": `);
    expect(error.message).toContain(message);
  });

  it('keeps the cause of an unreadable key', () => {
    const a = broken((x) => {
      if (x.status?.recipientPublicKey) x.status.recipientPublicKey.publicKeyPem = 'garbage';
    });
    expect(refusal({ [ANNOTATION_PUBLISH]: 'target@v2:/o' }, 'ml-dev', lookupIn([a])).cause).toBeInstanceOf(
      Error,
    );
  });
});
