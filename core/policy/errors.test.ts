import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../api/validation.ts';
import { PolicyError, policyDuration } from './errors.ts';

function parseError(text: string): PolicyError {
  try {
    policyDuration(text);
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyError);
    return error as PolicyError;
  }
  throw new Error(`policyDuration(${JSON.stringify(text)}) did not throw`);
}

describe('policyDuration', () => {
  it.each([
    ['0', 0],
    ['1h30m', 5_400_000],
    ['90d', 7_776_000_000],
    ['1500us', 1.5],
  ])('%s = %d ms, as core/api/validation.ts parses it', (text, ms) => {
    expect(policyDuration(text)).toBe(ms);
  });

  it('throws PolicyError "invalid duration <input>: <problem>" exactly where parseDuration reports a problem', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (text) => {
        const parsed = parseDuration(text);
        if (typeof parsed === 'number') {
          expect(policyDuration(text)).toBe(parsed);
          return;
        }
        const error = parseError(text);
        expect(error.code).toBe('invalid');
        expect(error.name).toBe('PolicyError');
        expect(error.message).toBe(`invalid duration ${JSON.stringify(text)}: ${parsed.join('; ')}`);
      }),
      { examples: [[''], ['+'], ['-1h'], ['1'], ['h'], ['1x'], ['1..5h'], ['2562048h']] },
    );
  });

  it('quotes the input in the message', () => {
    expect(parseError('3 weeks').message).toContain('"3 weeks"');
  });

  it('quotes at most 128 characters of a long input', () => {
    const message = parseError(`${'9'.repeat(200)}h`).message;
    expect(message).toContain('longer than 128');
    expect(message).toContain(`"${'9'.repeat(128)}…"`);
  });
});
