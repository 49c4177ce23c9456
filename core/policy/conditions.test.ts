import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findCondition, kubeTime, setCondition, statusEqual, type Condition } from './conditions.ts';
import { PolicyError } from './errors.ts';

const T0 = new Date('2026-11-26T09:07:12.987Z');

const ready = (status: Condition['status'], time = '2026-11-01T00:00:00Z'): Condition => ({
  type: 'Ready',
  status,
  reason: 'Old',
  message: 'old message',
  lastTransitionTime: time,
  observedGeneration: 1,
});
const other: Condition = {
  type: 'Other',
  status: 'True',
  reason: 'Mine',
  message: 'someone else’s',
  lastTransitionTime: '2026-10-01T00:00:00Z',
};

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

describe('kubeTime', () => {
  it('truncates to whole seconds in metav1.Time format', () => {
    expect(kubeTime(T0)).toBe('2026-11-26T09:07:12Z');
    expect(kubeTime(new Date('2026-11-26T09:07:12.000Z'))).toBe('2026-11-26T09:07:12Z');
  });
  it('rejects an invalid Date', () => {
    expect(() => kubeTime(new Date(Number.NaN))).toThrow(PolicyError);
  });
});

describe('setCondition', () => {
  it('adds a new condition stamped now (whole seconds) with the generation', () => {
    const result = setCondition(
      undefined,
      { type: 'Ready', status: 'True', reason: 'Ok', message: 'fine' },
      3,
      T0,
    );
    expect(result).toEqual([
      {
        type: 'Ready',
        status: 'True',
        reason: 'Ok',
        message: 'fine',
        lastTransitionTime: '2026-11-26T09:07:12Z',
        observedGeneration: 3,
      },
    ]);
  });

  it('keeps lastTransitionTime when the status does not flip, but takes the new reason, message and generation', () => {
    const [c] = setCondition(
      [ready('False')],
      { type: 'Ready', status: 'False', reason: 'New', message: 'm' },
      2,
      T0,
    );
    expect(c).toEqual({
      type: 'Ready',
      status: 'False',
      reason: 'New',
      message: 'm',
      lastTransitionTime: '2026-11-01T00:00:00Z',
      observedGeneration: 2,
    });
  });

  it.each([
    ['False', 'True'],
    ['True', 'False'],
    ['Unknown', 'True'],
    ['True', 'Unknown'],
  ] as const)('sets lastTransitionTime to now when the status flips %s → %s', (from, to) => {
    const [c] = setCondition([ready(from)], { type: 'Ready', status: to, reason: 'R', message: '' }, 1, T0);
    expect(c?.lastTransitionTime).toBe('2026-11-26T09:07:12Z');
  });

  it('preserves the order of other conditions, replaces in place and appends new types', () => {
    const existing = deepFreeze([other, ready('True'), { ...other, type: 'Third' }]);
    const replaced = setCondition(
      existing,
      { type: 'Ready', status: 'False', reason: 'R', message: '' },
      1,
      T0,
    );
    expect(replaced.map((c) => c.type)).toEqual(['Other', 'Ready', 'Third']);
    const appended = setCondition(existing, { type: 'New', status: 'True', reason: 'R', message: '' }, 1, T0);
    expect(appended.map((c) => c.type)).toEqual(['Other', 'Ready', 'Third', 'New']);
    expect(appended[0]).toEqual(other);
    expect(appended[0]).not.toBe(other);
  });

  it('does not modify its input', () => {
    const existing = deepFreeze([ready('True')]);
    const result = setCondition(
      existing,
      { type: 'Ready', status: 'False', reason: 'R', message: '' },
      5,
      T0,
    );
    expect(result).not.toBe(existing);
    expect(existing[0]?.status).toBe('True');
  });

  it('leaves observedGeneration out when the generation is unknown', () => {
    const [c] = setCondition(
      [ready('True')],
      { type: 'Ready', status: 'True', reason: 'R', message: '' },
      undefined,
      T0,
    );
    expect(c).not.toHaveProperty('observedGeneration');
  });

  it('drops later duplicates of the same type', () => {
    const result = setCondition(
      [ready('True'), other, ready('False')],
      { type: 'Ready', status: 'True', reason: 'R', message: '' },
      1,
      T0,
    );
    expect(result.map((c) => c.type)).toEqual(['Ready', 'Other']);
    expect(result[0]?.lastTransitionTime).toBe('2026-11-01T00:00:00Z');
  });

  it('needs a valid clock only when a transition time must be stamped', () => {
    const invalid = new Date(Number.NaN);
    expect(() =>
      setCondition([ready('True')], { type: 'Ready', status: 'True', reason: 'R', message: '' }, 1, invalid),
    ).not.toThrow();
    expect(() =>
      setCondition([ready('True')], { type: 'Ready', status: 'False', reason: 'R', message: '' }, 1, invalid),
    ).toThrow(PolicyError);
  });

  const conditionArb = fc.record({
    type: fc.constantFrom('Ready', 'Approved', 'KeysReady', 'Other'),
    status: fc.constantFrom('True', 'False', 'Unknown'),
    reason: fc.string({ minLength: 1, maxLength: 8 }),
    message: fc.string({ maxLength: 20 }),
    lastTransitionTime: fc.constantFrom('2026-01-01T00:00:00Z', '2026-06-01T12:00:00Z'),
  }) satisfies fc.Arbitrary<Condition>;
  const inputArb = fc.record({
    type: fc.constantFrom('Ready', 'Approved', 'New'),
    status: fc.constantFrom('True', 'False', 'Unknown'),
    reason: fc.string({ minLength: 1, maxLength: 8 }),
    message: fc.string({ maxLength: 20 }),
  });
  const dateArb = fc.date({
    min: new Date('2026-01-01T00:00:00Z'),
    max: new Date('2030-01-01T00:00:00Z'),
    noInvalidDate: true,
  });
  const uniqueConditions = fc.uniqueArray(conditionArb, { selector: (c) => c.type, maxLength: 4 });

  it('is idempotent: applying the same input again, at any later time, changes nothing', () => {
    fc.assert(
      fc.property(
        uniqueConditions,
        inputArb,
        fc.option(fc.nat(), { nil: undefined }),
        dateArb,
        dateArb,
        (existing, input, gen, t1, t2) => {
          const once = setCondition(existing, input, gen, t1);
          const twice = setCondition(once, input, gen, t2);
          expect(twice).toEqual(once);
          expect(statusEqual(twice, once)).toBe(true);
        },
      ),
    );
  });

  it('always leaves exactly one condition of the input type, carrying the input', () => {
    fc.assert(
      fc.property(uniqueConditions, inputArb, dateArb, (existing, input, now) => {
        const result = setCondition(existing, input, 7, now);
        const matching = result.filter((c) => c.type === input.type);
        expect(matching).toHaveLength(1);
        expect(matching[0]).toMatchObject({ ...input, observedGeneration: 7 });
        expect(result.filter((c) => c.type !== input.type)).toEqual(
          existing.filter((c) => c.type !== input.type),
        );
      }),
    );
  });
});

describe('findCondition', () => {
  it('finds by type and tolerates a missing list', () => {
    expect(findCondition([other, ready('True')], 'Ready')?.status).toBe('True');
    expect(findCondition([other], 'Ready')).toBeUndefined();
    expect(findCondition(undefined, 'Ready')).toBeUndefined();
  });
});

describe('statusEqual', () => {
  it.each([
    [{ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 }, true],
    [{ a: 1, b: undefined }, { a: 1 }, true],
    [undefined, undefined, true],
    [null, null, true],
    ['x', 'x', true],
    [[], [], true],
    [{ a: [1, 2] }, { a: [2, 1] }, false],
    [{ a: 1 }, { a: 1, b: 2 }, false],
    [{ a: 1, b: 2 }, { a: 1 }, false],
    [{ a: 1 }, { a: '1' }, false],
    [{ a: null }, { a: undefined }, false],
    [{ a: null }, {}, false],
    [[], {}, false],
    [{ 0: 'a' }, ['a'], false],
    [[1, 2], [1, 2, 3], false],
    [undefined, {}, false],
    [{ a: { b: { c: 1 } } }, { a: { b: { c: 2 } } }, false],
  ])('%j vs %j → %s', (a, b, expected) => {
    expect(statusEqual(a, b)).toBe(expected);
    expect(statusEqual(b, a)).toBe(expected);
  });

  function reorder(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(reorder);
    if (typeof value === 'object' && value !== null)
      return Object.fromEntries(
        Object.entries(value)
          .reverse()
          .map(([k, v]) => [k, reorder(v)]),
      );
    return value;
  }

  it('agrees with JSON equality up to key order', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => {
        expect(statusEqual(a, reorder(a))).toBe(true);
        expect(statusEqual(a, JSON.parse(JSON.stringify(a)))).toBe(true);
        const canonical = (v: unknown) =>
          JSON.stringify(v, (_k, x: unknown) =>
            typeof x === 'object' && x !== null && !Array.isArray(x)
              ? Object.fromEntries(Object.entries(x).sort(([p], [q]) => (p < q ? -1 : 1)))
              : x,
          );
        expect(statusEqual(a, b)).toBe(canonical(a) === canonical(b));
      }),
    );
  });
});
