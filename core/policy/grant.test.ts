import { DEFAULT_CLASSIFICATION_TABLE, parseClassificationConfig } from './classification.ts';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type {
  AccessGrant,
  AccessGrantSpec,
  AccessGrantStatus,
  AccessGrantVersions,
  Classification,
  ModelArtifact,
} from '../api/index.ts';
import {
  APPROVERS,
  REQUESTER,
  NAMESPACES,
  NOT_BEFORE,
  EXPIRES,
  NOW,
  approvals,
  prodSubject,
  artifact as baseArtifact,
  grant as baseGrant,
  type ArtifactOptions,
  type GrantOptions,
} from './testdata/objects.ts';
import { statusEqual } from './conditions.ts';
import {
  EMPTY_QUARANTINES,
  formatQuarantineRecord,
  parseQuarantines,
  type QuarantineSet,
} from './quarantine.ts';
import {
  QUARANTINE_ANNOTATION,
  REVOKED_ANNOTATION,
  endsAccess,
  evaluateGrant,
  grantStatus,
  type GrantDecision,
  type GrantInput,
  type GrantPhase,
} from './grant.ts';

/** The default table with some ConfigMap keys changed. */
const table = (data: Record<string, string>) => parseClassificationConfig(data);

const at = (iso: string, deltaMs = 0) => new Date(new Date(iso).getTime() + deltaMs);

/** The shared resnet50, at generation 4. */
const artifact = (opts: ArtifactOptions = {}): ModelArtifact => baseArtifact({ generation: 4, ...opts });

/** A table row: description, spec.versions, artifact options, expectation. */
type VersionRow<T> = [string, AccessGrantVersions, ArtifactOptions, T];

/** The shared g1, at generation 2. */
const grant = (spec: Partial<AccessGrantSpec> = {}, opts: GrantOptions = {}): AccessGrant =>
  baseGrant(spec, { generation: 2, ...opts });

function evaluate(g: AccessGrant, overrides: Partial<Omit<GrantInput, 'grant'>> = {}): GrantDecision {
  return evaluateGrant({
    grant: g,
    artifact: 'artifact' in overrides ? overrides.artifact : artifact(),
    namespaces: overrides.namespaces ?? NAMESPACES,
    policy: overrides.policy ?? DEFAULT_CLASSIFICATION_TABLE,
    now: overrides.now ?? NOW,
    ...(overrides.quarantines === undefined ? {} : { quarantines: overrides.quarantines }),
  });
}

describe('evaluateGrant: each rule', () => {
  it('grants a valid read grant (Active/Granted) until expiresAt', () => {
    const d = evaluate(grant());
    expect(d).toMatchObject({
      phase: 'Active',
      reason: 'Granted',
      resolvedVersions: ['v2'],
      crossEnvironmentSubjects: [],
    });
    expect(d.nextEvaluationAt).toEqual(at(EXPIRES));
    expect(d.message).toBe(
      `AccessGrant ml-dev/g1 grants read access to ModelArtifact ml-dev/resnet50 (v2) to ml-dev/trainer until ${EXPIRES}.`,
    );
  });

  it.each([
    ['the annotation with a reason', { [REVOKED_ANNOTATION]: ' leaked token ' }, ': leaked token.'],
    ['an empty annotation', { [REVOKED_ANNOTATION]: '' }, 'revoked by an administrator. Revocation'],
  ])('1. revokes on %s (Revoked/RevokedByAdministrator, final)', (_what, annotations, text) => {
    const d = evaluate(grant({}, { annotations }));
    expect(d).toMatchObject({ phase: 'Revoked', reason: 'RevokedByAdministrator', resolvedVersions: [] });
    expect(d.message).toContain('AccessGrant ml-dev/g1');
    expect(d.message).toContain(text);
    expect(d.nextEvaluationAt).toBeUndefined();
  });

  it('1. keeps an administrator revocation after the annotation is removed, with its message', () => {
    const status: AccessGrantStatus = {
      phase: 'Revoked',
      reason: 'RevokedByAdministrator',
      message: 'revoked: leak',
    };
    const d = evaluate(grant({}, { status }));
    expect(d).toMatchObject({ phase: 'Revoked', reason: 'RevokedByAdministrator', message: 'revoked: leak' });
  });

  it('1b. quarantines while the annotation is there (Denied/Quarantined), and only then', () => {
    const d = evaluate(grant({}, { annotations: { [QUARANTINE_ANNOTATION]: 'incident 42' } }));
    expect(d).toMatchObject({ phase: 'Denied', reason: 'Quarantined', resolvedVersions: [] });
    expect(d.message).toContain('quarantined by a security team: incident 42');
    // Reversible: the recorded Denied/Quarantined status does not stick once the annotation is gone.
    const lifted = evaluate(grant({}, { status: { phase: 'Denied', reason: 'Quarantined' } }));
    expect(lifted.phase).toBe('Active');
    // An administrator revocation still wins over a quarantine.
    const both = evaluate(
      grant({}, { annotations: { [QUARANTINE_ANNOTATION]: '', [REVOKED_ANNOTATION]: 'leak' } }),
    );
    expect(both.phase).toBe('Revoked');
  });

  it.each(['ArtifactDeleted', 'VersionsWithdrawn'])('1. does not make revocation for %s sticky', (reason) => {
    const d = evaluate(grant({}, { status: { phase: 'Revoked', reason } }));
    expect(d.phase).toBe('Active');
  });

  it('2. denies when the artifact does not exist (Denied/ArtifactNotFound, not changed by time)', () => {
    const d = evaluate(grant(), { artifact: undefined });
    expect(d).toMatchObject({ phase: 'Denied', reason: 'ArtifactNotFound' });
    expect(d.message).toBe('ModelArtifact ml-dev/resnet50, named by AccessGrant ml-dev/g1, does not exist.');
    expect(d.nextEvaluationAt).toBeUndefined();
  });

  it.each([
    ['another name', artifact({ name: 'other' })],
    ['another namespace', artifact({ namespace: 'ml-prod' })],
  ])('2. treats an artifact with %s as missing (fail closed)', (_what, wrong) => {
    expect(evaluate(grant(), { artifact: wrong }).reason).toBe('ArtifactNotFound');
  });

  it('2. revokes when the artifact is being deleted (Revoked/ArtifactDeleted)', () => {
    const d = evaluate(grant(), { artifact: artifact({ deleting: true }) });
    expect(d).toMatchObject({ phase: 'Revoked', reason: 'ArtifactDeleted', nextEvaluationAt: undefined });
    expect(d.message).toContain('ModelArtifact ml-dev/resnet50 is being deleted');
  });

  it('3. expires at expiresAt exactly, not a millisecond before', () => {
    const before = evaluate(grant(), { now: at(EXPIRES, -1) });
    expect(before).toMatchObject({ phase: 'Active', nextEvaluationAt: at(EXPIRES) });
    const d = evaluate(grant(), { now: at(EXPIRES) });
    expect(d).toMatchObject({
      phase: 'Expired',
      reason: 'Expired',
      resolvedVersions: [],
      nextEvaluationAt: undefined,
    });
    expect(d.message).toBe(`AccessGrant ml-dev/g1 expired at ${EXPIRES}.`);
    expect(evaluate(grant(), { now: at(EXPIRES, 86_400_000) }).phase).toBe('Expired');
  });

  it('3. honours a timezone offset in expiresAt', () => {
    const g = grant({ expiresAt: '2026-12-10T13:00:00+01:00' }); // = 12:00:00Z, before NOW
    expect(evaluate(g).phase).toBe('Expired');
  });

  it('4. is Pending/NotYetValid before notBefore and Active from notBefore exactly', () => {
    const d = evaluate(grant(), { now: at(NOT_BEFORE, -1) });
    expect(d).toMatchObject({ phase: 'Pending', reason: 'NotYetValid', nextEvaluationAt: at(NOT_BEFORE) });
    expect(d.message).toContain(NOT_BEFORE);
    expect(evaluate(grant(), { now: at(NOT_BEFORE) })).toMatchObject({
      phase: 'Active',
      nextEvaluationAt: at(EXPIRES),
    });
  });

  it('3. without notBefore, denies a window of more than 90 days from creation (Denied/WindowTooLong)', () => {
    const g = grant();
    delete g.spec.notBefore;
    const expires = new Date(EXPIRES);
    g.metadata.creationTimestamp = new Date(expires.getTime() - 90 * 86_400_000 - 1000);
    const now = new Date(expires.getTime() - 86_400_000);
    expect(evaluate(g, { now })).toMatchObject({ phase: 'Denied', reason: 'WindowTooLong' });
    g.metadata.creationTimestamp = new Date(expires.getTime() - 90 * 86_400_000);
    expect(evaluate(g, { now }).phase).toBe('Active');
    // With notBefore the CRD's own rule bounds the window; the creation time does not matter.
    const bounded = grant();
    bounded.metadata.creationTimestamp = new Date(expires.getTime() - 200 * 86_400_000);
    expect(evaluate(bounded, { now }).reason).not.toBe('WindowTooLong');
  });

  it('4. without notBefore is valid from the start', () => {
    const g = grant();
    delete g.spec.notBefore;
    expect(evaluate(g, { now: at(NOT_BEFORE, -86_400_000) }).phase).toBe('Active');
  });

  it.each([
    ['an unreadable expiresAt', { expiresAt: 'tomorrow' }],
    ['an unreadable notBefore', { notBefore: 'soon' }],
  ])('3. denies %s (Denied/InvalidTimeWindow, fail closed)', (_what, spec) => {
    expect(evaluate(grant(spec))).toMatchObject({ phase: 'Denied', reason: 'InvalidTimeWindow' });
  });

  it.each([
    [
      'the grant namespace is absent from the map',
      'ml-qa',
      [{ namespace: 'ml-qa', serviceAccount: 'a' }],
      'Namespace ml-qa',
    ],
    [
      'the grant namespace does not exist',
      'gone',
      [{ namespace: 'ml-dev', serviceAccount: 'a' }],
      'Namespace gone',
    ],
    [
      'a subject namespace does not exist',
      'ml-dev',
      [{ namespace: 'gone', serviceAccount: 'a' }],
      'Namespace gone',
    ],
    [
      'two subject namespaces are missing',
      'ml-dev',
      [
        { namespace: 'nowhere', serviceAccount: 'a' },
        { namespace: 'ml-dev', serviceAccount: 'b' },
        { namespace: 'gone', serviceAccount: 'c' },
      ],
      'Namespaces nowhere, gone, used by AccessGrant ml-dev/g1, do not exist.',
    ],
  ])('5. is Pending/NamespaceNotFound when %s', (_what, namespace, subjects, text) => {
    const d = evaluate(grant({ subjects }, { namespace }), { artifact: artifact({ namespace }) });
    expect(d).toMatchObject({ phase: 'Pending', reason: 'NamespaceNotFound', nextEvaluationAt: at(EXPIRES) });
    expect(d.message).toContain(text);
    expect(d.approved).toMatchObject({ status: 'Unknown', reason: 'NamespaceNotFound' });
  });

  describe('6. environments', () => {
    it.each([
      ['two namespaces with the same label', 'ml-dev', 'ml-dev-2', false],
      ['dev and prod', 'ml-dev', 'ml-prod', true],
    ])('%s (%s vs %s): crosses %s', (_what, home, subjectNs, crosses) => {
      const g = grant({ subjects: [{ namespace: subjectNs, serviceAccount: 'sa' }] }, { namespace: home });
      const d = evaluate(g, { artifact: artifact({ namespace: home }) });
      expect(d.crossEnvironmentSubjects).toEqual(crosses ? [`${subjectNs}/sa`] : []);
      expect(d).toMatchObject(
        crosses
          ? { phase: 'Denied', reason: 'CrossEnvironmentNotAllowed' }
          : { phase: 'Active', reason: 'Granted' },
      );
    });

    it.each([
      ['two unlabelled namespaces', 'plain', 'plain-2', false],
      ['a labelled grant namespace and an unlabelled subject namespace', 'ml-dev', 'plain', true],
      ['an unlabelled grant namespace and a labelled subject namespace', 'plain', 'ml-dev', true],
    ])('for a public artifact, %s (%s vs %s): crosses %s', (_what, home, subjectNs, crosses) => {
      const g = grant({ subjects: [{ namespace: subjectNs, serviceAccount: 'sa' }] }, { namespace: home });
      const d = evaluate(g, { artifact: artifact({ namespace: home, classification: 'public' }) });
      expect(d.crossEnvironmentSubjects).toEqual(crosses ? [`${subjectNs}/sa`] : []);
      expect(d).toMatchObject(
        crosses
          ? { phase: 'Denied', reason: 'CrossEnvironmentNotAllowed' }
          : { phase: 'Active', reason: 'Granted' },
      );
    });

    it.each(['internal', 'confidential', 'restricted'] as const)(
      '5b. denies a %s artifact to unlabelled namespaces (Denied/NoEnvironment), naming them',
      (classification) => {
        for (const [home, subjects, named] of [
          ['plain', [{ namespace: 'plain-2', serviceAccount: 'a' }], 'Namespaces plain, plain-2'],
          ['ml-dev', [{ namespace: 'plain', serviceAccount: 'a' }], 'Namespace plain,'],
          ['plain', [{ namespace: 'ml-dev', serviceAccount: 'a' }], 'Namespace plain,'],
          [
            'ml-dev',
            [
              { namespace: 'ml-dev', serviceAccount: 'a' },
              { namespace: 'plain-2', serviceAccount: 'b' },
            ],
            'Namespace plain-2,',
          ],
        ] as const) {
          const g = grant(
            { subjects: [...subjects], crossEnvironment: true, approvals: approvals(2) },
            { namespace: home },
          );
          const d = evaluate(g, { artifact: artifact({ namespace: home, classification }) });
          expect(d).toMatchObject({
            phase: 'Denied',
            reason: 'NoEnvironment',
            nextEvaluationAt: at(EXPIRES),
          });
          expect(d.message).toContain(named);
          expect(d.message).toContain('no strongroom.dev/environment label');
          expect(d.message).toContain(`ModelArtifact ${home}/resnet50 is ${classification}`);
        }
      },
    );

    it('5b. counts an empty environment label as none', () => {
      const namespaces = new Map(NAMESPACES).set('empty', { exists: true, environment: '' });
      const g = grant({ subjects: [{ namespace: 'empty', serviceAccount: 'a' }] }, { namespace: 'empty' });
      const d = evaluate(g, { artifact: artifact({ namespace: 'empty' }), namespaces });
      expect(d.reason).toBe('NoEnvironment');
    });

    it('denies a crossing grant without spec.crossEnvironment, naming the subjects and environments', () => {
      const d = evaluate(grant({ subjects: [{ namespace: 'ml-dev', serviceAccount: 'a' }, prodSubject] }));
      expect(d).toMatchObject({
        phase: 'Denied',
        reason: 'CrossEnvironmentNotAllowed',
        crossEnvironmentSubjects: ['ml-prod/inference'],
        nextEvaluationAt: at(EXPIRES),
      });
      expect(d.message).toContain(
        'ml-prod/inference (environment "prod") is not in the environment of ml-dev',
      );
      expect(d.message).toContain('must set spec.crossEnvironment');
    });

    it('denies a restricted artifact across environments even when approved (RestrictedCannotCrossEnvironments)', () => {
      const g = grant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(8) });
      const d = evaluate(g, { artifact: artifact({ classification: 'restricted' }) });
      expect(d).toMatchObject({ phase: 'Denied', reason: 'RestrictedCannotCrossEnvironments' });
      expect(d.message).toContain('ModelArtifact ml-dev/resnet50 is restricted');
      expect(d.message).toContain('restricted.crossEnvironment is false');
      expect(d.approved).toMatchObject({ status: 'False', reason: 'RestrictedCannotCrossEnvironments' });
    });

    it('denies any classification across environments when the table says crossEnvironment false', () => {
      const policy = table({ 'confidential.crossEnvironment': 'false' });
      const g = grant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(8) });
      const d = evaluate(g, { artifact: artifact({ classification: 'confidential' }), policy });
      expect(d).toMatchObject({ phase: 'Denied', reason: 'CrossEnvironmentNotAllowed' });
      expect(d.message).toContain('confidential.crossEnvironment is false');
      // ... and a restricted artifact may cross when the table allows it.
      const open = table({ 'restricted.crossEnvironment': 'true' });
      const r = evaluate(g, { artifact: artifact({ classification: 'restricted' }), policy: open });
      expect(r).toMatchObject({ phase: 'Active', reason: 'Granted' });
    });

    it('allows a restricted artifact within one environment once it has its 2 approvals', () => {
      const g = grant({
        subjects: [{ namespace: 'ml-dev-2', serviceAccount: 'a' }],
        approvals: approvals(2),
      });
      expect(evaluate(g, { artifact: artifact({ classification: 'restricted' }) }).phase).toBe('Active');
      const one = grant({
        subjects: [{ namespace: 'ml-dev-2', serviceAccount: 'a' }],
        approvals: approvals(1),
      });
      expect(evaluate(one, { artifact: artifact({ classification: 'restricted' }) }).reason).toBe(
        'AwaitingApproval',
      );
    });

    it.each([
      // Within one environment: C.approvals (public 0, internal 0, confidential 1, restricted 2).
      ['public', false, 0, 'Granted'],
      ['internal', false, 0, 'Granted'],
      ['confidential', false, 0, 'AwaitingApproval'],
      ['confidential', false, 1, 'Granted'],
      ['restricted', false, 1, 'AwaitingApproval'],
      ['restricted', false, 2, 'Granted'],
      // Across: C.crossEnvironmentApprovals (public 1, internal 1, confidential 2).
      ['public', true, 0, 'AwaitingApproval'],
      ['public', true, 1, 'Granted'],
      ['internal', true, 0, 'AwaitingApproval'],
      ['internal', true, 1, 'Granted'],
      ['confidential', true, 1, 'AwaitingApproval'],
      ['confidential', true, 2, 'Granted'],
      ['confidential', true, 3, 'Granted'],
    ] as const)('%s, crossing %s, with %d approvals → %s', (classification, crosses, n, reason) => {
      const g = grant({
        subjects: [crosses ? prodSubject : { namespace: 'ml-dev-2', serviceAccount: 'a' }],
        crossEnvironment: crosses,
        approvals: approvals(n),
      });
      const d = evaluate(g, { artifact: artifact({ classification }) });
      expect(d.reason).toBe(reason);
      expect(d.phase).toBe(reason === 'Granted' ? 'Active' : 'Pending');
      // The approvers counted so far, whether or not they are enough yet.
      expect(d.approvedBy).toEqual(approvals(n).map((a) => a.approver));
    });

    it('AwaitingApproval says how many more, from which groups, and how many it has', () => {
      const g = grant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(1) });
      const d = evaluate(g, { artifact: artifact({ classification: 'confidential' }) });
      expect(d).toMatchObject({
        phase: 'Pending',
        reason: 'AwaitingApproval',
        nextEvaluationAt: at(EXPIRES),
      });
      expect(d.message).toBe(
        'AccessGrant ml-dev/g1 is waiting for 1 more approval from members of strongroom:approvers: a cross-environment grant for a confidential artifact needs 2 (confidential.crossEnvironmentApprovals), by approvers other than the requester requester@example.com; it has 1 (approver-0@example.com).',
      );
      expect(d.approved).toEqual({ status: 'False', reason: 'AwaitingApproval', message: d.message });
      const none = evaluate(grant({ approvals: [] }), {
        artifact: artifact({ classification: 'restricted' }),
      });
      expect(none.message).toContain('waiting for 2 more approvals from members of strongroom:approvers');
      expect(none.message).toContain('(restricted.approvals)');
      expect(none.message).toContain('it has none.');
    });

    it('counts each approver once', () => {
      const twice = [
        { approver: 'alice', groups: [APPROVERS], approvedAt: NOT_BEFORE },
        { approver: 'alice', groups: [APPROVERS], approvedAt: NOT_BEFORE },
      ];
      const g = grant({ subjects: [prodSubject], crossEnvironment: true, approvals: twice });
      const d = evaluate(g, { artifact: artifact({ classification: 'confidential' }) });
      expect(d.reason).toBe('AwaitingApproval');
      expect(d.message).toContain('it has 1 (alice)');
    });

    it("never counts the requester's own approval", () => {
      const own = [{ approver: REQUESTER, groups: [APPROVERS], approvedAt: NOT_BEFORE }, ...approvals(1)];
      const g = grant({ approvals: own });
      const d = evaluate(g, { artifact: artifact({ classification: 'restricted' }) });
      expect(d.reason).toBe('AwaitingApproval');
      expect(d.message).toContain(`Not counted: ${REQUESTER} is the requester.`);
      const ok = evaluate(grant({ approvals: [...own, ...approvals(2).slice(1)] }), {
        artifact: artifact({ classification: 'restricted' }),
      });
      expect(ok).toMatchObject({
        phase: 'Active',
        approvedBy: ['approver-0@example.com', 'approver-1@example.com'],
      });
    });

    it('counts an approval only when one of its groups is an approver group of the classification', () => {
      const policy = table({ 'confidential.approverGroups': 'ml-leads,security-leads' });
      const art = artifact({ classification: 'confidential' });
      for (const groups of [[], ['strongroom:approvers'], ['ML-LEADS'], ['ml-leads-2']]) {
        const d = evaluate(grant({ approvals: approvals(1, groups) }), { artifact: art, policy });
        expect(d.reason).toBe('AwaitingApproval');
        expect(d.message).toContain(
          'Not counted: approver-0@example.com is not approving as a member of ml-leads, security-leads.',
        );
      }
      for (const groups of [['security-leads'], ['other', 'ml-leads']]) {
        const d = evaluate(grant({ approvals: approvals(1, groups) }), { artifact: art, policy });
        expect(d).toMatchObject({ phase: 'Active', approvedBy: ['approver-0@example.com'] });
      }
      // An approval without groups (recorded before the field existed) never counts.
      const bare = [{ approver: 'old@example.com', approvedAt: NOT_BEFORE }];
      expect(evaluate(grant({ approvals: bare }), { artifact: art }).reason).toBe('AwaitingApproval');
    });

    it('lists only counted approvers, in spec order, in approvedBy and the Approved message', () => {
      const list = [
        { approver: 'zed', groups: [APPROVERS], approvedAt: NOT_BEFORE },
        { approver: REQUESTER, groups: [APPROVERS], approvedAt: NOT_BEFORE },
        { approver: 'amy', groups: ['nobody'], approvedAt: NOT_BEFORE },
        { approver: 'bob', groups: [APPROVERS], approvedAt: NOT_BEFORE },
      ];
      const g = grant({ subjects: [prodSubject], crossEnvironment: true, approvals: list });
      const d = evaluate(g, { artifact: artifact({ classification: 'confidential' }) });
      expect(d).toMatchObject({ phase: 'Active', approvedBy: ['zed', 'bob'] });
      expect(d.approved).toMatchObject({ status: 'True', reason: 'Approved' });
      expect(d.approved.message).toContain('approved by zed, bob (2 required for confidential)');
      expect(d.message).toContain('approved by zed, bob');
    });

    it('fails closed without spec.requester: no approval counts (Denied/RequesterUnknown)', () => {
      const g = grant({ approvals: approvals(3) });
      delete g.spec.requester;
      const d = evaluate(g, { artifact: artifact({ classification: 'confidential' }) });
      expect(d).toMatchObject({ phase: 'Denied', reason: 'RequesterUnknown', approvedBy: [] });
      expect(d.message).toContain('has no spec.requester');
      expect(d.message).toContain('needs 1 approval');
      expect(d.approved).toMatchObject({ status: 'False', reason: 'RequesterUnknown' });
      // ... but a grant that needs no approval does not need a requester either.
      expect(evaluate(g, { artifact: artifact({ classification: 'internal' }) }).phase).toBe('Active');
      const crossing = grant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(3) });
      delete crossing.spec.requester;
      expect(evaluate(crossing).reason).toBe('RequesterUnknown');
    });

    it('lists approvers in the message of an approved crossing grant', () => {
      const g = grant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(1) });
      const d = evaluate(g);
      expect(d).toMatchObject({ phase: 'Active', crossEnvironmentSubjects: ['ml-prod/inference'] });
      expect(d.message).toContain('approved by approver-0@example.com (1 required for internal)');
      expect(d.approved).toMatchObject({ status: 'True', reason: 'Approved' });
    });

    it('7. allows crossEnvironment without any crossing subject, and says so', () => {
      const d = evaluate(grant({ crossEnvironment: true, approvals: approvals(1) }));
      expect(d).toMatchObject({
        phase: 'Active',
        reason: 'Granted',
        crossEnvironmentSubjects: [],
        approvedBy: [],
      });
      expect(d.message).toContain(
        'spec.crossEnvironment is set although every subject is in the environment of ml-dev',
      );
      expect(d.approved).toMatchObject({ status: 'True', reason: 'NotRequired' });
    });
  });

  describe('approval timeout', () => {
    const CREATED = '2026-12-09T00:00:00Z';
    const created = (spec: Partial<AccessGrantSpec> = {}, opts: GrantOptions = {}) => {
      const g = grant(spec, opts);
      g.metadata.creationTimestamp = new Date(CREATED);
      return g;
    };
    const confidential = artifact({ classification: 'confidential' });
    const DEADLINE = at(CREATED, 72 * 3_600_000);

    it('waits until creation + pendingApprovalTimeout (72h), then expires for good (ApprovalTimedOut)', () => {
      const g = created();
      const before = evaluate(g, { artifact: confidential, now: at(DEADLINE.toISOString(), -1) });
      expect(before).toMatchObject({
        phase: 'Pending',
        reason: 'AwaitingApproval',
        nextEvaluationAt: DEADLINE,
      });
      const after = evaluate(g, { artifact: confidential, now: DEADLINE });
      expect(after).toMatchObject({
        phase: 'Expired',
        reason: 'ApprovalTimedOut',
        nextEvaluationAt: undefined,
      });
      expect(after.message).toContain('did not get the 1 approval a grant for a confidential artifact needs');
      expect(after.message).toContain('This is final');
      expect(after.approved).toMatchObject({ status: 'False', reason: 'ApprovalTimedOut' });
    });

    it('uses the configured timeout', () => {
      const policy = table({ pendingApprovalTimeout: '1h' });
      const g = created();
      const d = evaluate(g, { artifact: confidential, policy, now: at(CREATED, 3_600_000 - 1) });
      expect(d).toMatchObject({ reason: 'AwaitingApproval', nextEvaluationAt: at(CREATED, 3_600_000) });
      expect(evaluate(g, { artifact: confidential, policy, now: at(CREATED, 3_600_000) }).reason).toBe(
        'ApprovalTimedOut',
      );
    });

    it('is sticky: approvals that arrive after the timeout do not revive the grant', () => {
      const g = created();
      const expired = evaluate(g, { artifact: confidential, now: DEADLINE });
      const status = grantStatus(undefined, expired, g, DEADLINE, confidential);
      const late = created({ approvals: approvals(2) }, { status });
      const d = evaluate(late, { artifact: confidential, now: DEADLINE });
      expect(d).toMatchObject({ phase: 'Expired', reason: 'ApprovalTimedOut', message: expired.message });
      // Even before the deadline by the clock (a status written by another replica with a skewed clock).
      expect(evaluate(late, { artifact: confidential, now: at(CREATED) }).reason).toBe('ApprovalTimedOut');
      // An administrator revocation still wins.
      const revoked = created(
        { approvals: approvals(2) },
        { status, annotations: { [REVOKED_ANNOTATION]: 'x' } },
      );
      expect(evaluate(revoked, { artifact: confidential, now: DEADLINE }).reason).toBe(
        'RevokedByAdministrator',
      );
    });

    it('counts no approval given after the deadline, even before the Expired status is written (operator down)', () => {
      const lateApproval = created({
        approvals: [
          {
            approver: 'bob',
            groups: ['strongroom:approvers'],
            approvedAt: at(DEADLINE.toISOString(), 60_000).toISOString(),
          },
        ],
      });
      const d = evaluate(lateApproval, { artifact: confidential, now: at(DEADLINE.toISOString(), 120_000) });
      expect(d).toMatchObject({ phase: 'Expired', reason: 'ApprovalTimedOut' });
      expect(d.message).toContain('bob approved after the pending-approval deadline');
      // Given in time, it counts, however late the operator gets to it.
      const inTime = created({
        approvals: [
          {
            approver: 'bob',
            groups: ['strongroom:approvers'],
            approvedAt: at(DEADLINE.toISOString(), -60_000).toISOString(),
          },
        ],
      });
      expect(
        evaluate(inTime, { artifact: confidential, now: at(DEADLINE.toISOString(), 120_000) }).phase,
      ).toBe('Active');
    });

    it('does not expire a grant that got its approvals in time, or needs none', () => {
      const approved = created({ approvals: approvals(1) });
      expect(
        evaluate(approved, { artifact: confidential, now: at(DEADLINE.toISOString(), 1000) }).phase,
      ).toBe('Active');
      expect(evaluate(created(), { now: at(DEADLINE.toISOString(), 1000) }).phase).toBe('Active');
    });

    it('times out even before notBefore, and NotYetValid requeues at the deadline when it is first', () => {
      const g = created({ notBefore: '2026-12-20T00:00:00Z', expiresAt: '2027-01-10T00:00:00Z' });
      const early = evaluate(g, { artifact: confidential, now: at(CREATED) });
      expect(early).toMatchObject({ phase: 'Pending', reason: 'NotYetValid', nextEvaluationAt: DEADLINE });
      expect(evaluate(g, { artifact: confidential, now: DEADLINE }).reason).toBe('ApprovalTimedOut');
      const approved = created({
        notBefore: '2026-12-20T00:00:00Z',
        expiresAt: '2027-01-10T00:00:00Z',
        approvals: approvals(1),
      });
      expect(evaluate(approved, { artifact: confidential, now: at(CREATED) }).nextEvaluationAt).toEqual(
        at('2026-12-20T00:00:00Z'),
      );
    });

    it('requeues at expiresAt when it comes before the deadline', () => {
      const g = created({ expiresAt: '2026-12-10T00:00:00Z' });
      delete g.spec.notBefore;
      const d = evaluate(g, { artifact: confidential, now: at(CREATED) });
      expect(d).toMatchObject({ reason: 'AwaitingApproval', nextEvaluationAt: at('2026-12-10T00:00:00Z') });
    });
  });

  describe('1a. denial by an approver', () => {
    const denial = {
      deniedBy: 'carol@example.com',
      groups: [APPROVERS],
      deniedAt: '2026-12-05T10:00:00Z',
      reason: ' not for production ',
    };

    it('is Denied/DeniedByApprover, naming who, when and why, whatever else holds', () => {
      for (const spec of [{}, { approvals: approvals(3) }, { subjects: [prodSubject] }]) {
        const d = evaluate(grant({ ...spec, denial }), { now: at(EXPIRES, 1) });
        expect(d).toMatchObject({ phase: 'Denied', reason: 'DeniedByApprover', nextEvaluationAt: undefined });
        expect(d.message).toBe(
          'AccessGrant ml-dev/g1 was denied by carol@example.com (strongroom:approvers) at 2026-12-05T10:00:00Z: not for production. A denial is final; create a new grant.',
        );
        expect(d.approved).toMatchObject({ status: 'False', reason: 'DeniedByApprover' });
      }
      const bare = evaluate(grant({ denial: { deniedBy: 'dan', deniedAt: '2026-12-05T10:00:00Z' } }));
      expect(bare.message).toBe(
        'AccessGrant ml-dev/g1 was denied by dan at 2026-12-05T10:00:00Z. A denial is final; create a new grant.',
      );
    });

    it('comes after an administrator revocation and before a quarantine or a missing artifact', () => {
      const revoked = grant({ denial }, { annotations: { [REVOKED_ANNOTATION]: 'x' } });
      expect(evaluate(revoked).reason).toBe('RevokedByAdministrator');
      const quarantined = grant({ denial }, { annotations: { [QUARANTINE_ANNOTATION]: 'x' } });
      expect(evaluate(quarantined).reason).toBe('DeniedByApprover');
      expect(evaluate(grant({ denial }), { artifact: undefined }).reason).toBe('DeniedByApprover');
    });
  });

  describe('3. maxGrantDuration per classification', () => {
    it.each([
      ['public', 90],
      ['internal', 90],
      ['confidential', 30],
      ['restricted', 7],
    ] as const)('%s: at most %d days from notBefore', (classification, days) => {
      const D = 86_400_000;
      const art = artifact({ classification });
      const ok = grant({ expiresAt: at(NOT_BEFORE, days * D).toISOString(), approvals: approvals(2) });
      expect(evaluate(ok, { artifact: art, now: at(NOT_BEFORE, 1) }).reason).not.toBe('WindowTooLong');
      const long = grant({
        expiresAt: at(NOT_BEFORE, days * D + 1000).toISOString(),
        approvals: approvals(2),
      });
      const d = evaluate(long, { artifact: art, now: at(NOT_BEFORE, 1) });
      expect(d).toMatchObject({ phase: 'Denied', reason: 'WindowTooLong' });
      expect(d.message).toContain(`from notBefore (${NOT_BEFORE})`);
      expect(d.message).toContain(
        `more than ${String(days)}d, the longest a grant for a ${classification} artifact may last (${classification}.maxGrantDuration)`,
      );
    });

    it('uses the configured maximum, from creation when there is no notBefore', () => {
      const policy = table({ 'internal.maxGrantDuration': '2h' });
      const g = grant({ expiresAt: '2026-12-10T14:00:01Z' });
      delete g.spec.notBefore;
      g.metadata.creationTimestamp = new Date('2026-12-10T12:00:00Z');
      const d = evaluate(g, { policy });
      expect(d).toMatchObject({ phase: 'Denied', reason: 'WindowTooLong' });
      expect(d.message).toContain(
        'from its creation (2026-12-10T12:00:00.000Z) to 2026-12-10T14:00:01Z: more than 2h',
      );
      g.spec.expiresAt = '2026-12-10T14:00:00Z';
      expect(evaluate(g, { policy }).phase).toBe('Active');
    });
  });

  it('reports the classification whenever the artifact exists', () => {
    expect(evaluate(grant(), { artifact: artifact({ classification: 'confidential' }) }).classification).toBe(
      'confidential',
    );
    expect(evaluate(grant({}, { annotations: { [REVOKED_ANNOTATION]: '' } })).classification).toBe(
      'internal',
    );
    expect(evaluate(grant(), { artifact: undefined }).classification).toBeUndefined();
  });

  describe('8. versions of read grants', () => {
    it.each([
      [
        'named ∩ published, in publication order',
        { match: 'named', names: ['v3', 'v1', 'v9'] },
        {},
        ['v1', 'v3'],
      ],
      ['latest', { match: 'latest' }, { latest: 'v2' }, ['v2']],
      ['all', { match: 'all' }, {}, ['v1', 'v2', 'v3']],
      ['all minus withdrawn', { match: 'all' }, { withdrawn: ['v2'] }, ['v1', 'v3']],
      ['all minus unsealed', { match: 'all' }, { sealed: ['v1', 'v3'] }, ['v1', 'v3']],
      ['named minus withdrawn', { match: 'named', names: ['v1', 'v2'] }, { withdrawn: ['v1'] }, ['v2']],
      [
        'only keys in state Sealed',
        { match: 'all' },
        { keyState: { v1: 'Invalid', v2: 'stateless', v3: 'Sealed' } },
        ['v3'],
      ],
    ] satisfies VersionRow<string[]>[])('resolves %s', (_what, versions, art, expected) => {
      const d = evaluate(grant({ versions }), { artifact: artifact(art) });
      expect(d).toMatchObject({ phase: 'Active', reason: 'Granted', resolvedVersions: expected });
    });

    it('mentions versions it names but cannot release', () => {
      const g = grant({ versions: { match: 'named', names: ['v1', 'v2', 'v9'] } });
      const d = evaluate(g, { artifact: artifact({ withdrawn: ['v1'] }) });
      expect(d.resolvedVersions).toEqual(['v2']);
      expect(d.message).toContain('Not covered (v9 is not published; v1 is withdrawn).');
    });

    it('revokes when every named version was withdrawn (Revoked/VersionsWithdrawn)', () => {
      const g = grant({ versions: { match: 'named', names: ['v1', 'v2'] } });
      const d = evaluate(g, { artifact: artifact({ withdrawn: ['v1', 'v2'] }) });
      expect(d).toMatchObject({ phase: 'Revoked', reason: 'VersionsWithdrawn', resolvedVersions: [] });
      expect(d.message).toContain('(v1, v2) has been withdrawn from ModelArtifact ml-dev/resnet50');
    });

    it.each([
      ['a named version not published yet', { match: 'named', names: ['v9'] }, {}, 'v9 is not published'],
      [
        'a named version withdrawn and another not published',
        { match: 'named', names: ['v1', 'v9'] },
        { withdrawn: ['v1'] },
        'v9 is not published; v1 is withdrawn',
      ],
      [
        'a named version not sealed',
        { match: 'named', names: ['v2'] },
        { sealed: ['v1'] },
        'v2 is not sealed yet',
      ],
      ['latest without status.latestVersion', { match: 'latest' }, {}, 'status.latestVersion ""'],
      [
        'latest naming an unknown version',
        { match: 'latest' },
        { latest: 'v7' },
        'status.latestVersion "v7"',
      ],
      [
        'latest naming a withdrawn version (stale status)',
        { match: 'latest' },
        { latest: 'v3', withdrawn: ['v3'] },
        'v3 is withdrawn',
      ],
      ['all, nothing sealed', { match: 'all' }, { sealed: [] }, 'v1, v2, v3 are not sealed yet'],
      ['all, no versions', { match: 'all' }, { versions: [] }, 'all versions.'],
      [
        'all, every version withdrawn',
        { match: 'all' },
        { withdrawn: ['v1', 'v2', 'v3'] },
        'v1, v2, v3 are withdrawn',
      ],
    ] satisfies VersionRow<string>[])('is Pending/NoSealedVersion for %s', (_what, versions, art, text) => {
      const d = evaluate(grant({ versions }), { artifact: artifact(art) });
      expect(d).toMatchObject({
        phase: 'Pending',
        reason: 'NoSealedVersion',
        resolvedVersions: [],
        nextEvaluationAt: at(EXPIRES),
      });
      expect(d.message).toContain('covers no releasable');
      expect(d.message).toContain(text);
    });
  });

  describe('8. publish grants', () => {
    it.each([
      ['named, none published yet', { match: 'named', names: ['v4', 'v5'] }, []],
      ['named, partly published', { match: 'named', names: ['v4', 'v2'] }, ['v2']],
      ['all', { match: 'all' }, ['v1', 'v2', 'v3']],
    ] as const)('is Active for %s with the published ones resolved', (_what, versions, expected) => {
      const spec: Partial<AccessGrantSpec> = {
        mode: 'publish',
        versions: { match: versions.match, ...('names' in versions ? { names: [...versions.names] } : {}) },
      };
      const d = evaluate(grant(spec), { artifact: artifact({ sealed: [] }) });
      expect(d).toMatchObject({ phase: 'Active', reason: 'Granted', resolvedVersions: expected });
      expect(d.message).toContain('grants publish access');
    });

    it('denies a publish grant for latest (the CRD forbids it; fail closed)', () => {
      const d = evaluate(grant({ mode: 'publish', versions: { match: 'latest' } }));
      expect(d).toMatchObject({ phase: 'Denied', reason: 'LatestNotAllowedForPublish' });
    });

    it('applies the environment rules to publish grants too', () => {
      const d = evaluate(grant({ mode: 'publish', subjects: [prodSubject] }));
      expect(d.reason).toBe('CrossEnvironmentNotAllowed');
    });
  });
});

describe('1c. a quarantined subject identity', () => {
  const record = formatQuarantineRecord({
    since: '2026-12-07T10:00:00Z',
    alertId: 'a-0123456789abcdef',
    rule: 'bulk-access',
    severity: 'high',
    reason: 'ten artifacts in a minute',
  });
  /** The quarantines of the identities given (as <namespace>.<serviceAccount>). */
  const quarantined = (...keys: string[]): QuarantineSet =>
    parseQuarantines(Object.fromEntries(keys.map((k) => [k, record])));
  const trainer = { namespace: 'ml-dev', serviceAccount: 'trainer' };
  const three = [
    trainer,
    { namespace: 'ml-dev', serviceAccount: 'batch' },
    { namespace: 'ml-dev-2', serviceAccount: 'etl' },
  ];

  it('denies a grant whose only subject is quarantined (Denied/Quarantined), naming the alert and how to lift it', () => {
    const d = evaluate(grant({ subjects: [trainer] }), { quarantines: quarantined('ml-dev.trainer') });
    expect(d).toMatchObject({ phase: 'Denied', reason: 'Quarantined', resolvedVersions: [] });
    expect(d.message).toBe(
      'AccessGrant ml-dev/g1 is suspended: its subject service account ml-dev/trainer is quarantined by anomaly alert a-0123456789abcdef (rule bulk-access, severity high) since 2026-12-07T10:00:00Z: ten artifacts in a minute. ' +
        "A member of the security groups lifts it by removing key ml-dev.trainer from ConfigMap strongroom-quarantines in the operator's namespace (kubectl edit).",
    );
  });

  it('leaves a grant alone when no subject is quarantined, or none are known, and is not sticky once lifted', () => {
    const g = grant({ subjects: [trainer] });
    expect(evaluate(g, { quarantines: quarantined('ml-dev.batch', 'ml-dev.inference') }).phase).toBe(
      'Active',
    );
    expect(evaluate(g, { quarantines: EMPTY_QUARANTINES }).phase).toBe('Active');
    expect(evaluate(g).phase).toBe('Active');
    const wasQuarantined = grant(
      { subjects: [trainer] },
      { status: { phase: 'Denied', reason: 'Quarantined', message: 'suspended' } },
    );
    expect(evaluate(wasQuarantined, { quarantines: EMPTY_QUARANTINES })).toMatchObject({
      phase: 'Active',
      reason: 'Granted',
    });
  });

  it('quarantines on an unreadable record too (fail closed), and ignores keys that name no identity', () => {
    const set = parseQuarantines({ 'ml-dev.trainer': 'not json', nodot: record });
    const d = evaluate(grant({ subjects: [trainer] }), { quarantines: set });
    expect(d.reason).toBe('Quarantined');
    expect(d.message).toContain('its record is unreadable: the value is not JSON');
    const other = evaluate(grant({ subjects: [trainer] }), {
      quarantines: parseQuarantines({ nodot: record }),
    });
    expect(other.phase).toBe('Active');
  });

  it('with several subjects, one quarantined suspends the whole grant and the others are counted', () => {
    const g = grant({ subjects: three });
    const one = evaluate(g, { quarantines: quarantined('ml-dev.batch') });
    expect(one).toMatchObject({ phase: 'Denied', reason: 'Quarantined' });
    expect(one.message).toMatch(
      /^AccessGrant ml-dev\/g1 is suspended: its subject service account ml-dev\/batch is/,
    );
    expect(one.message).not.toContain('more of its subjects');
    const two = evaluate(g, { quarantines: quarantined('ml-dev.batch', 'ml-dev-2.etl') });
    expect(two.message).toContain('its subject service account ml-dev/batch is quarantined');
    expect(two.message).toMatch(/\. 1 more of its subjects is quarantined too\.$/);
    const all = evaluate(g, { quarantines: quarantined('ml-dev.trainer', 'ml-dev.batch', 'ml-dev-2.etl') });
    expect(all.message).toContain('its subject service account ml-dev/trainer is quarantined');
    expect(all.message).toMatch(/\. 2 more of its subjects are quarantined too\.$/);
  });

  it('comes after a revocation, an approver denial and a grant quarantine, and before every other rule', () => {
    const q = { quarantines: quarantined('ml-dev.trainer') };
    const reason = (g: AccessGrant, overrides: Partial<Omit<GrantInput, 'grant'>> = {}): string =>
      evaluate(g, { ...q, ...overrides }).reason;
    expect(reason(grant({}, { annotations: { [REVOKED_ANNOTATION]: 'leak' } }))).toBe(
      'RevokedByAdministrator',
    );
    expect(reason(grant({ denial: { deniedBy: 'carol', deniedAt: NOT_BEFORE } }))).toBe('DeniedByApprover');
    const annotated = evaluate(grant({}, { annotations: { [QUARANTINE_ANNOTATION]: 'incident 42' } }), q);
    expect([annotated.reason, annotated.message]).toEqual([
      'Quarantined',
      expect.stringContaining('quarantined by a security team: incident 42') as unknown as string,
    ]);
    // Everything the later rules would say gives way to the quarantine.
    expect(reason(grant(), { artifact: undefined })).toBe('Quarantined');
    expect(reason(grant(), { artifact: artifact({ deleting: true }) })).toBe('Quarantined');
    expect(reason(grant(), { now: at(EXPIRES, 1000) })).toBe('Quarantined');
    expect(reason(grant(), { now: at(NOT_BEFORE, -1) })).toBe('Quarantined');
    expect(reason(grant({ subjects: [trainer, { namespace: 'gone', serviceAccount: 'x' }] }))).toBe(
      'Quarantined',
    );
    expect(
      reason(grant({ approvals: approvals(0) }), { artifact: artifact({ classification: 'restricted' }) }),
    ).toBe('Quarantined');
    // The same grants without the quarantine say what the later rules say.
    expect(evaluate(grant(), { artifact: undefined }).reason).toBe('ArtifactNotFound');
    expect(
      evaluate(grant({ approvals: approvals(0) }), { artifact: artifact({ classification: 'restricted' }) })
        .reason,
    ).toBe('AwaitingApproval');
  });
});

describe('evaluateGrant: precedence', () => {
  // Start from a grant that breaks every rule at once, then repair one rule at a time: each step must surface
  // the next rule's reason, proving the order 1 > 1a > 2 > 3 > 5 > 5b > 6 > 8 (and 4 > 5 separately).
  const crossing = [prodSubject, { namespace: 'gone', serviceAccount: 'x' }];
  const broken = {
    annotations: { [REVOKED_ANNOTATION]: 'stop' } as Record<string, string> | undefined,
    artifact: undefined as ModelArtifact | undefined,
    now: at(EXPIRES, 1000),
    subjects: crossing,
    classification: 'restricted' as Classification,
    crossEnvironment: false,
    approvals: 0,
    withdrawn: ['v1', 'v2', 'v3'],
    denied: true,
  };
  const steps: [string, (s: typeof broken) => void][] = [
    ['RevokedByAdministrator', (s) => (s.annotations = undefined)],
    ['DeniedByApprover', (s) => (s.denied = false)],
    ['ArtifactNotFound', (s) => (s.artifact = artifact({ deleting: true }))],
    ['ArtifactDeleted', (s) => (s.artifact = undefined)],
    ['Expired', (s) => (s.now = NOW)],
    ['NamespaceNotFound', (s) => (s.subjects = [prodSubject, { namespace: 'plain', serviceAccount: 'x' }])],
    ['NoEnvironment', (s) => (s.subjects = [prodSubject])],
    ['RestrictedCannotCrossEnvironments', (s) => (s.classification = 'confidential')],
    ['CrossEnvironmentNotAllowed', (s) => (s.crossEnvironment = true)],
    ['AwaitingApproval', (s) => (s.approvals = 2)],
    ['VersionsWithdrawn', (s) => (s.withdrawn = ['v1'])],
    ['Granted', () => undefined],
  ];

  it('applies the rules in order', () => {
    const state = { ...broken };
    const seen: string[] = [];
    for (const [expected, repair] of steps) {
      const art =
        state.artifact === undefined &&
        expected !== 'ArtifactNotFound' &&
        expected !== 'RevokedByAdministrator'
          ? artifact({ classification: state.classification, withdrawn: state.withdrawn })
          : state.artifact;
      const g = grant(
        {
          subjects: state.subjects,
          crossEnvironment: state.crossEnvironment,
          approvals: approvals(state.approvals),
          versions: { match: 'named', names: ['v1', 'v2', 'v3'] },
          ...(state.denied ? { denial: { deniedBy: 'carol', deniedAt: NOT_BEFORE } } : {}),
        },
        state.annotations === undefined ? {} : { annotations: state.annotations },
      );
      seen.push(evaluate(g, { artifact: art, now: state.now }).reason);
      repair(state);
    }
    expect(seen).toEqual(steps.map(([reason]) => reason));
  });

  it('puts NotYetValid before NamespaceNotFound and a broken environment', () => {
    const g = grant({ subjects: [prodSubject, { namespace: 'gone', serviceAccount: 'x' }] });
    expect(evaluate(g, { now: at(NOT_BEFORE, -1) }).reason).toBe('NotYetValid');
  });

  it('puts Expired before NotYetValid when the window is inverted', () => {
    const g = grant({ notBefore: '2027-02-01T00:00:00Z', expiresAt: '2026-12-01T00:00:00Z' });
    expect(evaluate(g).reason).toBe('Expired');
  });

  it('puts ArtifactDeleted before an administrator revocation only if the annotation is absent', () => {
    const g = grant({}, { annotations: { [REVOKED_ANNOTATION]: 'x' } });
    expect(evaluate(g, { artifact: artifact({ deleting: true }) }).reason).toBe('RevokedByAdministrator');
  });
});

describe('evaluateGrant: subjectSummary', () => {
  it.each([
    [[{ namespace: 'ml-prod', serviceAccount: 'inference' }], 'ml-prod/inference'],
    [
      [
        { namespace: 'ml-prod', serviceAccount: 'inference' },
        { namespace: 'ml-dev', serviceAccount: 'a' },
        { namespace: 'ml-dev', serviceAccount: 'b' },
      ],
      'ml-prod/inference (+2)',
    ],
  ])('%j → %s', (subjects, summary) => {
    expect(evaluate(grant({ subjects })).subjectSummary).toBe(summary);
  });

  it('stays within 256 characters and keeps the count', () => {
    const subjects = [
      { namespace: 'n'.repeat(63), serviceAccount: 's'.repeat(253) },
      { namespace: 'ml-dev', serviceAccount: 'a' },
    ];
    const summary = evaluate(grant({ subjects })).subjectSummary;
    expect(summary.length).toBe(256);
    expect(summary.endsWith('… (+1)')).toBe(true);
    expect(summary.startsWith(`${'n'.repeat(63)}/sss`)).toBe(true);
  });
});

describe('binding to the artifact object (uid)', () => {
  it('records the uid of the artifact it was evaluated against, and keeps the first one', () => {
    const g = grant();
    const a = artifact();
    a.metadata.uid = 'uid-1';
    expect(grantStatus(undefined, evaluate(g, { artifact: a }), g, NOW, a).artifactUid).toBe('uid-1');
    const other = artifact();
    other.metadata.uid = 'uid-2';
    expect(grantStatus({ artifactUid: 'uid-1' }, evaluate(g), g, NOW, other).artifactUid).toBe('uid-1');
    // An artifact that is not the one the grant names is never recorded.
    const stranger = artifact();
    stranger.metadata.name = 'someone-else';
    stranger.metadata.uid = 'uid-3';
    expect(grantStatus(undefined, evaluate(g), g, NOW, stranger).artifactUid).toBeUndefined();
  });

  it('revokes a grant whose artifact was deleted and created again under the same name, and stays revoked', () => {
    const g = grant();
    g.status = { artifactUid: 'uid-old', phase: 'Active' };
    const replacement = artifact();
    replacement.metadata.uid = 'uid-new';
    const decision = evaluate(g, { artifact: replacement });
    expect(decision).toMatchObject({ phase: 'Revoked', reason: 'ArtifactReplaced' });
    expect(decision.message).toContain('uid-old');
    expect(endsAccess('Active', decision.phase)).toBe(true);
    // Sticky even if the recorded uid were lost.
    g.status = { phase: 'Revoked', reason: 'ArtifactReplaced', message: 'replaced' };
    expect(evaluate(g, { artifact: replacement })).toMatchObject({
      phase: 'Revoked',
      reason: 'ArtifactReplaced',
    });
    // The same object keeps working.
    g.status = { artifactUid: 'uid-new', phase: 'Active' };
    expect(evaluate(g, { artifact: replacement }).phase).toBe('Active');
  });
});

describe('grantStatus', () => {
  const T1 = new Date('2026-12-10T12:00:00.900Z');

  it('writes phase, reason, message, summary, versions, expiresAt echo, generation, classification, approvedBy and both conditions', () => {
    const g = grant();
    const status = grantStatus(undefined, evaluate(g), g, T1);
    expect(status).toEqual({
      observedGeneration: 2,
      phase: 'Active',
      reason: 'Granted',
      message: expect.stringContaining('grants read access') as string,
      subjectSummary: 'ml-dev/trainer',
      resolvedVersions: ['v2'],
      expiresAt: EXPIRES,
      classification: 'internal',
      approvedBy: [],
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Granted',
          message: status.message,
          lastTransitionTime: '2026-12-10T12:00:00Z',
          observedGeneration: 2,
        },
        {
          type: 'Approved',
          status: 'True',
          reason: 'NotRequired',
          message: expect.stringContaining('needs no approval') as string,
          lastTransitionTime: '2026-12-10T12:00:00Z',
          observedGeneration: 2,
        },
      ],
    });
  });

  it.each([
    ['Pending', grant(), at(NOT_BEFORE, -1)],
    ['Expired', grant(), at(EXPIRES)],
    ['Denied', grant({ subjects: [prodSubject] }), NOW],
    ['Revoked', grant({}, { annotations: { [REVOKED_ANNOTATION]: '' } }), NOW],
  ])('Ready is False when %s', (phase, g, now) => {
    const status = grantStatus(undefined, evaluate(g, { now }), g, now);
    expect(status.phase).toBe(phase);
    expect(status.conditions.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: status.reason,
    });
  });

  it.each([
    ['crossing without approval', grant({ subjects: [prodSubject] }), 'False', 'CrossEnvironmentNotAllowed'],
    [
      'crossing, too few approvals',
      grant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(1) }),
      'False',
      'AwaitingApproval',
    ],
    ['not crossing, too few approvals', grant(), 'False', 'AwaitingApproval'],
    [
      'crossing, approved',
      grant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(2) }),
      'True',
      'Approved',
    ],
    ['not crossing, approved', grant({ approvals: approvals(1) }), 'True', 'Approved'],
  ])('Approved reflects %s, whatever decided the phase', (_what, g, status, reason) => {
    const art = artifact({ classification: 'confidential' });
    for (const now of [NOW, at(EXPIRES), at(NOT_BEFORE, -1)]) {
      const s = grantStatus(undefined, evaluate(g, { artifact: art, now }), g, now);
      expect(s.conditions.find((c) => c.type === 'Approved')).toMatchObject({ status, reason });
    }
  });

  it('writes the counted approvers and the classification, and leaves classification out without an artifact', () => {
    const list = [{ approver: REQUESTER, groups: [APPROVERS], approvedAt: NOT_BEFORE }, ...approvals(2)];
    const g = grant({ subjects: [prodSubject], crossEnvironment: true, approvals: list });
    const art = artifact({ classification: 'confidential' });
    const s = grantStatus(undefined, evaluate(g, { artifact: art }), g, NOW, art);
    expect(s).toMatchObject({
      phase: 'Active',
      classification: 'confidential',
      approvedBy: ['approver-0@example.com', 'approver-1@example.com'],
    });
    expect(s.conditions.find((c) => c.type === 'Approved')).toMatchObject({
      status: 'True',
      reason: 'Approved',
    });
    const missing = grantStatus(undefined, evaluate(g, { artifact: undefined }), g, NOW);
    expect(missing).not.toHaveProperty('classification');
    expect(missing.approvedBy).toEqual([]);
  });

  it('is Approved Unknown when the artifact is missing and the grant crosses', () => {
    const g = grant({ subjects: [prodSubject], crossEnvironment: true, approvals: approvals(1) });
    const s = grantStatus(undefined, evaluate(g, { artifact: undefined }), g, NOW);
    expect(s.conditions.find((c) => c.type === 'Approved')).toMatchObject({
      status: 'Unknown',
      reason: 'ArtifactNotFound',
    });
  });

  it('recomputed later with nothing changed, keeps lastTransitionTime and equals the old status, also after a JSON round trip', () => {
    const g = grant();
    const first = grantStatus(undefined, evaluate(g), g, T1);
    const stored = JSON.parse(JSON.stringify(first)) as AccessGrantStatus;
    const later = at(EXPIRES, -60_000);
    const again = grantStatus(stored, evaluate({ ...g, status: stored }, { now: later }), g, later);
    expect(statusEqual(again, stored)).toBe(true);
    expect(statusEqual(again, first)).toBe(true);
  });

  it('stamps a new lastTransitionTime on Ready only when the phase flips, and keeps foreign conditions', () => {
    const g = grant();
    const foreign = {
      type: 'Audited',
      status: 'True' as const,
      reason: 'X',
      message: '',
      lastTransitionTime: '2026-01-01T00:00:00Z',
    };
    const first = grantStatus({ conditions: [foreign] }, evaluate(g), g, T1);
    const expiredAt = at(EXPIRES, 1500);
    const expired = grantStatus(first, evaluate(g, { now: expiredAt }), g, expiredAt);
    expect(expired.phase).toBe('Expired');
    expect(expired.conditions.map((c) => c.type)).toEqual(['Audited', 'Ready', 'Approved']);
    expect(expired.conditions.find((c) => c.type === 'Ready')?.lastTransitionTime).toBe(
      '2026-12-15T00:00:01Z',
    );
    expect(expired.conditions.find((c) => c.type === 'Approved')?.lastTransitionTime).toBe(
      '2026-12-10T12:00:00Z',
    );
    expect(expired.conditions[0]).toEqual(foreign);
    expect(statusEqual(expired, first)).toBe(false);
  });

  it('leaves observedGeneration out when the grant has no generation', () => {
    const g = grant();
    delete g.metadata.generation;
    const s = grantStatus(undefined, evaluate(g), g, NOW);
    expect(s).not.toHaveProperty('observedGeneration');
    expect(s.conditions[0]).not.toHaveProperty('observedGeneration');
  });
});

describe('endsAccess', () => {
  const phases: GrantPhase[] = ['Pending', 'Active', 'Expired', 'Revoked', 'Denied'];
  it.each([undefined, ...phases].flatMap((from) => phases.map((to) => [from, to] as const)))(
    '%s → %s',
    (from, to) => {
      expect(endsAccess(from, to)).toBe(from === 'Active' && to !== 'Active');
    },
  );
});

describe('evaluateGrant: properties', () => {
  const VERSIONS = ['v1', 'v2', 'v3', 'v4'];
  const subset = fc.subarray(VERSIONS);
  const nsName = fc.constantFrom('ml-dev', 'ml-dev-2', 'ml-prod', 'plain', 'gone', 'missing');
  const world = fc.record({
    classification: fc.constantFrom<Classification>('public', 'internal', 'confidential', 'restricted'),
    versions: subset,
    withdrawnPick: subset,
    sealedPick: subset,
    latest: fc.option(fc.constantFrom(...VERSIONS), { nil: undefined }),
    artifactExists: fc.boolean(),
    deleting: fc.boolean(),
    mode: fc.constantFrom<'read' | 'publish'>('read', 'publish'),
    match: fc.constantFrom<'named' | 'latest' | 'all'>('named', 'latest', 'all'),
    names: fc.subarray([...VERSIONS, 'v9'], { minLength: 1 }),
    home: fc.constantFrom('ml-dev', 'plain', 'gone'),
    subjects: fc.uniqueArray(fc.record({ namespace: nsName, serviceAccount: fc.constantFrom('a', 'b') }), {
      minLength: 1,
      maxLength: 4,
      selector: (s) => `${s.namespace}/${s.serviceAccount}`,
    }),
    crossEnvironment: fc.boolean(),
    approvals: fc.nat({ max: 3 }),
    revoked: fc.boolean(),
    notBeforeSet: fc.boolean(),
    startOffsetH: fc.integer({ min: -2000, max: 2000 }),
    lengthH: fc.integer({ min: 1, max: 2160 }),
    nowA: fc.integer({ min: -3000, max: 3000 }),
    nowB: fc.integer({ min: -3000, max: 3000 }),
    createdOffsetH: fc.option(fc.integer({ min: -2000, max: 2000 }), { nil: undefined }),
  });
  const H = 3_600_000;
  const BASE = new Date('2026-12-01T00:00:00Z').getTime();

  type World = typeof world extends fc.Arbitrary<infer R> ? R : never;
  function build(w: World) {
    const versions = w.versions;
    const art = w.artifactExists
      ? artifact({
          namespace: w.home,
          classification: w.classification,
          versions,
          withdrawn: w.withdrawnPick.filter((v) => versions.includes(v)),
          sealed: w.sealedPick,
          deleting: w.deleting,
          ...(w.latest === undefined ? {} : { latest: w.latest }),
        })
      : undefined;
    const start = new Date(BASE + w.startOffsetH * H);
    const g = grant(
      {
        mode: w.mode,
        versions: w.match === 'named' ? { match: 'named', names: w.names } : { match: w.match },
        subjects: w.subjects,
        crossEnvironment: w.crossEnvironment,
        approvals: approvals(w.approvals),
        expiresAt: new Date(start.getTime() + w.lengthH * H).toISOString(),
        ...(w.notBeforeSet ? { notBefore: start.toISOString() } : {}),
      },
      { namespace: w.home, ...(w.revoked ? { annotations: { [REVOKED_ANNOTATION]: 'r' } } : {}) },
    );
    if (!w.notBeforeSet) delete g.spec.notBefore;
    if (w.createdOffsetH !== undefined) g.metadata.creationTimestamp = new Date(BASE + w.createdOffsetH * H);
    return { g, art, start };
  }

  it('never releases outside the window, without the approvals the table demands, above public to an unlabelled namespace, or an unreleasable version', () => {
    fc.assert(
      fc.property(world, (w) => {
        const { g, art } = build(w);
        const now = new Date(BASE + w.nowA * H);
        const d = evaluate(g, { artifact: art, now });
        if (d.phase !== 'Active') return;
        expect(w.revoked).toBe(false);
        expect(art).toBeDefined();
        if (art === undefined) return;
        expect(art.metadata.deletionTimestamp).toBeUndefined();
        expect(now.getTime()).toBeLessThan(new Date(g.spec.expiresAt).getTime());
        if (g.spec.notBefore !== undefined)
          expect(now.getTime()).toBeGreaterThanOrEqual(new Date(g.spec.notBefore).getTime());
        const envOf = (ns: string) => NAMESPACES.get(ns)?.environment ?? '';
        for (const s of g.spec.subjects) expect(NAMESPACES.get(s.namespace)?.exists).toBe(true);
        const crosses = g.spec.subjects.some((s) => envOf(s.namespace) !== envOf(w.home));
        const rules = DEFAULT_CLASSIFICATION_TABLE.classifications[w.classification];
        if (crosses) {
          expect(rules.crossEnvironment).toBe(true);
          expect(g.spec.crossEnvironment).toBe(true);
        }
        // approvals(n) are n distinct approvers in the approver group, none of them the requester.
        expect(w.approvals).toBeGreaterThanOrEqual(
          crosses ? rules.crossEnvironmentApprovals : rules.approvals,
        );
        if (w.classification !== 'public')
          for (const ns of [w.home, ...g.spec.subjects.map((s) => s.namespace)])
            expect(envOf(ns)).not.toBe('');
        if (g.spec.mode === 'read') {
          expect(d.resolvedVersions.length).toBeGreaterThan(0);
          const sealed = new Set(
            (art.status?.keys ?? []).filter((k) => k.state === 'Sealed').map((k) => k.version),
          );
          for (const v of d.resolvedVersions) {
            expect(art.spec.withdrawnVersions).not.toContain(v);
            expect(sealed.has(v)).toBe(true);
          }
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('changes by time alone only at nextEvaluationAt, and its message never depends on the clock', () => {
    fc.assert(
      fc.property(world, (w) => {
        const { g, art } = build(w);
        const a = new Date(BASE + Math.min(w.nowA, w.nowB) * H);
        const b = new Date(BASE + Math.max(w.nowA, w.nowB) * H);
        const da = evaluate(g, { artifact: art, now: a });
        const db = evaluate(g, { artifact: art, now: b });
        if (da.nextEvaluationAt !== undefined)
          expect(da.nextEvaluationAt.getTime()).toBeGreaterThan(a.getTime());
        const boundary = da.nextEvaluationAt?.getTime() ?? Number.POSITIVE_INFINITY;
        if (b.getTime() < boundary) expect(db).toEqual(da);
        if (da.phase === db.phase && da.reason === db.reason) expect(db.message).toBe(da.message);
      }),
      { numRuns: 3000 },
    );
  });
});
