import { describe, expect, it } from 'vitest';
import { RevocationBus, type Revocation } from './bus.ts';

const base = {
  reason: 'grant-expired' as const,
  artifact: { namespace: 'ml', name: 'resnet' },
  subjects: [{ namespace: 'ml', serviceAccount: 'trainer' }],
  versions: [],
  message: 'expired',
};

describe('RevocationBus', () => {
  it('delivers every event to every subscriber, in order, with increasing sequence numbers', () => {
    const bus = new RevocationBus();
    const a: Revocation[] = [];
    const b: Revocation[] = [];
    bus.subscribe((r) => a.push(r));
    bus.subscribe((r) => b.push(r));
    bus.publish(base);
    bus.publish({ ...base, reason: 'grant-deleted' });
    expect(a.map((r) => [r.seq, r.reason])).toEqual([
      [1, 'grant-expired'],
      [2, 'grant-deleted'],
    ]);
    expect(b).toEqual(a);
    expect(Object.isFrozen(a[0])).toBe(true);
  });

  it('stops delivering after unsubscribe', () => {
    const bus = new RevocationBus();
    const seen: number[] = [];
    const { unsubscribe } = bus.subscribe((r) => seen.push(r.seq));
    bus.publish(base);
    unsubscribe();
    bus.publish(base);
    expect(seen).toEqual([1]);
  });

  it('a throwing subscriber does not keep the event from the others, and the failure is reported', () => {
    const bus = new RevocationBus();
    const seen: number[] = [];
    bus.subscribe(() => {
      throw new Error('boom');
    });
    bus.subscribe((r) => seen.push(r.seq));
    expect(() => bus.publish(base)).toThrow(AggregateError);
    expect(seen).toEqual([1]);
  });

  it('replays what a resuming subscriber missed, and says when the ring no longer has it', () => {
    const bus = new RevocationBus({ capacity: 3 });
    for (let i = 0; i < 5; i++) bus.publish(base);
    const seen: number[] = [];
    const resumed = bus.subscribe((r) => seen.push(r.seq), 3);
    expect(seen).toEqual([4, 5]);
    expect(resumed.missed).toBe(false);
    const late: number[] = [];
    const tooOld = bus.subscribe((r) => late.push(r.seq), 1);
    expect(late).toEqual([3, 4, 5]);
    expect(tooOld.missed).toBe(true);
    expect(bus.lastSeq()).toBe(5);
  });
});
