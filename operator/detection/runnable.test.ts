import type { V1ConfigMap } from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AuditEvent, KeyReleaseEvent } from '../../core/audit/event.ts';
import { AuditLog, generateNoteKey, parseSignerKey, type AppendedEntry } from '../../core/audit/index.ts';
import {
  AnomalyDetector,
  alertEvent,
  logEntries,
  parseDetectionConfig,
  type Alert,
} from '../../core/detection/index.ts';
import { parseQuarantines, quarantineKey, type QuarantineRecord } from '../../core/policy/quarantine.ts';
import { capturingLogger } from '../../test/harness/logger.ts';
import type { InformerEvent } from '../kube/informer.ts';
import { OperatorMetrics } from '../observability/metrics.ts';
import { QuarantineWriteError, type QuarantineLookup } from '../quarantine/store.ts';
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
  faults: {
    addFails?: number;
    appendFails?: number;
    /** An error for every add of this key (until the test clears it). */
    addError?: (key: string) => Error | undefined;
    /** Adds of this key wait for the promise (a stuck write). */
    addHangs?: (key: string) => Promise<void> | undefined;
    start?: boolean;
    maxIdentities?: number;
  } = {},
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
      add: async (identity, record) => {
        const key = quarantineKey(identity);
        await faults.addHangs?.(key);
        if (addFails-- > 0) throw new Error('409 forever');
        const error = faults.addError?.(key);
        if (error !== undefined) throw error;
        adds.push({ key, record });
        if (quarantined.has(key)) return 'present';
        quarantined.set(key, record);
        return 'added';
      },
    },
    events: recorder,
    metrics,
    logger,
    backoffMs: { initial: 1, max: 5 },
    permanentRetryMs: 50,
    drainMs: 200,
    ...(faults.maxIdentities === undefined ? {} : { maxIdentities: faults.maxIdentities }),
    now: () => new Date('2026-12-07T10:00:00.000Z'),
  });
  if (faults.start !== false) detection.start();
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
    // The audit append and the quarantine write retry side by side.
    expect(
      errors.filter((m) => m === 'could not append the anomaly alert to the audit log; retrying'),
    ).toHaveLength(2);
    expect(errors.filter((m) => m === 'could not quarantine the identity; retrying')).toHaveLength(3);
    expect(errors).toHaveLength(5);
    expect(s.appended.map((e) => e.type).sort()).toEqual(['anomaly-alert', 'identity-quarantined']);
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

      // Seeded from the file, it is not. (The first touch in the file raised an alert the file never recorded: it is
      // caught up once, at the first entry after the seed.)
      const seeded = setup(undefined);
      expect(await seeded.trail.seed(path)).toBeGreaterThanOrEqual(2);
      seeded.feed(restricted());
      await seeded.detection.idle();
      const caughtUp = seeded.appended.filter((e) => e.type === 'anomaly-alert');
      expect(caughtUp.map((e) => e.evidence.map((r) => r.seq))).toEqual([[1]]);
      seeded.appended.length = 0;
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

function apiError(code: number): QuarantineWriteError {
  return new QuarantineWriteError('writing sr/strongroom-quarantines', {
    cause: Object.assign(new Error(`HTTP ${String(code)}`), { code }),
  });
}

describe('AnomalyDetection: one stuck write holds up nothing else', () => {
  it("reports, audits and quarantines a second identity while the first one's write is refused for good", async () => {
    let refuse = true;
    const s = setup(BULK, {
      addError: (key) => (refuse && key === 'ml-dev.stuck' ? apiError(403) : undefined),
    });
    for (const name of ['a', 'b', 'c']) s.feed(release(name, 'stuck'));
    for (const name of ['a', 'b', 'c']) s.feed(release(name, 'trainer'));
    // Without waiting for the stuck write: both alerts are reported and audited, the second identity quarantined.
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(s.appended.filter((e) => e.type === 'anomaly-alert')).toHaveLength(2);
    expect(s.events.filter((e) => e.reason === 'AnomalyDetected').map((e) => e.name)).toEqual([
      'stuck',
      'trainer',
    ]);
    expect(s.quarantined.has('ml-dev.trainer')).toBe(true);
    expect(s.quarantined.has('ml-dev.stuck')).toBe(false);
    // The refusal is logged at error, counted, and retried slowly (permanentRetryMs 50, not the 1-5 ms backoff).
    const refusals = s.lines.filter((l) =>
      l.message.startsWith('could not quarantine the identity: the API'),
    );
    expect(refusals.length).toBeGreaterThanOrEqual(1);
    for (const line of refusals)
      expect(line).toMatchObject({ level: 'error', identity: 'ml-dev/stuck', retryInMs: 50 });
    expect(s.detection.failures.permanent).toBe(refusals.length);
    // Once the cause is fixed, the slow retry lands it.
    refuse = false;
    await s.detection.idle();
    expect(s.quarantined.has('ml-dev.stuck')).toBe(true);
    // Every refusal is exported, and nothing was dropped.
    const exported = await counter(s.metrics, 'strongroom_anomaly_response_failures_total');
    expect(s.detection.failures.permanent).toBeGreaterThanOrEqual(1);
    expect(exported).toContain(
      `strongroom_anomaly_response_failures_total{kind="refused"} ${s.detection.failures.permanent}`,
    );
    expect(exported).toContain('strongroom_anomaly_response_failures_total{kind="dropped"} 0');
  });

  it('merges repeated alerts for an identity into its one pending write', async () => {
    let release1: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release1 = resolve;
    });
    const s = setup(
      { ...BULK, 'bulk-access.window': '1s' },
      {
        addHangs: () => gate,
      },
    );
    for (const name of ['a', 'b', 'c'])
      s.feed(release(name), Date.parse('2026-12-07T09:00:00Z') + name.charCodeAt(0));
    for (const name of ['d', 'e', 'f'])
      s.feed(release(name), Date.parse('2026-12-07T09:10:00Z') + name.charCodeAt(0));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(s.appended.filter((e) => e.type === 'anomaly-alert')).toHaveLength(2);
    release1();
    await s.detection.idle();
    expect(s.adds).toHaveLength(1);
    const line = s.lines.find((l) => l.message === 'identity quarantined');
    expect(line?.alertIds).toHaveLength(2);
  });

  it('bounds the pending quarantine writes: past the bound a write is dropped, logged at error and counted', async () => {
    const s = setup(BULK, { addHangs: () => new Promise(() => undefined), maxIdentities: 1 });
    for (const sa of ['one', 'two']) for (const name of ['a', 'b', 'c']) s.feed(release(name, sa));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(s.appended.filter((e) => e.type === 'anomaly-alert')).toHaveLength(2);
    expect(s.detection.failures.dropped).toBe(1);
    expect(await counter(s.metrics, 'strongroom_anomaly_response_failures_total')).toContain(
      'strongroom_anomaly_response_failures_total{kind="dropped"} 1',
    );
    expect(s.lines.find((l) => l.message.includes('too many quarantine writes pending'))).toMatchObject({
      level: 'error',
      identity: 'ml-dev/two',
    });
  });
});

describe('AnomalyDetection: stop and restart', () => {
  it('stop() ends the retry loops within drainMs, each after one last attempt, and never says "retrying" then', async () => {
    const s = setup(BULK, { addFails: 1e9, appendFails: 1e9 });
    for (const name of ['a', 'b', 'c']) s.feed(release(name));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(s.lines.some((l) => l.message === 'could not quarantine the identity; retrying')).toBe(true);
    const before = s.lines.length;
    await s.detection.stop();
    // The loops have ended (idle() would wait for ever on a loop still retrying).
    await s.detection.idle();
    const after = s.lines.slice(before).map((l) => l.message);
    expect(after.some((m) => m.includes('retrying'))).toBe(false);
    expect(after).toEqual(
      expect.arrayContaining([
        'could not quarantine the identity; giving up as the operator stops (caught up from the audit log at the next start)',
        'could not append the anomaly alert to the audit log; giving up as the operator stops (caught up from the audit log at the next start)',
      ]),
    );
  });

  it('stop() waits no longer than drainMs for a write that hangs, and says so', async () => {
    const s = setup(BULK, { addHangs: () => new Promise(() => undefined) });
    for (const name of ['a', 'b', 'c']) s.feed(release(name));
    await new Promise((resolve) => setTimeout(resolve, 10));
    const started = performance.now();
    await s.detection.stop();
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(150);
    expect(took).toBeLessThan(1000);
    expect(
      s.lines.find((l) => l.message === 'anomaly detection stopped with writes still in flight'),
    ).toMatchObject({
      level: 'error',
      pending: 1,
    });
  });

  it('handles the alerts raised before start() once it starts', async () => {
    const s = setup(BULK, { start: false });
    s.configEvent(BULK);
    for (const name of ['a', 'b', 'c']) s.feed(release(name));
    await s.detection.idle();
    expect(s.appended).toEqual([]);
    s.detection.start();
    await s.detection.idle();
    expect(s.appended.map((e) => e.type).sort()).toEqual(['anomaly-alert', 'identity-quarantined']);
  });

  describe('after a restart, catches up on what the log written before it shows unhandled', () => {
    /** A log file with three releases (a bulk-access alert), then `more(alert)`; the alert it raises. */
    async function logWith(
      dir: string,
      more: (alert: Alert) => AuditEvent[],
    ): Promise<{ path: string; alert: Alert }> {
      const path = join(dir, 'op-0.log');
      const { signerKey } = generateNoteKey(ORIGIN);
      const log = await AuditLog.open({ path, origin: ORIGIN, signer: parseSignerKey(signerKey) });
      for (const name of ['a', 'b', 'c'])
        await log.append({
          ...release(name),
          grant: { namespace: 'ml-dev', name: 'g', uid: 'u', resourceVersion: '1', approvals: [] },
        });
      await log.close();
      const detector = new AnomalyDetector(parseDetectionConfig(BULK));
      const alerts: Alert[] = [];
      for await (const entry of logEntries(path)) alerts.push(...detector.observe(entry));
      const [alert] = alerts;
      if (alert === undefined) throw new Error('the log raised no alert');
      const again = await AuditLog.open({ path, origin: ORIGIN, signer: parseSignerKey(signerKey) });
      for (const event of more(alert)) await again.append(event);
      await again.close();
      return { path, alert };
    }

    async function restartOn(path: string): Promise<Setup> {
      const s = setup(BULK, { start: false });
      s.configEvent(BULK);
      await s.trail.seed(path);
      s.detection.start();
      await s.detection.idle();
      return s;
    }

    const quarantinedEvent = (alert: Alert): AuditEvent => ({
      type: 'identity-quarantined',
      identity: { namespace: 'ml-dev', serviceAccount: 'trainer' },
      actor: 'strongroom-operator',
      reason: 'AnomalyDetected',
      alertId: alert.id,
      severity: alert.severity,
      detail: alert.message,
    });

    it('an alert lost to the stop: audited, reported and its identity quarantined', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'strongroom-detection-catchup-'));
      try {
        const { path, alert } = await logWith(dir, () => []);
        const s = await restartOn(path);
        const audited = s.appended.filter((e) => e.type === 'anomaly-alert');
        expect(audited.map((e) => e.alert.id)).toEqual([alert.id]);
        expect(s.quarantined.get('ml-dev.trainer')?.alertId).toBe(alert.id);
        expect(s.appended.filter((e) => e.type === 'identity-quarantined')).toHaveLength(1);
        expect(s.events.map((e) => e.reason)).toEqual(['AnomalyDetected', 'Quarantined']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('an alert audited whose quarantine was lost: quarantined, not audited again', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'strongroom-detection-catchup-'));
      try {
        const { path, alert } = await logWith(dir, (a) => [alertEvent(a)]);
        const s = await restartOn(path);
        expect(s.appended.filter((e) => e.type === 'anomaly-alert')).toEqual([]);
        expect(s.quarantined.get('ml-dev.trainer')?.alertId).toBe(alert.id);
        expect(s.appended.map((e) => e.type)).toEqual(['identity-quarantined']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('an alert audited and quarantined (since lifted, or not): nothing is done again', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'strongroom-detection-catchup-'));
      try {
        const { path } = await logWith(dir, (a) => [alertEvent(a), quarantinedEvent(a)]);
        const s = await restartOn(path);
        expect(s.appended).toEqual([]);
        expect(s.adds).toEqual([]);
        expect(s.events).toEqual([]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

describe('DetectionTrail.record', () => {
  const event: AuditEvent = {
    type: 'identity-lifted',
    identity: { namespace: 'ml-dev', serviceAccount: 'trainer' },
    actor: 'unknown',
    reason: 'QuarantineLifted',
  };

  it('waits for a log not attached yet, but rejects at once once the log is detached (shutdown)', async () => {
    const trail = new DetectionTrail({ waitMs: 100 });
    const appended: AuditEvent[] = [];
    const waiting = trail.record(event);
    trail.attach({
      append: (e: AuditEvent) => {
        appended.push(e);
        return Promise.resolve({ seq: 1, time: '', leafHash: '' });
      },
    });
    await waiting;
    expect(appended).toEqual([event]);
    trail.detach();
    const started = performance.now();
    await expect(trail.record(event)).rejects.toThrow('the audit log is not open');
    expect(performance.now() - started).toBeLessThan(50);
  });
});
