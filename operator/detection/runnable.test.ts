import type { V1ConfigMap } from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AuditEvent, KeyReleaseEvent } from '../../core/audit/event.ts';
import { AuditLog, generateNoteKey, parseSignerKey, type AppendedEntry } from '../../core/audit/index.ts';
import { parseQuarantines, quarantineKey, type QuarantineRecord } from '../../core/policy/quarantine.ts';
import { capturingLogger } from '../../test/harness/logger.ts';
import type { InformerEvent } from '../kube/informer.ts';
import { OperatorMetrics } from '../observability/metrics.ts';
import type { QuarantineLookup } from '../quarantine/store.ts';
import { AnomalyDetection } from './runnable.ts';
import { DetectionSettings } from './settings.ts';
import { DetectionTrail } from './trail.ts';

const ORIGIN = 'strongroom.audit/test/op-0';
const BULK = { 'bulk-access.distinctArtifacts': '3', 'bulk-access.window': '1m' };

function release(name: string, sa = 'trainer', decision: 'allow' | 'deny' = 'allow'): KeyReleaseEvent {
  return {
    type: 'key-release',
    decision,
    reason: decision === 'allow' ? 'granted' : 'no-grant',
    workload: { namespace: 'ml-dev', serviceAccount: sa, podUid: 'pod-1', certificateSerial: '01' },
    artifact: { namespace: 'ml-dev', name, version: 'v1', classification: 'internal', environment: 'dev' },
    key: { id: 'k', version: '1' },
    grant: null,
    secrets: {},
  };
}

interface Setup {
  detection: AnomalyDetection;
  trail: DetectionTrail;
  appended: AuditEvent[];
  events: { kind: string; name: string; type: string; reason: string; message: string }[];
  adds: { key: string; record: QuarantineRecord }[];
  quarantined: Map<string, QuarantineRecord>;
  metrics: OperatorMetrics;
  lines: ReturnType<typeof capturingLogger>['lines'];
  feed(event: AuditEvent, atMs?: number): void;
  configEvent(data: Record<string, string> | undefined): void;
}

function setup(
  data: Record<string, string> | undefined,
  faults: { addFails?: number; appendFails?: number } = {},
): Setup {
  const { logger, lines } = capturingLogger();
  const appended: AuditEvent[] = [];
  const trail = new DetectionTrail({ waitMs: 10 });
  let seq = 0;
  let appendFails = faults.appendFails ?? 0;
  trail.attach({
    append: (event: AuditEvent) => {
      if (appendFails-- > 0) return Promise.reject(new Error('disk full'));
      appended.push(event);
      seq++;
      // The log tells its observers of every durable entry, its own included (the detector ignores those).
      trail.observe({ origin: ORIGIN, seq, time: new Date().toISOString(), event });
      return Promise.resolve({ seq, time: '', leafHash: '' });
    },
  });
  const handlers: ((e: InformerEvent<V1ConfigMap>) => void)[] = [];
  let configMap: V1ConfigMap | undefined =
    data === undefined ? undefined : { metadata: { name: 'strongroom-detection', namespace: 'sr' }, data };
  const events: Setup['events'] = [];
  const recorder = {
    record: (
      o: { kind?: string; metadata?: { name?: string } },
      type: string,
      reason: string,
      message: string,
    ) => {
      events.push({ kind: o.kind ?? '', name: o.metadata?.name ?? '', type, reason, message });
    },
  };
  const quarantined = new Map<string, QuarantineRecord>();
  const adds: Setup['adds'] = [];
  let addFails = faults.addFails ?? 0;
  const metrics = new OperatorMetrics();
  const detection = new AnomalyDetection({
    trail,
    audit: trail,
    settings: new DetectionSettings({
      namespace: 'sr',
      logger,
      warn: (cm, reason, message) => {
        recorder.record(
          { kind: 'ConfigMap', metadata: { name: cm.metadata?.name ?? '' } },
          'Warning',
          reason,
          message,
        );
      },
    }),
    config: {
      onEvent: (h) => handlers.push(h),
      get: () => configMap,
    },
    quarantines: {
      lookup: (identity): QuarantineLookup => {
        const set = parseQuarantines(
          Object.fromEntries([...quarantined].map(([k, r]) => [k, JSON.stringify(r)])),
        );
        const q = set.byKey.get(quarantineKey(identity));
        return q === undefined ? { state: 'free' } : { state: 'quarantined', quarantine: q };
      },
      add: (identity, record) => {
        if (addFails-- > 0) return Promise.reject(new Error('409 forever'));
        const key = quarantineKey(identity);
        adds.push({ key, record });
        if (quarantined.has(key)) return Promise.resolve('present');
        quarantined.set(key, record);
        return Promise.resolve('added');
      },
    },
    events: recorder,
    metrics,
    logger,
    backoffMs: { initial: 1, max: 5 },
    now: () => new Date('2026-12-07T10:00:00.000Z'),
  });
  detection.start();
  let t = Date.parse('2026-12-07T09:59:00.000Z');
  let fed = 1000;
  return {
    detection,
    trail,
    appended,
    events,
    adds,
    quarantined,
    metrics,
    lines,
    feed: (event, atMs) => {
      t = atMs ?? t + 1000;
      const entry: AppendedEntry = { origin: ORIGIN, seq: fed++, time: new Date(t).toISOString(), event };
      trail.observe(entry);
    },
    configEvent: (next) => {
      configMap =
        next === undefined
          ? undefined
          : { metadata: { name: 'strongroom-detection', namespace: 'sr' }, data: next };
      for (const h of handlers)
        h(
          configMap === undefined
            ? { type: 'deleted', key: 'sr/strongroom-detection', object: { metadata: {} } }
            : { type: 'modified', key: 'sr/strongroom-detection', object: configMap },
        );
    },
  };
}

async function counter(metrics: OperatorMetrics, name: string): Promise<string> {
  const text = await metrics.registry.metrics();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n');
}

describe('AnomalyDetection', () => {
  it('turns an alert into an audit entry, a metric, a log line and an Event, and quarantines its identity', async () => {
    const s = setup(BULK);
    for (const name of ['a', 'b', 'c']) s.feed(release(name));
    await s.detection.idle();

    const alerts = s.appended.filter((e) => e.type === 'anomaly-alert');
    expect(alerts).toHaveLength(1);
    const [first] = alerts;
    if (first === undefined) throw new Error('no alert');
    const alert = first.alert;
    expect(alert).toMatchObject({
      rule: 'bulk-access',
      severity: 'high',
      identity: { namespace: 'ml-dev', serviceAccount: 'trainer' },
      observed: 3,
      threshold: 3,
    });
    expect(first.evidence.map((e) => e.seq)).toEqual([1000, 1001, 1002]);
    expect(await counter(s.metrics, 'strongroom_anomaly_alerts_total')).toContain(
      'strongroom_anomaly_alerts_total{rule="bulk-access",severity="high"} 1',
    );
    const line = s.lines.find((l) => l.message === 'anomaly detected');
    expect(line?.level).toBe('warn');
    expect(line?.alert).toMatchObject({ id: alert.id, rule: 'bulk-access' });
    expect(s.events[0]).toMatchObject({
      kind: 'ServiceAccount',
      name: 'trainer',
      type: 'Warning',
      reason: 'AnomalyDetected',
    });
    expect(s.events[0]?.message).toContain(alert.id);

    expect(s.quarantined.get('ml-dev.trainer')).toEqual({
      since: '2026-12-07T10:00:00.000Z',
      alertId: alert.id,
      rule: 'bulk-access',
      severity: 'high',
      reason: alert.message,
    });
    expect(s.events[1]).toMatchObject({ kind: 'ServiceAccount', name: 'trainer', reason: 'Quarantined' });
    expect(s.events[1]?.message).toContain(
      'removing key ml-dev.trainer from ConfigMap strongroom-quarantines',
    );
    expect(s.appended.filter((e) => e.type === 'identity-quarantined')).toEqual([
      {
        type: 'identity-quarantined',
        identity: { namespace: 'ml-dev', serviceAccount: 'trainer' },
        actor: 'strongroom-operator',
        reason: 'AnomalyDetected',
        alertId: alert.id,
        severity: 'high',
        detail: alert.message,
      },
    ]);
    // Its own entries (anomaly-alert, identity-quarantined) came back through the tap and raised nothing.
    expect(s.appended).toHaveLength(2);
  });

  it('is idempotent: an identity already quarantined is not written again', async () => {
    const s = setup({ ...BULK, 'bulk-access.window': '1s' });
    for (const name of ['a', 'b', 'c'])
      s.feed(release(name), Date.parse('2026-12-07T09:00:00Z') + name.charCodeAt(0));
    await s.detection.idle();
    for (const name of ['d', 'e', 'f'])
      s.feed(release(name), Date.parse('2026-12-07T09:10:00Z') + name.charCodeAt(0));
    await s.detection.idle();
    expect(s.appended.filter((e) => e.type === 'anomaly-alert')).toHaveLength(2);
    expect(s.adds).toHaveLength(1);
    expect(s.appended.filter((e) => e.type === 'identity-quarantined')).toHaveLength(1);
  });

  it('only alerts below quarantine.minSeverity, and never quarantines when it is off', async () => {
    for (const data of [
      { ...BULK, 'quarantine.minSeverity': 'critical' },
      { ...BULK, 'quarantine.minSeverity': 'off' },
    ]) {
      const s = setup(data);
      for (const name of ['a', 'b', 'c']) s.feed(release(name));
      await s.detection.idle();
      expect(s.appended.map((e) => e.type)).toEqual(['anomaly-alert']);
      expect(s.adds).toEqual([]);
    }
  });

  it('fails closed: a failing quarantine write is retried until it lands, each failure logged at error', async () => {
    const s = setup(BULK, { addFails: 3, appendFails: 2 });
    for (const name of ['a', 'b', 'c']) s.feed(release(name));
    await s.detection.idle();
    expect(s.quarantined.has('ml-dev.trainer')).toBe(true);
    const errors = s.lines.filter((l) => l.level === 'error').map((l) => l.message);
    expect(errors).toEqual([
      'could not append the anomaly alert to the audit log; retrying',
      'could not append the anomaly alert to the audit log; retrying',
      'could not quarantine the identity; retrying',
      'could not quarantine the identity; retrying',
      'could not quarantine the identity; retrying',
    ]);
    expect(s.appended.map((e) => e.type)).toEqual(['anomaly-alert', 'identity-quarantined']);
  });

  it('keeps the previous configuration when the ConfigMap turns invalid, with a Warning Event, and follows valid changes', async () => {
    const s = setup(BULK);
    s.configEvent({ ...BULK, 'bulk-access.distinctArtifacts': 'many' });
    expect(s.events).toEqual([
      expect.objectContaining({
        kind: 'ConfigMap',
        name: 'strongroom-detection',
        reason: 'InvalidDetectionConfig',
      }),
    ]);
    expect(s.events[0]?.message).toContain('bulk-access.distinctArtifacts');
    for (const name of ['a', 'b', 'c']) s.feed(release(name));
    await s.detection.idle();
    expect(s.appended.filter((e) => e.type === 'anomaly-alert')).toHaveLength(1);

    // A valid change (bulk-access off) is followed: more bulk reading by another identity raises nothing.
    s.configEvent({ ...BULK, 'bulk-access.enabled': 'false' });
    for (const name of ['a', 'b', 'c']) s.feed(release(name, 'other'));
    await s.detection.idle();
    expect(s.appended.filter((e) => e.type === 'anomaly-alert')).toHaveLength(1);
  });

  it('sees nothing once stopped', async () => {
    const s = setup(BULK);
    await s.detection.stop();
    for (const name of ['a', 'b', 'c']) s.feed(release(name));
    await s.detection.idle();
    expect(s.appended).toEqual([]);
  });

  it('seeds from the log file written before a restart: a restricted artifact touched then is not "first" again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'strongroom-detection-seed-'));
    try {
      const path = join(dir, 'op-0.log');
      const { signerKey } = generateNoteKey(ORIGIN);
      const before = await AuditLog.open({ path, origin: ORIGIN, signer: parseSignerKey(signerKey) });
      const restricted = (): KeyReleaseEvent => {
        const e = release('crown');
        return {
          ...e,
          artifact: { ...e.artifact, classification: 'restricted' },
          grant: { namespace: 'ml-dev', name: 'g', uid: 'u', resourceVersion: '1', approvals: [] },
        };
      };
      await before.append(restricted());
      await before.close();

      // Without seeding, the same release after the restart is a first restricted touch.
      const fresh = setup(undefined);
      fresh.feed(restricted());
      await fresh.detection.idle();
      expect(fresh.appended.filter((e) => e.type === 'anomaly-alert')).toHaveLength(1);

      // Seeded from the file, it is not; a restricted artifact the log never saw still is.
      const seeded = setup(undefined);
      expect(await seeded.trail.seed(path)).toBeGreaterThanOrEqual(2);
      seeded.feed(restricted());
      await seeded.detection.idle();
      expect(seeded.appended.filter((e) => e.type === 'anomaly-alert')).toEqual([]);
      const other = restricted();
      seeded.feed({ ...other, artifact: { ...other.artifact, name: 'jewels' } }, Date.now() + 2 * 3_600_000);
      await seeded.detection.idle();
      const alerts = seeded.appended.filter((e) => e.type === 'anomaly-alert');
      expect(alerts.map((e) => (e as { alert: { rule: string } }).alert.rule)).toEqual([
        'first-restricted-access',
      ]);

      // A missing file seeds nothing.
      expect(await seeded.trail.seed(join(dir, 'absent.log'))).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
