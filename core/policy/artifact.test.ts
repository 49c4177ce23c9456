import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ModelArtifact, ModelArtifactStatus, ModelArtifactVersionLineageParent } from '../api/index.ts';
import {
  artifactStatus,
  evaluateArtifact,
  type ArtifactDecision,
  type ArtifactInput,
  type VersionKeyFacts,
} from './artifact.ts';
import { findCondition, statusEqual, type ConditionInput } from './conditions.ts';

const D = 86_400_000;
const PERIOD = 90 * D;
const KEK_CREATED = new Date('2026-11-01T00:00:00Z');
const NOW = new Date('2026-12-10T12:00:00.250Z');
const FP = `sha256:${'a'.repeat(64)}`;

interface VersionSpec {
  name: string;
  parents?: ModelArtifactVersionLineageParent[];
}

function artifact(
  name: string,
  versions: (string | VersionSpec)[] = ['v1', 'v2', 'v3'],
  withdrawn: string[] = [],
): ModelArtifact {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'ModelArtifact',
    metadata: { name, namespace: 'ml-dev', generation: 7 },
    spec: {
      classification: 'confidential',
      owner: { team: 'vision' },
      storage: { persistentVolumeClaim: { claimName: 'store' }, path: name },
      versions: versions.map((v) => {
        const spec = typeof v === 'string' ? { name: v } : v;
        return {
          name: spec.name,
          digest: `sha256:${'b'.repeat(64)}`,
          size: 1,
          encryption: { format: 'v1', keyFingerprint: FP },
          publisher: 'me',
          publishedAt: '2026-10-01T00:00:00Z',
          ...(spec.parents === undefined ? {} : { lineage: { parents: spec.parents } }),
        };
      }),
      withdrawnVersions: withdrawn,
    },
  };
}

const sealed = (version: string, kekVersion: string | undefined = '2'): VersionKeyFacts => ({
  version,
  sealed: true,
  kekVersion,
  error: undefined,
});
const unsealed = (version: string, error?: string): VersionKeyFacts => ({
  version,
  sealed: false,
  kekVersion: undefined,
  error,
});

function input(overrides: Partial<ArtifactInput> = {}): ArtifactInput {
  return {
    artifact: artifact('resnet50'),
    siblings: new Map(),
    recipientKeyReady: true,
    keys: [sealed('v1'), sealed('v2'), sealed('v3')],
    kek: { primaryVersion: '2', primaryCreatedAt: KEK_CREATED },
    rotationPeriodMs: PERIOD,
    now: NOW,
    ...overrides,
  };
}

function condition(decision: ArtifactDecision, type: string): ConditionInput {
  const found = decision.conditions.find((c) => c.type === type);
  if (found === undefined) throw new Error(`no ${type} condition`);
  return found;
}
const parent = (name: string, version: string, kind: 'ModelArtifact' | 'Dataset' = 'ModelArtifact') => ({
  kind,
  name,
  version,
});

describe('evaluateArtifact', () => {
  it('is Ready, KeysReady and RotationCompliant for a healthy artifact, in that order', () => {
    const d = evaluateArtifact(input());
    expect(d.conditions.map((c) => [c.type, c.status, c.reason])).toEqual([
      ['Ready', 'True', 'AllVersionsSealed'],
      ['KeysReady', 'True', 'AllVersionsSealed'],
      ['RotationCompliant', 'True', 'Compliant'],
    ]);
    expect(d).toMatchObject({ latestVersion: 'v3', lineageProblems: [] });
    expect(d.rotationDueAt).toEqual(new Date(KEK_CREATED.getTime() + PERIOD));
    expect(condition(d, 'KeysReady').message).toBe(
      'ModelArtifact ml-dev/resnet50 has its recipient key and every releasable version is sealed (v1, v2, v3).',
    );
    expect(condition(d, 'RotationCompliant').message).toContain(
      'due for rotation at 2027-01-30T00:00:00.000Z (period 90d)',
    );
  });

  it('is Ready with no versions at all', () => {
    const d = evaluateArtifact(input({ artifact: artifact('resnet50', []), keys: [] }));
    expect(condition(d, 'Ready')).toMatchObject({ status: 'True', reason: 'AllVersionsSealed' });
    expect(condition(d, 'Ready').message).toContain('no releasable versions yet');
    expect(d.latestVersion).toBeUndefined();
  });

  describe('KeysReady', () => {
    it.each([
      [
        'RecipientKeyMissing before key errors and unsealed versions',
        { recipientKeyReady: false, keys: [sealed('v1'), unsealed('v2', 'bad header')] },
        'RecipientKeyMissing',
        ['ModelArtifact ml-dev/resnet50 has no usable recipient key yet', 'version v2: bad header'],
      ],
      [
        'RecipientKeyMissing with an artifact-wide error',
        {
          recipientKeyReady: false,
          keys: [sealed('v1'), { ...unsealed('', 'recipient key does not open') }],
        },
        'RecipientKeyMissing',
        ['recipient key does not open'],
      ],
      [
        'KeyError before unsealed versions',
        { keys: [sealed('v1'), unsealed('v2', 'sealed key does not open')] },
        'KeyError',
        ['has key errors: version v2: sealed key does not open.'],
      ],
      [
        'KeyError for a sealed version that fails',
        { keys: [sealed('v1'), { ...sealed('v2'), error: 'KMS says no' }, sealed('v3')] },
        'KeyError',
        ['version v2: KMS says no'],
      ],
      [
        'VersionNotSealed naming the versions (no fact counts as unsealed)',
        { keys: [sealed('v1'), unsealed('v3')] },
        'VersionNotSealed',
        ['has versions v2, v3 without a sealed key yet'],
      ],
      [
        'VersionNotSealed for one version',
        { keys: [sealed('v1'), sealed('v2')] },
        'VersionNotSealed',
        ['has version v3 without a sealed key yet'],
      ],
    ])('is False with %s', (_what, overrides, reason, texts) => {
      const d = evaluateArtifact(input(overrides));
      const keys = condition(d, 'KeysReady');
      expect(keys).toMatchObject({ status: 'False', reason });
      for (const text of texts) expect(keys.message).toContain(text);
      expect(condition(d, 'Ready')).toEqual({ ...keys, type: 'Ready' });
    });

    it('ignores withdrawn versions: unsealed or failing, they do not matter', () => {
      const d = evaluateArtifact(
        input({
          artifact: artifact('resnet50', ['v1', 'v2', 'v3'], ['v2', 'v3']),
          keys: [sealed('v1'), unsealed('v3', 'gone')],
        }),
      );
      expect(condition(d, 'KeysReady')).toMatchObject({ status: 'True', reason: 'AllVersionsSealed' });
      expect(condition(d, 'KeysReady').message).toContain('(v1)');
    });

    it('merges duplicate facts for a version to the worse one', () => {
      const d = evaluateArtifact(input({ keys: [sealed('v1'), sealed('v2'), sealed('v3'), unsealed('v3')] }));
      expect(condition(d, 'KeysReady').reason).toBe('VersionNotSealed');
    });
  });

  describe('RotationCompliant', () => {
    it('is Unknown/KekUnknown without a KEK, with no due date', () => {
      const d = evaluateArtifact(input({ kek: undefined }));
      expect(condition(d, 'RotationCompliant')).toMatchObject({ status: 'Unknown', reason: 'KekUnknown' });
      expect(d.rotationDueAt).toBeUndefined();
    });

    it('is overdue at the instant the period ends, not a millisecond before', () => {
      const due = new Date(KEK_CREATED.getTime() + PERIOD);
      const before = evaluateArtifact(input({ now: new Date(due.getTime() - 1) }));
      expect(condition(before, 'RotationCompliant').status).toBe('True');
      const d = evaluateArtifact(input({ now: due }));
      expect(condition(d, 'RotationCompliant')).toMatchObject({
        status: 'False',
        reason: 'KekRotationOverdue',
      });
      expect(condition(d, 'RotationCompliant').message).toBe(
        'The primary version 2 of the key-encryption key of ModelArtifact ml-dev/resnet50, created at 2026-11-01T00:00:00.000Z, was due for rotation at 2027-01-30T00:00:00.000Z (period 90d).',
      );
      expect(d.rotationDueAt).toEqual(due);
    });

    it('puts KekRotationOverdue before RewrapPending', () => {
      const d = evaluateArtifact(
        input({
          now: new Date('2028-01-01T00:00:00Z'),
          keys: [sealed('v1', '1'), sealed('v2'), sealed('v3')],
        }),
      );
      expect(condition(d, 'RotationCompliant').reason).toBe('KekRotationOverdue');
    });

    it.each([
      ['an older KEK version', [sealed('v1', '1'), sealed('v2'), sealed('v3', '1')], 'versions v1, v3'],
      [
        'an unknown KEK version',
        [{ ...sealed('v1'), kekVersion: undefined }, sealed('v2'), sealed('v3')],
        'version v1',
      ],
    ])('is RewrapPending for versions under %s', (_what, keys, text) => {
      const d = evaluateArtifact(input({ keys }));
      expect(condition(d, 'RotationCompliant')).toMatchObject({ status: 'False', reason: 'RewrapPending' });
      expect(condition(d, 'RotationCompliant').message).toContain(`has ${text} still wrapped`);
      expect(condition(d, 'Ready').status).toBe('True');
    });

    it('ignores withdrawn and unsealed versions when checking rewrap', () => {
      const d = evaluateArtifact(
        input({
          artifact: artifact('resnet50', ['v1', 'v2', 'v3'], ['v1']),
          keys: [sealed('v1', '1'), sealed('v2'), unsealed('v3')],
        }),
      );
      expect(condition(d, 'RotationCompliant')).toMatchObject({ status: 'True', reason: 'Compliant' });
    });

    it('does not gate Ready', () => {
      const d = evaluateArtifact(input({ kek: undefined }));
      expect(condition(d, 'Ready').status).toBe('True');
      const overdue = evaluateArtifact(input({ now: new Date('2028-01-01T00:00:00Z') }));
      expect(condition(overdue, 'Ready').status).toBe('True');
    });

    it('fails closed on an unreadable KEK creation time', () => {
      const d = evaluateArtifact(
        input({ kek: { primaryVersion: '2', primaryCreatedAt: new Date(Number.NaN) } }),
      );
      expect(condition(d, 'RotationCompliant')).toMatchObject({
        status: 'False',
        reason: 'KekRotationOverdue',
      });
      expect(condition(d, 'RotationCompliant').message).toContain('an unknown time');
    });
  });

  describe('lineage', () => {
    const base = artifact('base', ['b1', 'b2'], ['b2']);
    const siblings = new Map([['base', base]]);
    const withParents = (...parents: ModelArtifactVersionLineageParent[]) =>
      artifact('resnet50', ['v1', { name: 'v2', parents }]);

    it.each([
      ['a sibling version', [parent('base', 'b1')]],
      ['a withdrawn sibling version', [parent('base', 'b2')]],
      ['an earlier version of itself', [parent('resnet50', 'v1')]],
      ['an unknown dataset (not checked)', [parent('imagenet', '2012', 'Dataset')]],
      ['a dataset named like the artifact itself', [parent('resnet50', 'v2', 'Dataset')]],
    ])('accepts %s', (_what, parents) => {
      const d = evaluateArtifact(
        input({ artifact: withParents(...parents), siblings, keys: [sealed('v1'), sealed('v2')] }),
      );
      expect(d.lineageProblems).toEqual([]);
      expect(condition(d, 'Ready').status).toBe('True');
    });

    it.each([
      [
        'a missing sibling',
        [parent('ghost', 'g1')],
        ['version v2: parent ModelArtifact ml-dev/ghost does not exist'],
      ],
      [
        'a missing sibling version',
        [parent('base', 'b9')],
        ['version v2: parent ModelArtifact ml-dev/base has no version b9'],
      ],
      ['a self-loop', [parent('resnet50', 'v2')], ['version v2 names itself as its parent']],
      [
        'a missing version of itself',
        [parent('resnet50', 'v7')],
        ['version v2: parent ModelArtifact ml-dev/resnet50 has no version v7'],
      ],
      [
        'several problems, all listed',
        [parent('ghost', 'g1'), parent('base', 'b1'), parent('resnet50', 'v2')],
        [
          'version v2: parent ModelArtifact ml-dev/ghost does not exist',
          'version v2 names itself as its parent',
        ],
      ],
    ])('rejects %s (Ready False/LineageInvalid)', (_what, parents, problems) => {
      const d = evaluateArtifact(
        input({ artifact: withParents(...parents), siblings, keys: [sealed('v1'), sealed('v2')] }),
      );
      expect(d.lineageProblems).toEqual(problems);
      const ready = condition(d, 'Ready');
      expect(ready).toMatchObject({ status: 'False', reason: 'LineageInvalid' });
      expect(ready.message).toBe(
        `ModelArtifact ml-dev/resnet50 has invalid lineage: ${problems.join('; ')}.`,
      );
      expect(condition(d, 'KeysReady').status).toBe('True');
    });

    it('reports lineage first and the key problem too when both fail', () => {
      const d = evaluateArtifact(
        input({ artifact: withParents(parent('ghost', 'g1')), siblings, keys: [sealed('v1')] }),
      );
      const ready = condition(d, 'Ready');
      expect(ready.reason).toBe('LineageInvalid');
      expect(ready.message).toContain('version v2 without a sealed key yet');
    });

    it('skips the lineage of withdrawn versions', () => {
      const a = artifact('resnet50', ['v1', { name: 'v2', parents: [parent('ghost', 'g1')] }], ['v2']);
      const d = evaluateArtifact(input({ artifact: a, keys: [sealed('v1')] }));
      expect(d.lineageProblems).toEqual([]);
    });
  });

  describe('latestVersion', () => {
    it.each([
      ['the last sealed version', ['v1', 'v2', 'v3'], [], [sealed('v1'), sealed('v2'), sealed('v3')], 'v3'],
      [
        'skipping a withdrawn last version',
        ['v1', 'v2', 'v3'],
        ['v3'],
        [sealed('v1'), sealed('v2'), sealed('v3')],
        'v2',
      ],
      [
        'skipping an unsealed last version',
        ['v1', 'v2', 'v3'],
        [],
        [sealed('v1'), sealed('v2'), unsealed('v3')],
        'v2',
      ],
      [
        'skipping a version with a key error',
        ['v1', 'v2', 'v3'],
        [],
        [sealed('v1'), sealed('v2'), { ...sealed('v3'), error: 'x' }],
        'v2',
      ],
      ['in spec order, not fact order', ['v1', 'v2', 'v3'], [], [sealed('v3'), sealed('v1')], 'v3'],
      ['undefined when nothing qualifies', ['v1', 'v2'], ['v1'], [sealed('v1'), unsealed('v2')], undefined],
    ])('is %s', (_what, versions, withdrawn, keys, latest) => {
      expect(
        evaluateArtifact(input({ artifact: artifact('resnet50', versions, withdrawn), keys })).latestVersion,
      ).toBe(latest);
    });
  });

  it('never puts the clock into a message', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 400 }), (a, b) => {
        const at = (days: number) => new Date(KEK_CREATED.getTime() + days * D);
        const da = evaluateArtifact(input({ now: at(a) }));
        const db = evaluateArtifact(input({ now: at(b) }));
        const rotationA = condition(da, 'RotationCompliant');
        const rotationB = condition(db, 'RotationCompliant');
        if (rotationA.status === rotationB.status) expect(rotationB).toEqual(rotationA);
        expect(rotationA.status).toBe(a * D < PERIOD ? 'True' : 'False');
      }),
    );
  });
});

describe('artifactStatus', () => {
  const recipientPublicKey = {
    algorithm: 'HPKE-Base-X25519-SHA256-AES256GCM',
    fingerprint: FP,
    publicKeyPem: 'PEM',
  };
  const keys = [
    { version: 'v1', keyFingerprint: FP, wrappedKey: 'AAAA', kekVersion: '2', state: 'Sealed' as const },
  ];

  it('builds the full status', () => {
    const a = artifact('resnet50');
    const s = artifactStatus(
      undefined,
      evaluateArtifact(input({ artifact: a })),
      a,
      { recipientPublicKey, keys },
      NOW,
    );
    expect(s).toMatchObject({ observedGeneration: 7, latestVersion: 'v3', recipientPublicKey, keys });
    expect(s.keys).not.toBe(keys);
    expect(s.conditions.map((c) => [c.type, c.lastTransitionTime, c.observedGeneration])).toEqual([
      ['Ready', '2026-12-10T12:00:00Z', 7],
      ['KeysReady', '2026-12-10T12:00:00Z', 7],
      ['RotationCompliant', '2026-12-10T12:00:00Z', 7],
    ]);
  });

  it('leaves out what is unknown', () => {
    const a = artifact('resnet50');
    delete a.metadata.generation;
    const s = artifactStatus(
      undefined,
      evaluateArtifact(input({ artifact: a, keys: [] })),
      a,
      { keys: [] },
      NOW,
    );
    expect(s).not.toHaveProperty('latestVersion');
    expect(s).not.toHaveProperty('recipientPublicKey');
    expect(s).not.toHaveProperty('observedGeneration');
  });

  it('recomputed later with nothing changed, equals the stored status (also after a JSON round trip)', () => {
    const a = artifact('resnet50');
    const first = artifactStatus(
      undefined,
      evaluateArtifact(input({ artifact: a })),
      a,
      { recipientPublicKey, keys },
      NOW,
    );
    const stored = JSON.parse(JSON.stringify(first)) as ModelArtifactStatus;
    const later = new Date(NOW.getTime() + 10 * D);
    const again = artifactStatus(
      stored,
      evaluateArtifact(input({ artifact: a, now: later })),
      a,
      { recipientPublicKey, keys },
      later,
    );
    expect(statusEqual(again, stored)).toBe(true);
  });

  it('re-stamps only the condition that flipped and keeps foreign conditions', () => {
    const a = artifact('resnet50');
    const foreign = {
      type: 'Audited',
      status: 'True' as const,
      reason: 'X',
      message: '',
      lastTransitionTime: '2026-01-01T00:00:00Z',
    };
    const first = artifactStatus(
      { conditions: [foreign] },
      evaluateArtifact(input({ artifact: a })),
      a,
      { keys },
      NOW,
    );
    const later = new Date(KEK_CREATED.getTime() + PERIOD + 1500);
    const overdue = artifactStatus(
      first,
      evaluateArtifact(input({ artifact: a, now: later })),
      a,
      { keys },
      later,
    );
    expect(overdue.conditions.map((c) => c.type)).toEqual([
      'Audited',
      'Ready',
      'KeysReady',
      'RotationCompliant',
    ]);
    expect(findCondition(overdue.conditions, 'RotationCompliant')).toMatchObject({
      status: 'False',
      lastTransitionTime: '2027-01-30T00:00:01Z',
    });
    expect(findCondition(overdue.conditions, 'Ready')?.lastTransitionTime).toBe('2026-12-10T12:00:00Z');
    expect(overdue.conditions[0]).toEqual(foreign);
    expect(statusEqual(overdue, first)).toBe(false);
  });
});
