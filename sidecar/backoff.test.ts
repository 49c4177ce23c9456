import { describe, expect, it } from 'vitest';
import { backoffDelay, pause } from './backoff.ts';

describe('backoffDelay', () => {
  const policy = { baseMs: 500, maxMs: 30_000 };
  it('doubles from the base up to the cap, jittered between half and all of it', () => {
    expect(backoffDelay(1, policy, () => 0)).toBe(250);
    expect(backoffDelay(1, policy, () => 1)).toBe(500);
    expect(backoffDelay(3, policy, () => 1)).toBe(2000);
    expect(backoffDelay(50, policy, () => 1)).toBe(30_000);
    expect(backoffDelay(50, policy, () => 0)).toBe(15_000);
    expect(backoffDelay(0, policy, () => 1)).toBe(500);
  });
});

describe('pause', () => {
  it('resolves early when aborted', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const waiting = pause(60_000, controller.signal);
    controller.abort();
    await waiting;
    expect(Date.now() - started).toBeLessThan(60_000);
  });
});
