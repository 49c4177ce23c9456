import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WatchRevocationsResponse } from '../../proto/generated/strongroom/v1/WatchRevocationsResponse.ts';
import { RevocationBus, type RevocationInput } from '../revocation/bus.ts';
import { BrokerError } from './errors.ts';
import { concerns, DeliveredRevocations, LeaseTracker, RevocationFeed } from './revocation-feed.ts';

const reader = { namespace: 'ml-prod', serviceAccount: 'reader', podUid: 'pod-1' };
const grantExpired = (subjects = [{ namespace: 'ml-prod', serviceAccount: 'reader' }]): RevocationInput => ({
  reason: 'grant-expired',
  artifact: { namespace: 'ml-prod', name: 'resnet' },
  grant: { namespace: 'ml-prod', name: 'g', uid: 'u' },
  subjects,
  versions: [],
  message: 'expired',
});

function sink() {
  const messages: WatchRevocationsResponse[] = [];
  return { messages, write: (m: WatchRevocationsResponse) => messages.push(m) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('concerns', () => {
  it('matches the subject, or an artifact the pod holds an unexpired lease on', () => {
    let now = 0;
    const leases = new LeaseTracker(() => now);
    const bus = new RevocationBus();
    const named = bus.publish(grantExpired());
    const other = bus.publish(grantExpired([{ namespace: 'ml-prod', serviceAccount: 'other' }]));
    const everyone = bus.publish({ ...grantExpired([]), reason: 'artifact-deleted' });
    expect(concerns(named, reader, leases)).toBe(true);
    expect(concerns(other, reader, leases)).toBe(false);
    expect(concerns(everyone, reader, leases)).toBe(false);
    leases.record('pod-1', { namespace: 'ml-prod', name: 'resnet' }, new Date(1000));
    expect(concerns(everyone, reader, leases)).toBe(true);
    expect(concerns(everyone, { ...reader, podUid: 'pod-2' }, leases)).toBe(false);
    now = 1000;
    expect(concerns(everyone, reader, leases)).toBe(false);
    leases.prune();
    now = 0;
    expect(concerns(everyone, reader, leases)).toBe(false);
  });
});

describe('RevocationFeed', () => {
  it('sends a heartbeat at once and every interval, then the revocations that concern the caller only', () => {
    vi.useFakeTimers();
    const bus = new RevocationBus();
    const feed = new RevocationFeed({ bus, leases: new LeaseTracker(), heartbeatMs: 1000 });
    const s = sink();
    const end = feed.open(reader, { epoch: '' }, s);
    expect(s.messages[0]?.heartbeat?.epoch).toBe(feed.epoch);
    expect(s.messages[0]?.heartbeat?.interval).toEqual({ seconds: '1', nanos: 0 });
    bus.publish(grantExpired([{ namespace: 'ml-prod', serviceAccount: 'other' }]));
    bus.publish(grantExpired());
    expect(s.messages).toHaveLength(2);
    const r = s.messages[1]?.revocation;
    expect(r).toMatchObject({
      seq: '2',
      epoch: feed.epoch,
      reason: 'REVOCATION_REASON_GRANT_EXPIRED',
      artifact: { namespace: 'ml-prod', name: 'resnet' },
      grant: { name: 'g' },
    });
    vi.advanceTimersByTime(2000);
    expect(s.messages.filter((m) => m.heartbeat)).toHaveLength(3);
    expect(s.messages.at(-1)?.heartbeat?.lastSeq).toBe('2');
    end();
    bus.publish(grantExpired());
    vi.advanceTimersByTime(5000);
    expect(s.messages).toHaveLength(4);
  });

  it('replays what was missed after after_seq in the same epoch', () => {
    const bus = new RevocationBus();
    const feed = new RevocationFeed({ bus, leases: new LeaseTracker() });
    bus.publish(grantExpired());
    bus.publish(grantExpired());
    bus.publish(grantExpired());
    const s = sink();
    feed.open(reader, { afterSeq: '1', epoch: feed.epoch }, s)();
    expect(s.messages.filter((m) => m.revocation).map((m) => m.revocation?.seq)).toEqual(['2', '3']);
    expect(s.messages.some((m) => m.resync)).toBe(false);
  });

  it('sends a Resync first for another epoch, and when the ring dropped events after after_seq', () => {
    const bus = new RevocationBus({ capacity: 2 });
    const feed = new RevocationFeed({ bus, leases: new LeaseTracker() });
    for (let i = 0; i < 5; i++) bus.publish(grantExpired());
    const foreign = sink();
    feed.open(reader, { afterSeq: '4', epoch: 'old-epoch' }, foreign)();
    expect(foreign.messages[0]?.resync).toMatchObject({ epoch: feed.epoch, lastSeq: '5' });
    expect(foreign.messages.some((m) => m.revocation)).toBe(false);
    const dropped = sink();
    feed.open(reader, { afterSeq: '1', epoch: feed.epoch }, dropped)();
    expect(dropped.messages.some((m) => m.resync?.message?.includes('dropped'))).toBe(true);
  });

  it('refuses after_seq without its epoch, and an out-of-range after_seq', () => {
    const feed = new RevocationFeed({ bus: new RevocationBus(), leases: new LeaseTracker() });
    expect(() => feed.open(reader, { afterSeq: '1', epoch: '' }, sink())).toThrow(BrokerError);
    expect(() => feed.open(reader, { afterSeq: '99999999999999999999', epoch: feed.epoch }, sink())).toThrow(
      /out of range/,
    );
  });
});

describe('DeliveredRevocations', () => {
  it('keeps what was sent to each pod for 15 minutes, and forgets the oldest first', () => {
    let now = 0;
    const delivered = new DeliveredRevocations(() => now);
    const bus = new RevocationBus();
    const first = bus.publish(grantExpired());
    const second = bus.publish(grantExpired());
    delivered.record('pod-1', first, new Date(5));
    now = 10 * 60_000;
    delivered.record('pod-1', second, new Date(6));
    expect(delivered.find('pod-1', first.seq)).toMatchObject({ seq: first.seq, endedAt: new Date(5) });
    expect(delivered.find('pod-2', first.seq)).toBeUndefined();
    now = 15 * 60_000;
    expect(delivered.find('pod-1', first.seq)).toBeUndefined();
    expect(delivered.find('pod-1', second.seq)?.endedAt).toEqual(new Date(6));
  });

  it('records each revocation a stream sends, with the ended_at it sent', () => {
    const bus = new RevocationBus();
    const feed = new RevocationFeed({
      bus,
      leases: new LeaseTracker(),
      heartbeatMs: 60_000,
      endedAt: (r) => new Date(r.at.getTime() - 1000),
    });
    const s = sink();
    const end = feed.open(reader, { epoch: '' }, s);
    const published = bus.publish({ ...grantExpired(), at: new Date(10_000) });
    bus.publish(grantExpired([{ namespace: 'ml-prod', serviceAccount: 'other' }]));
    end();
    expect(s.messages[1]?.revocation?.endedAt).toEqual({ seconds: '9', nanos: 0 });
    expect(feed.delivered.find('pod-1', published.seq)?.endedAt).toEqual(new Date(9000));
    expect(feed.delivered.find('pod-1', published.seq + 1)).toBeUndefined();
  });
});
