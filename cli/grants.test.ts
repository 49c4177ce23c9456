import { describe, expect, it } from 'vitest';
import type { AccessGrant } from '../core/api/index.ts';
import {
  admissionRefusal,
  buildGrant,
  explainGrantRefusal,
  parseSubject,
  quarantinePatch,
  revokePatch,
  unquarantinePatch,
  type GrantRequest,
} from './grants.ts';
import { EXIT } from './io.ts';
import { testGrant } from './testdata/grants.ts';

const now = new Date('2026-12-06T10:11:12.345Z');
const base: GrantRequest = {
  name: 'resnet50-eval',
  namespace: 'ml-dev',
  artifact: 'resnet50',
  serviceAccounts: ['ml-dev/trainer'],
  purpose: 'Evaluate resnet50',
  requester: 'alice',
};

function grant(annotations?: Record<string, string>): AccessGrant {
  return testGrant(annotations ? { annotations } : {});
}

describe('buildGrant', () => {
  it('builds the AccessGrant with the requester, latest by default and a 24h window', () => {
    expect(buildGrant(base, now)).toEqual({
      apiVersion: 'strongroom.dev/v1alpha1',
      kind: 'AccessGrant',
      metadata: { name: 'resnet50-eval', namespace: 'ml-dev' },
      spec: {
        requester: 'alice',
        artifactRef: { name: 'resnet50' },
        versions: { match: 'latest' },
        mode: 'read',
        subjects: [{ namespace: 'ml-dev', serviceAccount: 'trainer' }],
        expiresAt: '2026-12-07T10:11:12Z',
        purpose: 'Evaluate resnet50',
      },
    });
  });

  it('maps every flag to its field', () => {
    const g = buildGrant(
      {
        ...base,
        versions: ['v1,v2', 'v3'],
        serviceAccounts: ['trainer', 'ml-prod/inference'],
        podSelector: ['app=eval'],
        duration: '7d',
        notBefore: '2026-12-10T00:00:00Z',
        keyLease: '15m',
        crossEnvironment: true,
      },
      now,
    );
    expect(g.spec).toMatchObject({
      versions: { match: 'named', names: ['v1', 'v2', 'v3'] },
      subjects: [
        { namespace: 'ml-dev', serviceAccount: 'trainer', podSelector: { matchLabels: { app: 'eval' } } },
        { namespace: 'ml-prod', serviceAccount: 'inference', podSelector: { matchLabels: { app: 'eval' } } },
      ],
      notBefore: '2026-12-10T00:00:00Z',
      expiresAt: '2026-12-17T00:00:00Z',
      keyLeaseDuration: '15m',
      crossEnvironment: true,
    });
    expect(buildGrant({ ...base, allVersions: true }, now).spec.versions).toEqual({ match: 'all' });
    expect(buildGrant({ ...base, expiresAt: '2027-01-31T00:00:00Z' }, now).spec.expiresAt).toBe(
      '2027-01-31T00:00:00Z',
    );
    const anonymous: GrantRequest = { ...base };
    delete (anonymous as { requester?: string }).requester;
    expect(buildGrant(anonymous, now).spec.requester).toBeUndefined();
  });

  it('refuses conflicting and bad flags with a message naming them', () => {
    const bad: [Partial<GrantRequest>, RegExp][] = [
      [{ versions: ['v1'], allVersions: true }, /give only one of them/],
      [{ latest: true, allVersions: true }, /give only one of them/],
      [{ duration: '1h', expiresAt: '2027-01-01T00:00:00Z' }, /--duration and --expires-at/],
      [{ duration: 'soon' }, /--duration: invalid duration "soon"/],
      [{ duration: '0s' }, /longer than 0s/],
      [{ expiresAt: 'tomorrow' }, /--expires-at must be an RFC 3339 time/],
      [{ expiresAt: '2020-01-01T00:00:00Z' }, /would end .* before it starts/],
      [{ serviceAccounts: [] }, /at least one workload/],
      [{ serviceAccounts: ['a/b/c'] }, /expected <namespace>\/<service account>/],
      [{ serviceAccounts: ['trainer', 'ml-dev/trainer'] }, /names a workload twice/],
      [{ versions: ['V1'] }, /not a version name/],
      [{ mode: 'publish' }, /publish grant names the versions/],
      [{ keyLease: '30s' }, /between 1m and 24h/],
      [{ purpose: '  ' }, /--purpose must say why/],
      [{ podSelector: ['app'] }, /expected key=value/],
    ];
    for (const [change, message] of bad)
      expect(() => buildGrant({ ...base, ...change }, now)).toThrow(message);
  });

  it('parses subjects', () => {
    expect(parseSubject('trainer', 'ml-dev')).toEqual({ namespace: 'ml-dev', serviceAccount: 'trainer' });
    expect(parseSubject('ml-prod/inference', 'ml-dev')).toEqual({
      namespace: 'ml-prod',
      serviceAccount: 'inference',
    });
    expect(() => parseSubject('ML/x', 'ml-dev')).toThrow();
  });
});

describe('annotation patches', () => {
  it('revoke sets strongroom.dev/revoked to the reason, once', () => {
    expect(revokePatch(grant(), 'done')).toEqual({
      patch: { metadata: { annotations: { 'strongroom.dev/revoked': 'done' } } },
    });
    expect(revokePatch(grant({ 'strongroom.dev/revoked': 'earlier' }), 'again').note).toMatch(
      /already revoked \(earlier\); a revocation is permanent/,
    );
    expect(() => revokePatch(grant(), ' ')).toThrow(/needs a reason/);
  });

  it('quarantine sets or changes the reason; unquarantine removes it with a merge-patch null', () => {
    expect(quarantinePatch(grant(), 'odd reads').patch).toEqual({
      metadata: { annotations: { 'strongroom.dev/quarantined': 'odd reads' } },
    });
    expect(quarantinePatch(grant({ 'strongroom.dev/quarantined': 'x' }), 'y').patch).toBeDefined();
    expect(quarantinePatch(grant({ 'strongroom.dev/quarantined': 'x' }), 'x').note).toMatch(/already/);
    expect(unquarantinePatch(grant({ 'strongroom.dev/quarantined': 'x' })).patch).toEqual({
      metadata: { annotations: { 'strongroom.dev/quarantined': null } },
    });
    expect(unquarantinePatch(grant()).note).toMatch(/not quarantined/);
  });
});

describe('refusals', () => {
  const policyMessage =
    'accessgrants.strongroom.dev "g" is forbidden: ValidatingAdmissionPolicy \'strongroom-grant-quarantine\' with ' +
    "binding 'strongroom-grant-quarantine' denied request: only the security team (groups strongroom:security) " +
    'may add the quarantine annotation strongroom.dev/quarantined';
  const apiError = (code: number, message: string) => ({
    code,
    body: JSON.stringify({ message, reason: 'Forbidden' }),
  });

  it('reads the admission policy and its words out of the API server message', () => {
    expect(admissionRefusal(policyMessage)).toEqual({
      policy: 'strongroom-grant-quarantine',
      said: 'only the security team (groups strongroom:security) may add the quarantine annotation strongroom.dev/quarantined',
    });
    expect(admissionRefusal('something else')).toBeUndefined();
  });

  it('names the rule, quotes the policy, exits 3', () => {
    const e = explainGrantRefusal(
      apiError(403, policyMessage),
      'quarantining AccessGrant ml-dev/g',
      'only the security groups may quarantine',
    );
    expect(e.exitCode).toBe(EXIT.refused);
    expect(e.message).toBe(
      'quarantining AccessGrant ml-dev/g: only the security groups may quarantine (the admission policy ' +
        'strongroom-grant-quarantine said: only the security team (groups strongroom:security) may add the ' +
        'quarantine annotation strongroom.dev/quarantined)',
    );
    const rbac = explainGrantRefusal(
      apiError(
        403,
        'accessgrants.strongroom.dev "g" is forbidden: User "bob" cannot patch resource "accessgrants"',
      ),
      'revoking',
    );
    expect(rbac.exitCode).toBe(EXIT.refused);
    expect(rbac.message).toMatch(/you lack the right \(RBAC\)/);
    expect(explainGrantRefusal(apiError(404, 'not found'), 'x').exitCode).toBe(EXIT.notFound);
  });
});
