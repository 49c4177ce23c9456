import { describe, expect, it } from 'vitest';
import { DEFAULT_CLASSIFICATION_TABLE } from './classification.ts';
import { evaluateGrant, type GrantInput } from './grant.ts';
import {
  QUARANTINES_CONFIGMAP,
  describeQuarantine,
  formatQuarantineRecord,
  parseQuarantineKey,
  parseQuarantines,
  quarantineKey,
  quarantineOf,
  type QuarantineRecord,
} from './quarantine.ts';
import { NAMESPACES, NOW, artifact, grant, prodSubject } from './testdata/objects.ts';

const RECORD: QuarantineRecord = {
  since: '2026-12-07T10:00:00.000Z',
  alertId: 'a-1f2e',
  rule: 'bulk-access',
  severity: 'high',
  reason: 'ml-dev/trainer read 6 artifact versions in 60s',
};

describe('quarantine keys', () => {
  it('splits at the first dot: the namespace has none, the service account may', () => {
    expect(parseQuarantineKey('ml-dev.trainer.v2')).toEqual({
      namespace: 'ml-dev',
      serviceAccount: 'trainer.v2',
    });
    expect(quarantineKey({ namespace: 'ml-dev', serviceAccount: 'trainer.v2' })).toBe('ml-dev.trainer.v2');
  });

  it.each(['trainer', '.trainer', 'ml-dev.', 'ML.trainer', 'ml-dev.Trainer', 'ml_dev.trainer'])(
    'refuses %j: it names no identity',
    (key) => {
      expect(parseQuarantineKey(key)).toEqual(expect.stringContaining(JSON.stringify(key)));
    },
  );
});

describe('parseQuarantines', () => {
  it('reads each record back as written', () => {
    const set = parseQuarantines({ 'ml-dev.trainer': formatQuarantineRecord(RECORD) });
    expect(set.problems).toEqual([]);
    expect(quarantineOf(set, { namespace: 'ml-dev', serviceAccount: 'trainer' })).toEqual({
      identity: { namespace: 'ml-dev', serviceAccount: 'trainer' },
      key: 'ml-dev.trainer',
      record: RECORD,
    });
    expect(quarantineOf(set, { namespace: 'ml-dev', serviceAccount: 'other' })).toBeUndefined();
  });

  it.each([
    ['not JSON', '{', 'the value is not JSON'],
    ['an array', '[]', 'the value is not a JSON object'],
    ['a missing field', JSON.stringify({ ...RECORD, rule: undefined }), 'field rule is not a string'],
    ['a bad time', JSON.stringify({ ...RECORD, since: 'yesterday' }), 'field since is not a time'],
    ['an empty value', '', 'the value is not JSON'],
  ])('fails closed on %s: the key still quarantines its identity', (_what, value, problem) => {
    const set = parseQuarantines({ 'ml-dev.trainer': value });
    const q = quarantineOf(set, { namespace: 'ml-dev', serviceAccount: 'trainer' });
    expect(q).toMatchObject({ problem, record: { reason: 'unreadable' } });
    if (q === undefined) throw new Error('not quarantined');
    expect(describeQuarantine(q)).toContain(`its record is unreadable: ${problem}`);
  });

  it('reports keys that name no identity and quarantines nothing for them', () => {
    const set = parseQuarantines({ nodot: formatQuarantineRecord(RECORD) });
    expect(set.byKey.size).toBe(0);
    expect(set.problems).toEqual(['key "nodot" is not <namespace>.<serviceAccount>']);
  });
});

describe('evaluateGrant with quarantined identities', () => {
  const input = (data: Record<string, string>, g = grant()): GrantInput => ({
    grant: g,
    artifact: artifact({ generation: 4 }),
    namespaces: NAMESPACES,
    policy: DEFAULT_CLASSIFICATION_TABLE,
    now: NOW,
    quarantines: parseQuarantines(data),
  });

  it('denies (Quarantined) a grant naming a quarantined subject, naming the alert and how to lift it', () => {
    const d = evaluateGrant(input({ 'ml-dev.trainer': formatQuarantineRecord(RECORD) }));
    expect(d).toMatchObject({ phase: 'Denied', reason: 'Quarantined', resolvedVersions: [] });
    expect(d.message).toBe(
      'AccessGrant ml-dev/g1 is suspended: its subject service account ml-dev/trainer is quarantined by anomaly ' +
        'alert a-1f2e (rule bulk-access, severity high) since 2026-12-07T10:00:00.000Z: ml-dev/trainer read 6 ' +
        `artifact versions in 60s. A member of the security groups lifts it by removing key ml-dev.trainer from ` +
        `ConfigMap ${QUARANTINES_CONFIGMAP} in the operator's namespace (kubectl edit).`,
    );
  });

  it('denies when any one subject is quarantined, and counts the others', () => {
    const g = grant({ subjects: [{ namespace: 'ml-dev', serviceAccount: 'trainer' }, prodSubject] });
    const d = evaluateGrant(
      input(
        {
          'ml-dev.trainer': formatQuarantineRecord(RECORD),
          [quarantineKey(prodSubject)]: formatQuarantineRecord({ ...RECORD, alertId: '' }),
        },
        g,
      ),
    );
    expect(d.reason).toBe('Quarantined');
    expect(d.message).toContain('1 more of its subjects is quarantined too.');
  });

  it('changes nothing for other identities, and the grant is Active again once the key is removed', () => {
    expect(evaluateGrant(input({ 'ml-dev.someone-else': formatQuarantineRecord(RECORD) })).phase).toBe(
      'Active',
    );
    const before = grant({}, { status: { phase: 'Denied', reason: 'Quarantined' } });
    expect(evaluateGrant(input({}, before))).toMatchObject({ phase: 'Active', reason: 'Granted' });
  });

  it('does not lift a final decision: an administrator revocation stays Revoked', () => {
    const revoked = grant({}, { annotations: { 'strongroom.dev/revoked': 'leak' } });
    expect(evaluateGrant(input({ 'ml-dev.trainer': formatQuarantineRecord(RECORD) }, revoked)).phase).toBe(
      'Revoked',
    );
  });
});
