import { DEFAULT_CLASSIFICATION_TABLE, parseClassificationConfig } from './classification.ts';
import { describe, expect, it } from 'vitest';
import type { AccessGrantSpec } from '../api/index.ts';
import { REVOKED_ANNOTATION } from './grant.ts';
import { authorizePublish, type PublishDenyReason, type PublishInput } from './publish.ts';
import { EXPIRES, NAMESPACES, NOW, approvals, artifact, grant, prodSubject } from './testdata/objects.ts';

const TRAINER = {
  namespace: 'ml-dev',
  serviceAccount: 'trainer',
  podUid: 'pod-uid-1',
  podLabels: { app: 'resnet', role: 'exporter' },
};
const publishGrant = (spec: Partial<AccessGrantSpec> = {}, name = 'pub') =>
  grant({ mode: 'publish', versions: { match: 'named', names: ['v4'] }, ...spec }, { name });

function input(overrides: Partial<PublishInput> = {}): PublishInput {
  return {
    identity: TRAINER,
    artifactNamespace: 'ml-dev',
    artifactName: 'resnet50',
    version: 'v4',
    artifact: 'artifact' in overrides ? overrides.artifact : artifact(),
    grants: [publishGrant()],
    namespaces: NAMESPACES,
    policy: DEFAULT_CLASSIFICATION_TABLE,
    now: NOW,
    ...overrides,
  };
}

function reason(i: PublishInput): PublishDenyReason | 'allow' {
  const d = authorizePublish(i);
  return d.allow ? 'allow' : d.reason;
}

describe('authorizePublish', () => {
  it('allows a named version under an Active publish grant for the workload, naming the grant', () => {
    const d = authorizePublish(input());
    expect(d.allow).toBe(true);
    if (d.allow) expect(d.grant.metadata.name).toBe('pub');
  });

  it('allows any new name under match: all', () => {
    expect(
      reason(input({ grants: [publishGrant({ versions: { match: 'all' } })], version: 'anything' })),
    ).toBe('allow');
  });

  const table: [string, Partial<PublishInput>, PublishDenyReason][] = [
    [
      'the identity namespace is unknown',
      { identity: { ...TRAINER, namespace: 'gone' } },
      'NamespaceUnknown',
    ],
    ['the artifact is missing', { artifact: undefined }, 'ArtifactNotFound'],
    ['the artifact is another one', { artifact: artifact({ name: 'other' }) }, 'ArtifactNotFound'],
    ['the artifact is being deleted', { artifact: artifact({ deleting: true }) }, 'ArtifactDeleted'],
    [
      'the version already exists',
      { version: 'v2', grants: [publishGrant({ versions: { match: 'all' } })] },
      'VersionExists',
    ],
    ['no grant at all', { grants: [] }, 'NoPublishGrant'],
    ['only a read grant', { grants: [grant({ versions: { match: 'all' } })] }, 'NoPublishGrant'],
    ['a publish grant for another version name', { version: 'v5' }, 'NoPublishGrant'],
    [
      'a publish grant for another service account',
      { grants: [publishGrant({ subjects: [{ namespace: 'ml-dev', serviceAccount: 'other' }] })] },
      'NoPublishGrant',
    ],
    [
      'a publish grant whose podSelector does not match',
      {
        grants: [
          publishGrant({
            subjects: [
              { namespace: 'ml-dev', serviceAccount: 'trainer', podSelector: { matchLabels: { role: 'x' } } },
            ],
          }),
        ],
      },
      'NoPublishGrant',
    ],
    [
      'a publish grant for another artifact',
      { grants: [publishGrant({ artifactRef: { name: 'bert' } })] },
      'NoPublishGrant',
    ],
    ['a publish grant that expired', { now: new Date(new Date(EXPIRES).getTime() + 1) }, 'GrantNotActive'],
    [
      'a publish grant revoked by an administrator',
      {
        grants: [
          grant(
            { mode: 'publish', versions: { match: 'all' } },
            { annotations: { [REVOKED_ANNOTATION]: 'leak' } },
          ),
        ],
      },
      'GrantNotActive',
    ],
    [
      'a publish grant recorded as Denied by the operator',
      {
        grants: [grant({ mode: 'publish', versions: { match: 'all' } }, { status: { phase: 'Denied' } })],
      },
      'GrantNotActive',
    ],
  ];
  it.each(table)('denies when %s', (_what, overrides, expected) => {
    const d = authorizePublish(input(overrides));
    expect(d.allow).toBe(false);
    if (!d.allow) {
      expect(d.reason).toBe(expected);
      expect(d.message.length).toBeGreaterThan(10);
    }
  });

  it('segments environments: a prod workload publishing into a dev artifact needs an approved cross-environment grant', () => {
    const prod = { ...TRAINER, namespace: 'ml-prod', serviceAccount: 'inference' };
    expect(reason(input({ identity: prod, grants: [publishGrant({ subjects: [prodSubject] })] }))).toBe(
      'CrossEnvironmentNotAllowed',
    );
    expect(
      reason(
        input({
          identity: prod,
          grants: [publishGrant({ subjects: [prodSubject], crossEnvironment: true })],
        }),
      ),
    ).toBe('GrantNotActive');
    expect(
      reason(
        input({
          identity: prod,
          grants: [
            publishGrant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(1) }),
          ],
        }),
      ),
    ).toBe('allow');
  });

  it('never lets a restricted artifact take a version from another environment', () => {
    const prod = { ...TRAINER, namespace: 'ml-prod', serviceAccount: 'inference' };
    expect(
      reason(
        input({
          identity: prod,
          artifact: artifact({ classification: 'restricted' }),
          grants: [
            publishGrant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(8) }),
          ],
        }),
      ),
    ).toBe('RestrictedCannotCrossEnvironments');
  });

  it('lets a non-public artifact take versions only between labelled namespaces (NoEnvironment)', () => {
    const plain = { ...TRAINER, namespace: 'plain' };
    const grants = [
      publishGrant({
        subjects: [{ namespace: 'plain', serviceAccount: 'trainer' }],
        crossEnvironment: true,
        approvals: approvals(2),
      }),
    ];
    for (const classification of ['internal', 'confidential', 'restricted'] as const) {
      const d = authorizePublish(input({ identity: plain, artifact: artifact({ classification }), grants }));
      expect(d).toMatchObject({ allow: false, reason: 'NoEnvironment' });
      if (!d.allow)
        expect(d.message).toContain(
          `is ${classification}, and namespace plain has no strongroom.dev/environment label`,
        );
    }
    const inPlain = {
      artifactNamespace: 'plain',
      artifact: artifact({ namespace: 'plain' }),
      grants: [
        grant(
          { mode: 'publish', versions: { match: 'named', names: ['v4'] } },
          { name: 'pub', namespace: 'plain' },
        ),
      ],
      identity: { ...TRAINER, namespace: 'plain-2' },
    };
    const both = authorizePublish(input(inPlain));
    expect(both).toMatchObject({ allow: false, reason: 'NoEnvironment' });
    if (!both.allow) expect(both.message).toContain('namespaces plain-2 and plain have no');
    // A public artifact may: the environment "" is then compared like any other.
    expect(reason(input({ identity: plain, artifact: artifact({ classification: 'public' }), grants }))).toBe(
      'allow',
    );
  });

  it('follows the table: no crossing for a classification whose crossEnvironment is false, and its approvals', () => {
    const prod = { ...TRAINER, namespace: 'ml-prod', serviceAccount: 'inference' };
    const grants = [
      publishGrant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(8) }),
    ];
    const closed = parseClassificationConfig({ 'internal.crossEnvironment': 'false' });
    expect(reason(input({ identity: prod, grants, policy: closed }))).toBe('CrossEnvironmentNotAllowed');
    const open = parseClassificationConfig({ 'restricted.crossEnvironment': 'true' });
    expect(
      reason(
        input({ identity: prod, grants, artifact: artifact({ classification: 'restricted' }), policy: open }),
      ),
    ).toBe('allow');
    // A confidential artifact needs an approval even within its environment.
    const conf = artifact({ classification: 'confidential' });
    expect(reason(input({ artifact: conf }))).toBe('GrantNotActive');
    expect(reason(input({ artifact: conf, grants: [publishGrant({ approvals: approvals(1) })] }))).toBe(
      'allow',
    );
  });

  it('picks any Active matching grant among several, regardless of order', () => {
    const good = publishGrant({}, 'z-good');
    const expired = publishGrant({ expiresAt: '2026-12-05T00:00:00Z' }, 'a-expired');
    for (const grants of [
      [good, expired],
      [expired, good],
    ]) {
      const d = authorizePublish(input({ grants }));
      expect(d.allow).toBe(true);
      if (d.allow) expect(d.grant.metadata.name).toBe('z-good');
    }
  });
});
