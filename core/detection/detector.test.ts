import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validateEvent, type AuditEvent } from '../audit/event.ts';
import { alertEvent, type Alert } from './alert.ts';
import { parseDetectionConfig } from './config.ts';
import { AnomalyDetector } from './detector.ts';
import type { DetectorEntry } from './observation.ts';
import { severityAtLeast } from './severity.ts';
import { brokerDenial, LogBuilder, ORIGIN, releaseEvent, T0, type ReleaseSpec } from './testdata/entries.ts';

/** Every rule off but the ones named (with their settings). */
function only(settings: Record<string, string>): Record<string, string> {
  const data: Record<string, string> = {
    'release-rate-spike.enabled': 'false',
    'denial-burst.enabled': 'false',
    'first-restricted-access.enabled': 'false',
    'bulk-access.enabled': 'false',
    'cross-environment.enabled': 'false',
    'off-hours.enabled': 'false',
  };
  for (const key of Object.keys(settings)) {
    const rule = key.split('.')[0] ?? '';
    if (`${rule}.enabled` in data) data[`${rule}.enabled`] = 'true';
  }
  return { ...data, ...settings };
}

function detect(config: Record<string, string>, entries: readonly DetectorEntry[]): Alert[] {
  const detector = new AnomalyDetector(parseDetectionConfig(config));
  return entries.flatMap((e) => detector.observe(e));
}

const seqsOf = (a: Alert): number[] => a.evidence.map((e) => e.seq);

describe('release-rate-spike', () => {
  const config = only({
    'release-rate-spike.window': '1m',
    'release-rate-spike.factor': '5',
    'release-rate-spike.minCount': '5',
    'release-rate-spike.minHistory': '3',
    'release-rate-spike.smoothing': '0.5',
  });

  it('fires once when a window reaches factor × the EWMA baseline, with the numbers and the sentence', () => {
    const log = new LogBuilder();
    // Windows 0..3: 1, 2, 1, 1 releases (baseline 1 → 1.5 → 1.25 → 1.125 after window 3 closes).
    for (const [w, n] of [
      [0, 1],
      [1, 2],
      [2, 1],
      [3, 1],
    ] as const) {
      for (let i = 0; i < n; i++) log.add(T0 + w * 60_000 + i * 1000, releaseEvent());
    }
    const start = log.entries.length;
    for (let i = 0; i < 8; i++) log.add(T0 + 4 * 60_000 + i * 100, releaseEvent());
    const alerts = detect(config, log.entries);
    expect(alerts).toHaveLength(1);
    const [alert] = alerts as [Alert];
    // threshold = max(5, ceil(5 × 1.125)) = 6.
    expect(alert).toMatchObject({
      rule: 'release-rate-spike',
      severity: 'high',
      identity: { namespace: 'ml-prod', serviceAccount: 'trainer' },
      artifact: null,
      observed: 6,
      baseline: 1,
      threshold: 6,
      windowMs: 60_000,
      from: T0 + 4 * 60_000,
      to: T0 + 4 * 60_000 + 500,
      message:
        'sa ml-prod/trainer was released 6 keys in 60 s; its baseline is 1.1 per 60 s (threshold 5x, at least 5)',
    });
    expect(seqsOf(alert)).toEqual([0, 1, 2, 3, 4, 5].map((i) => start + i));
    expect(alert.id).toMatch(/^a-[0-9a-f]{16}$/);
  });

  it('counts empty windows as zeros (the baseline decays) and needs minHistory windows first', () => {
    const log = new LogBuilder();
    for (let i = 0; i < 10; i++) log.add(T0 + i * 100, releaseEvent()); // window 0: 10, no history yet
    expect(detect(config, log.entries)).toEqual([]);
    // Window 5 after four empty ones: baseline 10 × 0.5^4 = 0.625, threshold max(5, ceil(3.125)) = 5.
    for (let i = 0; i < 5; i++) log.add(T0 + 5 * 60_000 + i * 100, releaseEvent());
    const alerts = detect(config, log.entries);
    expect(alerts.map((a) => [a.observed, a.baseline, a.threshold])).toEqual([[5, 1, 5]]);
  });

  it('never counts denials and keeps identities apart', () => {
    const log = new LogBuilder();
    for (let w = 0; w < 4; w++) log.add(T0 + w * 60_000, releaseEvent({ sa: 'a' }));
    for (let i = 0; i < 20; i++) log.add(T0 + 4 * 60_000 + i, releaseEvent({ sa: 'a', decision: 'deny' }));
    for (let i = 0; i < 20; i++) log.add(T0 + 4 * 60_000 + i, releaseEvent({ sa: 'b' }));
    expect(detect(config, log.entries)).toEqual([]);
  });
});

describe('denial-burst', () => {
  const config = only({
    'denial-burst.perIdentity': '3',
    'denial-burst.perArtifact': '4',
    'denial-burst.window': '10s',
  });

  it('fires for an identity refused perIdentity times within the window, once per window', () => {
    const log = new LogBuilder();
    for (let i = 0; i < 6; i++)
      log.add(T0 + i * 1000, releaseEvent({ decision: 'deny', artifact: `m${String(i)}` }));
    const alerts = detect(config, log.entries);
    expect(alerts.map((a) => [a.rule, a.identity?.serviceAccount, a.artifact, seqsOf(a)])).toEqual([
      ['denial-burst', 'trainer', null, [0, 1, 2]],
    ]);
    expect(alerts[0]?.message).toBe(
      'sa ml-prod/trainer was refused 3 times in 10 s (threshold 3); the last refusal: no-grant',
    );
  });

  it('fires again after the window when the burst goes on', () => {
    const log = new LogBuilder();
    for (let i = 0; i < 20; i++)
      log.add(T0 + i * 1000, releaseEvent({ decision: 'deny', artifact: `m${String(i)}` }));
    const alerts = detect(config, log.entries);
    expect(alerts.map((a) => a.to - T0)).toEqual([2000, 12_000]);
  });

  it('does not fire for denials spread wider than the window', () => {
    const log = new LogBuilder();
    for (let i = 0; i < 10; i++)
      log.add(T0 + i * 5000, releaseEvent({ decision: 'deny', artifact: `m${String(i)}` }));
    expect(detect(config, log.entries)).toEqual([]);
  });

  it('fires for an artifact refused to many identities, and ignores the quarantined reason', () => {
    const log = new LogBuilder();
    log.add(T0, releaseEvent({ sa: 'q', decision: 'deny', reason: 'quarantined' }));
    for (let i = 0; i < 4; i++) log.add(T0 + i, releaseEvent({ sa: `sa${String(i)}`, decision: 'deny' }));
    const alerts = detect(config, log.entries);
    expect(alerts.map((a) => [a.identity, a.artifact, seqsOf(a)])).toEqual([
      [null, { namespace: 'ml-prod', name: 'resnet' }, [1, 2, 3, 4]],
    ]);
  });

  it('ignores quarantines-unknown refusals by default (the broker refuses everyone while it cannot tell)', () => {
    const log = new LogBuilder();
    for (let i = 0; i < 10; i++)
      log.add(
        T0 + i,
        releaseEvent({ sa: `sa${String(i % 2)}`, decision: 'deny', reason: 'quarantines-unknown' }),
      );
    expect(detect(config, log.entries)).toEqual([]);
    const counted = detect({ ...config, 'denial-burst.ignoreReasons': 'quarantined' }, log.entries);
    expect(counted.map((a) => [a.identity?.serviceAccount ?? null, a.observed])).toEqual([
      [null, 4],
      ['sa0', 3],
      ['sa1', 3],
    ]);
  });

  it('counts verified broker-access denials, never what an unverified caller claims', () => {
    const log = new LogBuilder();
    for (let i = 0; i < 5; i++) log.add(T0 + i, brokerDenial({ verified: false, sa: 'victim' }));
    expect(detect(config, log.entries)).toEqual([]);
    for (let i = 0; i < 3; i++) log.add(T0 + 10 + i, brokerDenial({ verified: true, sa: 'victim' }));
    expect(detect(config, log.entries).map((a) => [a.identity?.serviceAccount, seqsOf(a)])).toEqual([
      ['victim', [5, 6, 7]],
    ]);
  });
});

describe('first-restricted-access', () => {
  const config = only({ 'first-restricted-access.window': '1h' });

  it('fires on the first release of a restricted artifact to an identity, not on later versions or denials', () => {
    const log = new LogBuilder();
    log.add(T0, releaseEvent({ classification: 'restricted', decision: 'deny' }));
    log.add(T0 + 1, releaseEvent({ classification: 'confidential' }));
    log.add(T0 + 2, releaseEvent({ classification: 'restricted', version: 'v1' }));
    log.add(T0 + 3, releaseEvent({ classification: 'restricted', version: 'v2' }));
    log.add(T0 + 2 * 3600_000, releaseEvent({ classification: 'restricted', version: 'v3' }));
    const alerts = detect(config, log.entries);
    expect(alerts.map((a) => [a.identity?.serviceAccount, a.artifact?.name, seqsOf(a)])).toEqual([
      ['trainer', 'resnet', [2]],
    ]);
    expect(alerts[0]?.message).toBe(
      'sa ml-prod/trainer was released a key of restricted artifact ml-prod/resnet (version v1) for the first time this detector has seen',
    );
  });

  it('does not remember a first touch suppressed by the cooldown: its next release after the window alerts', () => {
    const log = new LogBuilder();
    log.add(T0, releaseEvent({ classification: 'restricted', artifact: 'harmless' }));
    log.add(T0 + 1000, releaseEvent({ classification: 'restricted', artifact: 'crown' }));
    log.add(T0 + 2000, releaseEvent({ classification: 'restricted', artifact: 'harmless' }));
    log.add(T0 + 3600_000, releaseEvent({ classification: 'restricted', artifact: 'harmless' }));
    log.add(T0 + 3600_001, releaseEvent({ classification: 'restricted', artifact: 'crown' }));
    log.add(T0 + 3600_002, releaseEvent({ classification: 'restricted', artifact: 'crown' }));
    const alerts = detect(config, log.entries);
    expect(alerts.map((a) => [a.artifact?.name, seqsOf(a)])).toEqual([
      ['harmless', [0]],
      ['crown', [4]],
    ]);
  });

  it('a suppressed first touch stays first through several cooldowns', () => {
    const log = new LogBuilder();
    log.add(T0, releaseEvent({ classification: 'restricted', artifact: 'a' }));
    log.add(T0 + 1000, releaseEvent({ classification: 'restricted', artifact: 'b' }));
    log.add(T0 + 3600_000, releaseEvent({ classification: 'restricted', artifact: 'c' }));
    log.add(T0 + 3600_001, releaseEvent({ classification: 'restricted', artifact: 'b' }));
    log.add(T0 + 7200_000, releaseEvent({ classification: 'restricted', artifact: 'b' }));
    log.add(T0 + 7200_001, releaseEvent({ classification: 'restricted', artifact: 'c' }));
    expect(detect(config, log.entries).map((a) => a.artifact?.name)).toEqual(['a', 'c', 'b']);
  });

  it('forgets identities idle longer than detector.idle: a release after that is a first again', () => {
    const log = new LogBuilder();
    log.add(T0, releaseEvent({ classification: 'restricted' }));
    // 300 other entries later (past the sweep interval), 2 h on.
    for (let i = 0; i < 300; i++) log.add(T0 + 2 * 3600_000 + i, releaseEvent({ sa: 'other' }));
    log.add(T0 + 2 * 3600_000 + 500, releaseEvent({ classification: 'restricted' }));
    expect(detect({ ...config, 'detector.idle': '1h' }, log.entries).map((a) => a.to - T0)).toEqual([
      0,
      2 * 3600_000 + 500,
    ]);
    expect(detect(config, log.entries)).toHaveLength(1);
  });
});

describe('bulk-access', () => {
  const config = only({
    'bulk-access.window': '5m',
    'bulk-access.distinctArtifacts': '3',
    'bulk-access.distinctVersions': '4',
  });

  it('fires for distinct artifacts within the window, citing the latest release of each', () => {
    const log = new LogBuilder();
    log.add(T0, releaseEvent({ artifact: 'a' }));
    log.add(T0 + 1, releaseEvent({ artifact: 'a' }));
    log.add(T0 + 2, releaseEvent({ artifact: 'b' }));
    log.add(T0 + 3, releaseEvent({ artifact: 'b', decision: 'deny' }));
    log.add(T0 + 4, releaseEvent({ artifact: 'c' }));
    const alerts = detect(config, log.entries);
    expect(alerts.map((a) => [a.observed, a.threshold, seqsOf(a), a.message])).toEqual([
      [
        3,
        3,
        [1, 2, 4],
        'sa ml-prod/trainer was released keys of 3 distinct artifacts in 5 min (threshold 3)',
      ],
    ]);
  });

  it('fires for distinct versions of one artifact', () => {
    const log = new LogBuilder();
    for (let v = 1; v <= 4; v++) log.add(T0 + v, releaseEvent({ version: `v${String(v)}` }));
    expect(detect(config, log.entries).map((a) => [a.observed, a.message])).toEqual([
      [4, 'sa ml-prod/trainer was released keys of 4 distinct artifact versions in 5 min (threshold 4)'],
    ]);
  });

  it('does not fire when the artifacts are spread wider than the window', () => {
    const log = new LogBuilder();
    for (let i = 0; i < 10; i++) log.add(T0 + i * 200_000, releaseEvent({ artifact: `m${String(i)}` }));
    expect(detect(config, log.entries)).toEqual([]);
  });
});

describe('cross-environment', () => {
  it('fires on a denial with a cross-environment reason, once per identity per window', () => {
    const log = new LogBuilder();
    log.add(T0, releaseEvent({ ns: 'dev', decision: 'deny', reason: 'cross-environment-not-allowed' }));
    log.add(
      T0 + 1,
      releaseEvent({ ns: 'dev', decision: 'deny', reason: 'restricted-cannot-cross-environments' }),
    );
    log.add(
      T0 + 600_000,
      releaseEvent({ ns: 'dev', decision: 'deny', reason: 'cross-environment-not-allowed' }),
    );
    log.add(T0 + 600_000, releaseEvent({ ns: 'dev', decision: 'deny', reason: 'no-grant' }));
    const alerts = detect(only({ 'cross-environment.window': '10m' }), log.entries);
    expect(alerts.map((a) => seqsOf(a))).toEqual([[0], [2]]);
    expect(alerts[0]?.message).toBe(
      'sa dev/trainer asked for artifact ml-prod/resnet (environment prod) across environments (refused: cross-environment-not-allowed)',
    );
  });

  it('keeps one cooldown per identity and target artifact: a harmless attempt does not hide another', () => {
    const log = new LogBuilder();
    const cross = { ns: 'dev', decision: 'deny', reason: 'cross-environment-not-allowed' } as const;
    log.add(T0, releaseEvent({ ...cross, artifact: 'harmless' }));
    log.add(T0 + 1, releaseEvent({ ...cross, artifact: 'crown' }));
    log.add(T0 + 2, releaseEvent({ ...cross, artifact: 'harmless' }));
    log.add(T0 + 3, releaseEvent({ ...cross, artifact: 'crown' }));
    log.add(T0 + 4, releaseEvent({ ...cross, sa: 'other', artifact: 'crown' }));
    const alerts = detect(only({ 'cross-environment.window': '10m' }), log.entries);
    expect(alerts.map((a) => [a.identity?.serviceAccount, a.artifact?.name, seqsOf(a)])).toEqual([
      ['trainer', 'harmless', [0]],
      ['trainer', 'crown', [1]],
      ['other', 'crown', [4]],
    ]);
  });

  it('compares the recorded workload environment with the artifact’s; allowed crossings only with includeAllowed', () => {
    const log = new LogBuilder();
    log.add(T0, releaseEvent({ workloadEnvironment: 'prod' }));
    log.add(T0 + 1, releaseEvent({ sa: 'a', workloadEnvironment: 'dev' }));
    log.add(T0 + 2, releaseEvent({ sa: 'b', workloadEnvironment: 'dev', decision: 'deny', reason: 'other' }));
    expect(detect(only({ 'cross-environment.window': '10m' }), log.entries).map(seqsOf)).toEqual([[2]]);
    const all = detect(only({ 'cross-environment.includeAllowed': 'true' }), log.entries);
    expect(all.map(seqsOf)).toEqual([[1], [2]]);
    expect(all[0]?.message).toBe(
      'sa ml-prod/a asked for artifact ml-prod/resnet (environment prod) from environment dev across environments (allowed by a cross-environment grant)',
    );
  });
});

describe('off-hours', () => {
  const config = only({
    'off-hours.hours': '09:00-17:00',
    'off-hours.utcOffset': '+01:00',
    'off-hours.window': '1h',
  });

  it('fires for a release outside the working hours and days in the configured offset', () => {
    const log = new LogBuilder();
    log.add(T0, releaseEvent()); // Mon 11:00 +01:00: working
    log.add(T0 + 6 * 3600_000, releaseEvent()); // Mon 17:00 +01:00: off
    log.add(T0 + 6 * 3600_000 + 1000, releaseEvent()); // same hour: de-duplicated
    log.add(T0 + 6 * 3600_000 + 1001, releaseEvent({ decision: 'deny' })); // a denial is no release
    log.add(T0 + 5 * 24 * 3600_000, releaseEvent()); // Sat 11:00: off (weekend)
    const alerts = detect(config, log.entries);
    expect(alerts.map((a) => [seqsOf(a), a.message])).toEqual([
      [
        [1],
        'sa ml-prod/trainer was released a key of ml-prod/resnet at Mon 17:00 (UTC+01:00), outside working hours 09:00-17:00 Mon,Tue,Wed,Thu,Fri',
      ],
      [
        [4],
        'sa ml-prod/trainer was released a key of ml-prod/resnet at Sat 11:00 (UTC+01:00), outside working hours 09:00-17:00 Mon,Tue,Wed,Thu,Fri',
      ],
    ]);
  });

  it('is off by default', () => {
    const log = new LogBuilder();
    log.add(T0 - 8 * 3600_000, releaseEvent()); // Mon 02:00 UTC
    expect(detect({}, log.entries)).toEqual([]);
  });

  it('takes a night shift across midnight as belonging to the day it started', () => {
    const night = only({ 'off-hours.hours': '22:00-06:00', 'off-hours.days': 'fri' });
    const log = new LogBuilder();
    const fri = Date.UTC(2026, 11, 11);
    log.add(fri + 2 * 3600_000, releaseEvent({ sa: 'c' })); // Fri 02:00: Thursday's shift, off
    log.add(fri + 23 * 3600_000, releaseEvent({ sa: 'a' })); // Fri 23:00: on shift
    log.add(fri + 26 * 3600_000, releaseEvent({ sa: 'b' })); // Sat 02:00: Friday's shift
    log.add(fri + 36 * 3600_000, releaseEvent({ sa: 'd' })); // Sat 12:00: off
    expect(detect(night, log.entries).map((a) => a.identity?.serviceAccount)).toEqual(['c', 'd']);
  });
});

describe('the detector', () => {
  it('ignores its own events, grants, heartbeats and entries without a usable time', () => {
    const detector = new AnomalyDetector(parseDetectionConfig(only({ 'denial-burst.perIdentity': '1' })));
    const log = new LogBuilder();
    const alerts = [
      ...detector.observe(log.add(T0, { type: 'heartbeat', intervalMs: 60_000 })),
      ...detector.observe({ ...log.add(T0, releaseEvent({ decision: 'deny' })), time: 'not a time' }),
    ];
    expect(alerts).toEqual([]);
    const alert = detector.observe(log.add(T0, releaseEvent({ decision: 'deny' })))[0] as Alert;
    expect(alert.rule).toBe('denial-burst');
    expect(detector.observe(log.add(T0 + 1, alertEvent(alert)))).toEqual([]);
    expect(
      detector.observe(
        log.add(T0 + 2, {
          type: 'identity-quarantined',
          identity: { namespace: 'ml-prod', serviceAccount: 'trainer' },
          actor: 'strongroom-operator',
          reason: 'AnomalyAlert',
          alertId: alert.id,
          severity: 'medium',
          detail: '',
        }),
      ),
    ).toEqual([]);
  });

  it('reads RFC 3339 times as the log writes them', () => {
    const log = new LogBuilder();
    for (let i = 0; i < 3; i++) log.add(T0 + i, releaseEvent({ decision: 'deny' }));
    const asText = log.entries.map((e) => ({ ...e, time: new Date(e.time as number).toISOString() }));
    const config = only({ 'denial-burst.perIdentity': '3' });
    expect(detect(config, asText)).toEqual(detect(config, log.entries));
    expect(detect(config, asText)).toHaveLength(1);
  });

  it('counts an entry a little behind the latest (within the smallest window) as the latest time', () => {
    const log = new LogBuilder();
    log.add(T0 + 5000, releaseEvent({ decision: 'deny' }));
    log.add(T0 + 4000, releaseEvent({ decision: 'deny' }));
    log.add(T0 + 4500, releaseEvent({ decision: 'deny' }));
    const alerts = detect(
      only({ 'denial-burst.perIdentity': '3', 'denial-burst.window': '10s' }),
      log.entries,
    );
    expect(alerts.map((a) => [seqsOf(a), a.from - T0, a.to - T0])).toEqual([[[0, 1, 2], 5000, 5000]]);
  });

  it('after one entry 2 h ahead, steady traffic is no spike: a large backward step resets the windows', () => {
    const log = new LogBuilder();
    const minute = 60_000;
    for (let i = 0; i < 15; i++) log.add(T0 + i * minute, releaseEvent());
    log.add(T0 + 15 * minute + 2 * 3600_000, releaseEvent());
    for (let i = 15; i < 120; i++) log.add(T0 + i * minute + 1, releaseEvent());
    expect(detect({}, log.entries)).toEqual([]);
    // The same log with the default release-rate-spike: the steady traffic alone would never alert either, and a
    // real burst after the step still does.
    for (let i = 0; i < 30; i++) log.add(T0 + 130 * minute + i, releaseEvent());
    expect(detect({}, log.entries).map((a) => [a.rule, a.observed])).toEqual([['release-rate-spike', 20]]);
  });

  it('keeps the first touches seen across a backward step, and drops the cooldowns', () => {
    const config = only({ 'first-restricted-access.window': '1h' });
    const log = new LogBuilder();
    log.add(T0 + 3 * 3600_000, releaseEvent({ classification: 'restricted', artifact: 'a' }));
    log.add(T0, releaseEvent({ classification: 'restricted', artifact: 'a' }));
    log.add(T0 + 1, releaseEvent({ classification: 'restricted', artifact: 'b' }));
    expect(detect(config, log.entries).map((a) => [a.artifact?.name, a.to - T0])).toEqual([
      ['a', 3 * 3600_000],
      ['b', 1],
    ]);
  });

  it('after a lift, the identity re-fetching what it had raises nothing; new releases after the grace do', () => {
    const lifted: AuditEvent = {
      type: 'identity-lifted',
      identity: { namespace: 'ml-prod', serviceAccount: 'trainer' },
      actor: 'unknown',
      reason: 'QuarantineLifted',
    };
    const hour = 3600_000;
    const artifacts = Array.from({ length: 10 }, (_, i) => `m${String(i)}`);
    const burst = (log: LogBuilder, at: number, names: readonly string[]): void => {
      names.forEach((artifact, i) => log.add(at + i * 1000, releaseEvent({ artifact })));
    };
    const log = new LogBuilder();
    burst(log, T0, artifacts);
    for (let i = 0; i < 10; i++)
      log.add(
        T0 + 60_000 + i,
        releaseEvent({ artifact: `m${String(i)}`, decision: 'deny', reason: 'quarantined' }),
      );
    const beforeLift = log.entries.length;
    log.add(T0 + hour, lifted);
    burst(log, T0 + hour + 1000, artifacts);
    // Defaults everywhere: only the first bulk alert.
    expect(detect({}, log.entries).map((a) => [a.rule, a.to - T0])).toEqual([['bulk-access', 9000]]);
    // Without the lift entry, the re-fetch is a second bulk alert (what the lift prevents).
    const unlifted = log.entries.filter((_, i) => i !== beforeLift);
    expect(detect({}, unlifted).map((a) => a.rule)).toEqual(['bulk-access', 'bulk-access']);
    // Within the grace, new artifacts still count (old ones do not): 9 new ones raise nothing, the 10th does.
    const during = new LogBuilder();
    for (const e of log.entries) during.add(e.time as number, e.event);
    burst(
      during,
      T0 + hour + 20_000,
      artifacts.map((a) => `new-${a}`),
    );
    expect(detect({}, during.entries).map((a) => [a.rule, a.observed, a.to - T0])).toEqual([
      ['bulk-access', 10, 9000],
      ['bulk-access', 10, hour + 29_000],
    ]);
    // After the grace (10 min by default), a burst counts as usual, the old artifacts too.
    const after = new LogBuilder();
    for (const e of log.entries) after.add(e.time as number, e.event);
    burst(after, T0 + hour + 11 * 60_000, artifacts);
    expect(detect({}, after.entries).map((a) => [a.rule, a.to - T0])).toEqual([
      ['bulk-access', 9000],
      ['bulk-access', hour + 11 * 60_000 + 9000],
    ]);
    expect(detect({ 'bulk-access.liftGrace': '0' }, log.entries).map((a) => a.rule)).toEqual([
      'bulk-access',
      'bulk-access',
    ]);
  });

  it('a lift starts the identity’s windows again in every rule', () => {
    const lifted: AuditEvent = {
      type: 'identity-lifted',
      identity: { namespace: 'ml-prod', serviceAccount: 'trainer' },
      actor: 'unknown',
      reason: 'QuarantineLifted',
    };
    const log = new LogBuilder();
    log.add(T0, releaseEvent({ decision: 'deny' }));
    log.add(T0 + 1, releaseEvent({ decision: 'deny' }));
    log.add(T0 + 2, lifted);
    log.add(T0 + 3, releaseEvent({ decision: 'deny' }));
    const config = only({ 'denial-burst.perIdentity': '3', 'denial-burst.perArtifact': '0' });
    expect(detect(config, log.entries)).toEqual([]);
    log.add(T0 + 4, releaseEvent({ decision: 'deny' }));
    log.add(T0 + 5, releaseEvent({ decision: 'deny' }));
    expect(detect(config, log.entries).map(seqsOf)).toEqual([[3, 4, 5]]);
  });

  it('seeds from history without alerting, so a replayed first touch is not first any more', () => {
    const config = parseDetectionConfig(only({ 'first-restricted-access.window': '1s' }));
    const detector = new AnomalyDetector(config);
    const log = new LogBuilder();
    detector.seed(log.add(T0, releaseEvent({ classification: 'restricted' })));
    expect(detector.observe(log.add(T0 + 5000, releaseEvent({ classification: 'restricted' })))).toEqual([]);
  });

  it('orders severities info < low < medium < high < critical', () => {
    expect(severityAtLeast('high', 'high')).toBe(true);
    expect(severityAtLeast('critical', 'high')).toBe(true);
    expect(severityAtLeast('medium', 'high')).toBe(false);
    expect(severityAtLeast('info', 'low')).toBe(false);
  });
});

// Properties over generated traffic.
const IDENTITIES = ['a', 'b', 'c'];
const ARTIFACTS = ['m1', 'm2', 'm3'];

const traffic = (minGapMs: number) =>
  fc.array(
    fc.record({
      gap: fc.integer({ min: minGapMs, max: 10 * minGapMs }),
      sa: fc.constantFrom(...IDENTITIES),
      artifact: fc.constantFrom(...ARTIFACTS),
      decision: fc.constantFrom<'allow' | 'deny'>('allow', 'allow', 'allow', 'deny'),
    }),
    { maxLength: 300 },
  );

function build(
  steps: readonly {
    gap: number;
    sa: string;
    artifact: string;
    decision: 'allow' | 'deny';
    extra?: ReleaseSpec;
  }[],
): DetectorEntry[] {
  const log = new LogBuilder();
  let t = T0;
  for (const s of steps) {
    t += s.gap;
    log.add(t, releaseEvent({ sa: s.sa, artifact: s.artifact, decision: s.decision, ...s.extra }));
  }
  return log.entries;
}

describe('properties', () => {
  it('normal traffic below every threshold never alerts', () => {
    // Defaults: a release-rate window of 1 min needs ≥ 20 releases; denials need 10 per minute per identity and
    // 20 per artifact; bulk needs 10 artifacts. Entries at least 6.7 s apart put at most 9 in any minute.
    fc.assert(
      fc.property(traffic(6700), (steps) => {
        expect(detect({}, build(steps))).toEqual([]);
      }),
    );
  });

  it('every alert is a valid audit event whose evidence is observed entries, the trigger last, ≤ 32', () => {
    const config = {
      'release-rate-spike.minHistory': '1',
      'release-rate-spike.minCount': '3',
      'denial-burst.perIdentity': '3',
      'denial-burst.perArtifact': '5',
      'bulk-access.distinctArtifacts': '2',
      'first-restricted-access.classifications': 'internal',
      'cross-environment.includeAllowed': 'true',
      'off-hours.enabled': 'true',
    };
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            gap: fc.integer({ min: 0, max: 120_000 }),
            sa: fc.constantFrom(...IDENTITIES),
            artifact: fc.constantFrom(...ARTIFACTS),
            decision: fc.constantFrom<'allow' | 'deny'>('allow', 'deny'),
            extra: fc.record({ workloadEnvironment: fc.constantFrom('prod', 'dev') }),
          }),
          { maxLength: 200 },
        ),
        (steps) => {
          const entries = build(steps);
          const detector = new AnomalyDetector(parseDetectionConfig(config));
          const seen = new Set<number>();
          const lastAt = new Map<string, number>();
          for (const entry of entries) {
            seen.add(entry.seq);
            for (const alert of detector.observe(entry)) {
              validateEvent(alertEvent(alert));
              expect(alert.evidence.length).toBeGreaterThan(0);
              expect(alert.evidence.length).toBeLessThanOrEqual(32);
              expect(alert.evidence.every((e) => e.origin === ORIGIN && seen.has(e.seq))).toBe(true);
              expect(alert.evidence.at(-1)?.seq).toBe(entry.seq);
              expect(alert.from).toBeLessThanOrEqual(alert.to);
              // One alert per rule and subject per window (cross-environment: per identity and target artifact).
              const byArtifact =
                (alert.rule === 'denial-burst' && alert.identity === null) ||
                alert.rule === 'cross-environment';
              const subject = `${alert.rule} ${JSON.stringify(alert.identity)} ${byArtifact ? JSON.stringify(alert.artifact) : ''}`;
              const previous = lastAt.get(subject);
              if (previous !== undefined) expect(alert.to - previous).toBeGreaterThanOrEqual(alert.windowMs);
              lastAt.set(subject, alert.to);
            }
          }
        },
      ),
    );
  });

  it('is deterministic: the same log gives the same alerts, ids included', () => {
    fc.assert(
      fc.property(traffic(0), (steps) => {
        const entries = build(steps);
        const config = { 'denial-burst.perIdentity': '2', 'bulk-access.distinctArtifacts': '2' };
        expect(detect(config, entries)).toEqual(detect(config, entries));
      }),
    );
  });

  it('keeps at most detector.maxSubjects identities', () => {
    // 150 identities each touching a restricted artifact, then the first again: with room for 100 subjects the
    // first was evicted (least recently seen) and its touch is a first again; with room for 1000 it is not.
    const log = new LogBuilder();
    for (let i = 0; i < 150; i++)
      log.add(T0 + i, releaseEvent({ sa: `sa-${String(i)}`, classification: 'restricted' }));
    log.add(T0 + 2 * 3600_000, releaseEvent({ sa: 'sa-0', classification: 'restricted' }));
    const small = detect(
      only({ 'first-restricted-access.window': '1s', 'detector.maxSubjects': '100' }),
      log.entries,
    );
    const large = detect(
      only({ 'first-restricted-access.window': '1s', 'detector.maxSubjects': '1000' }),
      log.entries,
    );
    expect(small).toHaveLength(151);
    expect(large).toHaveLength(150);
  });
});
