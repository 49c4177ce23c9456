import { KubeConfig, V1Lease, V1LeaseSpec, V1MicroTime } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import winston from 'winston';
import {
  decideLease,
  electionTiming,
  LeaderElectionError,
  LeaderElector,
  leaseRecordOf,
  nextLeaseSpec,
  observeLease,
  releasedLeaseSpec,
  type LeaseDecisionInput,
  type LeaseRecord,
} from './leader.ts';

const me = 'replica-a';
const other = 'replica-b';

const record = (overrides: Partial<LeaseRecord> = {}): LeaseRecord => ({
  holderIdentity: other,
  leaseDurationSeconds: 15,
  acquireTime: '2026-11-26T10:00:00.000000Z',
  renewTime: '2026-11-26T10:00:10.000000Z',
  leaseTransitions: 3,
  ...overrides,
});

const input = (overrides: Partial<LeaseDecisionInput> & { rec?: Partial<LeaseRecord>; seenAt?: number }) => ({
  observation: { record: record(overrides.rec), firstObservedAtMs: overrides.seenAt ?? 1_000 },
  identity: me,
  leading: false,
  nowMs: 2_000,
  defaultLeaseDurationMs: 15_000,
  ...overrides,
});

describe('decideLease', () => {
  it('creates an absent Lease', () => {
    expect(decideLease(input({ observation: undefined }))).toEqual({ kind: 'create' });
  });

  it('waits on another holder until the lease duration has passed since the record was first seen', () => {
    expect(decideLease(input({ seenAt: 1_000, nowMs: 2_000 }))).toEqual({
      kind: 'wait',
      holder: other,
      expiresInMs: 14_000,
    });
    expect(decideLease(input({ seenAt: 1_000, nowMs: 15_999 }))).toMatchObject({
      kind: 'wait',
      expiresInMs: 1,
    });
  });

  it('takes over an expired Lease exactly at expiry, by the local clock', () => {
    expect(decideLease(input({ seenAt: 1_000, nowMs: 16_000 }))).toEqual({ kind: 'acquire' });
    expect(decideLease(input({ seenAt: 1_000, nowMs: 60_000 }))).toEqual({ kind: 'acquire' });
  });

  it('ignores the remote renewTime, so a skewed clock neither steals nor blocks a Lease', () => {
    // The holder's clock is a day behind: its renewTime looks ancient, but we saw this record only 1 s ago.
    const stale = { renewTime: '2026-11-25T10:00:00.000000Z' };
    expect(decideLease(input({ rec: stale, seenAt: 1_000, nowMs: 2_000 }))).toMatchObject({ kind: 'wait' });
    // The holder's clock is a day ahead, but the record has not changed for longer than the lease duration.
    const future = { renewTime: '2026-11-27T10:00:00.000000Z' };
    expect(decideLease(input({ rec: future, seenAt: 1_000, nowMs: 16_000 }))).toEqual({ kind: 'acquire' });
  });

  it("uses the record's leaseDurationSeconds, and the default when the record has none or a bad one", () => {
    expect(decideLease(input({ rec: { leaseDurationSeconds: 60 }, nowMs: 16_000 }))).toMatchObject({
      kind: 'wait',
      expiresInMs: 45_000,
    });
    for (const bad of [undefined, 0, -5, 1.5]) {
      expect(
        decideLease(
          input({ rec: { leaseDurationSeconds: bad }, defaultLeaseDurationMs: 4_000, nowMs: 5_000 }),
        ),
      ).toEqual({ kind: 'acquire' });
      expect(
        decideLease(
          input({ rec: { leaseDurationSeconds: bad }, defaultLeaseDurationMs: 4_000, nowMs: 4_000 }),
        ),
      ).toMatchObject({ kind: 'wait', expiresInMs: 1_000 });
    }
  });

  it('takes a released Lease (no holder) at once, without waiting for it to expire', () => {
    expect(decideLease(input({ rec: { holderIdentity: undefined }, seenAt: 2_000, nowMs: 2_000 }))).toEqual({
      kind: 'acquire',
    });
  });

  it('renews a Lease that names us, whether or not we already knew we lead', () => {
    expect(decideLease(input({ rec: { holderIdentity: me }, leading: true }))).toEqual({ kind: 'renew' });
    expect(decideLease(input({ rec: { holderIdentity: me }, leading: false }))).toEqual({ kind: 'renew' });
  });

  it('steps down when leading and the Lease names someone else, is free, or is gone: never re-acquires silently', () => {
    expect(decideLease(input({ leading: true }))).toEqual({ kind: 'lost', holder: other });
    // Even an expired record of another holder: someone else held it in between.
    expect(decideLease(input({ leading: true, seenAt: 0, nowMs: 100_000 }))).toEqual({
      kind: 'lost',
      holder: other,
    });
    expect(decideLease(input({ leading: true, rec: { holderIdentity: undefined } }))).toEqual({
      kind: 'lost',
      holder: undefined,
    });
    expect(decideLease(input({ leading: true, observation: undefined }))).toEqual({
      kind: 'lost',
      holder: undefined,
    });
  });
});

describe('observeLease', () => {
  it('keeps the first observation time while the record is unchanged', () => {
    const first = observeLease(undefined, record(), 1_000);
    expect(first.firstObservedAtMs).toBe(1_000);
    expect(observeLease(first, record(), 9_000).firstObservedAtMs).toBe(1_000);
  });

  it('restarts the clock on any change of the record', () => {
    const first = observeLease(undefined, record(), 1_000);
    const changes: Partial<LeaseRecord>[] = [
      { renewTime: '2026-11-26T10:00:12.000000Z' },
      { holderIdentity: me },
      { holderIdentity: undefined },
      { leaseDurationSeconds: 1 },
      { leaseTransitions: 4 },
      { acquireTime: '2026-11-26T10:00:11.000000Z' },
    ];
    for (const change of changes) {
      expect(observeLease(first, record(change), 9_000).firstObservedAtMs).toBe(9_000);
    }
  });
});

describe('leaseRecordOf', () => {
  it('reads MicroTimes sent as strings or Dates, and treats an empty holder as free', () => {
    const lease = new V1Lease();
    lease.spec = Object.assign(new V1LeaseSpec(), {
      holderIdentity: '',
      leaseDurationSeconds: 4,
      renewTime: '2026-11-26T10:00:12.123456Z' as unknown as V1MicroTime,
      acquireTime: new V1MicroTime(Date.parse('2026-11-26T10:00:00.500Z')),
    });
    expect(leaseRecordOf(lease)).toEqual({
      holderIdentity: undefined,
      leaseDurationSeconds: 4,
      renewTime: '2026-11-26T10:00:12.123456Z',
      acquireTime: '2026-11-26T10:00:00.500000Z',
      leaseTransitions: 0,
    });
    expect(leaseRecordOf(new V1Lease()).holderIdentity).toBeUndefined();
  });
});

describe('nextLeaseSpec and releasedLeaseSpec', () => {
  const now = Date.parse('2026-11-26T12:00:00.250Z');
  const json = (spec: V1LeaseSpec): unknown => JSON.parse(JSON.stringify(spec));

  it('creates with zero transitions and acquireTime = renewTime = now, in MicroTime format', () => {
    expect(json(nextLeaseSpec('create', undefined, me, 4, now))).toEqual({
      holderIdentity: me,
      leaseDurationSeconds: 4,
      acquireTime: '2026-11-26T12:00:00.250000Z',
      renewTime: '2026-11-26T12:00:00.250000Z',
      leaseTransitions: 0,
    });
  });

  it('counts a transition and resets acquireTime when taking over from another holder', () => {
    expect(json(nextLeaseSpec('acquire', record(), me, 4, now))).toEqual({
      holderIdentity: me,
      leaseDurationSeconds: 4,
      acquireTime: '2026-11-26T12:00:00.250000Z',
      renewTime: '2026-11-26T12:00:00.250000Z',
      leaseTransitions: 4,
    });
  });

  it('keeps acquireTime and the transition count on renewal', () => {
    expect(json(nextLeaseSpec('renew', record({ holderIdentity: me }), me, 4, now))).toEqual({
      holderIdentity: me,
      leaseDurationSeconds: 4,
      acquireTime: '2026-11-26T10:00:00.000000Z',
      renewTime: '2026-11-26T12:00:00.250000Z',
      leaseTransitions: 3,
    });
  });

  it('releases with no holder and a one-second duration, keeping the transition count', () => {
    expect(json(releasedLeaseSpec(record({ holderIdentity: me }), now))).toEqual({
      leaseDurationSeconds: 1,
      acquireTime: '2026-11-26T12:00:00.250000Z',
      renewTime: '2026-11-26T12:00:00.250000Z',
      leaseTransitions: 3,
    });
  });
});

describe('electionTiming and the LeaderElector constructor', () => {
  it("defaults to client-go's 15 s / 10 s / 2 s", () => {
    expect(electionTiming({})).toEqual({
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
    });
  });

  it('refuses durations that could let two replicas lead at once, or that a Lease cannot carry', () => {
    const bad = [
      { leaseDurationMs: 4_000, renewDeadlineMs: 4_000 },
      { leaseDurationMs: 4_000, renewDeadlineMs: 5_000 },
      { leaseDurationMs: 4_000, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 },
      { leaseDurationMs: 4_500, renewDeadlineMs: 2_000, retryPeriodMs: 500 },
      { leaseDurationMs: 0 },
      { retryPeriodMs: -1 },
      { retryPeriodMs: Number.NaN },
    ];
    for (const timing of bad) {
      expect(() => electionTiming(timing), JSON.stringify(timing)).toThrow(LeaderElectionError);
    }
  });

  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromClusterAndUser(
    { name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: false },
    { name: 'u' },
  );
  const base = () => ({
    kubeConfig,
    namespace: 'ns',
    name: 'strongroom-operator',
    identity: me,
    logger: winston.createLogger({ silent: true }),
    onStartedLeading: () => undefined,
    onStoppedLeading: () => undefined,
  });

  it('refuses an empty identity, Lease name or namespace and bad timing', () => {
    expect(() => new LeaderElector({ ...base(), identity: '' })).toThrow(LeaderElectionError);
    expect(() => new LeaderElector({ ...base(), name: '' })).toThrow(LeaderElectionError);
    expect(() => new LeaderElector({ ...base(), namespace: '' })).toThrow(LeaderElectionError);
    expect(() => new LeaderElector({ ...base(), renewDeadlineMs: 20_000 })).toThrow(/renewDeadlineMs/);
    const error = (() => {
      try {
        new LeaderElector({ ...base(), kubeConfig: new KubeConfig() });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(LeaderElectionError);
    expect((error as Error).cause).toBeInstanceOf(Error);
  });

  it('stops cleanly before it was started, and cannot be started afterwards', async () => {
    let stopped = 0;
    const elector = new LeaderElector({
      ...base(),
      onStoppedLeading: () => {
        stopped++;
      },
    });
    await elector.stop();
    expect(stopped).toBe(0);
    expect(elector.isLeader()).toBe(false);
    expect(() => {
      elector.start();
    }).toThrow(LeaderElectionError);
  });
});
