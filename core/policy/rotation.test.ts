import { describe, expect, it } from 'vitest';
import { DEFAULT_CLASSIFICATION_TABLE, parseClassificationConfig } from './classification.ts';
import { PolicyError } from './errors.ts';
import { parseKekRotationOverrides, rotationPeriods, rotationStatus } from './rotation.ts';

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
