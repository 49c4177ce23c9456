import { DEFAULT_CLASSIFICATION_TABLE, parseClassificationConfig } from './classification.ts';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type {
  AccessGrantSpec,
  AccessGrantStatus,
  AccessGrantSubject,
  AccessGrantSubjectPodSelector,
  Classification,
  ModelArtifact,
} from '../api/index.ts';
import {
  EXPIRES,
  NAMESPACES,
  NOW,
  approvals,
  grant,
  prodSubject,
  artifact as baseArtifact,
  type ArtifactOptions,
  type GrantOptions,
} from './testdata/objects.ts';
import { REVOKED_ANNOTATION, evaluateGrant } from './grant.ts';
import { matchesSelector } from './labels.ts';
import {
  authorizeRelease,
  type ReleaseDecision,
  type ReleaseDenyReason,
  type ReleaseInput,
  type WorkloadIdentity,
} from './release.ts';

const HOUR = 3600_000;
const plus = (d: Date | string, ms: number) => new Date(new Date(d).getTime() + ms);

/** The shared resnet50 with latest v3 unless said otherwise (null: no latest version). */
const artifact = (opts: ArtifactOptions = {}): ModelArtifact =>
  baseArtifact({ ...opts, latest: opts.latest === undefined ? 'v3' : opts.latest });

const TRAINER: WorkloadIdentity = {
  namespace: 'ml-dev',
  serviceAccount: 'trainer',
  podUid: 'pod-uid-1',
  podLabels: { app: 'resnet', tier: 'batch' },
};
const INFERENCE: WorkloadIdentity = {
  namespace: 'ml-prod',
  serviceAccount: 'inference',
  podUid: 'pod-uid-2',
  podLabels: { app: 'serve' },
};
/** A cross-environment grant for ml-prod/inference with enough approvals for an internal artifact. */
const crossGrant = (spec: Partial<AccessGrantSpec> = {}, opts: GrantOptions = {}) =>
  grant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(1), ...spec }, opts);

function input(overrides: Partial<ReleaseInput> = {}): ReleaseInput {
  return {
    identity: TRAINER,
    request: { artifactNamespace: 'ml-dev', artifactName: 'resnet50', version: 'v2' },
    artifact: 'artifact' in overrides ? overrides.artifact : artifact(),
    grants: [grant()],
    namespaces: NAMESPACES,
    policy: DEFAULT_CLASSIFICATION_TABLE,
    now: NOW,
    ...overrides,
  };
}

const release = (overrides: Partial<ReleaseInput> = {}) => authorizeRelease(input(overrides));
const version = (v: string) => ({ artifactNamespace: 'ml-dev', artifactName: 'resnet50', version: v });

function expectDeny(
  d: ReleaseDecision,
  reason: ReleaseDenyReason,
): Extract<ReleaseDecision, { allow: false }> {
  expect(d).toMatchObject({ allow: false, reason });
  if (d.allow) throw new Error('expected a denial');
  return d;
}

function expectAllow(d: ReleaseDecision): Extract<ReleaseDecision, { allow: true }> {
  if (!d.allow) throw new Error(`expected an allow, got ${d.reason}: ${d.message}`);
  return d;
}

describe('authorizeRelease: allow', () => {
  it('releases a named version under an Active grant with a 1h lease by default', () => {
    const d = expectAllow(release());
    expect(d).toMatchObject({ reason: 'Granted', version: 'v2', grant: { metadata: { name: 'g1' } } });
    expect(d.leaseExpiresAt).toEqual(plus(NOW, HOUR));
    expect(d.message).toBe(
      `AccessGrant ml-dev/g1 releases version v2 of ModelArtifact ml-dev/resnet50 to ml-dev/trainer (pod pod-uid-1); the key lease ends at ${plus(NOW, HOUR).toISOString()}.`,
    );
  });

  it.each([
    ['"latest" under a latest grant', 'latest', { match: 'latest' as const }, 'v3'],
    ['"latest" under an all grant', 'latest', { match: 'all' as const }, 'v3'],
    ['"latest" under a named grant naming it', 'latest', { match: 'named' as const, names: ['v3'] }, 'v3'],
    ['the latest version by name under a latest grant', 'v3', { match: 'latest' as const }, 'v3'],
    ['an old version under an all grant', 'v1', { match: 'all' as const }, 'v1'],
  ])('releases %s', (_what, requested, versions, resolved) => {
    const d = expectAllow(release({ request: version(requested), grants: [grant({ versions })] }));
    expect(d.version).toBe(resolved);
    if (requested === 'latest')
      expect(d.message).toContain('version v3 (latest) of ModelArtifact ml-dev/resnet50');
  });

  it.each([
    ['a matching podSelector', { matchLabels: { app: 'resnet' } }],
    ['an In expression', { matchExpressions: [{ key: 'tier', operator: 'In' as const, values: ['batch'] }] }],
    [
      'NotIn on a missing label',
      { matchExpressions: [{ key: 'gpu', operator: 'NotIn' as const, values: ['a'] }] },
    ],
    ['the empty selector', {}],
  ])('releases to a pod with %s', (_what, podSelector: AccessGrantSubjectPodSelector) => {
    const g = grant({ subjects: [{ namespace: 'ml-dev', serviceAccount: 'trainer', podSelector }] });
    expectAllow(release({ grants: [g] }));
  });

  it('releases when any subject matches (the workload is the second subject)', () => {
    const g = grant({
      subjects: [
        { namespace: 'ml-dev', serviceAccount: 'other' },
        { namespace: 'ml-dev', serviceAccount: 'trainer' },
      ],
    });
    expect(expectAllow(release({ grants: [g] })).grant).toBe(g);
  });

  it('trusts a recorded Active phase only together with a fresh Active evaluation', () => {
    const g = grant({}, { status: { phase: 'Active', reason: 'Granted' } });
    expectAllow(release({ grants: [g] }));
  });

  it('releases in the same environment from another namespace without crossEnvironment', () => {
    const identity = { ...TRAINER, namespace: 'ml-dev-2' };
    const g = grant({ subjects: [{ namespace: 'ml-dev-2', serviceAccount: 'trainer' }] });
    expectAllow(release({ identity, grants: [g] }));
  });

  it('releases a public artifact between two unlabelled namespaces (the same environment "")', () => {
    const identity = { ...TRAINER, namespace: 'plain-2' };
    const g = grant(
      { subjects: [{ namespace: 'plain-2', serviceAccount: 'trainer' }] },
      { namespace: 'plain' },
    );
    const a = artifact({ namespace: 'plain', classification: 'public' });
    const request = { artifactNamespace: 'plain', artifactName: 'resnet50', version: 'v2' };
    expectAllow(release({ identity, artifact: a, grants: [g], request }));
  });

  it('releases a restricted artifact within its environment under a grant with its 2 approvals', () => {
    const g = grant({ approvals: approvals(2) });
    expectAllow(release({ artifact: artifact({ classification: 'restricted' }), grants: [g] }));
    const d = release({
      artifact: artifact({ classification: 'restricted' }),
      grants: [grant({ approvals: approvals(1) })],
    });
    expect(expectDeny(d, 'GrantNotActive').message).toContain('is Pending (AwaitingApproval)');
  });

  it.each<Classification>(['public', 'internal'])(
    'releases a %s artifact across environments under an approved cross-environment grant',
    (classification) => {
      const d = release({
        identity: INFERENCE,
        artifact: artifact({ classification }),
        grants: [crossGrant()],
      });
      expect(expectAllow(d).grant.metadata.name).toBe('g1');
    },
  );

  it('releases a confidential artifact across environments with two approvals', () => {
    const d = release({
      identity: INFERENCE,
      artifact: artifact({ classification: 'confidential' }),
      grants: [crossGrant({ approvals: approvals(2) })],
    });
    expectAllow(d);
  });
});

describe('authorizeRelease: the key lease', () => {
  it.each([
    ['15m', 15 * 60_000],
    ['1m', 60_000],
    ['24h', 24 * HOUR],
    ['1h30m', 1.5 * HOUR],
  ])('keyLeaseDuration %s gives now + its length', (keyLeaseDuration, ms) => {
    const d = expectAllow(release({ grants: [grant({ keyLeaseDuration })] }));
    expect(d.leaseExpiresAt).toEqual(plus(NOW, ms));
  });

  it.each([
    ['public', '24h', 24 * HOUR],
    ['internal', '24h', 24 * HOUR],
    ['confidential', '24h', 8 * HOUR],
    ['confidential', '2h', 2 * HOUR],
    ['restricted', '24h', HOUR],
    ['restricted', '30m', 30 * 60_000],
  ] as const)(
    'caps a %s key lease of %s to the classification keyLease',
    (classification, keyLeaseDuration, ms) => {
      const g = grant({ keyLeaseDuration, approvals: approvals(2) });
      const d = expectAllow(release({ artifact: artifact({ classification }), grants: [g] }));
      expect(d.leaseExpiresAt).toEqual(plus(NOW, ms));
    },
  );

  it('uses the configured keyLease cap, and the grant expiry when it comes first', () => {
    const policy = parseClassificationConfig({ 'internal.keyLease': '10m' });
    const d = expectAllow(release({ grants: [grant({ keyLeaseDuration: '1h' })], policy }));
    expect(d.leaseExpiresAt).toEqual(plus(NOW, 10 * 60_000));
    const expiresAt = plus(NOW, 5 * 60_000).toISOString();
    const e = expectAllow(release({ grants: [grant({ keyLeaseDuration: '1h', expiresAt })], policy }));
    expect(e.leaseExpiresAt).toEqual(new Date(expiresAt));
  });

  it('never extends past the grant expiry', () => {
    const expiresAt = plus(NOW, 10 * 60_000).toISOString();
    const d = expectAllow(release({ grants: [grant({ expiresAt, keyLeaseDuration: '1h' })] }));
    expect(d.leaseExpiresAt).toEqual(new Date(expiresAt));
  });

  it('clamps to expiresAt one millisecond before expiry, and denies at expiry', () => {
    const g = grant();
    expect(expectAllow(release({ grants: [g], now: plus(EXPIRES, -1) })).leaseExpiresAt).toEqual(
      new Date(EXPIRES),
    );
    expectDeny(release({ grants: [g], now: new Date(EXPIRES) }), 'GrantNotActive');
  });

  it('picks the grant giving the latest lease', () => {
    const short = grant({ keyLeaseDuration: '2h' }, { name: 'a-short' });
    const long = grant({ keyLeaseDuration: '5h' }, { name: 'z-long' });
    const clamped = grant(
      { keyLeaseDuration: '24h', expiresAt: plus(NOW, 3 * HOUR).toISOString() },
      { name: 'm' },
    );
    for (const grants of [
      [short, long, clamped],
      [clamped, long, short],
    ]) {
      const d = expectAllow(release({ grants }));
      expect(d.grant).toBe(long);
      expect(d.leaseExpiresAt).toEqual(plus(NOW, 5 * HOUR));
    }
  });

  it('breaks a tie on the lease by grant name, whatever the input order', () => {
    const b = grant({}, { name: 'b' });
    const a = grant({}, { name: 'a' });
    const c = grant({ keyLeaseDuration: '24h', expiresAt: plus(NOW, HOUR).toISOString() }, { name: 'c' });
    expect(expectAllow(release({ grants: [b, c, a] })).grant).toBe(a);
    expect(expectAllow(release({ grants: [c, a, b] })).grant).toBe(a);
  });
});

const ALL_REASONS: readonly ReleaseDenyReason[] = [
  'NamespaceUnknown',
  'ArtifactNotFound',
  'ArtifactDeleted',
  'NoEnvironment',
  'RestrictedCannotCrossEnvironments',
  'NoLatestVersion',
  'VersionNotFound',
  'VersionWithdrawn',
  'VersionNotSealed',
  'NoGrant',
  'CrossEnvironmentNotAllowed',
  'GrantNotActive',
  'InvalidKeyLease',
];

type DenyRow = [string, Partial<ReleaseInput>, ReleaseDenyReason, string];

describe('authorizeRelease: every deny reason', () => {
  const withdrawnV2 = artifact({ withdrawn: ['v2'] });
  const rows: DenyRow[] = [
    [
      'the identity namespace is absent from the facts',
      { identity: { ...TRAINER, namespace: 'nowhere' } },
      'NamespaceUnknown',
      'Namespace nowhere of nowhere/trainer (pod pod-uid-1) is not known to exist.',
    ],
    [
      'the identity namespace does not exist',
      { identity: { ...TRAINER, namespace: 'gone' } },
      'NamespaceUnknown',
      'Namespace gone of gone/trainer',
    ],
    [
      'the artifact namespace is absent from the facts',
      {
        artifact: artifact({ namespace: 'elsewhere' }),
        request: { artifactNamespace: 'elsewhere', artifactName: 'resnet50', version: 'v2' },
        grants: [grant({}, { namespace: 'elsewhere' })],
      },
      'NamespaceUnknown',
      'Namespace elsewhere of ModelArtifact elsewhere/resnet50 is not known to exist, so its environment is unknown.',
    ],
    [
      'the artifact does not exist',
      { artifact: undefined },
      'ArtifactNotFound',
      'ModelArtifact ml-dev/resnet50, requested by ml-dev/trainer (pod pod-uid-1), does not exist.',
    ],
    [
      'the artifact passed has another name',
      { artifact: artifact({ name: 'bert' }) },
      'ArtifactNotFound',
      'resnet50',
    ],
    [
      'the artifact passed is in another namespace',
      { artifact: artifact({ namespace: 'ml-dev-2' }) },
      'ArtifactNotFound',
      'ml-dev/resnet50',
    ],
    [
      'the artifact is being deleted',
      { artifact: artifact({ deleting: true }) },
      'ArtifactDeleted',
      'ModelArtifact ml-dev/resnet50 is being deleted',
    ],
    [
      'a restricted artifact is asked for from another environment, even under an approved cross grant',
      {
        identity: INFERENCE,
        artifact: artifact({ classification: 'restricted' }),
        grants: [crossGrant({ approvals: approvals(8) })],
      },
      'RestrictedCannotCrossEnvironments',
      'ModelArtifact ml-dev/resnet50 is restricted, and the classification table never releases restricted artifacts across environments (restricted.crossEnvironment is false), but ml-prod (environment "prod") and ml-dev (environment "dev") differ.',
    ],
    [
      'an internal artifact is asked for from another environment when the table forbids crossing',
      {
        identity: INFERENCE,
        grants: [crossGrant({ approvals: approvals(8) })],
        policy: parseClassificationConfig({ 'internal.crossEnvironment': 'false' }),
      },
      'CrossEnvironmentNotAllowed',
      'the classification table never releases internal artifacts across environments (internal.crossEnvironment is false)',
    ],
    [
      'a restricted artifact is asked for from an unlabelled namespace',
      {
        identity: { ...TRAINER, namespace: 'plain' },
        artifact: artifact({ classification: 'restricted' }),
        grants: [crossGrant({ subjects: [{ namespace: 'plain', serviceAccount: 'trainer' }] })],
      },
      'NoEnvironment',
      'ModelArtifact ml-dev/resnet50 is restricted, and namespace plain has no strongroom.dev/environment label; a namespace without an environment gets nothing above public.',
    ],
    [
      'an internal artifact in an unlabelled namespace, asked for from that namespace',
      {
        artifact: artifact({ namespace: 'plain' }),
        request: { artifactNamespace: 'plain', artifactName: 'resnet50', version: 'v2' },
        grants: [grant({}, { namespace: 'plain' })],
        identity: { ...TRAINER, namespace: 'plain' },
      },
      'NoEnvironment',
      'namespace plain has no strongroom.dev/environment label',
    ],
    [
      'a confidential artifact asked for from one unlabelled namespace by another',
      {
        artifact: artifact({ namespace: 'plain', classification: 'confidential' }),
        request: { artifactNamespace: 'plain', artifactName: 'resnet50', version: 'v2' },
        grants: [grant({}, { namespace: 'plain' })],
        identity: { ...TRAINER, namespace: 'plain-2' },
      },
      'NoEnvironment',
      'namespaces plain-2 and plain have no',
    ],
    [
      '"latest" without status.latestVersion',
      { artifact: artifact({ latest: null }), request: version('latest') },
      'NoLatestVersion',
      'ModelArtifact ml-dev/resnet50 has no latest version (status.latestVersion is not set).',
    ],
    [
      '"latest" with an empty status.latestVersion',
      { artifact: artifact({ latest: '' }), request: version('latest') },
      'NoLatestVersion',
      'status.latestVersion is not set',
    ],
    [
      'a version that is not published',
      { request: version('v9'), grants: [grant({ versions: { match: 'all' } })] },
      'VersionNotFound',
      'version v9 of ModelArtifact ml-dev/resnet50 is not published (not in spec.versions).',
    ],
    [
      '"latest" resolving to a version not in spec.versions (stale status)',
      { artifact: artifact({ latest: 'v7' }), request: version('latest') },
      'VersionNotFound',
      'version v7 (latest) of ModelArtifact ml-dev/resnet50 is not published',
    ],
    [
      'a withdrawn version',
      { artifact: withdrawnV2 },
      'VersionWithdrawn',
      'version v2 of ModelArtifact ml-dev/resnet50 has been withdrawn and is never released again.',
    ],
    [
      '"latest" resolving to a withdrawn version (stale status)',
      {
        artifact: artifact({ withdrawn: ['v3'] }),
        request: version('latest'),
        grants: [grant({ versions: { match: 'all' } })],
      },
      'VersionWithdrawn',
      'version v3 (latest)',
    ],
    [
      'a version without a key entry',
      { artifact: artifact({ keyState: { v2: 'absent' } }) },
      'VersionNotSealed',
      'version v2 of ModelArtifact ml-dev/resnet50 has no sealed key yet (status.keys has no Sealed entry).',
    ],
    [
      'a version whose key is Invalid',
      { artifact: artifact({ keyState: { v2: 'Invalid' } }) },
      'VersionNotSealed',
      'v2',
    ],
    [
      'a version whose key has no state',
      { artifact: artifact({ keyState: { v2: 'stateless' } }) },
      'VersionNotSealed',
      'v2',
    ],
    [
      'no grants at all',
      { grants: [] },
      'NoGrant',
      'No AccessGrant in ml-dev releases version v2 of ModelArtifact ml-dev/resnet50 to ml-dev/trainer (pod pod-uid-1).',
    ],
    [
      'a grant for another service account',
      { identity: { ...TRAINER, serviceAccount: 'inference' } },
      'NoGrant',
      'No AccessGrant releases version v2 of ModelArtifact ml-dev/resnet50 to ml-dev/inference (pod pod-uid-1) (grant g1: service account is trainer, not inference).',
    ],
    [
      'a grant for another namespace of the same environment',
      { identity: { ...TRAINER, namespace: 'ml-dev-2' } },
      'NoGrant',
      '(grant g1: namespace is ml-dev, not ml-dev-2)',
    ],
    [
      'a podSelector the pod does not match',
      {
        grants: [
          grant({
            subjects: [
              {
                namespace: 'ml-dev',
                serviceAccount: 'trainer',
                podSelector: { matchLabels: { tier: 'online' } },
              },
            ],
          }),
        ],
      },
      'NoGrant',
      '(grant g1: pod labels do not match its podSelector (label tier=batch, not online))',
    ],
    [
      'a malformed podSelector (fail closed)',
      {
        grants: [
          grant({
            subjects: [
              {
                namespace: 'ml-dev',
                serviceAccount: 'trainer',
                podSelector: { matchExpressions: [{ key: 'x', operator: 'NotIn' }] },
              },
            ],
          }),
        ],
      },
      'NoGrant',
      'the podSelector is invalid',
    ],
    [
      'a named grant that does not name the version',
      { request: version('v1') },
      'NoGrant',
      '(grant g1: covers versions v2, not v1)',
    ],
    [
      'a latest grant asked for an older version',
      { request: version('v1'), grants: [grant({ versions: { match: 'latest' } })] },
      'NoGrant',
      '(grant g1: covers only the latest version (v3), not v1)',
    ],
    [
      'a publish grant',
      { grants: [grant({ mode: 'publish', versions: { match: 'all' } })] },
      'NoGrant',
      '(grant g1: is a publish grant, not a read grant)',
    ],
    [
      'a grant for another artifact',
      { grants: [grant({ artifactRef: { name: 'bert' } })] },
      'NoGrant',
      '(grant g1: is for ModelArtifact bert, not resnet50)',
    ],
    [
      'a grant in another namespace',
      { grants: [grant({}, { namespace: 'ml-dev-2' })] },
      'NoGrant',
      '(grant g1: is in namespace ml-dev-2, not ml-dev)',
    ],
    [
      'a dev-artifact grant for a prod workload without crossEnvironment',
      { identity: INFERENCE, grants: [grant({ subjects: [prodSubject] })] },
      'CrossEnvironmentNotAllowed',
      'ml-prod (environment "prod") and ml-dev (environment "dev") are different environments, and no grant for ml-prod/inference (pod pod-uid-2) and version v2 of ModelArtifact ml-dev/resnet50 is marked cross-environment (grant g1: does not set spec.crossEnvironment).',
    ],
    [
      'a labelled workload and an unlabelled artifact namespace without crossEnvironment',
      {
        artifact: artifact({ namespace: 'plain', classification: 'public' }),
        request: { artifactNamespace: 'plain', artifactName: 'resnet50', version: 'v2' },
        grants: [grant({}, { namespace: 'plain' })],
      },
      'CrossEnvironmentNotAllowed',
      'ml-dev (environment "dev") and plain (no environment label)',
    ],
    [
      'an expired grant',
      { grants: [grant({ expiresAt: plus(NOW, -1).toISOString() })] },
      'GrantNotActive',
      '(grant g1: is Expired (Expired): AccessGrant ml-dev/g1 expired at',
    ],
    [
      'a grant before its notBefore',
      { grants: [grant({ notBefore: plus(NOW, 1).toISOString() })] },
      'GrantNotActive',
      'is Pending (NotYetValid)',
    ],
    [
      'a grant revoked by annotation',
      { grants: [grant({}, { annotations: { [REVOKED_ANNOTATION]: 'leak' } })] },
      'GrantNotActive',
      'is Revoked (RevokedByAdministrator)',
    ],
    [
      'a grant whose status records a phase other than Active although it evaluates Active',
      { grants: [grant({}, { status: { phase: 'Revoked', reason: 'VersionsWithdrawn' } })] },
      'GrantNotActive',
      '(grant g1: its status records phase Revoked (VersionsWithdrawn))',
    ],
    [
      'a grant recorded Active that evaluates Expired now',
      { grants: [grant({ expiresAt: plus(NOW, -1).toISOString() }, { status: { phase: 'Active' } })] },
      'GrantNotActive',
      'is Expired (Expired)',
    ],
    [
      'a cross-environment grant without enough approvals for a confidential artifact',
      { identity: INFERENCE, artifact: artifact({ classification: 'confidential' }), grants: [crossGrant()] },
      'GrantNotActive',
      'is Pending (AwaitingApproval)',
    ],
    [
      'a grant with a subject namespace missing from the facts',
      {
        grants: [
          grant({
            subjects: [
              { namespace: 'ml-dev', serviceAccount: 'trainer' },
              { namespace: 'ml-dev-3', serviceAccount: 'trainer' },
            ],
          }),
        ],
      },
      'GrantNotActive',
      'is Pending (NamespaceNotFound)',
    ],
    [
      'an unreadable keyLeaseDuration',
      { grants: [grant({ keyLeaseDuration: 'soon' })] },
      'InvalidKeyLease',
      'The only grants for ml-dev/trainer (pod pod-uid-1) and version v2 of ModelArtifact ml-dev/resnet50 have an unusable keyLeaseDuration (grant g1: keyLeaseDuration "soon" is unusable: invalid duration',
    ],
    [
      'a keyLeaseDuration under 1m',
      { grants: [grant({ keyLeaseDuration: '59s' })] },
      'InvalidKeyLease',
      'not between 1m and 24h',
    ],
    [
      'a keyLeaseDuration over 24h',
      { grants: [grant({ keyLeaseDuration: '24h1ms' })] },
      'InvalidKeyLease',
      '"24h1ms"',
    ],
    ['a zero keyLeaseDuration', { grants: [grant({ keyLeaseDuration: '0' })] }, 'InvalidKeyLease', '"0"'],
  ];

  it('has a row for every reason', () => {
    expect([...new Set(rows.map((r) => r[2]))].sort()).toEqual([...ALL_REASONS].sort());
  });

  it.each(rows)('denies %s', (_what, overrides, reason, message) => {
    const d = expectDeny(release(overrides), reason);
    expect(d.message).toContain(message);
    // A denial names a grant only when one named the workload and covered the version.
    // (The classification table forbidding a crossing is decided before any grant is looked at.)
    const namesGrant =
      ['CrossEnvironmentNotAllowed', 'GrantNotActive', 'InvalidKeyLease'].includes(reason) &&
      !message.includes('classification table');
    expect(d.grant !== undefined).toBe(namesGrant);
  });

  it('explains at most 3 of the closest grants, in name order, and counts the rest', () => {
    const other = (name: string) =>
      grant({ subjects: [{ namespace: 'ml-dev', serviceAccount: `sa-${name}` }] }, { name });
    const publish = grant({ mode: 'publish', versions: { match: 'all' } }, { name: 'a-publish' });
    const d = expectDeny(
      release({ grants: [other('e'), other('b'), publish, other('d'), other('c')] }),
      'NoGrant',
    );
    expect(d.message).toBe(
      'No AccessGrant releases version v2 of ModelArtifact ml-dev/resnet50 to ml-dev/trainer (pod pod-uid-1) (grant b: service account is sa-b, not trainer; grant c: service account is sa-c, not trainer; grant d: service account is sa-d, not trainer; 1 more).',
    );
    expect(d.message).not.toContain('a-publish');
  });
});

describe('authorizeRelease: precedence', () => {
  const expired = grant({ expiresAt: plus(NOW, -1).toISOString() }, { name: 'expired' });
  const noCross = grant({ subjects: [prodSubject] }, { name: 'no-cross' });
  const wrongSa = grant(
    { subjects: [{ namespace: 'ml-prod', serviceAccount: 'batch' }] },
    { name: 'wrong-sa' },
  );
  const underApproved = crossGrant({}, { name: 'under-approved' });

  it.each<DenyRow>([
    [
      'an unknown identity namespace before a missing artifact',
      { identity: { ...TRAINER, namespace: 'nowhere' }, artifact: undefined },
      'NamespaceUnknown',
      'nowhere',
    ],
    [
      'a missing artifact before an unknown version',
      { artifact: undefined, request: version('v9') },
      'ArtifactNotFound',
      '',
    ],
    [
      'a deleted artifact before a withdrawn version',
      { artifact: artifact({ deleting: true, withdrawn: ['v2'] }) },
      'ArtifactDeleted',
      '',
    ],
    [
      'restricted segmentation before the version checks',
      {
        identity: INFERENCE,
        artifact: artifact({ classification: 'restricted', latest: null }),
        request: version('latest'),
      },
      'RestrictedCannotCrossEnvironments',
      '',
    ],
    ['an unknown version before the grants', { request: version('v9'), grants: [] }, 'VersionNotFound', ''],
    [
      'a withdrawn version before a missing sealed key',
      { artifact: artifact({ withdrawn: ['v2'], keyState: { v2: 'absent' } }) },
      'VersionWithdrawn',
      '',
    ],
    [
      'a grant that names the workload but is not Active before grants that do not name it',
      {
        identity: INFERENCE,
        artifact: artifact({ classification: 'confidential' }),
        grants: [wrongSa, underApproved],
      },
      'GrantNotActive',
      'grant under-approved: is Pending (AwaitingApproval)',
    ],
    [
      'a missing crossEnvironment flag before grants that do not name the workload',
      { identity: INFERENCE, grants: [wrongSa, noCross] },
      'CrossEnvironmentNotAllowed',
      'grant no-cross',
    ],
    [
      'an inactive cross grant before a grant without the flag',
      {
        identity: INFERENCE,
        artifact: artifact({ classification: 'confidential' }),
        grants: [noCross, underApproved],
      },
      'GrantNotActive',
      'grant under-approved',
    ],
    [
      'an unusable lease before an expired grant',
      { grants: [expired, grant({ keyLeaseDuration: 'x' }, { name: 'bad-lease' })] },
      'InvalidKeyLease',
      'grant bad-lease',
    ],
  ])('%s', (_what, overrides, reason, message) => {
    expect(expectDeny(release(overrides), reason).message).toContain(message);
  });

  it('names the first closest grant (by name) in a denial', () => {
    const a = grant({ expiresAt: plus(NOW, -1).toISOString() }, { name: 'a' });
    const b = grant({ notBefore: plus(NOW, 1).toISOString() }, { name: 'b' });
    expect(expectDeny(release({ grants: [b, a] }), 'GrantNotActive').grant).toBe(a);
  });

  it('allows when one grant is Active among inactive, foreign and mismatching ones', () => {
    const active = grant({}, { name: 'zz-active' });
    const d = release({
      grants: [expired, wrongSa, grant({ mode: 'publish', versions: { match: 'all' } }), active],
    });
    expect(expectAllow(d).grant).toBe(active);
  });
});

describe('authorizeRelease: properties', () => {
  const VERSIONS = ['v1', 'v2', 'v3'];
  const NS = ['ml-dev', 'ml-dev-2', 'ml-prod', 'plain', 'gone', 'missing'];
  const selector = fc.option(
    fc.record(
      {
        matchLabels: fc.dictionary(fc.constantFrom('app', 'tier'), fc.constantFrom('a', 'b')),
        matchExpressions: fc.array(
          fc.oneof(
            fc.record({
              key: fc.constantFrom('app', 'tier'),
              operator: fc.constantFrom<'In' | 'NotIn'>('In', 'NotIn'),
              values: fc.subarray(['a', 'b'], { minLength: 1 }),
            }),
            fc.record({
              key: fc.constantFrom('app', 'tier'),
              operator: fc.constantFrom<'Exists' | 'DoesNotExist'>('Exists', 'DoesNotExist'),
            }),
          ),
          { maxLength: 2 },
        ),
      },
      { requiredKeys: [] },
    ),
    { nil: undefined },
  );
  const subject = fc.record({
    namespace: fc.constantFrom(...NS),
    serviceAccount: fc.constantFrom('trainer', 'inference'),
    podSelector: selector,
  });
  /** Usually one of `usual`, sometimes one of `rare`: enough worlds reach the allow branch. */
  const mostly = <T>(usual: readonly T[], rare: readonly T[]) =>
    fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom(...usual) },
      { weight: 1, arbitrary: fc.constantFrom(...rare) },
    );
  const grantArb = fc.record({
    name: fc.constantFrom('a', 'b', 'c', 'd'),
    /** Mostly the artifact's namespace, so that enough grants apply at all. */
    namespace: mostly(['(artifact)'], ['ml-prod', 'ml-dev']),
    /** Mostly with a subject for the requesting workload (its podSelector still random). */
    withIdentity: mostly([true], [false]),
    identitySelector: fc.oneof(
      { weight: 2, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: selector },
    ),
    artifactName: mostly(['resnet50'], ['bert']),
    mode: mostly<'read' | 'publish'>(['read'], ['publish']),
    match: fc.constantFrom<'named' | 'latest' | 'all'>('named', 'latest', 'all'),
    names: fc.subarray([...VERSIONS, 'v9'], { minLength: 1 }),
    subjects: fc.array(subject, { maxLength: 2 }),
    crossEnvironment: fc.boolean(),
    approvals: fc.nat({ max: 3 }),
    startH: fc.integer({ min: -100, max: 10 }),
    lengthH: fc.integer({ min: 1, max: 200 }),
    lease: mostly([undefined, '1m', '15m', '1h', '24h'], ['30s', '25h', 'bad']),
    revoked: mostly([false], [true]),
    recorded: fc.constantFrom<AccessGrantStatus['phase'] | undefined>(
      undefined,
      'Active',
      'Active',
      'Expired',
      'Revoked',
    ),
  });
  const world = fc.record({
    identityNs: mostly(['ml-dev', 'ml-dev-2', 'ml-prod', 'plain'], ['gone', 'missing']),
    identitySa: fc.constantFrom('trainer', 'inference'),
    labels: fc.dictionary(fc.constantFrom('app', 'tier'), fc.constantFrom('a', 'b')),
    artifactNs: fc.constantFrom('ml-dev', 'ml-prod', 'plain'),
    classification: fc.constantFrom<Classification>('public', 'internal', 'confidential', 'restricted'),
    exists: mostly([true], [false]),
    deleting: mostly([false], [true]),
    withdrawn: fc.subarray(VERSIONS, { maxLength: 1 }),
    unsealed: fc.subarray(VERSIONS, { maxLength: 1 }),
    latest: fc.constantFrom<string | null>('v1', 'v2', 'v3', null),
    requested: mostly(['v1', 'v2', 'v3', 'latest'], ['v9']),
    grants: fc.array(grantArb, { minLength: 1, maxLength: 4 }),
  });
  type World = typeof world extends fc.Arbitrary<infer R> ? R : never;

  function build(w: World): ReleaseInput {
    const a = artifact({
      namespace: w.artifactNs,
      classification: w.classification,
      withdrawn: w.withdrawn,
      keyState: Object.fromEntries(w.unsealed.map((v) => [v, 'absent'])),
      latest: w.latest,
      deleting: w.deleting,
    });
    const grants = w.grants.map((g) => {
      const notBefore = plus(NOW, g.startH * HOUR);
      return grant(
        {
          artifactRef: { name: g.artifactName },
          mode: g.mode,
          versions: g.match === 'named' ? { match: 'named', names: g.names } : { match: g.match },
          subjects: [
            ...(g.withIdentity
              ? [{ namespace: w.identityNs, serviceAccount: w.identitySa, podSelector: g.identitySelector }]
              : []),
            ...g.subjects,
          ].map(({ namespace, serviceAccount, podSelector }): AccessGrantSubject =>
            podSelector === undefined
              ? { namespace, serviceAccount }
              : { namespace, serviceAccount, podSelector },
          ),
          notBefore: notBefore.toISOString(),
          expiresAt: plus(notBefore, g.lengthH * HOUR).toISOString(),
          crossEnvironment: g.crossEnvironment,
          approvals: approvals(g.approvals),
          ...(g.lease === undefined ? {} : { keyLeaseDuration: g.lease }),
        },
        {
          name: g.name,
          namespace: g.namespace === '(artifact)' ? w.artifactNs : g.namespace,
          ...(g.revoked ? { annotations: { [REVOKED_ANNOTATION]: '' } } : {}),
          ...(g.recorded === undefined ? {} : { status: { phase: g.recorded } }),
        },
      );
    });
    return {
      identity: { namespace: w.identityNs, serviceAccount: w.identitySa, podUid: 'uid', podLabels: w.labels },
      request: { artifactNamespace: w.artifactNs, artifactName: 'resnet50', version: w.requested },
      artifact: w.exists ? a : undefined,
      grants,
      namespaces: NAMESPACES,
      policy: DEFAULT_CLASSIFICATION_TABLE,
      now: NOW,
    };
  }

  const environment = (ns: string) => NAMESPACES.get(ns)?.environment ?? '';

  it('allows only under an Active, matching grant within segmentation, with a lease inside the grant window', () => {
    let allowed = 0;
    const reasons = new Map<string, number>();
    fc.assert(
      fc.property(world, (w) => {
        const i = build(w);
        const d = authorizeRelease(i);
        reasons.set(d.reason, (reasons.get(d.reason) ?? 0) + 1);
        if (!d.allow) return;
        allowed++;
        const g = d.grant;
        expect(i.grants).toContain(g);
        expect(
          evaluateGrant({
            grant: g,
            artifact: i.artifact,
            namespaces: i.namespaces,
            policy: i.policy,
            now: NOW,
          }).phase,
        ).toBe('Active');
        expect([undefined, 'Active']).toContain(g.status?.phase);
        expect(g.metadata.namespace).toBe(w.artifactNs);
        expect(g.spec.artifactRef.name).toBe('resnet50');
        expect(g.spec.mode).toBe('read');
        const subjectMatches = g.spec.subjects.some(
          (s) =>
            s.namespace === w.identityNs &&
            s.serviceAccount === w.identitySa &&
            matchesSelector(w.labels, s.podSelector),
        );
        expect(subjectMatches).toBe(true);
        const sameEnvironment = environment(w.identityNs) === environment(w.artifactNs);
        expect(
          sameEnvironment || (g.spec.crossEnvironment === true && w.classification !== 'restricted'),
        ).toBe(true);
        if (w.classification !== 'public') {
          expect(environment(w.identityNs)).not.toBe('');
          expect(environment(w.artifactNs)).not.toBe('');
        }
        const cap = DEFAULT_CLASSIFICATION_TABLE.classifications[w.classification].keyLeaseMs;
        expect(d.leaseExpiresAt.getTime()).toBeLessThanOrEqual(NOW.getTime() + cap);
        expect(w.exists && !w.deleting).toBe(true);
        const resolved = w.requested === 'latest' ? w.latest : w.requested;
        expect(d.version).toBe(resolved);
        expect(VERSIONS).toContain(d.version);
        expect(w.withdrawn).not.toContain(d.version);
        expect(w.unsealed).not.toContain(d.version);
        expect(d.leaseExpiresAt.getTime()).toBeGreaterThan(NOW.getTime());
        expect(d.leaseExpiresAt.getTime()).toBeLessThanOrEqual(new Date(g.spec.expiresAt).getTime());
        expect(d.leaseExpiresAt.getTime()).toBeLessThanOrEqual(NOW.getTime() + 24 * HOUR);
      }),
      { numRuns: 6000 },
    );
    // The generator must reach the allow branch often enough for the property to mean something, and every
    // reason, so that the property also covers how the rules combine.
    expect(allowed).toBeGreaterThan(30);
    expect([...reasons.keys()].sort()).toEqual([...ALL_REASONS, 'Granted'].sort());
  });

  it('is deterministic: the order of the grants does not change the decision', () => {
    fc.assert(
      fc.property(world, (w) => {
        const i = build(w);
        const forward = authorizeRelease(i);
        const backward = authorizeRelease({ ...i, grants: [...i.grants].reverse() });
        expect(backward.allow).toBe(forward.allow);
        expect(backward.reason).toBe(forward.reason);
        if (forward.allow && backward.allow) {
          expect(backward.grant.metadata.name).toBe(forward.grant.metadata.name);
          expect(backward.leaseExpiresAt).toEqual(forward.leaseExpiresAt);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('removing every grant always denies', () => {
    fc.assert(
      fc.property(world, (w) => {
        expect(authorizeRelease({ ...build(w), grants: [] }).allow).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
