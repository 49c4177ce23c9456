import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AccessGrant, AccessGrantStatus, ModelArtifact } from '../api/index.ts';
import { validateEvent, type GrantEvent } from './event.ts';
import { environmentChanges, grantTransitions, versionEvents } from './governance.ts';
import { AuditLog } from './log.ts';
import { GOVERNANCE_EVENTS, makeKeys, ORIGIN } from './testdata/fixtures.ts';
import { tailLog } from './tail.ts';
import { verifyLog } from './verify.ts';

function grant(
  extra: { annotations?: Record<string, string>; spec?: Partial<AccessGrant['spec']> } = {},
): AccessGrant {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'AccessGrant',
    metadata: {
      namespace: 'ml-dev',
      name: 'g1',
      uid: 'grant-uid-1',
      resourceVersion: '42',
      ...(extra.annotations ? { annotations: extra.annotations } : {}),
    },
    spec: {
      artifactRef: { name: 'resnet50' },
      subjects: [{ namespace: 'ml-prod', serviceAccount: 'inference' }],
      mode: 'read',
      expiresAt: '2026-02-01T00:00:00Z',
      requester: 'alice',
      ...extra.spec,
    },
  } as AccessGrant;
}

const status = (
  phase: NonNullable<AccessGrantStatus['phase']>,
  reason: string,
  approvedBy: string[] = [],
): AccessGrantStatus => ({
  phase,
  reason,
  approvedBy,
});

/** [type, actor, reason] of each event, in order; every event must also validate. */
function summary(events: readonly GrantEvent[]): [string, string, string][] {
  for (const e of events) validateEvent(e);
  return events.map((e) => [e.type, e.actor, e.reason]);
}

describe('grantTransitions', () => {
  it('records a new grant as created by its requester, then its first phase', () => {
    expect(summary(grantTransitions(grant(), undefined, status('Active', 'Granted')))).toEqual([
      ['grant-created', 'alice', 'Created'],
      ['grant-activated', 'strongroom-operator', 'Granted'],
    ]);
    expect(summary(grantTransitions(grant(), undefined, status('Pending', 'AwaitingApproval')))).toEqual([
      ['grant-created', 'alice', 'Created'],
    ]);
    const [created] = grantTransitions(grant(), undefined, status('Pending', 'AwaitingApproval'));
    expect(created?.grant).toEqual({
      namespace: 'ml-dev',
      name: 'g1',
      uid: 'grant-uid-1',
      resourceVersion: '42',
    });
    expect(created?.phase).toBe('Pending');
    expect(created?.previousPhase).toBeUndefined();
  });

  it('records a grant without a requester (created before the field existed) as created by "unknown"', () => {
    const g = grant();
    delete g.spec.requester;
    expect(summary(grantTransitions(g, undefined, status('Pending', 'NotYetValid')))).toEqual([
      ['grant-created', 'unknown', 'Created'],
    ]);
  });

  it('records each approver new in status.approvedBy, with their groups and comment, before the activation', () => {
    const g = grant({
      spec: {
        approvals: [
          { approver: 'bob', groups: ['ml-approvers'], approvedAt: '2026-01-01T00:00:00Z' },
          { approver: 'dan', groups: ['security'], approvedAt: '2026-01-01T00:01:00Z', comment: 'SEC-12' },
        ],
      },
    });
    const events = grantTransitions(
      g,
      status('Pending', 'AwaitingApproval', ['bob']),
      status('Active', 'Granted', ['bob', 'dan']),
    );
    expect(summary(events)).toEqual([
      ['grant-approved', 'dan', 'Approved'],
      ['grant-activated', 'strongroom-operator', 'Granted'],
    ]);
    expect(events[0]).toMatchObject({ groups: ['security'], detail: 'SEC-12' });
    expect(events[1]).toMatchObject({ previousPhase: 'Pending', phase: 'Active' });
  });

  it('records a denial by an approver with the denier as actor, and other denials as the operator’s', () => {
    const denied = grant({
      spec: {
        denial: {
          deniedBy: 'carol',
          groups: ['ml-approvers'],
          deniedAt: '2026-01-01T00:00:00Z',
          reason: 'not for prod',
        },
      },
    });
    const byApprover = grantTransitions(
      denied,
      status('Pending', 'AwaitingApproval'),
      status('Denied', 'DeniedByApprover'),
    );
    expect(summary(byApprover)).toEqual([['grant-denied', 'carol', 'DeniedByApprover']]);
    expect(byApprover[0]).toMatchObject({ groups: ['ml-approvers'], detail: 'not for prod' });
    expect(
      summary(
        grantTransitions(
          grant(),
          status('Pending', 'AwaitingApproval'),
          status('Denied', 'RestrictedCannotCrossEnvironments'),
        ),
      ),
    ).toEqual([['grant-denied', 'strongroom-operator', 'RestrictedCannotCrossEnvironments']]);
    // Still Denied, for another reason: a new decision.
    expect(
      summary(
        grantTransitions(grant(), status('Denied', 'ArtifactNotFound'), status('Denied', 'WindowTooLong')),
      ),
    ).toEqual([['grant-denied', 'strongroom-operator', 'WindowTooLong']]);
  });

  it('records expiry (also by an approval timeout) and revocation', () => {
    expect(
      summary(grantTransitions(grant(), status('Active', 'Granted'), status('Expired', 'Expired'))),
    ).toEqual([['grant-expired', 'strongroom-operator', 'Expired']]);
    expect(
      summary(
        grantTransitions(
          grant(),
          status('Pending', 'AwaitingApproval'),
          status('Expired', 'ApprovalTimedOut'),
        ),
      ),
    ).toEqual([['grant-expired', 'strongroom-operator', 'ApprovalTimedOut']]);
    const revoked = grantTransitions(
      grant({ annotations: { 'strongroom.dev/revoked': 'INC-4711' } }),
      status('Active', 'Granted'),
      status('Revoked', 'RevokedByAdministrator'),
    );
    expect(summary(revoked)).toEqual([['grant-revoked', 'unknown', 'RevokedByAdministrator']]);
    expect(revoked[0]?.detail).toBe('INC-4711');
    expect(
      summary(grantTransitions(grant(), status('Active', 'Granted'), status('Revoked', 'ArtifactReplaced'))),
    ).toEqual([['grant-revoked', 'strongroom-operator', 'ArtifactReplaced']]);
  });

  it('records a quarantine with the annotation as detail, and its lifting before the new phase', () => {
    const q = grant({ annotations: { 'strongroom.dev/quarantined': 'investigation INC-9' } });
    const quarantined = grantTransitions(q, status('Active', 'Granted'), status('Denied', 'Quarantined'));
    expect(summary(quarantined)).toEqual([['grant-quarantined', 'unknown', 'Quarantined']]);
    expect(quarantined[0]).toMatchObject({
      detail: 'investigation INC-9',
      previousPhase: 'Active',
      phase: 'Denied',
    });
    expect(
      summary(grantTransitions(grant(), status('Denied', 'Quarantined'), status('Active', 'Granted'))),
    ).toEqual([
      ['grant-lifted', 'unknown', 'QuarantineLifted'],
      ['grant-activated', 'strongroom-operator', 'Granted'],
    ]);
    // Lifted into another denial: both are recorded.
    expect(
      summary(
        grantTransitions(grant(), status('Denied', 'Quarantined'), status('Denied', 'ArtifactNotFound')),
      ),
    ).toEqual([
      ['grant-lifted', 'unknown', 'QuarantineLifted'],
      ['grant-denied', 'strongroom-operator', 'ArtifactNotFound'],
    ]);
  });

  it.each([
    ['Active', 'Granted'],
    ['Pending', 'AwaitingApproval'],
    ['Denied', 'Quarantined'],
    ['Denied', 'DeniedByApprover'],
    ['Expired', 'Expired'],
    ['Revoked', 'RevokedByAdministrator'],
  ] as const)('records nothing when %s/%s is written again (same approvers)', (phase, reason) => {
    const before = status(phase, reason, ['bob']);
    expect(grantTransitions(grant(), before, { ...before, approvedBy: ['bob'] })).toEqual([]);
  });

  it('records nothing for Active → Pending or a change of reason within Active or Pending', () => {
    expect(
      grantTransitions(grant(), status('Active', 'Granted'), status('Pending', 'NamespaceNotFound')),
    ).toEqual([]);
    expect(
      grantTransitions(grant(), status('Pending', 'NotYetValid'), status('Pending', 'AwaitingApproval')),
    ).toEqual([]);
  });
});

describe('versionEvents', () => {
  const artifact = {
    metadata: { namespace: 'ml-dev', name: 'resnet50', uid: 'artifact-uid-1' },
  } as ModelArtifact;
  const version = {
    name: 'v3',
    digest: `sha256:${'ab'.repeat(32)}`,
    size: 10,
    encryption: { format: 'v1', keyFingerprint: `sha256:${'cd'.repeat(32)}` },
    publisher: 'alice',
    publishedAt: '2026-01-01T00:00:00Z',
  } as const;

  it('records a version as published by its publisher and sealed by the operator under its KEK', () => {
    const events = versionEvents(artifact, version, { id: 'kek-internal', version: '2' });
    for (const e of events) validateEvent(e);
    expect(events).toEqual([
      {
        type: 'version-published',
        artifact: { namespace: 'ml-dev', name: 'resnet50', uid: 'artifact-uid-1' },
        version: 'v3',
        digest: version.digest,
        publisher: 'alice',
        publishedAt: '2026-01-01T00:00:00Z',
        actor: 'alice',
        reason: 'published-directly',
      },
      {
        type: 'version-sealed',
        artifact: { namespace: 'ml-dev', name: 'resnet50', uid: 'artifact-uid-1' },
        version: 'v3',
        digest: version.digest,
        publisher: 'alice',
        publishedAt: '2026-01-01T00:00:00Z',
        actor: 'strongroom-operator',
        reason: 'sealed',
        key: { id: 'kek-internal', version: '2' },
      },
    ]);
  });

  it('marks a version the broker published (a SPIFFE publisher) as published via the broker', () => {
    const spiffe = 'spiffe://cluster.local/ns/ml-dev/sa/trainer';
    const [published] = versionEvents(artifact, { ...version, publisher: spiffe }, { id: 'k', version: '1' });
    expect(published).toMatchObject({ actor: spiffe, reason: 'published-via-broker' });
  });
});

describe('environmentChanges', () => {
  it('records additions, changes, removals and deletions, and nothing for unchanged or unlabelled namespaces', () => {
    const recorded = { a: 'dev', b: 'dev', c: 'prod', d: 'prod' };
    const current = new Map<string, string | undefined>([
      ['a', 'dev'],
      ['b', 'prod'],
      ['c', undefined],
      ['e', 'dev'],
      ['f', undefined],
      ['g', ''],
    ]);
    const events = environmentChanges(recorded, current);
    for (const e of events) validateEvent(e);
    expect(events).toEqual([
      { type: 'environment-changed', namespace: 'b', old: 'dev', new: 'prod', reason: 'label-changed' },
      { type: 'environment-changed', namespace: 'c', old: 'prod', new: null, reason: 'label-removed' },
      { type: 'environment-changed', namespace: 'd', old: 'prod', new: null, reason: 'namespace-deleted' },
      { type: 'environment-changed', namespace: 'e', old: null, new: 'dev', reason: 'label-added' },
    ]);
    expect(environmentChanges({ a: 'dev' }, new Map([['a', 'dev']]))).toEqual([]);
  });
});

describe('governance events in a log', () => {
  it('are written, verified and tailed like any other event', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-governance-'));
    try {
      const keys = makeKeys();
      const path = join(dir, 'a.log');
      const log = await AuditLog.open({ path, origin: ORIGIN, signer: keys.signer, heartbeatIntervalMs: 0 });
      for (const e of GOVERNANCE_EVENTS) await log.append(e);
      await log.close();
      const report = verifyLog(readFileSync(path), { verifiers: [keys.verifier] });
      expect(report.findings.filter((f) => f.severity === 'error')).toEqual([]);
      const types: string[] = [];
      for await (const r of tailLog(path, { follow: false }))
        if (r.kind === 'entry') types.push((JSON.parse(r.line) as { event: { type: string } }).event.type);
      expect(types).toEqual(['writer-started', ...GOVERNANCE_EVENTS.map((e) => e.type)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
