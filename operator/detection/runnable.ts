/**
 * Anomaly detection in the operator (docs/detection.md). On every replica: the detector (core/detection/) reads
 * every entry this replica's audit log makes durable (DetectionTrail, tapped by the broker runnable), so each
 * replica's detector sees its own log only: the broker on every replica releases keys and audits them in its own
 * log, so a detector on the leader only would miss the followers' traffic. Each alert, in order, one at a time:
 *   1. an `anomaly-alert` audit entry (retried with backoff: the alert must be on the record);
 *   2. `strongroom_anomaly_alerts_total{rule,severity}` and one structured log line `anomaly detected`;
 *   3. a Warning Event `AnomalyDetected` on the identity's ServiceAccount (on the ModelArtifact for an alert that
 *      names no identity);
 *   4. when its severity is at least `quarantine.minSeverity` and it names an identity: the identity is quarantined
 *      (a key added to ConfigMap strongroom-quarantines, operator/quarantine/store.ts), then an
 *      `identity-quarantined` audit entry and a Warning Event `Quarantined` on the ServiceAccount. The write is
 *      retried with backoff until it succeeds (fail closed: every failure is logged at error); an identity already
 *      quarantined is left as it is (idempotent, and a second replica's alert adds nothing).
 * The configuration comes from ConfigMap strongroom-detection (settings.ts); a valid change starts a new detector
 * (its baselines start again). The detector's clock is the entries' time, never the wall clock.
 */
import type { V1ConfigMap } from '@kubernetes/client-node';
import type winston from 'winston';
import { GROUP, MODEL_ARTIFACT_KIND, VERSION } from '../../core/api/index.ts';
import type { AppendedEntry } from '../../core/audit/index.ts';
import { AnomalyDetector, alertEvent, severityAtLeast, type Alert } from '../../core/detection/index.ts';
import { quarantineKey } from '../../core/policy/quarantine.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { Informer } from '../kube/informer.ts';
import type { Runnable } from '../manager/runnable.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';
import type { QuarantineStore } from '../quarantine/store.ts';
import type { DetectionSettings } from './settings.ts';
import type { DetectionAudit, DetectionTrail } from './trail.ts';

/** The actor of what the operator does on its own. */
export const OPERATOR_ACTOR = 'strongroom-operator';

export interface AnomalyDetectionOptions {
  readonly trail: Pick<DetectionTrail, 'onEntry' | 'onSeed'>;
  readonly audit: DetectionAudit;
  readonly settings: Pick<DetectionSettings, 'current' | 'update' | 'where'>;
  /** The informer on ConfigMap strongroom-detection. */
  readonly config: Pick<Informer<V1ConfigMap>, 'onEvent' | 'get'>;
  readonly quarantines: Pick<QuarantineStore, 'add' | 'lookup'>;
  readonly events: Pick<EventRecorder, 'record'>;
  readonly metrics: Pick<OperatorMetrics, 'anomalyAlerts'>;
  readonly logger: winston.Logger;
  /** Retry backoff of the audit append and the quarantine write: first and longest delay; default 500 ms, 30 s. */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  readonly now?: () => Date;
}

/** The Kubernetes object an alert's Event is recorded on. */
function eventTarget(alert: Alert) {
  if (alert.identity !== null)
    return {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { namespace: alert.identity.namespace, name: alert.identity.serviceAccount },
    };
  if (alert.artifact !== null)
    return {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: MODEL_ARTIFACT_KIND,
      metadata: { namespace: alert.artifact.namespace, name: alert.artifact.name },
    };
  return undefined;
}

export class AnomalyDetection implements Runnable {
  readonly name = 'anomaly-detection';
  readonly needsLeader = false;
  readonly #o: AnomalyDetectionOptions;
  #detector: AnomalyDetector;
  #running = false;
  /** The alerts being handled, one at a time, in order. */
  #chain: Promise<void> = Promise.resolve();
  #stopped: () => void = () => undefined;
  readonly #stopping: Promise<void>;

  constructor(options: AnomalyDetectionOptions) {
    this.#o = options;
    this.#detector = new AnomalyDetector(options.settings.current);
    this.#stopping = new Promise((resolve) => {
      this.#stopped = resolve;
    });
    options.config.onEvent((event) => {
      if (this.#o.settings.update(event.type === 'deleted' ? undefined : event.object)) this.#reconfigure();
    });
    options.trail.onEntry((entry) => {
      this.observe(entry);
    });
    options.trail.onSeed((entry) => {
      this.#detector.seed(entry);
    });
  }

  start(): void {
    // A change between construction and the first list emits no event: catch up once.
    if (this.#o.settings.update(this.#o.config.get(this.#o.settings.where))) this.#reconfigure();
    this.#running = true;
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#stopped();
    await this.#chain;
  }

  /** Feeds one durable entry to the detector and queues the handling of its alerts. */
  observe(entry: AppendedEntry): void {
    if (!this.#running) return;
    const time = Date.parse(entry.time);
    if (Number.isNaN(time)) return;
    let alerts: Alert[];
    try {
      alerts = this.#detector.observe({ origin: entry.origin, seq: entry.seq, time, event: entry.event });
    } catch (error) {
      this.#o.logger.error('the anomaly detector failed on an audit entry', {
        origin: entry.origin,
        seq: entry.seq,
        error: error instanceof Error ? error.message : String(error),
      });
      return;
    }
    for (const alert of alerts) {
      this.#chain = this.#chain.then(() => this.#handle(alert));
    }
  }

  /** Resolves once every alert seen so far is handled (tests). */
  async idle(): Promise<void> {
    await this.#chain;
  }

  /** Whether stop() was called (read after an await). */
  #stoppedNow(): boolean {
    return !this.#running;
  }

  #reconfigure(): void {
    this.#detector = new AnomalyDetector(this.#o.settings.current);
  }

  async #handle(alert: Alert): Promise<void> {
    const o = this.#o;
    const fields = { alertId: alert.id, rule: alert.rule, severity: alert.severity };
    await this.#retry('append the anomaly alert to the audit log', fields, () =>
      o.audit.record(alertEvent(alert)),
    );
    o.metrics.anomalyAlerts.inc({ rule: alert.rule, severity: alert.severity });
    o.logger.warn('anomaly detected', { alert });
    const target = eventTarget(alert);
    if (target !== undefined)
      o.events.record(
        target,
        'Warning',
        'AnomalyDetected',
        `${alert.message} (alert ${alert.id}, rule ${alert.rule}, severity ${alert.severity})`,
      );
    const minimum = o.settings.current.quarantineMinSeverity;
    const identity = alert.identity;
    if (minimum === null || identity === null || !severityAtLeast(alert.severity, minimum)) return;
    if (o.quarantines.lookup(identity).state === 'quarantined') return;
    const who = `${identity.namespace}/${identity.serviceAccount}`;
    const record = {
      since: (o.now?.() ?? new Date()).toISOString(),
      alertId: alert.id,
      rule: alert.rule,
      severity: alert.severity,
      reason: alert.message,
    };
    const added = await this.#retry('quarantine the identity', { ...fields, identity: who }, () =>
      o.quarantines.add(identity, record),
    );
    if (added !== 'added') return;
    o.logger.warn('identity quarantined', { ...fields, identity: who, key: quarantineKey(identity) });
    o.events.record(
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { namespace: identity.namespace, name: identity.serviceAccount },
      },
      'Warning',
      'Quarantined',
      `Strongroom quarantined service account ${who} after anomaly alert ${alert.id} (rule ${alert.rule}, severity ${alert.severity}): ${alert.message} Its grants are suspended and its keys revoked; a member of the security groups lifts it by removing key ${quarantineKey(identity)} from ConfigMap strongroom-quarantines.`,
    );
    await this.#retry('append the quarantine to the audit log', fields, () =>
      o.audit.record({
        type: 'identity-quarantined',
        identity: { namespace: identity.namespace, serviceAccount: identity.serviceAccount },
        actor: OPERATOR_ACTOR,
        reason: 'AnomalyDetected',
        alertId: alert.id,
        severity: alert.severity,
        detail: alert.message.slice(0, 1024),
      }),
    );
  }

  /**
   * Runs `work` until it succeeds, with exponential backoff, logging each failure at error; its result, or
   * undefined once stopped.
   */
  async #retry<T>(
    what: string,
    fields: Record<string, unknown>,
    work: () => Promise<T>,
  ): Promise<T | undefined> {
    const { initial, max } = this.#o.backoffMs ?? { initial: 500, max: 30_000 };
    for (let attempt = 0; ; attempt++) {
      try {
        return await work();
      } catch (error) {
        const delay = Math.min(max, initial * 2 ** Math.min(attempt, 16));
        this.#o.logger.error(`could not ${what}; retrying`, {
          ...fields,
          attempt: attempt + 1,
          retryInMs: this.#running ? delay : undefined,
          error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
        });
        if (!this.#running) return undefined;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, delay);
          }),
          this.#stopping,
        ]);
        clearTimeout(timer);
        // One last attempt on the way out would race the log's close; the failure is logged above.
        if (this.#stoppedNow()) return undefined;
      }
    }
  }
}
