/**
 * The operator's Prometheus metrics, on a registry of their own (never prom-client's global one, so that two
 * operators in one process, as in tests, do not collide). The watch layer and the work queue report through the
 * {@link WatchObserver} and {@link QueueObserver} adapters; controllers set the domain metrics directly.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What the watch layer reports; every method is optional (the watch layer's own interface matches structurally). */
export interface WatchObserver {
  connected?(resource: string): void;
  event?(resource: string, type: 'added' | 'modified' | 'deleted' | 'bookmark'): void;
  error?(resource: string, reason: string): void;
  relist?(resource: string, cause: 'initial' | 'gone' | 'periodic' | 'stalled' | 'error'): void;
  healthChanged?(resource: string, healthy: boolean): void;
}

/** What the work queue reports; every method is optional (the queue's own interface matches structurally). */
export interface QueueObserver {
  added?(queue: string): void;
  processed?(queue: string, outcome: 'success' | 'error' | 'conflict', durationMs: number): void;
  retried?(queue: string): void;
  depth?(queue: string, depth: number): void;
}

/**
 * Time-to-revoke from 10 ms to 5 minutes (seconds). The revocation target is 1 s (stretch 200 ms, docs/broker.md), so
 * 0.2 and 1 are bucket bounds: `le="1"` over the count is the share of wipes within the target.
 */
const REVOCATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300];

/** The outcomes of a sidecar's wipe report (operator/broker/wipe-report.ts, docs/metrics.md). */
export type WipeReportOutcome =
  'recorded' | 'unmatched' | 'duplicate' | 'invalid' | 'refused' | 'unavailable';

/**
 * How long a durable ReleaseKey allow entry waits for its key to be returned before it no longer counts: the answer
 * follows the append within the same chain of promises, so only an answer that failed after the append leaves one.
 */
const AUDIT_TO_SEND_MS = 10_000;

/** Reconcile durations from 5 ms to 2 minutes (seconds). */
const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Every metric the operator exports, registered on {@link OperatorMetrics.registry}. */
export class OperatorMetrics {
  /** The registry to serve on /metrics: these metrics plus process metrics prefixed `strongroom_operator_`. */
  readonly registry: Registry;

  /** `strongroom_watch_connected{resource}`: 1 while the watch stream is open. */
  readonly watchConnected: Gauge<'resource'>;
  /** `strongroom_watch_healthy{resource}`: 1 while the watch layer reports itself healthy (liveness input). */
  readonly watchHealthy: Gauge<'resource'>;
  /** `strongroom_watch_events_total{resource,type}`. */
  readonly watchEvents: Counter<'resource' | 'type'>;
  /** `strongroom_watch_errors_total{resource,reason}`. */
  readonly watchErrors: Counter<'resource' | 'reason'>;
  /** `strongroom_watch_relists_total{resource,cause}`. */
  readonly watchRelists: Counter<'resource' | 'cause'>;

  /** `strongroom_queue_depth{queue}`: items waiting. */
  readonly queueDepth: Gauge<'queue'>;
  /** `strongroom_queue_adds_total{queue}`. */
  readonly queueAdds: Counter<'queue'>;
  /** `strongroom_queue_retries_total{queue}`: items requeued with backoff. */
  readonly queueRetries: Counter<'queue'>;
  /** `strongroom_reconcile_duration_seconds{queue,outcome}`. */
  readonly reconcileDuration: Histogram<'queue' | 'outcome'>;
  /** `strongroom_reconcile_total{queue,outcome}`. */
  readonly reconcileTotal: Counter<'queue' | 'outcome'>;

  /** `strongroom_artifacts{namespace,classification,ready}`: ModelArtifacts by readiness ("true"/"false"). */
  readonly artifacts: Gauge<'namespace' | 'classification' | 'ready'>;
  /** `strongroom_grants{namespace,phase}`: AccessGrants by phase. */
  readonly grants: Gauge<'namespace' | 'phase'>;
  /** `strongroom_kek_age_seconds{key,classification}`: age of the KEK's primary version. */
  readonly kekAgeSeconds: Gauge<'key' | 'classification'>;
  /** `strongroom_kek_rotation_compliant{key,classification}`: 1 if the KEK is within its rotation period. */
  readonly kekRotationCompliant: Gauge<'key' | 'classification'>;
  /** `strongroom_kek_rotations_total{key,classification}`. */
  readonly kekRotations: Counter<'key' | 'classification'>;
  /** `strongroom_key_rewraps_total{classification}`: wrapped DEKs moved to a new KEK version. */
  readonly keyRewraps: Counter<'classification'>;
  /** `strongroom_crypto_shreds_total`: KEKs destroyed, making what they wrapped unrecoverable. */
  readonly cryptoShreds: Counter<never>;
  /**
   * `strongroom_kek_versions_destroyed_total{classification}`: retired KEK versions destroyed after their retention
   * (shared and artifact KEKs; whole KEKs destroyed on deletion count in cryptoShreds).
   */
  readonly kekVersionsDestroyed: Counter<'classification'>;
  /** `strongroom_revocations_published_total{reason}`. */
  readonly revocations: Counter<'reason'>;
  /** `strongroom_leader`: 1 while this replica holds the Lease. */
  readonly leader: Gauge<never>;
  /** `strongroom_ca_not_after_timestamp_seconds{ca}`: expiry of each CA certificate (Unix time). */
  readonly caNotAfterSeconds: Gauge<'ca'>;
  /** `strongroom_certificate_not_after_timestamp_seconds{name}`: expiry of each serving certificate (Unix time). */
  readonly certificateNotAfterSeconds: Gauge<'name'>;

  /** `strongroom_broker_call_duration_seconds{method,code}`: broker RPCs by gRPC status. */
  readonly brokerCalls: Histogram<'method' | 'code'>;
  /** `strongroom_broker_revocation_streams`: open WatchRevocations streams. */
  readonly brokerStreams: Gauge<never>;
  /** `strongroom_broker_decisions_total{operation,decision,reason}`: audited broker decisions. */
  readonly brokerDecisions: Counter<'operation' | 'decision' | 'reason'>;
  /** `strongroom_webhook_admission_duration_seconds{outcome}`: time from request to answer at the webhook. */
  readonly webhookAdmissions: Histogram<'outcome'>;
  /**
   * `strongroom_revocation_to_wipe_seconds`: time-to-revoke, from the end of access (as the broker sent it in the
   * revocation) to this broker's receipt of the sidecar's report that the files are gone (docs/metrics.md).
   */
  readonly revocationToWipe: Histogram<never>;
  /** `strongroom_sidecar_wipe_reports_total{outcome}`: ReportWipe calls by outcome ({@link WipeReportOutcome}). */
  readonly wipeReports: Counter<'outcome'>;
  /** `strongroom_rotation_compliance_ratio{classification}`: KEKs within their rotation period / KEKs, at scrape. */
  readonly rotationCompliance: Gauge<'classification'>;
  /** `strongroom_key_releases_total{decision}`: ReleaseKey answers: a key returned (allow), refused, or failed. */
  readonly keyReleases: Counter<'decision'>;
  /**
   * `strongroom_key_releases_audited_total`: keys returned (counted where they leave, like the allow of
   * {@link keyReleases}) against an allow entry the audit log made durable for ReleaseKey.
   */
  readonly keyReleasesAudited: Counter<never>;
  /** `strongroom_audit_coverage_ratio`: audited / returned key releases since start; 1 when none was returned. */
  readonly auditCoverage: Gauge<never>;
  /** `strongroom_approvals_pending{classification}`: AccessGrants waiting for approvals. */
  readonly approvalsPending: Gauge<'classification'>;
  /** Keys returned, and those of them returned with a durable allow entry, since start: {@link auditCoverage}. */
  #releasesReturned = 0;
  #releasesAudited = 0;
  /**
   * When each ReleaseKey allow entry made durable was appended (`performance.now()`, oldest first) while its key has
   * not been returned: a key returned takes one, younger than {@link AUDIT_TO_SEND_MS}, to count as audited.
   */
  readonly #auditedUnsent: number[] = [];
  /** `strongroom_audit_checkpoint_size{writer}`: tree size of the writer's last published audit checkpoint. */
  readonly auditCheckpointSize: Gauge<'writer'>;
  /** `strongroom_audit_checkpoint_published_timestamp_seconds{writer}`: when it was last published (Unix time). */
  readonly auditCheckpointPublished: Gauge<'writer'>;
  /**
   * `strongroom_audit_rollback_detected{writer}`: 1 once the log was refused on open as rolled back, or the publisher
   * found a foreign checkpoint; it stays 1 until the process restarts.
   */
  readonly auditRollbackDetected: Gauge<'writer'>;
  /** `strongroom_audit_checkpoint_publishing{writer}`: 1 when checkpoints are published (--audit-checkpoint-configmap). */
  readonly auditCheckpointPublishing: Gauge<'writer'>;
  /**
   * `strongroom_audit_sign_failures_total`: audit checkpoints that could not be signed (the entries were written
   * without one; signing is tried again at the next checkpoint interval).
   */
  readonly auditSignFailures: Counter<never>;
  /** `strongroom_quarantines_active`: identities in ConfigMap strongroom-quarantines, as this replica sees it. */
  readonly quarantinesActive: Gauge<never>;
  /** `strongroom_anomaly_alerts_total{rule,severity}`: alerts raised by this replica's detector. */
  readonly anomalyAlerts: Counter<'rule' | 'severity'>;
  /**
   * `strongroom_anomaly_response_failures_total{kind}`: responses to alerts (audit appends, quarantine writes) this
   * replica dropped (`dropped`: too many pending) or the API server refused (`refused`: retried slowly).
   */
  readonly anomalyResponseFailures: Counter<'kind'>;

  constructor() {
    const registry = new Registry();
    this.registry = registry;
    collectDefaultMetrics({ register: registry, prefix: 'strongroom_operator_' });
    const registers = [registry];

    this.watchConnected = new Gauge({
      name: 'strongroom_watch_connected',
      help: '1 while the watch stream of the resource is open, 0 otherwise.',
      labelNames: ['resource'],
      registers,
    });
    this.watchHealthy = new Gauge({
      name: 'strongroom_watch_healthy',
      help: '1 while the watch layer reports the resource healthy, 0 otherwise.',
      labelNames: ['resource'],
      registers,
    });
    this.watchEvents = new Counter({
      name: 'strongroom_watch_events_total',
      help: 'Watch events received, by resource and type.',
      labelNames: ['resource', 'type'],
      registers,
    });
    this.watchErrors = new Counter({
      name: 'strongroom_watch_errors_total',
      help: 'Watch failures, by resource and reason.',
      labelNames: ['resource', 'reason'],
      registers,
    });
    this.watchRelists = new Counter({
      name: 'strongroom_watch_relists_total',
      help: 'Full relists, by resource and cause (initial, gone, periodic, stalled, error).',
      labelNames: ['resource', 'cause'],
      registers,
    });

    this.queueDepth = new Gauge({
      name: 'strongroom_queue_depth',
      help: 'Items waiting in the work queue.',
      labelNames: ['queue'],
      registers,
    });
    this.queueAdds = new Counter({
      name: 'strongroom_queue_adds_total',
      help: 'Items added to the work queue.',
      labelNames: ['queue'],
      registers,
    });
    this.queueRetries = new Counter({
      name: 'strongroom_queue_retries_total',
      help: 'Items requeued with backoff after a failed reconcile.',
      labelNames: ['queue'],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: 'strongroom_reconcile_duration_seconds',
      help: 'Time spent in one reconcile, by queue and outcome.',
      labelNames: ['queue', 'outcome'],
      buckets: RECONCILE_BUCKETS,
      registers,
    });
    this.reconcileTotal = new Counter({
      name: 'strongroom_reconcile_total',
      help: 'Reconciles, by queue and outcome (success, error, conflict).',
      labelNames: ['queue', 'outcome'],
      registers,
    });

    this.artifacts = new Gauge({
      name: 'strongroom_artifacts',
      help: 'ModelArtifacts, by namespace, classification and readiness.',
      labelNames: ['namespace', 'classification', 'ready'],
      registers,
    });
    this.grants = new Gauge({
      name: 'strongroom_grants',
      help: 'AccessGrants, by namespace and phase.',
      labelNames: ['namespace', 'phase'],
      registers,
    });
    this.kekAgeSeconds = new Gauge({
      name: 'strongroom_kek_age_seconds',
      help: "Age of the KEK's primary version in seconds.",
      labelNames: ['key', 'classification'],
      registers,
    });
    this.kekRotationCompliant = new Gauge({
      name: 'strongroom_kek_rotation_compliant',
      help: "1 if the KEK's primary version is younger than its classification's rotation period, 0 otherwise.",
      labelNames: ['key', 'classification'],
      registers,
    });
    this.kekRotations = new Counter({
      name: 'strongroom_kek_rotations_total',
      help: 'KEK rotations performed.',
      labelNames: ['key', 'classification'],
      registers,
    });
    this.keyRewraps = new Counter({
      name: 'strongroom_key_rewraps_total',
      help: "Wrapped DEKs moved to their KEK's primary version.",
      labelNames: ['classification'],
      registers,
    });
    this.cryptoShreds = new Counter({
      name: 'strongroom_crypto_shreds_total',
      help: 'KEKs destroyed (crypto-shredding).',
      registers,
    });
    this.kekVersionsDestroyed = new Counter({
      name: 'strongroom_kek_versions_destroyed_total',
      help: 'Retired KEK versions destroyed once every wrapped key had moved off them and their retention had passed.',
      labelNames: ['classification'],
      registers,
    });
    this.revocations = new Counter({
      name: 'strongroom_revocations_published_total',
      help: 'Revocations published to the brokers, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.brokerCalls = new Histogram({
      name: 'strongroom_broker_call_duration_seconds',
      help: 'Key broker RPC latency by method and gRPC status code.',
      labelNames: ['method', 'code'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5],
      registers,
    });
    this.brokerStreams = new Gauge({
      name: 'strongroom_broker_revocation_streams',
      help: 'Open WatchRevocations streams.',
      registers,
    });
    this.webhookAdmissions = new Histogram({
      name: 'strongroom_webhook_admission_duration_seconds',
      help: 'Sidecar-injecting webhook latency by outcome (injected, skipped, denied, error, bad-request).',
      labelNames: ['outcome'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
      registers,
    });
    this.revocationToWipe = new Histogram({
      name: 'strongroom_revocation_to_wipe_seconds',
      help: "Time-to-revoke: from the end of access to the broker's receipt of the sidecar's confirmed wipe.",
      buckets: REVOCATION_BUCKETS,
      registers,
    });
    this.wipeReports = new Counter({
      name: 'strongroom_sidecar_wipe_reports_total',
      help: 'Wipe reports (ReportWipe) received from sidecars, by outcome (recorded, unmatched, duplicate, invalid, refused, unavailable).',
      labelNames: ['outcome'],
      registers,
    });
    const compliant = this.kekRotationCompliant;
    this.rotationCompliance = new Gauge({
      name: 'strongroom_rotation_compliance_ratio',
      help: 'Share of KEKs whose primary version is younger than their classification rotation period (0 to 1).',
      labelNames: ['classification'],
      registers,
      // From strongroom_kek_rotation_compliant at every scrape, so the two never disagree.
      async collect() {
        const byClass = new Map<string, { within: number; all: number }>();
        for (const v of (await compliant.get()).values) {
          const classification = String(v.labels.classification ?? 'unknown');
          const c = byClass.get(classification) ?? { within: 0, all: 0 };
          byClass.set(classification, { within: c.within + (v.value >= 1 ? 1 : 0), all: c.all + 1 });
        }
        this.reset();
        for (const [classification, c] of byClass) this.set({ classification }, c.within / c.all);
      },
    });
    this.keyReleases = new Counter({
      name: 'strongroom_key_releases_total',
      help: 'ReleaseKey answers by decision: allow (a key was returned), deny (refused by a decision), error (no decision: audit log or KMS unavailable, internal error).',
      labelNames: ['decision'],
      registers,
    });
    this.keyReleasesAudited = new Counter({
      name: 'strongroom_key_releases_audited_total',
      help: 'Keys returned by ReleaseKey (allow) with an allow entry the audit log made durable, counted where the key left.',
      registers,
    });
    this.auditCoverage = new Gauge({
      name: 'strongroom_audit_coverage_ratio',
      help: 'Audited key releases / key releases returned since the process started; 1 when none was returned. Anything below 1 is a key that left unaudited.',
      registers,
      collect: () => {
        const returned = this.#releasesReturned;
        this.auditCoverage.set(returned === 0 ? 1 : this.#releasesAudited / returned);
      },
    });
    this.approvalsPending = new Gauge({
      name: 'strongroom_approvals_pending',
      help: 'AccessGrants waiting for approvals (phase Pending, reason AwaitingApproval), by classification.',
      labelNames: ['classification'],
      registers,
    });
    this.brokerDecisions = new Counter({
      name: 'strongroom_broker_decisions_total',
      help: 'Audited key broker decisions by operation, decision and reason.',
      labelNames: ['operation', 'decision', 'reason'],
      registers,
    });
    this.auditCheckpointSize = new Gauge({
      name: 'strongroom_audit_checkpoint_size',
      help: "Tree size of the writer's last audit checkpoint published to ConfigMap strongroom-audit-checkpoints.",
      labelNames: ['writer'],
      registers,
    });
    this.auditCheckpointPublished = new Gauge({
      name: 'strongroom_audit_checkpoint_published_timestamp_seconds',
      help: "When the writer's audit checkpoint was last published, Unix seconds.",
      labelNames: ['writer'],
      registers,
    });
    this.auditRollbackDetected = new Gauge({
      name: 'strongroom_audit_rollback_detected',
      help: '1 once the audit log was refused on open as rolled back, or a foreign checkpoint was found published for it; stays 1 until restart.',
      labelNames: ['writer'],
      registers,
    });
    this.auditCheckpointPublishing = new Gauge({
      name: 'strongroom_audit_checkpoint_publishing',
      help: '1 when this replica publishes its audit checkpoints to ConfigMap strongroom-audit-checkpoints, 0 when that is off.',
      labelNames: ['writer'],
      registers,
    });
    this.auditSignFailures = new Counter({
      name: 'strongroom_audit_sign_failures_total',
      help: 'Audit checkpoints that could not be signed; their entries were written and acknowledged without a checkpoint, and signing is retried at the next checkpoint interval.',
      registers,
    });
    this.leader = new Gauge({
      name: 'strongroom_leader',
      help: '1 while this replica holds the leader Lease, 0 otherwise.',
      registers,
    });
    this.caNotAfterSeconds = new Gauge({
      name: 'strongroom_ca_not_after_timestamp_seconds',
      help: 'Expiry (notAfter) of each CA certificate, Unix seconds.',
      labelNames: ['ca'],
      registers,
    });
    this.certificateNotAfterSeconds = new Gauge({
      name: 'strongroom_certificate_not_after_timestamp_seconds',
      help: 'Expiry (notAfter) of each serving certificate, Unix seconds.',
      labelNames: ['name'],
      registers,
    });
    this.quarantinesActive = new Gauge({
      name: 'strongroom_quarantines_active',
      help: 'Workload identities quarantined now (keys of ConfigMap strongroom-quarantines).',
      registers,
    });
    this.anomalyAlerts = new Counter({
      name: 'strongroom_anomaly_alerts_total',
      help: "Anomaly alerts raised by this replica's detector, by rule and severity.",
      labelNames: ['rule', 'severity'],
      registers,
    });
    this.anomalyResponseFailures = new Counter({
      name: 'strongroom_anomaly_response_failures_total',
      help: 'Responses to anomaly alerts (audit entries, quarantine writes) dropped because too many were pending (kind="dropped") or refused by the API server and retried slowly (kind="refused").',
      labelNames: ['kind'],
      registers,
    });
    // Both series exist from the start, so that increase() sees the first failure.
    for (const kind of ['dropped', 'refused']) this.anomalyResponseFailures.inc({ kind }, 0);
    this.leader.set(0);
  }

  /**
   * A broker decision made durable in the audit log (BrokerAuditTrail's callback): counts
   * strongroom_broker_decisions_total; an allowed release is held until its key is returned
   * ({@link recordKeyRelease}), where it counts as audited.
   */
  readonly recordBrokerDecision = (operation: string, decision: string, reason: string): void => {
    this.brokerDecisions.inc({ operation, decision, reason });
    if (operation === 'release-key' && decision === 'allow') {
      this.#dropStaleAudited();
      this.#auditedUnsent.push(performance.now());
    }
  };

  /**
   * A ReleaseKey answer as it leaves the broker (mtls-handlers.ts): `allow` when the key was handed to the caller.
   * Both sides of strongroom_audit_coverage_ratio are counted here, where the key is returned: a returned key counts
   * as audited when it takes a durable allow entry not yet matched to a returned key (appended at most
   * {@link AUDIT_TO_SEND_MS} before; the answer follows its append at once). So a release that skipped the audit
   * shows as a ratio below 1, and an answer that failed after its append (no key left) cannot lift it above 1.
   */
  readonly recordKeyRelease = (decision: 'allow' | 'deny' | 'error'): void => {
    this.keyReleases.inc({ decision });
    if (decision !== 'allow') return;
    this.#releasesReturned += 1;
    this.#dropStaleAudited();
    if (this.#auditedUnsent.shift() === undefined) return;
    this.#releasesAudited += 1;
    this.keyReleasesAudited.inc();
  };

  /** Forgets durable allow entries whose key was never returned (the answer failed after the append). */
  #dropStaleAudited(): void {
    const oldest = performance.now() - AUDIT_TO_SEND_MS;
    while (this.#auditedUnsent.length > 0 && (this.#auditedUnsent[0] ?? 0) < oldest)
      this.#auditedUnsent.shift();
  }

  /** A sidecar's wipe report: its outcome, and for a recorded one the time from the end of access (seconds). */
  readonly recordWipeReport = (outcome: WipeReportOutcome, seconds?: number): void => {
    this.wipeReports.inc({ outcome });
    if (seconds !== undefined && Number.isFinite(seconds))
      this.revocationToWipe.observe(Math.max(0, seconds));
  };

  /**
   * An observer for the watch layer. `connected` sets strongroom_watch_connected to 1; `error` and any relist but a
   * periodic one set it to 0 (the stream is being replaced). `healthChanged` drives strongroom_watch_healthy.
   */
  watchObserver(): WatchObserver {
    return {
      connected: (resource) => {
        this.watchConnected.set({ resource }, 1);
      },
      event: (resource, type) => {
        this.watchEvents.inc({ resource, type });
      },
      error: (resource, reason) => {
        this.watchErrors.inc({ resource, reason });
        this.watchConnected.set({ resource }, 0);
      },
      relist: (resource, cause) => {
        this.watchRelists.inc({ resource, cause });
        if (cause !== 'periodic') this.watchConnected.set({ resource }, 0);
      },
      healthChanged: (resource, healthy) => {
        this.watchHealthy.set({ resource }, healthy ? 1 : 0);
      },
    };
  }

  /** An observer for the work queue. Durations arrive in milliseconds and are recorded in seconds. */
  queueObserver(): QueueObserver {
    return {
      added: (queue) => {
        this.queueAdds.inc({ queue });
      },
      processed: (queue, outcome, durationMs) => {
        this.reconcileTotal.inc({ queue, outcome });
        // A clock step can make a measured duration negative; such a sample is dropped, not recorded as 0.
        if (Number.isFinite(durationMs) && durationMs >= 0) {
          this.reconcileDuration.observe({ queue, outcome }, durationMs / 1000);
        }
      },
      retried: (queue) => {
        this.queueRetries.inc({ queue });
      },
      depth: (queue, depth) => {
        if (Number.isFinite(depth) && depth >= 0) this.queueDepth.set({ queue }, depth);
      },
    };
  }
}
