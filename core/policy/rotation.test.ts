import { describe, expect, it } from 'vitest';
import { DEFAULT_CLASSIFICATION_TABLE, parseClassificationConfig } from './classification.ts';
import { PolicyError } from './errors.ts';
import {
  parseKekRotationOverrides,
  retentionPeriods,
  retiredVersionsDue,
  rotationPeriods,
  rotationStatus,
  type KekVersionState,
} from './rotation.ts';

const D = 86_400_000;

function tableError(text: string): PolicyError {
  try {
    parseKekRotationOverrides(text);
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyError);
    return error as PolicyError;
  }
  throw new Error(`parseKekRotationOverrides(${JSON.stringify(text)}) did not throw`);
}

describe('rotationPeriods', () => {
  it('is the kekRotation of every classification: by default 365d / 180d / 90d / 30d, frozen', () => {
    const periods = rotationPeriods(DEFAULT_CLASSIFICATION_TABLE);
    expect(periods).toEqual({ public: 365 * D, internal: 180 * D, confidential: 90 * D, restricted: 30 * D });
    expect(Object.isFrozen(periods)).toBe(true);
  });

  it('follows the table', () => {
    const table = parseClassificationConfig({ 'internal.kekRotation': '2d' });
    expect(rotationPeriods(table).internal).toBe(2 * D);
  });
});

describe('parseKekRotationOverrides', () => {
  it('returns only the entries given', () => {
    expect(parseKekRotationOverrides('restricted=30d,confidential=2160h')).toEqual({
      restricted: 30 * D,
      confidential: 90 * D,
    });
    expect(parseKekRotationOverrides('restricted=7d, public = 1h30m')).toEqual({
      restricted: 7 * D,
      public: 5_400_000,
    });
  });

  it('gives no overrides for blank text', () => {
    expect(parseKekRotationOverrides('')).toEqual({});
    expect(parseKekRotationOverrides('  ')).toEqual({});
  });

  it('returns a frozen object', () => {
    expect(Object.isFrozen(parseKekRotationOverrides('public=1d'))).toBe(true);
  });

  it('accepts exactly 1 second (below the table minimum of 1m, so tests can watch a rotation)', () => {
    expect(parseKekRotationOverrides('restricted=1s').restricted).toBe(1_000);
  });

  it.each([
    ['secret=1d', ['unknown classification "secret"', 'public, internal, confidential, restricted']],
    ['Restricted=1d', ['unknown classification "Restricted"']],
    ['=1d', ['unknown classification ""']],
    ['restricted=1d,restricted=2d', ['entry 2', 'sets restricted a second time']],
    ['restricted=abc', ['entry 1', 'rotation period of restricted', 'invalid duration "abc"']],
    ['public=1d,internal=-1d', ['entry 2', 'rotation period of internal', 'negative']],
    ['restricted=', ['rotation period of restricted', 'empty']],
    ['restricted=999ms', ['rotation period of restricted is 999ms', 'at least 1s']],
    ['restricted=0', ['rotation period of restricted is 0s']],
    ['restricted', ['entry 1 "restricted" must have the form classification=duration']],
    ['restricted=30d,', ['entry 2 is empty']],
    [',restricted=30d', ['entry 1 is empty']],
  ])('rejects %j naming the bad part', (text, parts) => {
    const error = tableError(text);
    expect(error.code).toBe('invalid');
    for (const part of parts) expect(error.message).toContain(part);
  });

  it('keeps the duration error as the cause', () => {
    const error = tableError('restricted=30x');
    expect(error.cause).toBeInstanceOf(PolicyError);
    expect((error.cause as PolicyError).message).toContain('unknown unit "x"');
  });
});

describe('rotationStatus', () => {
  const created = new Date('2026-01-01T00:00:00Z');
  const period = 30 * D;

  it('is compliant while younger than the period and not at the instant it is due', () => {
    const due = new Date(created.getTime() + period);
    expect(rotationStatus(created, period, new Date(due.getTime() - 1))).toEqual({
      compliant: true,
      ageMs: period - 1,
      dueAt: due,
    });
    expect(rotationStatus(created, period, due)).toEqual({ compliant: false, ageMs: period, dueAt: due });
    expect(rotationStatus(created, period, new Date(due.getTime() + D)).compliant).toBe(false);
  });

  it('counts a creation time in the future (clock skew) as age 0', () => {
    expect(rotationStatus(created, period, new Date(created.getTime() - D))).toMatchObject({
      compliant: true,
      ageMs: 0,
    });
  });

  it.each([
    ['an invalid creation time', new Date(Number.NaN), period, created],
    ['an invalid clock', created, period, new Date(Number.NaN)],
    ['a zero period', created, 0, created],
    ['a negative period', created, -1, created],
    ['a NaN period', created, Number.NaN, created],
  ])('fails closed on %s', (_what, at, p, now) => {
    expect(rotationStatus(at, p, now).compliant).toBe(false);
  });
});

describe('retentionPeriods', () => {
  it('is the kekVersionRetention of every classification: by default 7d / 7d / 24h / 24h, frozen', () => {
    const periods = retentionPeriods(DEFAULT_CLASSIFICATION_TABLE);
    expect(periods).toEqual({ public: 7 * D, internal: 7 * D, confidential: D, restricted: D });
    expect(Object.isFrozen(periods)).toBe(true);
    expect(retentionPeriods(parseClassificationConfig({ 'public.kekVersionRetention': '1m' })).public).toBe(
      60_000,
    );
  });
});

describe('retiredVersionsDue', () => {
  const H = 3_600_000;
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  const at = (ms: number) => new Date(t0 + ms).toISOString();
  /** v1 at t0, v2 at +1h (v1 retired then), v3 at +3h (v2 retired then), v3 primary. */
  const v1: KekVersionState = { version: '1', state: 'enabled', primary: false, createdAt: at(0) };
  const v2: KekVersionState = { version: '2', state: 'enabled', primary: false, createdAt: at(H) };
  const v3: KekVersionState = { version: '3', state: 'enabled', primary: true, createdAt: at(3 * H) };
  const versions = [v1, v2, v3];
  const plan = (nowMs: number, inUse: ReadonlySet<string> | undefined = new Set(['3']), retentionMs = D) =>
    retiredVersionsDue({ versions, inUse, retentionMs, now: new Date(t0 + nowMs) });

  it('counts retirement from the creation of the version that replaced it, not from its own creation', () => {
    expect(plan(H + D - 1)).toEqual({ destroy: [], nextDueAt: new Date(t0 + H + D) });
    expect(plan(H + D)).toEqual({ destroy: ['1'], nextDueAt: new Date(t0 + 3 * H + D) });
    expect(plan(3 * H + D)).toEqual({ destroy: ['1', '2'] });
  });

  it('never destroys the primary, nor a version already destroyed', () => {
    const done = versions.map((v) => (v.version === '1' ? { ...v, state: 'destroyed' as const } : v));
    expect(
      retiredVersionsDue({ versions: done, inUse: new Set(), retentionMs: D, now: new Date(t0 + 100 * D) }),
    ).toEqual({ destroy: ['2'] });
    expect(
      retiredVersionsDue({
        versions: [v3],
        inUse: new Set(),
        retentionMs: 1,
        now: new Date(t0 + D),
      }),
    ).toEqual({ destroy: [] });
  });

  it('destroys nothing while any wrapped key is on a version other than the primary (the rewrap is not done)', () => {
    expect(plan(100 * D, new Set(['3', '2']))).toEqual({ destroy: [], blocked: 'in-use' });
    // Even the long-retired version 1, which nothing uses: destruction waits for the whole rewrap.
    expect(plan(100 * D, new Set(['2']))).toEqual({ destroy: [], blocked: 'in-use' });
    expect(plan(100 * D, new Set(['1']))).toMatchObject({ destroy: [], blocked: 'in-use' });
    // Nothing wrapped under the key at all: every retired version can go.
    expect(plan(100 * D, new Set())).toEqual({ destroy: ['1', '2'] });
  });

  it.each([
    ['usage unknown (a cache not synced)', versions, undefined, D, t0 + 100 * D, 'unknown'],
    ['a zero retention', versions, new Set(['3']), 0, t0 + 100 * D, 'bad-retention'],
    ['a negative retention', versions, new Set(['3']), -D, t0 + 100 * D, 'bad-retention'],
    ['a NaN retention', versions, new Set(['3']), Number.NaN, t0 + 100 * D, 'bad-retention'],
    ['an invalid clock', versions, new Set(['3']), D, Number.NaN, 'bad-retention'],
    [
      'no primary',
      versions.map((v) => ({ ...v, primary: false })),
      new Set<string>(),
      D,
      t0 + 100 * D,
      'no-primary',
    ],
    [
      'a destroyed primary',
      versions.map((v) => (v.primary ? { ...v, state: 'destroyed' as const } : v)),
      new Set<string>(),
      D,
      t0 + 100 * D,
      'no-primary',
    ],
  ] as const)('fails closed on %s', (_what, vs, inUse, retentionMs, nowMs, blocked) => {
    expect(retiredVersionsDue({ versions: vs, inUse, retentionMs, now: new Date(nowMs) })).toEqual({
      destroy: [],
      blocked,
    });
  });

  it('keeps a version whose successor has an unreadable creation time, and one retired in the future (clock skew)', () => {
    const odd = [
      { ...v1, createdAt: at(0) },
      { ...v2, createdAt: 'not a time' },
      { ...v3, createdAt: at(200 * D) },
    ];
    expect(
      retiredVersionsDue({ versions: odd, inUse: new Set(), retentionMs: D, now: new Date(t0 + 100 * D) }),
    ).toEqual({ destroy: [], nextDueAt: new Date(t0 + 201 * D) });
  });
});
