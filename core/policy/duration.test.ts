import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PolicyError, formatDuration, parseDuration } from './duration.ts';

const H = 3_600_000;
const D = 24 * H;
/** Go's largest duration, 2^63-1 ns, in whole milliseconds. */
const MAX_WHOLE_MS = 9_223_372_036_854;

function parseError(text: string): PolicyError {
  try {
    parseDuration(text);
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyError);
    return error as PolicyError;
  }
  throw new Error(`parseDuration(${JSON.stringify(text)}) did not throw`);
}

describe('parseDuration', () => {
  it.each([
    ['0', 0],
    ['+0', 0],
    ['1h30m', 1.5 * H],
    ['15m', 15 * 60_000],
    ['720h', 30 * D],
    ['1.5h', 1.5 * H],
    ['300ms', 300],
    ['90d', 90 * D],
    ['1d12h', 1.5 * D],
    ['+5s', 5_000],
    ['.5s', 500],
    ['1.s', 1_000],
    ['1h1h', 2 * H],
    ['0h0m0s', 0],
    ['1500us', 1.5],
    ['1500\u00b5s', 1.5],
    ['1500\u03bcs', 1.5],
    ['2ns', 0.000002],
    ['1.000000001s', 1000.000001],
    ['2562047h47m16.854775807s', MAX_WHOLE_MS + 0.775807],
    ['106751d23h47m16s854ms775us807ns', MAX_WHOLE_MS + 0.775807],
  ])('%s = %d ms', (text, ms) => {
    expect(parseDuration(text)).toBeCloseTo(ms, 9);
  });

  it('is exact for whole milliseconds beyond 2^53 nanoseconds', () => {
    expect(parseDuration('365d')).toBe(365 * D);
    expect(parseDuration('2562047h')).toBe(2_562_047 * H);
  });

  it.each([
    ['', 'empty'],
    ['+', 'empty'],
    ['-1h', 'negative'],
    ['-0', 'negative'],
    ['1', 'missing unit'],
    ['1.5', 'missing unit'],
    ['1h30', 'missing unit'],
    ['h', 'a number is needed'],
    ['.h', 'a number is needed'],
    ['1x', 'unknown unit "x"'],
    ['1H', 'unknown unit "H"'],
    ['1w', 'unknown unit "w"'],
    ['1h x', 'unknown unit "h x"'],
    [' 1h', 'a number is needed'],
    ['1 h', 'unknown unit " h"'],
    ['1..5h', 'unexpected'],
    ['1e3s', 'unknown unit "e"'],
    ['1h-1m', 'unknown unit "h-"'],
    ['9223372036854775808ns', 'too large'],
    ['2562048h', 'too large'],
    ['106752d', 'too large'],
    ['2562047h47m16.854775808s', 'too large'],
    [`${'9'.repeat(200)}h`, 'longer than 128'],
  ])('rejects %j (%s)', (text, why) => {
    const error = parseError(text);
    expect(error.code).toBe('invalid');
    expect(error.name).toBe('PolicyError');
    expect(error.message).toContain(why);
    expect(error.message).toContain('invalid duration');
  });

  it('quotes the input in the message', () => {
    expect(parseError('3 weeks').message).toContain('"3 weeks"');
  });

  it('adds up segments written in any order', () => {
    const segment = fc.tuple(
      fc.nat({ max: 10_000 }),
      fc.constantFrom(['d', D], ['h', H], ['m', 60_000], ['s', 1000]),
    );
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (segments) => {
        const text = segments.map(([n, [unit]]) => `${String(n)}${unit}`).join('');
        const sum = segments.reduce((total, [n, [, size]]) => total + n * size, 0);
        expect(parseDuration(text)).toBe(sum);
      }),
    );
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [1, '1ms'],
    [1.5, '1ms500us'],
    [0.000001, '1ns'],
    [0.9999999, '1ms'],
    [1_000, '1s'],
    [1.5 * H, '1h30m'],
    [90 * D, '90d'],
    [D + 1, '1d1ms'],
    [-60_000, '-1m'],
    [MAX_WHOLE_MS, '106751d23h47m16s854ms'],
    [Number.NaN, 'NaNms'],
    [Number.POSITIVE_INFINITY, 'Infinityms'],
  ])('%d → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('parses back to the same value for every whole number of milliseconds up to Go’s limit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_WHOLE_MS }), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms);
      }),
      { numRuns: 2000 },
    );
  });

  it('is a canonical form: formatting a parsed duration and parsing again changes nothing', () => {
    const unit = fc.constantFrom('ns', 'us', 'ms', 's', 'm', 'h', 'd');
    const segment = fc.tuple(fc.nat({ max: 999 }), fc.option(fc.nat({ max: 999 }), { nil: undefined }), unit);
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 4 }), (segments) => {
        const text = segments
          .map(([n, frac, u]) => `${String(n)}${frac === undefined ? '' : `.${String(frac)}`}${u}`)
          .join('');
        const once = formatDuration(parseDuration(text));
        expect(formatDuration(parseDuration(once))).toBe(once);
        expect(parseDuration(once)).toBeCloseTo(parseDuration(text), 6);
      }),
    );
  });
});
