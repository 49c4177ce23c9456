import { describe, expect, it } from 'vitest';
import { ANNOTATION_ARTIFACTS, ANNOTATION_CIPHERTEXT_CLAIM, ANNOTATION_PUBLISH } from './contract.ts';
import { plaintextSizeLimit } from './plan.ts';
import { MIB, artifact, grant, grantsIn, lookupIn, uidOf, version } from './testdata/artifacts.ts';
import { planOf as plan, refusal } from './testdata/plans.ts';

describe('plaintextSizeLimit', () => {
  it.each([
    [1, '17Mi'],
    [MIB, '18Mi'],
    [10 * MIB, '27Mi'],
    [100 * MIB, '126Mi'],
    [2 * 1024 * MIB, '2269Mi'],
    [1024 * 1024 * MIB, '1153450Mi'], // 1 TiB
  ])('%d bytes -> %s (size * 1.1 + 16 MiB, rounded up)', (size, limit) => {
    expect(plaintextSizeLimit(size)).toBe(limit);
  });
  it.each([0, -1, 1.5, Number.NaN, 2 ** 60])('refuses size %d', (size) => {
    expect(() => plaintextSizeLimit(size)).toThrow(/is not a positive whole number of bytes/);
  });
});

describe('planInjection: reading', () => {
  it('resolves latest to the newest version that is not withdrawn and a named version to itself', () => {
    const p = plan({ [ANNOTATION_ARTIFACTS]: 'resnet50@latest:/models/latest,imagenet@2024-06-01:/data' });
    expect(p.resolved).toEqual(['ml-dev/resnet50@v2', 'ml-dev/imagenet@2024-06-01']);
    expect(p.sidecar.artifacts).toEqual([
      {
        namespace: 'ml-dev',
        name: 'resnet50',
        uid: uidOf('resnet50'),
        version: 'v2',
        digest: version('v2', 1).digest,
        ciphertextPath: '/var/run/strongroom/cipher/0/vision/resnet50/v2-final',
        plaintextDir: '/var/run/strongroom/plain/0',
        mountPath: '/models/latest',
      },
      {
        namespace: 'ml-dev',
        name: 'imagenet',
        uid: uidOf('imagenet'),
        version: '2024-06-01',
        digest: version('2024-06-01', 1).digest,
        ciphertextPath: '/var/run/strongroom/cipher/1/imagenet/2024-06-01',
        plaintextDir: '/var/run/strongroom/plain/1',
        mountPath: '/data',
      },
    ]);
    expect(p.sidecar.publish).toBeUndefined();
    expect(p.output).toBeUndefined();
    expect(p.plaintext).toEqual([
      {
        name: 'strongroom-plain-0',
        sizeLimit: '2269Mi',
        sidecarPath: '/var/run/strongroom/plain/0',
        mountPath: '/models/latest',
      },
      {
        name: 'strongroom-plain-1',
        sizeLimit: '17Mi',
        sidecarPath: '/var/run/strongroom/plain/1',
        mountPath: '/data',
      },
    ]);
  });

  it('mounts one read-only volume per distinct claim', () => {
    const p = plan({ [ANNOTATION_ARTIFACTS]: 'resnet50@v1:/a,imagenet@latest:/b,resnet50@v2:/c' });
    expect(p.ciphertext).toEqual([
      {
        name: 'strongroom-cipher-0',
        claimName: 'models',
        readOnly: true,
        sidecarPath: '/var/run/strongroom/cipher/0',
      },
      {
        name: 'strongroom-cipher-1',
        claimName: 'datasets',
        readOnly: true,
        sidecarPath: '/var/run/strongroom/cipher/1',
      },
    ]);
    expect(p.sidecar.artifacts.map((a) => a.ciphertextPath)).toEqual([
      '/var/run/strongroom/cipher/0/vision/resnet50/v1',
      '/var/run/strongroom/cipher/1/imagenet/2024-06-01',
      '/var/run/strongroom/cipher/0/vision/resnet50/v2-final',
    ]);
  });

  it('uses the ciphertext-claim annotation for every artifact, which makes other namespaces readable', () => {
    const p = plan(
      { [ANNOTATION_ARTIFACTS]: 'ml-dev/resnet50@v1:/a,bert@v1:/b', [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror' },
      'ml-shared',
    );
    expect(p.ciphertext.map((c) => c.claimName)).toEqual(['mirror']);
    expect(p.resolved).toEqual(['ml-dev/resnet50@v1', 'ml-shared/bert@v1']);
    expect(p.sidecar.artifacts[1]?.ciphertextPath).toBe('/var/run/strongroom/cipher/0/nlp/bert/v1');
  });

  it.each([
    ['a missing artifact', 'nope@v1:/m', 'entry "nope@v1:/m": ModelArtifact ml-dev/nope does not exist'],
    [
      'an artifact in another namespace that is absent',
      'ml-shared/resnet50@v1:/m',
      'ModelArtifact ml-shared/resnet50 is not available to service account ml-dev/trainer: it does not exist or no AccessGrant names this service account',
    ],
    [
      'a missing version',
      'resnet50@v9:/m',
      'ModelArtifact ml-dev/resnet50 has no version v9 (available: v1, v2)',
    ],
    [
      'a withdrawn version',
      'resnet50@v3:/m',
      'version v3 of ModelArtifact ml-dev/resnet50 is withdrawn (available: v1, v2)',
    ],
    ['latest without versions', 'fresh@latest:/m', 'ModelArtifact ml-dev/fresh has no latest version yet'],
    ['an artifact being deleted', 'dying@v1:/m', 'ModelArtifact ml-dev/dying is being deleted'],
    [
      'another namespace without a claim annotation',
      'ml-shared/bert@v1:/m',
      'a pod in ml-dev cannot mount; set strongroom.dev/ciphertext-claim',
    ],
  ])('refuses %s', (_, value, message) => {
    const error = refusal({ [ANNOTATION_ARTIFACTS]: value });
    expect(error.kind).toBe('resolution');
    expect(error.annotation).toBe(ANNOTATION_ARTIFACTS);
    expect(error.message).toMatch(new RegExp(`^annotation ${ANNOTATION_ARTIFACTS}: entry "${value}": `));
    expect(error.message).toContain(message);
  });

  describe('an artifact in another namespace', () => {
    const uniform = (ref: string, sa = 'ml-dev/trainer'): string =>
      `ModelArtifact ${ref} is not available to service account ${sa}: it does not exist or no AccessGrant names this service account`;
    const withGrants = (...grants: ReturnType<typeof grant>[]) => ({
      serviceAccount: 'trainer',
      grants: grantsIn(grants),
    });

    it.each([
      ['exists, but no grant there names the pod', []],
      ['exists, granted to another service account', [grant('ml-shared', 'g', 'bert', ['ml-dev/other'])]],
      [
        'exists, granted to the same name in another namespace',
        [grant('ml-shared', 'g', 'bert', ['ml-prod/trainer'])],
      ],
      ['exists, the grant is for another artifact', [grant('ml-shared', 'g', 'gpt', ['ml-dev/trainer'])]],
    ])('is refused with the uniform message when it %s', (_, grants) => {
      const error = refusal(
        { [ANNOTATION_ARTIFACTS]: 'ml-shared/bert@v1:/m', [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror' },
        'ml-dev',
        lookupIn(),
        withGrants(...grants),
      );
      expect(error.message).toBe(
        `annotation ${ANNOTATION_ARTIFACTS}: entry "ml-shared/bert@v1:/m": ${uniform('ml-shared/bert')}`,
      );
    });

    it('answers a missing artifact, a missing version and a present one alike, with the names only the pod gave', () => {
      const messages = [
        'ml-shared/bert@v1:/m',
        'ml-shared/bert@v9:/m',
        'ml-shared/nope@v1:/m',
        'ml-shared/bert@latest:/m',
      ].map((entry) =>
        refusal(
          { [ANNOTATION_ARTIFACTS]: entry, [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror' },
          'ml-dev',
          lookupIn(),
          withGrants(),
        )
          .message.replace(entry, '<entry>')
          .replace(/ml-shared\/(bert|nope)/, 'ml-shared/<name>'),
      );
      expect(new Set(messages).size).toBe(1);
      expect(messages[0]).not.toMatch(/@v|\(available|shared-store|nlp/);
    });

    it('refuses a publish target there the same way', () => {
      const error = refusal(
        { [ANNOTATION_PUBLISH]: 'ml-shared/bert@v2:/out', [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror' },
        'ml-dev',
        lookupIn(),
        withGrants(),
      );
      expect(error.annotation).toBe(ANNOTATION_PUBLISH);
      expect(error.message).toContain(uniform('ml-shared/bert'));
    });

    it('is resolved when a grant there names the pod (then missing versions are reported as usual)', () => {
      const granted = withGrants(grant('ml-shared', 'g', 'bert', ['ml-dev/other', 'ml-dev/trainer']));
      const p = plan(
        { [ANNOTATION_ARTIFACTS]: 'ml-shared/bert@v1:/m', [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror' },
        'ml-dev',
        lookupIn(),
        granted,
      );
      expect(p.resolved).toEqual(['ml-shared/bert@v1']);
      const missing = refusal(
        { [ANNOTATION_ARTIFACTS]: 'ml-shared/bert@v9:/m', [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror' },
        'ml-dev',
        lookupIn(),
        granted,
      );
      expect(missing.message).toContain('ModelArtifact ml-shared/bert has no version v9');
    });

    it('ignores a grant that is being deleted', () => {
      const dying = grant('ml-shared', 'g', 'bert', ['ml-dev/trainer']);
      dying.metadata.deletionTimestamp = new Date();
      const error = refusal(
        { [ANNOTATION_ARTIFACTS]: 'ml-shared/bert@v1:/m', [ANNOTATION_CIPHERTEXT_CLAIM]: 'mirror' },
        'ml-dev',
        lookupIn(),
        withGrants(dying),
      );
      expect(error.message).toContain(uniform('ml-shared/bert'));
    });

    it("does not apply in the pod's own namespace: a missing artifact there is named as before", () => {
      expect(
        refusal({ [ANNOTATION_ARTIFACTS]: 'nope@v1:/m' }, 'ml-dev', lookupIn(), withGrants()).message,
      ).toContain('ModelArtifact ml-dev/nope does not exist');
    });
  });

  it('resolves latest as the broker does: status.latestVersion, not a newer version the operator has not sealed', () => {
    const a = artifact('sealing', { versions: [version('v1', 1), version('v2', 1)] });
    const sealedOnlyV1: typeof a = { ...a, status: { ...a.status, latestVersion: 'v1' } };
    const p = plan({ [ANNOTATION_ARTIFACTS]: 'sealing@latest:/m' }, 'ml-dev', lookupIn([sealedOnlyV1]));
    expect(p.resolved).toEqual(['ml-dev/sealing@v1']);
    const unsealed: typeof a = { ...a, status: Object.assign({}, a.status) };
    delete unsealed.status?.latestVersion;
    expect(
      refusal({ [ANNOTATION_ARTIFACTS]: 'sealing@latest:/m' }, 'ml-dev', lookupIn([unsealed])).message,
    ).toContain(
      'has no latest version yet: status.latestVersion names no sealed, non-withdrawn version (available: v1, v2)',
    );
  });

  it('resolves latest to nothing when every version is withdrawn', () => {
    const all = artifact('old', { versions: [version('v1', 1), version('v2', 1)], withdrawn: ['v1', 'v2'] });
    expect(refusal({ [ANNOTATION_ARTIFACTS]: 'old@latest:/m' }, 'ml-dev', lookupIn([all])).message).toContain(
      'has no latest version yet',
    );
  });

  it('refuses a version path that would leave the ciphertext volume', () => {
    const evil = artifact('evil', { path: '..', versions: [version('v1', 1, '../../..')] });
    expect(refusal({ [ANNOTATION_ARTIFACTS]: 'evil@v1:/m' }, 'ml-dev', lookupIn([evil])).message).toContain(
      'leaves the ciphertext volume',
    );
  });

  it('refuses an artifact whose recorded size is not a byte count', () => {
    const odd = artifact('odd', { versions: [version('v1', 0)] });
    expect(refusal({ [ANNOTATION_ARTIFACTS]: 'odd@v1:/m' }, 'ml-dev', lookupIn([odd])).message).toContain(
      'recorded size 0',
    );
  });
});
