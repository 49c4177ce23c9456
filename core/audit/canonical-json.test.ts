import { describe, expect, it } from 'vitest';
import { canonicalize, CanonicalJsonError, isCanonical } from './canonical-json.ts';

describe('canonical JSON', () => {
  it('sorts keys by UTF-16 code units at every depth, with no whitespace', () => {
    expect(canonicalize({ b: 1, a: { d: [3, { z: null, y: true }], c: 'x' } })).toBe(
      '{"a":{"c":"x","d":[3,{"y":true,"z":null}]},"b":1}',
    );
    // RFC 8785 §3.2.3: code-unit order puts U+20AC (€) before U+FB33 and after "\r" and digits.
    expect(canonicalize({ '\u20ac': 1, '\r': 2, '1': 3, '\ufb33': 4 })).toBe(
      '{"\\r":2,"1":3,"\u20ac":1,"\ufb33":4}',
    );
  });

  it('escapes strings as ECMAScript JSON.stringify does', () => {
    expect(canonicalize('a"b\\c\n\u0001é')).toBe('"a\\"b\\\\c\\n\\u0001é"');
  });

  it('accepts safe integers and refuses floats, -0, NaN and unsafe integers', () => {
    expect(canonicalize([0, -5, Number.MAX_SAFE_INTEGER])).toBe('[0,-5,9007199254740991]');
    for (const bad of [1.5, -0, NaN, Infinity, 2 ** 53]) {
      expect(() => canonicalize({ n: bad })).toThrow(CanonicalJsonError);
    }
  });

  it('refuses values with no JSON meaning, naming where they are', () => {
    const cases: [unknown, string][] = [
      [{ a: undefined }, '$.a'],
      [{ a: [1, () => 1] }, '$.a[1]'],
      [{ a: 1n }, '$.a'],
      [{ a: new Date(0) }, '$.a'],
      [{ a: Buffer.from('secret') }, '$.a'],
      [{ a: '\ud800' }, '$.a'],
    ];
    for (const [value, path] of cases) {
      expect(() => canonicalize(value)).toThrow(expect.objectContaining({ path }) as Error);
    }
  });

  it('refuses absurd nesting', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    expect(() => canonicalize(deep)).toThrow(CanonicalJsonError);
  });

  it('recognizes canonical text', () => {
    expect(isCanonical('{"a":1,"b":[true]}')).toBe(true);
    expect(isCanonical('{"b":1,"a":1}')).toBe(false);
    expect(isCanonical('{"a": 1}')).toBe(false);
    expect(isCanonical('{"a":1.0}')).toBe(false);
  });
});
