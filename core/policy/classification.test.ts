import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CLASSIFICATIONS, type Classification } from '../api/index.ts';
import {
  CLASSIFICATION_FIELDS,
  ClassificationConfigError,
  DEFAULT_CLASSIFICATION_TABLE,
  DEFAULT_GOVERNANCE_CONFIG,
  GOVERNANCE_CONFIG_KEYS,
  GOVERNANCE_KEYS,
  classificationKey,
  formatClassificationConfig,
  parseClassificationConfig,
  withKekRotation,
  type ClassificationTable,
} from './classification.ts';
import { PolicyError } from './errors.ts';

const M = 60_000;
const H = 60 * M;
const D = 24 * H;

function problems(data: Record<string, string>): ClassificationConfigError {
  try {
    parseClassificationConfig(data);
  } catch (error) {
    expect(error).toBeInstanceOf(ClassificationConfigError);
    expect(error).toBeInstanceOf(PolicyError);
    expect((error as PolicyError).code).toBe('invalid');
    return error as ClassificationConfigError;
  }
  throw new Error(`parseClassificationConfig(${JSON.stringify(data)}) did not throw`);
}

describe('the ConfigMap keys', () => {
  it('are the three governance keys and ten per classification, named <classification>.<field>', () => {
    expect(GOVERNANCE_KEYS).toEqual({
      platformAdminGroups: 'platformAdminGroups',
      securityGroups: 'securityGroups',
      pendingApprovalTimeout: 'pendingApprovalTimeout',
    });
    expect(CLASSIFICATION_FIELDS).toEqual([
      'approvals',
      'crossEnvironment',
      'crossEnvironmentApprovals',
      'approverGroups',
      'publisherGroups',
      'maxGrantDuration',
      'keyLease',
      'kekRotation',
      'dedicatedKek',
      'kekVersionRetention',
    ]);
    expect(classificationKey('confidential', 'keyLease')).toBe('confidential.keyLease');
    expect(GOVERNANCE_CONFIG_KEYS).toHaveLength(3 + 4 * 10);
    expect(Object.keys(DEFAULT_GOVERNANCE_CONFIG)).toEqual(GOVERNANCE_CONFIG_KEYS);
    expect(Object.isFrozen(DEFAULT_GOVERNANCE_CONFIG)).toBe(true);
  });
});

describe('DEFAULT_CLASSIFICATION_TABLE', () => {
  it('has the documented defaults, as data and parsed', () => {
    expect(DEFAULT_GOVERNANCE_CONFIG).toEqual({
      platformAdminGroups: 'strongroom:platform-admins',
      securityGroups: 'strongroom:security',
      pendingApprovalTimeout: '72h',
      'public.approvals': '0',
      'public.crossEnvironment': 'true',
      'public.crossEnvironmentApprovals': '1',
      'public.approverGroups': 'strongroom:approvers',
      'public.publisherGroups': 'strongroom:publishers',
      'public.maxGrantDuration': '90d',
      'public.keyLease': '24h',
      'public.kekRotation': '365d',
      'public.dedicatedKek': 'false',
      'public.kekVersionRetention': '7d',
      'internal.approvals': '0',
      'internal.crossEnvironment': 'true',
      'internal.crossEnvironmentApprovals': '1',
      'internal.approverGroups': 'strongroom:approvers',
      'internal.publisherGroups': 'strongroom:publishers',
      'internal.maxGrantDuration': '90d',
      'internal.keyLease': '24h',
      'internal.kekRotation': '180d',
      'internal.dedicatedKek': 'false',
      'internal.kekVersionRetention': '7d',
      'confidential.approvals': '1',
      'confidential.crossEnvironment': 'true',
      'confidential.crossEnvironmentApprovals': '2',
      'confidential.approverGroups': 'strongroom:approvers',
      'confidential.publisherGroups': 'strongroom:publishers',
      'confidential.maxGrantDuration': '30d',
      'confidential.keyLease': '8h',
      'confidential.kekRotation': '90d',
      'confidential.dedicatedKek': 'true',
      'confidential.kekVersionRetention': '24h',
      'restricted.approvals': '2',
      'restricted.crossEnvironment': 'false',
      'restricted.crossEnvironmentApprovals': '2',
      'restricted.approverGroups': 'strongroom:approvers',
      'restricted.publisherGroups': '',
      'restricted.maxGrantDuration': '7d',
      'restricted.keyLease': '1h',
      'restricted.kekRotation': '30d',
      'restricted.dedicatedKek': 'true',
      'restricted.kekVersionRetention': '24h',
    });
    const approvers = ['strongroom:approvers'];
    const publishers = ['strongroom:publishers'];
    expect(DEFAULT_CLASSIFICATION_TABLE).toEqual({
      platformAdminGroups: ['strongroom:platform-admins'],
      securityGroups: ['strongroom:security'],
      pendingApprovalTimeoutMs: 72 * H,
      classifications: {
        public: {
          approvals: 0,
          crossEnvironment: true,
          crossEnvironmentApprovals: 1,
          approverGroups: approvers,
          publisherGroups: publishers,
          maxGrantDurationMs: 90 * D,
          keyLeaseMs: 24 * H,
          kekRotationMs: 365 * D,
          dedicatedKek: false,
          kekVersionRetentionMs: 7 * D,
        },
        internal: {
          approvals: 0,
          crossEnvironment: true,
          crossEnvironmentApprovals: 1,
          approverGroups: approvers,
          publisherGroups: publishers,
          maxGrantDurationMs: 90 * D,
          keyLeaseMs: 24 * H,
          kekRotationMs: 180 * D,
          dedicatedKek: false,
          kekVersionRetentionMs: 7 * D,
        },
        confidential: {
          approvals: 1,
          crossEnvironment: true,
          crossEnvironmentApprovals: 2,
          approverGroups: approvers,
          publisherGroups: publishers,
          maxGrantDurationMs: 30 * D,
          keyLeaseMs: 8 * H,
          kekRotationMs: 90 * D,
          dedicatedKek: true,
          kekVersionRetentionMs: 24 * H,
        },
        restricted: {
          approvals: 2,
          crossEnvironment: false,
          crossEnvironmentApprovals: 2,
          approverGroups: approvers,
          publisherGroups: [],
          maxGrantDurationMs: 7 * D,
          keyLeaseMs: H,
          kekRotationMs: 30 * D,
          dedicatedKek: true,
          kekVersionRetentionMs: 24 * H,
        },
      },
    });
  });

  it('is deeply frozen', () => {
    expect(Object.isFrozen(DEFAULT_CLASSIFICATION_TABLE)).toBe(true);
    expect(Object.isFrozen(DEFAULT_CLASSIFICATION_TABLE.classifications)).toBe(true);
    expect(Object.isFrozen(DEFAULT_CLASSIFICATION_TABLE.classifications.restricted)).toBe(true);
    expect(Object.isFrozen(DEFAULT_CLASSIFICATION_TABLE.platformAdminGroups)).toBe(true);
  });

  it('is what an empty ConfigMap and a ConfigMap holding exactly the defaults give', () => {
    expect(parseClassificationConfig({})).toEqual(DEFAULT_CLASSIFICATION_TABLE);
    expect(parseClassificationConfig({ ...DEFAULT_GOVERNANCE_CONFIG })).toEqual(DEFAULT_CLASSIFICATION_TABLE);
  });
});

describe('parseClassificationConfig: each key, valid values', () => {
  const field = <K extends keyof ClassificationTable['classifications']['public']>(
    c: Classification,
    key: K,
    data: Record<string, string>,
  ) => parseClassificationConfig(data).classifications[c][key];

  it.each([
    ['strongroom:platform-admins', ['strongroom:platform-admins']],
    ['a,b', ['a', 'b']],
    ['oidc:Platform Team'.replace(' ', '_'), ['oidc:Platform_Team']],
    ['x'.repeat(253), ['x'.repeat(253)]],
  ])('platformAdminGroups and securityGroups %j', (value, groups) => {
    expect(parseClassificationConfig({ platformAdminGroups: value }).platformAdminGroups).toEqual(groups);
    expect(parseClassificationConfig({ securityGroups: value }).securityGroups).toEqual(groups);
  });

  it.each([
    ['1m', M],
    ['90m', 90 * M],
    ['72h', 72 * H],
    ['30d', 30 * D],
  ])('pendingApprovalTimeout %s', (value, ms) => {
    expect(parseClassificationConfig({ pendingApprovalTimeout: value }).pendingApprovalTimeoutMs).toBe(ms);
  });

  describe.each(CLASSIFICATIONS)('%s', (c) => {
    const k = (f: (typeof CLASSIFICATION_FIELDS)[number]) => classificationKey(c, f);

    it.each([
      ['0', 0],
      ['1', 1],
      ['2', 2],
    ])('approvals %s (crossEnvironmentApprovals 8 so that it stays ≥)', (value, n) => {
      expect(field(c, 'approvals', { [k('approvals')]: value, [k('crossEnvironmentApprovals')]: '8' })).toBe(
        n,
      );
    });

    it('approvals up to 8, crossEnvironmentApprovals from 1 to 8', () => {
      const data = { [k('approvals')]: '8', [k('crossEnvironmentApprovals')]: '8' };
      expect(field(c, 'approvals', data)).toBe(8);
      expect(
        field(c, 'crossEnvironmentApprovals', {
          [k('approvals')]: '0',
          [k('crossEnvironmentApprovals')]: '1',
        }),
      ).toBe(1);
    });

    it.each([
      ['true', true],
      ['false', false],
    ])('crossEnvironment and dedicatedKek %s', (value, b) => {
      expect(field(c, 'crossEnvironment', { [k('crossEnvironment')]: value })).toBe(b);
      expect(field(c, 'dedicatedKek', { [k('dedicatedKek')]: value })).toBe(b);
    });

    it('approverGroups and publisherGroups lists; publisherGroups may be empty', () => {
      expect(field(c, 'approverGroups', { [k('approverGroups')]: 'leads,security' })).toEqual([
        'leads',
        'security',
      ]);
      expect(field(c, 'publisherGroups', { [k('publisherGroups')]: 'ci' })).toEqual(['ci']);
      expect(field(c, 'publisherGroups', { [k('publisherGroups')]: '' })).toEqual([]);
    });

    it('approverGroups may be empty only when no approval can ever be needed', () => {
      const none = { [k('approvals')]: '0', [k('crossEnvironment')]: 'false', [k('approverGroups')]: '' };
      expect(field(c, 'approverGroups', none)).toEqual([]);
    });

    it.each([
      ['maxGrantDuration', '1h', H],
      ['maxGrantDuration', '90d', 90 * D],
      ['maxGrantDuration', '2160h', 90 * D],
      ['keyLease', '1m', M],
      ['keyLease', '24h', 24 * H],
      ['keyLease', '1h30m', 90 * M],
      ['kekRotation', '1m', M],
      ['kekRotation', '3650d', 3650 * D],
      ['kekVersionRetention', '1m', M],
      ['kekVersionRetention', '90d', 90 * D],
      ['kekVersionRetention', '1h30m', 90 * M],
    ] as const)('%s %s', (f, value, ms) => {
      const key = `${f}Ms` as const;
      expect(field(c, key, { [k(f)]: value })).toBe(ms);
    });
  });

  it('changes only the key given', () => {
    const table = parseClassificationConfig({ 'confidential.keyLease': '2h' });
    expect(table.classifications.confidential).toEqual({
      ...DEFAULT_CLASSIFICATION_TABLE.classifications.confidential,
      keyLeaseMs: 2 * H,
    });
    expect(table.classifications.internal).toEqual(DEFAULT_CLASSIFICATION_TABLE.classifications.internal);
  });
});

describe('parseClassificationConfig: invalid values', () => {
  const groupsAllowed = 'expected comma-separated group names of 1 to 253 characters without whitespace';
  it.each([
    [
      'platformAdminGroups',
      '',
      'platformAdminGroups="" is invalid: expected at least one group name (comma-separated)',
    ],
    ['securityGroups', '', 'securityGroups="" is invalid: expected at least one group name'],
    [
      'platformAdminGroups',
      'a, b',
      `platformAdminGroups="a, b" is invalid: entry 2 " b" contains whitespace; ${groupsAllowed}`,
    ],
    ['securityGroups', 'a,,b', `securityGroups="a,,b" is invalid: entry 2 is empty; ${groupsAllowed}`],
    ['securityGroups', 'a,', 'entry 2 is empty'],
    ['securityGroups', ',a', 'entry 1 is empty'],
    ['securityGroups', 'sec ops', 'entry 1 "sec ops" contains whitespace'],
    ['securityGroups', 'a\tb', 'contains whitespace'],
    ['securityGroups', 'a,a', 'entry 2 repeats "a"'],
    ['securityGroups', 'x'.repeat(254), 'entry 1 is 254 characters long'],
    [
      'pendingApprovalTimeout',
      '59s',
      'pendingApprovalTimeout="59s" is invalid: expected a duration at least 1m',
    ],
    ['pendingApprovalTimeout', '0', 'expected a duration at least 1m'],
    ['pendingApprovalTimeout', '3 days', 'pendingApprovalTimeout="3 days" is invalid: '],
    [
      'pendingApprovalTimeout',
      '',
      'pendingApprovalTimeout="" is invalid: empty; expected a duration such as 90d, 8h or 30m, at least 1m',
    ],
    ['pendingApprovalTimeout', '-1h', 'negative durations are not allowed'],
    ['public.approvals', '-1', 'public.approvals="-1" is invalid: expected a whole number from 0 to 8'],
    ['public.approvals', '9', 'public.approvals="9" is invalid: expected a whole number from 0 to 8'],
    ['internal.approvals', '1.5', 'expected a whole number from 0 to 8'],
    ['internal.approvals', ' 1', 'expected a whole number from 0 to 8'],
    ['internal.approvals', '', 'internal.approvals="" is invalid: expected a whole number'],
    ['internal.approvals', '0x1', 'expected a whole number'],
    [
      'confidential.crossEnvironmentApprovals',
      '0',
      'confidential.crossEnvironmentApprovals="0" is invalid: expected a whole number from 1 to 8',
    ],
    ['confidential.crossEnvironmentApprovals', '9', 'expected a whole number from 1 to 8'],
    ['public.crossEnvironment', 'yes', 'public.crossEnvironment="yes" is invalid: expected true or false'],
    ['public.crossEnvironment', 'True', 'expected true or false'],
    ['restricted.dedicatedKek', '1', 'restricted.dedicatedKek="1" is invalid: expected true or false'],
    ['restricted.dedicatedKek', '', 'expected true or false'],
    [
      'internal.approverGroups',
      'a b',
      'internal.approverGroups="a b" is invalid: entry 1 "a b" contains whitespace',
    ],
    [
      'internal.publisherGroups',
      'ci,',
      `internal.publisherGroups="ci," is invalid: entry 2 is empty; ${groupsAllowed} (or nothing)`,
    ],
    [
      'confidential.maxGrantDuration',
      '59m',
      'confidential.maxGrantDuration="59m" is invalid: expected a duration from 1h to 90d',
    ],
    ['confidential.maxGrantDuration', '91d', 'expected a duration from 1h to 90d'],
    [
      'confidential.maxGrantDuration',
      '30',
      'missing unit after "30"; expected a duration such as 90d, 8h or 30m, from 1h to 90d',
    ],
    [
      'confidential.keyLease',
      '59s',
      'confidential.keyLease="59s" is invalid: expected a duration from 1m to 24h',
    ],
    ['confidential.keyLease', '25h', 'expected a duration from 1m to 24h'],
    ['confidential.keyLease', '8 h', 'confidential.keyLease="8 h" is invalid'],
    [
      'restricted.kekRotation',
      '30s',
      'restricted.kekRotation="30s" is invalid: expected a duration at least 1m',
    ],
    ['restricted.kekRotation', '30w', 'unknown unit "w"'],
    [
      'confidential.kekVersionRetention',
      '59s',
      'confidential.kekVersionRetention="59s" is invalid: expected a duration at least 1m',
    ],
    ['public.kekVersionRetention', '0', 'expected a duration at least 1m'],
    ['internal.kekVersionRetention', '', 'empty'],
    ['restricted.kekVersionRetention', '-1h', 'negative'],
  ])('%s=%j', (key, value, message) => {
    const error = problems({ [key]: value });
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toMatchObject({ key, value });
    expect(error.message).toContain(message);
    expect(error.message.split('\n')).toHaveLength(2);
    expect(error.message.startsWith('the classification table has 1 problem:\n  ')).toBe(true);
  });

  it('keeps the duration error as the cause', () => {
    const error = problems({ 'public.keyLease': '8x' });
    expect(error.cause).toBeInstanceOf(PolicyError);
    expect((error.cause as PolicyError).message).toContain('unknown unit "x"');
    const two = problems({ 'public.keyLease': '8x', 'internal.keyLease': '' });
    expect(two.cause).toBeInstanceOf(AggregateError);
    expect((two.cause as AggregateError).errors).toHaveLength(2);
    expect(problems({ 'public.approvals': 'x' }).cause).toBeUndefined();
  });

  it.each([
    ['public.aprovals', 'expected public.<field> with <field> one of approvals, crossEnvironment,'],
    [
      'Public.approvals',
      'expected one of platformAdminGroups, securityGroups, pendingApprovalTimeout or <classification>.<field> with <classification> one of public, internal, confidential, restricted',
    ],
    ['secret.approvals', 'or <classification>.<field>'],
    ['platformAdmins', 'expected one of platformAdminGroups'],
    ['restricted.keylease', 'expected restricted.<field>'],
    ['', 'unknown key'],
  ])('rejects the unknown key %j (typo protection)', (key, hint) => {
    const error = problems({ [key]: '1' });
    expect(error.problems).toEqual([{ key, value: '1', message: expect.stringContaining(hint) as string }]);
    expect(error.message).toContain(`${key}="1": unknown key; `);
  });

  it('ignores inherited properties: only the object’s own keys are data', () => {
    const data = Object.create({ 'public.approvals': 'nonsense' }) as Record<string, string>;
    expect(parseClassificationConfig(data)).toEqual(DEFAULT_CLASSIFICATION_TABLE);
  });
});

describe('parseClassificationConfig: cross-field rules', () => {
  it.each(CLASSIFICATIONS)('%s.crossEnvironmentApprovals must be at least %s.approvals', (c) => {
    const error = problems({ [`${c}.approvals`]: '3', [`${c}.crossEnvironmentApprovals`]: '2' });
    expect(error.problems).toHaveLength(1);
    expect(error.message).toContain(
      `${c}.crossEnvironmentApprovals="2" is invalid: it must be at least ${c}.approvals (3)`,
    );
    expect(
      parseClassificationConfig({ [`${c}.approvals`]: '3', [`${c}.crossEnvironmentApprovals`]: '3' })
        .classifications[c],
    ).toMatchObject({ approvals: 3, crossEnvironmentApprovals: 3 });
  });

  it('compares against the default when only one of the two is set', () => {
    // confidential.crossEnvironmentApprovals defaults to 2.
    expect(problems({ 'confidential.approvals': '3' }).message).toContain(
      'confidential.crossEnvironmentApprovals="2" is invalid: it must be at least confidential.approvals (3)',
    );
    // restricted.approvals defaults to 2.
    expect(problems({ 'restricted.crossEnvironmentApprovals': '1' }).problems[0]?.key).toBe(
      'restricted.crossEnvironmentApprovals',
    );
  });

  it.each([
    ['approvals needed', { 'internal.approvals': '1', 'internal.crossEnvironment': 'false' }],
    ['crossing possible', { 'internal.approvals': '0', 'internal.crossEnvironment': 'true' }],
  ])('approverGroups must not be empty with %s', (_what, data) => {
    const error = problems({ ...data, 'internal.approverGroups': '' });
    expect(error.problems).toHaveLength(1);
    expect(error.message).toContain(
      'internal.approverGroups="" is invalid: internal grants can need approvals',
    );
    expect(error.message).toContain('at least one approver group is needed');
  });

  it('checks no cross-field rule on a value that is itself invalid (one problem, not two)', () => {
    const error = problems({ 'public.approvals': 'many', 'public.crossEnvironmentApprovals': '1' });
    expect(error.problems.map((p) => p.key)).toEqual(['public.approvals']);
  });
});

describe('parseClassificationConfig: all problems at once', () => {
  it('reports every problem, one line each, unknown keys first, then in key order', () => {
    const error = problems({
      'restricted.keyLease': '2d',
      'confidential.aprovals': '1',
      pendingApprovalTimeout: '10s',
      'public.crossEnvironment': 'maybe',
      platformAdminGroups: '',
      'internal.approvals': '4',
    });
    expect(error.problems.map((p) => p.key)).toEqual([
      'confidential.aprovals',
      'platformAdminGroups',
      'pendingApprovalTimeout',
      'public.crossEnvironment',
      'internal.crossEnvironmentApprovals',
      'restricted.keyLease',
    ]);
    const lines = error.message.split('\n');
    expect(lines[0]).toBe('the classification table has 6 problems:');
    expect(lines).toHaveLength(7);
    expect(lines.slice(1).every((l) => l.startsWith('  '))).toBe(true);
  });
});

describe('formatClassificationConfig', () => {
  it('writes every key, durations by formatDuration', () => {
    const data = formatClassificationConfig(DEFAULT_CLASSIFICATION_TABLE);
    expect(Object.keys(data).sort()).toEqual([...GOVERNANCE_CONFIG_KEYS].sort());
    expect(data).toMatchObject({
      pendingApprovalTimeout: '3d',
      'public.keyLease': '1d',
      'confidential.keyLease': '8h',
      'restricted.publisherGroups': '',
      'restricted.dedicatedKek': 'true',
      'confidential.kekVersionRetention': '1d',
      'public.kekVersionRetention': '7d',
      'confidential.approverGroups': 'strongroom:approvers',
    });
    expect(parseClassificationConfig(data)).toEqual(DEFAULT_CLASSIFICATION_TABLE);
  });

  const groupName = fc.stringMatching(/^[a-z:._-]{1,20}$/);
  const groups = fc.uniqueArray(groupName, { minLength: 1, maxLength: 4 });
  const ms = (min: number, max: number) =>
    fc.integer({ min: min / 1000, max: max / 1000 }).map((s) => s * 1000);
  const policy = fc
    .record({
      approvals: fc.integer({ min: 0, max: 8 }),
      extra: fc.integer({ min: 0, max: 8 }),
      crossEnvironment: fc.boolean(),
      approverGroups: groups,
      publisherGroups: fc.uniqueArray(groupName, { maxLength: 3 }),
      maxGrantDurationMs: ms(H, 90 * D),
      keyLeaseMs: ms(M, D),
      kekRotationMs: ms(M, 1000 * D),
      dedicatedKek: fc.boolean(),
      kekVersionRetentionMs: ms(M, 1000 * D),
    })
    .map(({ extra, ...p }) => ({
      ...p,
      crossEnvironmentApprovals: Math.min(8, Math.max(1, p.approvals + extra)),
    }));
  const table = fc.record({
    platformAdminGroups: groups,
    securityGroups: groups,
    pendingApprovalTimeoutMs: ms(M, 365 * D),
    classifications: fc.record({
      public: policy,
      internal: policy,
      confidential: policy,
      restricted: policy,
    }),
  });

  it('parses back to the same table (round trip)', () => {
    fc.assert(
      fc.property(table, (t) => {
        const data = formatClassificationConfig(t);
        expect(Object.keys(data).sort()).toEqual([...GOVERNANCE_CONFIG_KEYS].sort());
        expect(parseClassificationConfig(data)).toEqual(t);
      }),
      { numRuns: 300 },
    );
  });
});

describe('withKekRotation', () => {
  it('replaces only the periods given and leaves the table untouched', () => {
    const t = withKekRotation(DEFAULT_CLASSIFICATION_TABLE, { confidential: 8000 });
    expect(t.classifications.confidential.kekRotationMs).toBe(8000);
    expect(t.classifications.restricted).toEqual(DEFAULT_CLASSIFICATION_TABLE.classifications.restricted);
    expect(DEFAULT_CLASSIFICATION_TABLE.classifications.confidential.kekRotationMs).toBe(90 * D);
    expect(Object.isFrozen(t.classifications.confidential)).toBe(true);
  });
});
