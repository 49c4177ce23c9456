import { describe, expect, it } from 'vitest';
import type { AccessGrant } from '../core/api/index.ts';
import { approvalPatch, denialPatch, qualifyingGroups, ReviewError, type Caller } from './grant-review.ts';
import { testGrant } from './testdata/grants.ts';

const now = new Date('2026-12-06T10:11:12.345Z');
const bob: Caller = { username: 'bob', groups: ['strongroom:approvers', 'system:authenticated'] };

function grant(spec: Partial<AccessGrant['spec']> = {}): AccessGrant {
  return testGrant({ resourceVersion: '42' }, spec);
}

describe('approvalPatch', () => {
  it('adds the approval list when there is none, in the caller’s name and groups, guarded by resourceVersion', () => {
    expect(approvalPatch(grant(), bob, ['strongroom:approvers'], now, 'ok')).toEqual([
      { op: 'test', path: '/metadata/resourceVersion', value: '42' },
      {
        op: 'add',
        path: '/spec/approvals',
        value: [
          {
            approver: 'bob',
            groups: ['strongroom:approvers'],
            approvedAt: '2026-12-06T10:11:12Z',
            comment: 'ok',
          },
        ],
      },
    ]);
  });

  it('appends to an existing list', () => {
    const g = grant({ approvals: [{ approver: 'carol', approvedAt: '2026-12-06T09:00:00Z' }] });
    const ops = approvalPatch(g, bob, ['strongroom:approvers'], now);
    expect(ops[1]).toMatchObject({ op: 'add', path: '/spec/approvals/-', value: { approver: 'bob' } });
  });

  it('refuses the requester, a second approval, a denied grant and an approver without groups', () => {
    expect(() => approvalPatch(grant(), { username: 'alice', groups: ['x'] }, ['x'], now)).toThrow(
      /requested/,
    );
    const approved = grant({ approvals: [{ approver: 'bob', approvedAt: '2026-12-06T09:00:00Z' }] });
    expect(() => approvalPatch(approved, bob, ['strongroom:approvers'], now)).toThrow(
      /already has your approval/,
    );
    const denied = grant({ denial: { deniedBy: 'carol', deniedAt: '2026-12-06T09:00:00Z' } });
    expect(() => approvalPatch(denied, bob, ['strongroom:approvers'], now)).toThrow(/denial is final/);
    expect(() => approvalPatch(grant(), bob, [], now)).toThrow(ReviewError);
  });
});

describe('denialPatch', () => {
  it('records a final denial in the caller’s name with a reason', () => {
    expect(denialPatch(grant(), bob, ['strongroom:approvers'], now, 'no need')[1]).toEqual({
      op: 'add',
      path: '/spec/denial',
      value: {
        deniedBy: 'bob',
        groups: ['strongroom:approvers'],
        deniedAt: '2026-12-06T10:11:12Z',
        reason: 'no need',
      },
    });
    expect(() => denialPatch(grant(), bob, ['strongroom:approvers'], now, '  ')).toThrow(/reason/);
  });
});

describe('qualifyingGroups', () => {
  it('lists the caller’s own groups without the system: ones, or exactly those chosen if the caller is in them', () => {
    expect(qualifyingGroups(bob, [])).toEqual(['strongroom:approvers']);
    expect(qualifyingGroups(bob, ['strongroom:approvers'])).toEqual(['strongroom:approvers']);
    expect(() => qualifyingGroups(bob, ['strongroom:security'])).toThrow(/not in group strongroom:security/);
  });
});
