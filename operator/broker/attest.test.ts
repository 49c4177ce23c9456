import { describe, expect, it } from 'vitest';
import { tokenExpiresAt } from './attest.ts';

const jwt = (claims: unknown): string =>
  ['e30', Buffer.from(JSON.stringify(claims)).toString('base64url'), 'sig'].join('.');

describe('tokenExpiresAt', () => {
  it('reads the exp claim', () => {
    expect(tokenExpiresAt(jwt({ exp: 1_900_000_000 }))?.toISOString()).toBe('2030-03-17T17:46:40.000Z');
  });

  it.each([
    ['no payload', 'garbage'],
    ['a payload that is not JSON', 'a.b.c'],
    ['no exp', jwt({ sub: 'x' })],
    ['a string exp', jwt({ exp: '1900000000' })],
  ])('is null for %s (only the broker cap applies)', (_what, token) => {
    expect(tokenExpiresAt(token)).toBeNull();
  });
});
