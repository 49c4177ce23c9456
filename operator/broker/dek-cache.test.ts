import { describe, expect, it } from 'vitest';
import { DekCache, MAX_DEK_CACHE_TTL_MS } from './dek-cache.ts';

function clock(start = 1000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('DekCache', () => {
  it('returns a copy within the TTL and nothing after it, zeroing the expired bytes', () => {
    const c = clock();
    const cache = new DekCache({ ttlMs: 5000, now: c.now });
    const dek = Buffer.alloc(32, 7);
    cache.set('a', dek);
    dek.fill(0); // the caller zeroing its own buffer does not touch the cached copy
    const got = cache.get('a');
    expect(got).toEqual(Buffer.alloc(32, 7));
    got?.fill(1); // nor does zeroing what was handed out
    expect(cache.get('a')).toEqual(Buffer.alloc(32, 7));
    c.advance(5000);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('holds at most `capacity` entries, evicting the oldest', () => {
    const cache = new DekCache({ ttlMs: 60_000, capacity: 2 });
    cache.set('a', Buffer.alloc(32, 1));
    cache.set('b', Buffer.alloc(32, 2));
    cache.set('c', Buffer.alloc(32, 3));
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('c')).toEqual(Buffer.alloc(32, 3));
  });

  it('caches nothing with a TTL of 0, and refuses TTLs beyond 60 s or negative', () => {
    const cache = new DekCache({ ttlMs: 0 });
    cache.set('a', Buffer.alloc(32, 1));
    expect(cache.get('a')).toBeUndefined();
    expect(() => new DekCache({ ttlMs: MAX_DEK_CACHE_TTL_MS + 1 })).toThrow(RangeError);
    expect(() => new DekCache({ ttlMs: -1 })).toThrow(RangeError);
  });

  it('invalidates by prefix and clears everything', () => {
    const cache = new DekCache({ ttlMs: 60_000 });
    cache.set('uid1/v1/x', Buffer.alloc(32, 1));
    cache.set('uid1/v2/x', Buffer.alloc(32, 2));
    cache.set('uid2/v1/x', Buffer.alloc(32, 3));
    cache.invalidate('uid1/');
    expect(cache.get('uid1/v1/x')).toBeUndefined();
    expect(cache.get('uid2/v1/x')).toBeDefined();
    cache.clear();
    expect(cache.size).toBe(0);
  });
});
