import { register as globalRegistry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import type { WatchObserver as InformerWatchObserver } from '../kube/informer.ts';
import type { QueueObserver as WorkQueueObserver } from '../kube/workqueue.ts';
import { OperatorMetrics } from './metrics.ts';

/** The value of one series, or undefined if the series does not exist. */
async function valueOf(
  metrics: OperatorMetrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const match = values.find(
    (v) =>
      Object.keys(labels).length === Object.keys(v.labels).length &&
      Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l),
  );
  return match?.value;
}

describe('OperatorMetrics', () => {
  it('uses its own registry, so two instances coexist and the global registry stays empty', async () => {
    const a = new OperatorMetrics();
    const b = new OperatorMetrics();
    expect(a.registry).not.toBe(b.registry);
    expect(a.registry).not.toBe(globalRegistry);
    a.cryptoShreds.inc();
    expect(await valueOf(a, 'strongroom_crypto_shreds_total')).toBe(1);
    expect(await valueOf(b, 'strongroom_crypto_shreds_total')).toBe(0);
    expect(globalRegistry.getMetricsAsArray()).toEqual([]);
  });

  it('exposes every metric with its type, plus prefixed process metrics', async () => {
    const text = await new OperatorMetrics().registry.metrics();
    const types = Object.fromEntries(
      [...text.matchAll(/^# TYPE (strongroom_\S+) (\S+)$/gm)].map((m) => [m[1] ?? '', m[2] ?? '']),
    );
    expect(types).toMatchObject({
      strongroom_watch_connected: 'gauge',
      strongroom_watch_healthy: 'gauge',
      strongroom_watch_events_total: 'counter',
      strongroom_watch_errors_total: 'counter',
      strongroom_watch_relists_total: 'counter',
      strongroom_queue_depth: 'gauge',
      strongroom_queue_adds_total: 'counter',
      strongroom_queue_retries_total: 'counter',
      strongroom_reconcile_duration_seconds: 'histogram',
      strongroom_reconcile_total: 'counter',
      strongroom_artifacts: 'gauge',
      strongroom_grants: 'gauge',
      strongroom_kek_age_seconds: 'gauge',
      strongroom_kek_rotation_compliant: 'gauge',
      strongroom_kek_rotations_total: 'counter',
      strongroom_key_rewraps_total: 'counter',
      strongroom_crypto_shreds_total: 'counter',
      strongroom_revocations_published_total: 'counter',
      strongroom_leader: 'gauge',
      strongroom_ca_not_after_timestamp_seconds: 'gauge',
      strongroom_certificate_not_after_timestamp_seconds: 'gauge',
      strongroom_revocation_to_wipe_seconds: 'histogram',
      strongroom_sidecar_wipe_reports_total: 'counter',
      strongroom_rotation_compliance_ratio: 'gauge',
      strongroom_key_releases_total: 'counter',
      strongroom_key_releases_audited_total: 'counter',
      strongroom_audit_coverage_ratio: 'gauge',
      strongroom_approvals_pending: 'gauge',
      strongroom_operator_process_cpu_user_seconds_total: 'counter',
      strongroom_operator_process_resident_memory_bytes: 'gauge',
      strongroom_operator_nodejs_eventloop_lag_seconds: 'gauge',
    });
    // No process metric escapes the prefix.
    expect(text).not.toMatch(/^# TYPE (process|nodejs)_/m);
  });

  it('starts as a follower (strongroom_leader 0) and reports leadership', async () => {
    const metrics = new OperatorMetrics();
    expect(await valueOf(metrics, 'strongroom_leader')).toBe(0);
    metrics.leader.set(1);
    expect(await metrics.registry.metrics()).toMatch(/^strongroom_leader 1$/m);
  });

  it('exposes the domain metrics with their labels', async () => {
    const metrics = new OperatorMetrics();
    metrics.artifacts.set({ namespace: 'ml', classification: 'restricted', ready: 'true' }, 3);
    metrics.grants.set({ namespace: 'ml', phase: 'Active' }, 2);
    metrics.kekAgeSeconds.set({ key: 'restricted', classification: 'restricted' }, 86_400);
    metrics.kekRotationCompliant.set({ key: 'restricted', classification: 'restricted' }, 1);
    metrics.kekRotations.inc({ key: 'restricted', classification: 'restricted' });
    metrics.keyRewraps.inc({ classification: 'restricted' }, 5);
    metrics.revocations.inc({ reason: 'expired' });
    metrics.caNotAfterSeconds.set({ ca: 'broker' }, 1_900_000_000);
    metrics.certificateNotAfterSeconds.set({ name: 'webhook' }, 1_800_000_000);
    const text = await metrics.registry.metrics();
    for (const line of [
      'strongroom_artifacts{namespace="ml",classification="restricted",ready="true"} 3',
      'strongroom_grants{namespace="ml",phase="Active"} 2',
      'strongroom_kek_age_seconds{key="restricted",classification="restricted"} 86400',
      'strongroom_kek_rotation_compliant{key="restricted",classification="restricted"} 1',
      'strongroom_kek_rotations_total{key="restricted",classification="restricted"} 1',
      'strongroom_key_rewraps_total{classification="restricted"} 5',
      'strongroom_revocations_published_total{reason="expired"} 1',
      'strongroom_ca_not_after_timestamp_seconds{ca="broker"} 1900000000',
      'strongroom_certificate_not_after_timestamp_seconds{name="webhook"} 1800000000',
    ]) {
      expect(text.split('\n')).toContain(line);
    }
  });
});

describe('evidence metrics (issue 18)', () => {
  it('computes rotation compliance per classification from the per-key gauge at every scrape', async () => {
    const metrics = new OperatorMetrics();
    expect(await metrics.registry.metrics()).not.toContain('strongroom_rotation_compliance_ratio{');
    const set = (key: string, classification: string, v: number): void => {
      metrics.kekRotationCompliant.set({ key, classification }, v);
    };
    set('r1', 'restricted', 1);
    set('r2', 'restricted', 0);
    set('r3', 'restricted', 1);
    set('r4', 'restricted', 1);
    set('internal', 'internal', 1);
    let text = await metrics.registry.metrics();
    expect(text).toContain('strongroom_rotation_compliance_ratio{classification="restricted"} 0.75\n');
    expect(text).toContain('strongroom_rotation_compliance_ratio{classification="internal"} 1\n');
    // A rotation brings r2 within its period; a shredded KEK's series goes, and so does its classification.
    set('r2', 'restricted', 1);
    metrics.kekRotationCompliant.remove({ key: 'internal', classification: 'internal' });
    text = await metrics.registry.metrics();
    expect(text).toContain('strongroom_rotation_compliance_ratio{classification="restricted"} 1\n');
    expect(text).not.toContain('classification="internal"');
  });

  it('audit coverage: 1 with no release; a returned key counts as audited only against a durable allow entry', async () => {
    const metrics = new OperatorMetrics();
    expect(await valueOf(metrics, 'strongroom_audit_coverage_ratio')).toBe(1);
    // A key returned with no durable entry (a release that skipped the audit).
    metrics.recordKeyRelease('allow');
    expect(await valueOf(metrics, 'strongroom_audit_coverage_ratio')).toBe(0);
    // The entry is audited only once its key is returned: both sides are counted where the key leaves.
    metrics.recordBrokerDecision('release-key', 'allow', 'granted');
    expect(await valueOf(metrics, 'strongroom_key_releases_audited_total')).toBe(0);
    expect(await valueOf(metrics, 'strongroom_audit_coverage_ratio')).toBe(0);
    metrics.recordKeyRelease('allow');
    expect(await valueOf(metrics, 'strongroom_audit_coverage_ratio')).toBe(0.5);
    // Denials and other operations are decisions, not audited releases.
    metrics.recordBrokerDecision('release-key', 'deny', 'no-grant');
    metrics.recordBrokerDecision('watch-revocations', 'allow', 'stream-opened');
    metrics.recordKeyRelease('deny');
    metrics.recordKeyRelease('error');
    expect(await valueOf(metrics, 'strongroom_key_releases_audited_total')).toBe(1);
    expect(await valueOf(metrics, 'strongroom_key_releases_total', { decision: 'deny' })).toBe(1);
    expect(await valueOf(metrics, 'strongroom_key_releases_total', { decision: 'error' })).toBe(1);
    expect(
      await valueOf(metrics, 'strongroom_broker_decisions_total', {
        operation: 'release-key',
        decision: 'allow',
        reason: 'granted',
      }),
    ).toBe(1);
    expect(await valueOf(metrics, 'strongroom_audit_coverage_ratio')).toBe(0.5);
  });

  it('audit coverage never exceeds 1: an answer that failed after its append counts on neither side', async () => {
    const metrics = new OperatorMetrics();
    const at = { ms: 1_000_000 };
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => at.ms);
    try {
      metrics.recordBrokerDecision('release-key', 'allow', 'granted');
      metrics.recordKeyRelease('allow');
      // Audited, then the answer failed: no key left.
      metrics.recordBrokerDecision('release-key', 'allow', 'granted');
      metrics.recordKeyRelease('error');
      expect(await valueOf(metrics, 'strongroom_key_releases_audited_total')).toBe(1);
      expect(await valueOf(metrics, 'strongroom_audit_coverage_ratio')).toBe(1);
      // Its leftover entry does not cover a key returned unaudited later on.
      at.ms += 10_001;
      metrics.recordKeyRelease('allow');
      expect(await valueOf(metrics, 'strongroom_key_releases_audited_total')).toBe(1);
      expect(await valueOf(metrics, 'strongroom_audit_coverage_ratio')).toBe(0.5);
    } finally {
      clock.mockRestore();
    }
  });

  it('observes the time-to-revoke of recorded wipe reports only, never a negative one', async () => {
    const metrics = new OperatorMetrics();
    metrics.recordWipeReport('recorded', 0.08);
    metrics.recordWipeReport('recorded', 3);
    metrics.recordWipeReport('recorded', -1);
    metrics.recordWipeReport('unmatched');
    const text = await metrics.registry.metrics();
    expect(text).toContain('strongroom_revocation_to_wipe_seconds_count 3\n');
    expect(text).toContain('strongroom_revocation_to_wipe_seconds_bucket{le="0.01"} 1\n');
    expect(text).toContain('strongroom_revocation_to_wipe_seconds_bucket{le="0.1"} 2\n');
    expect(text).toContain('strongroom_revocation_to_wipe_seconds_bucket{le="1"} 2\n');
    expect(text).toContain('strongroom_revocation_to_wipe_seconds_bucket{le="5"} 3\n');
    expect(text).toContain('strongroom_sidecar_wipe_reports_total{outcome="recorded"} 3\n');
    expect(text).toContain('strongroom_sidecar_wipe_reports_total{outcome="unmatched"} 1\n');
  });
});

describe('watchObserver', () => {
  it('matches the informer hooks structurally', () => {
    const observer: InformerWatchObserver = new OperatorMetrics().watchObserver();
    expect(typeof observer.connected).toBe('function');
  });

  it('tracks the connection through connect, error, relist and reconnect', async () => {
    const metrics = new OperatorMetrics();
    const w = metrics.watchObserver();
    const r = { resource: 'modelartifacts' };
    w.relist?.('modelartifacts', 'initial');
    expect(await valueOf(metrics, 'strongroom_watch_connected', r)).toBe(0);
    w.connected?.('modelartifacts');
    expect(await valueOf(metrics, 'strongroom_watch_connected', r)).toBe(1);
    w.relist?.('modelartifacts', 'periodic');
    expect(await valueOf(metrics, 'strongroom_watch_connected', r)).toBe(1);
    w.error?.('modelartifacts', 'gone');
    expect(await valueOf(metrics, 'strongroom_watch_connected', r)).toBe(0);
    w.connected?.('modelartifacts');
    w.relist?.('modelartifacts', 'stalled');
    expect(await valueOf(metrics, 'strongroom_watch_connected', r)).toBe(0);
    expect(await valueOf(metrics, 'strongroom_watch_errors_total', { ...r, reason: 'gone' })).toBe(1);
    expect(await valueOf(metrics, 'strongroom_watch_relists_total', { ...r, cause: 'initial' })).toBe(1);
    expect(await valueOf(metrics, 'strongroom_watch_relists_total', { ...r, cause: 'periodic' })).toBe(1);
    expect(await valueOf(metrics, 'strongroom_watch_relists_total', { ...r, cause: 'stalled' })).toBe(1);
  });

  it('counts events per resource and type, and keeps resources apart', async () => {
    const metrics = new OperatorMetrics();
    const w = metrics.watchObserver();
    w.event?.('modelartifacts', 'added');
    w.event?.('modelartifacts', 'added');
    w.event?.('modelartifacts', 'bookmark');
    w.event?.('accessgrants', 'deleted');
    w.connected?.('accessgrants');
    expect(
      await valueOf(metrics, 'strongroom_watch_events_total', { resource: 'modelartifacts', type: 'added' }),
    ).toBe(2);
    expect(
      await valueOf(metrics, 'strongroom_watch_events_total', {
        resource: 'modelartifacts',
        type: 'bookmark',
      }),
    ).toBe(1);
    expect(
      await valueOf(metrics, 'strongroom_watch_events_total', { resource: 'accessgrants', type: 'deleted' }),
    ).toBe(1);
    expect(
      await valueOf(metrics, 'strongroom_watch_connected', { resource: 'modelartifacts' }),
    ).toBeUndefined();
  });

  it('reports health changes both ways', async () => {
    const metrics = new OperatorMetrics();
    const w = metrics.watchObserver();
    w.healthChanged?.('secrets', true);
    expect(await valueOf(metrics, 'strongroom_watch_healthy', { resource: 'secrets' })).toBe(1);
    w.healthChanged?.('secrets', false);
    expect(await valueOf(metrics, 'strongroom_watch_healthy', { resource: 'secrets' })).toBe(0);
  });
});

describe('queueObserver', () => {
  it('matches the work queue hooks structurally', () => {
    const observer: WorkQueueObserver = new OperatorMetrics().queueObserver();
    expect(typeof observer.processed).toBe('function');
  });

  it('counts adds and retries and follows the depth', async () => {
    const metrics = new OperatorMetrics();
    const q = metrics.queueObserver();
    q.added?.('modelartifact');
    q.added?.('modelartifact');
    q.retried?.('modelartifact');
    q.depth?.('modelartifact', 2);
    q.depth?.('modelartifact', 1);
    const l = { queue: 'modelartifact' };
    expect(await valueOf(metrics, 'strongroom_queue_adds_total', l)).toBe(2);
    expect(await valueOf(metrics, 'strongroom_queue_retries_total', l)).toBe(1);
    expect(await valueOf(metrics, 'strongroom_queue_depth', l)).toBe(1);
  });

  it('ignores an impossible depth instead of throwing into the queue', async () => {
    const metrics = new OperatorMetrics();
    const q = metrics.queueObserver();
    q.depth?.('q', 3);
    expect(() => q.depth?.('q', Number.NaN)).not.toThrow();
    expect(() => q.depth?.('q', -1)).not.toThrow();
    expect(await valueOf(metrics, 'strongroom_queue_depth', { queue: 'q' })).toBe(3);
  });

  it('records reconcile outcomes and durations in seconds', async () => {
    const metrics = new OperatorMetrics();
    const q = metrics.queueObserver();
    q.processed?.('accessgrant', 'success', 250);
    q.processed?.('accessgrant', 'success', 3_000);
    q.processed?.('accessgrant', 'conflict', 4);
    q.processed?.('accessgrant', 'error', -5); // a clock step: counted, but no duration sample
    q.processed?.('accessgrant', 'error', Number.NaN);
    const success = { queue: 'accessgrant', outcome: 'success' };
    expect(await valueOf(metrics, 'strongroom_reconcile_total', success)).toBe(2);
    expect(await valueOf(metrics, 'strongroom_reconcile_total', { ...success, outcome: 'conflict' })).toBe(1);
    expect(await valueOf(metrics, 'strongroom_reconcile_total', { ...success, outcome: 'error' })).toBe(2);
    const text = await metrics.registry.metrics();
    const lines = text.split('\n');
    expect(lines).toContain(
      'strongroom_reconcile_duration_seconds_sum{queue="accessgrant",outcome="success"} 3.25',
    );
    expect(lines).toContain(
      'strongroom_reconcile_duration_seconds_count{queue="accessgrant",outcome="success"} 2',
    );
    expect(lines).toContain(
      'strongroom_reconcile_duration_seconds_bucket{le="0.25",queue="accessgrant",outcome="success"} 1',
    );
    expect(lines).toContain(
      'strongroom_reconcile_duration_seconds_bucket{le="2.5",queue="accessgrant",outcome="success"} 1',
    );
    expect(lines).toContain(
      'strongroom_reconcile_duration_seconds_bucket{le="5",queue="accessgrant",outcome="success"} 2',
    );
    expect(lines).toContain(
      'strongroom_reconcile_duration_seconds_bucket{le="0.005",queue="accessgrant",outcome="conflict"} 1',
    );
    expect(text).not.toContain(
      'strongroom_reconcile_duration_seconds_count{queue="accessgrant",outcome="error"}',
    );
  });
});
