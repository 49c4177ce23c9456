import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AccessGrantSubjectPodSelector } from '../api/index.ts';
import { matchesSelector, selectorMismatch } from './labels.ts';

const POD = { app: 'resnet', tier: 'batch', 'strongroom.dev/role': 'reader' };

type Row = [string, Record<string, string>, AccessGrantSubjectPodSelector | undefined, boolean];

describe('matchesSelector', () => {
  it.each<Row>([
    ['an absent selector matches every pod', POD, undefined, true],
    ['an absent selector matches a pod without labels', {}, undefined, true],
    ['the empty selector {} matches every pod', POD, {}, true],
    ['the empty selector {} matches a pod without labels', {}, {}, true],
    ['empty matchLabels and matchExpressions match', POD, { matchLabels: {}, matchExpressions: [] }, true],
    ['matchLabels with equal values', POD, { matchLabels: { app: 'resnet', tier: 'batch' } }, true],
    ['matchLabels with a prefixed key', POD, { matchLabels: { 'strongroom.dev/role': 'reader' } }, true],
    ['matchLabels with another value', POD, { matchLabels: { app: 'bert' } }, false],
    ['matchLabels with a missing label', POD, { matchLabels: { team: 'vision' } }, false],
    ['matchLabels: one of two fails', POD, { matchLabels: { app: 'resnet', tier: 'online' } }, false],
    ['matchLabels with an empty value, label absent', POD, { matchLabels: { gpu: '' } }, false],
    ['matchLabels with an empty value, label empty', { gpu: '' }, { matchLabels: { gpu: '' } }, true],
    [
      'In with the value',
      POD,
      { matchExpressions: [{ key: 'tier', operator: 'In', values: ['online', 'batch'] }] },
      true,
    ],
    [
      'In without the value',
      POD,
      { matchExpressions: [{ key: 'tier', operator: 'In', values: ['online'] }] },
      false,
    ],
    [
      'In with the label missing',
      POD,
      { matchExpressions: [{ key: 'team', operator: 'In', values: ['a'] }] },
      false,
    ],
    [
      'NotIn with another value',
      POD,
      { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['online'] }] },
      true,
    ],
    [
      'NotIn with the value',
      POD,
      { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['batch'] }] },
      false,
    ],
    [
      'NotIn with the label missing (as in Kubernetes)',
      POD,
      { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['a'] }] },
      true,
    ],
    ['Exists with the label', POD, { matchExpressions: [{ key: 'app', operator: 'Exists' }] }, true],
    [
      'Exists with an empty label value',
      { app: '' },
      { matchExpressions: [{ key: 'app', operator: 'Exists' }] },
      true,
    ],
    ['Exists without the label', POD, { matchExpressions: [{ key: 'team', operator: 'Exists' }] }, false],
    [
      'DoesNotExist without the label',
      POD,
      { matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] },
      true,
    ],
    [
      'DoesNotExist with the label',
      POD,
      { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] },
      false,
    ],
    [
      'several requirements, all hold',
      POD,
      {
        matchLabels: { app: 'resnet' },
        matchExpressions: [
          { key: 'tier', operator: 'In', values: ['batch'] },
          { key: 'team', operator: 'DoesNotExist' },
          { key: 'strongroom.dev/role', operator: 'Exists' },
        ],
      },
      true,
    ],
    [
      'several requirements ANDed: the last fails',
      POD,
      {
        matchLabels: { app: 'resnet' },
        matchExpressions: [
          { key: 'tier', operator: 'In', values: ['batch'] },
          { key: 'app', operator: 'NotIn', values: ['resnet'] },
        ],
      },
      false,
    ],
    [
      'several requirements ANDed: matchLabels fails, expressions hold',
      POD,
      { matchLabels: { app: 'bert' }, matchExpressions: [{ key: 'tier', operator: 'Exists' }] },
      false,
    ],
    [
      'a prototype property is not a label',
      {},
      { matchExpressions: [{ key: 'constructor', operator: 'Exists' }] },
      false,
    ],
    [
      'a prototype property is not a label (matchLabels)',
      { app: 'x' },
      { matchLabels: { toString: 'x' } },
      false,
    ],
  ])('%s', (_what, labels, selector, expected) => {
    expect(matchesSelector(labels, selector)).toBe(expected);
    expect(selectorMismatch(labels, selector) === undefined).toBe(expected);
  });

  it.each<[string, AccessGrantSubjectPodSelector]>([
    ['In without values', { matchExpressions: [{ key: 'team', operator: 'In', values: [] }] }],
    ['NotIn without values', { matchExpressions: [{ key: 'team', operator: 'NotIn' }] }],
    ['Exists with values', { matchExpressions: [{ key: 'app', operator: 'Exists', values: ['resnet'] }] }],
    [
      'DoesNotExist with values',
      { matchExpressions: [{ key: 'team', operator: 'DoesNotExist', values: ['x'] }] },
    ],
    [
      'an unknown operator',
      { matchExpressions: [{ key: 'team', operator: 'Absent' as unknown as 'Exists' }] },
    ],
    [
      'an invalid key in an expression',
      { matchExpressions: [{ key: 'bad key!', operator: 'DoesNotExist' }] },
    ],
    ['an empty key', { matchExpressions: [{ key: '', operator: 'DoesNotExist' }] }],
    ['an empty key prefix', { matchExpressions: [{ key: '/team', operator: 'DoesNotExist' }] }],
    [
      'an upper-case key prefix',
      { matchExpressions: [{ key: 'Strongroom.dev/team', operator: 'DoesNotExist' }] },
    ],
    [
      'a key name over 63 characters',
      { matchExpressions: [{ key: 'a'.repeat(64), operator: 'DoesNotExist' }] },
    ],
    ['an invalid value', { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['no spaces'] }] }],
    ['an invalid matchLabels key', { matchLabels: { 'a/b/c': 'x' } }],
    ['an invalid matchLabels value', { matchLabels: { app: '-resnet' } }],
  ])('fails closed on a selector Kubernetes rejects: %s', (_what, selector) => {
    // Each of these would match POD if the malformed part were ignored (NotIn/DoesNotExist on absent labels).
    expect(matchesSelector(POD, selector)).toBe(false);
    expect(selectorMismatch(POD, selector)).toMatch(/^the podSelector is invalid/u);
  });

  it('accepts the longest valid key and value', () => {
    const key = `${'a'.repeat(63)}.example.com/${'b'.repeat(63)}`;
    const value = 'c'.repeat(63);
    expect(matchesSelector({ [key]: value }, { matchLabels: { [key]: value } })).toBe(true);
    expect(matchesSelector({ [key]: `${value}c` }, { matchLabels: { [key]: `${value}c` } })).toBe(false);
  });
});

describe('selectorMismatch explains the first unmet requirement', () => {
  it.each<[AccessGrantSubjectPodSelector, string]>([
    [{ matchLabels: { team: 'vision' } }, 'label team is missing (podSelector wants team=vision)'],
    [{ matchLabels: { app: 'bert' } }, 'label app=resnet, not bert'],
    [
      { matchExpressions: [{ key: 'tier', operator: 'In', values: ['online'] }] },
      'label tier=batch is not in [online]',
    ],
    [
      { matchExpressions: [{ key: 'team', operator: 'In', values: ['a', 'b'] }] },
      'label team is missing (podSelector wants it in [a, b])',
    ],
    [
      { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['batch'] }] },
      'label tier=batch is one of the excluded values [batch]',
    ],
    [
      { matchExpressions: [{ key: 'team', operator: 'Exists' }] },
      'label team is missing (podSelector requires it)',
    ],
    [
      { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] },
      'label app is present (podSelector forbids it)',
    ],
  ])('%j', (selector, message) => {
    expect(selectorMismatch(POD, selector)).toBe(message);
  });
});

describe('matchesSelector properties', () => {
  const key = fc.constantFrom('app', 'tier', 'team', 'strongroom.dev/role');
  const value = fc.constantFrom('a', 'b', 'c', '');
  const labels = fc.dictionary(key, value);

  it('a pod always matches matchLabels built from its own labels, and In/Exists over them', () => {
    fc.assert(
      fc.property(labels, fc.boolean(), (l, withExpressions) => {
        const expressions = Object.entries(l).flatMap(([k, v]) => [
          { key: k, operator: 'In' as const, values: [v === '' ? 'x' : v, ...(v === '' ? [] : ['x'])] },
          { key: k, operator: 'Exists' as const },
        ]);
        const selector: AccessGrantSubjectPodSelector = {
          matchLabels: Object.fromEntries(Object.entries(l).filter(([, v]) => v !== '')),
          ...(withExpressions
            ? { matchExpressions: expressions.filter((e) => e.operator === 'Exists') }
            : {}),
        };
        return matchesSelector(l, selector);
      }),
    );
  });

  it('NotIn is the negation of In exactly when the label is present', () => {
    fc.assert(
      fc.property(labels, key, fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 1 }), (l, k, vs) => {
        const inSel = { matchExpressions: [{ key: k, operator: 'In' as const, values: vs }] };
        const notInSel = { matchExpressions: [{ key: k, operator: 'NotIn' as const, values: vs }] };
        const present = Object.hasOwn(l, k);
        const inResult = matchesSelector(l, inSel);
        const notInResult = matchesSelector(l, notInSel);
        return present ? inResult !== notInResult : !inResult && notInResult;
      }),
    );
  });

  it('adding a requirement never turns a non-match into a match (requirements are ANDed)', () => {
    const requirement = fc.record({
      key,
      operator: fc.constantFrom<'In' | 'NotIn' | 'Exists' | 'DoesNotExist'>(
        'In',
        'NotIn',
        'Exists',
        'DoesNotExist',
      ),
      values: fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 1, maxLength: 2 }),
    });
    const wellFormed = requirement.map((r) =>
      r.operator === 'Exists' || r.operator === 'DoesNotExist' ? { key: r.key, operator: r.operator } : r,
    );
    fc.assert(
      fc.property(labels, fc.array(wellFormed, { maxLength: 4 }), wellFormed, (l, reqs, extra) => {
        const before = matchesSelector(l, { matchExpressions: reqs });
        const after = matchesSelector(l, { matchExpressions: [...reqs, extra] });
        const alone = matchesSelector(l, { matchExpressions: [extra] });
        return after === (before && alone);
      }),
    );
  });
});
