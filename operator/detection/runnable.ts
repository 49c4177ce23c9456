/**
 * Anomaly detection in the operator (docs/detection.md). On every replica: the detector (core/detection/) reads
 * every entry this replica's audit log makes durable (DetectionTrail, tapped by the broker runnable), so each
 * replica's detector sees its own log only: the broker on every replica releases keys and audits them in its own
 * log, so a detector on the leader only would miss the followers' traffic. Each alert, on its own (one alert's
 * failing write never holds up another's):
 *   1. at once: `strongroom_anomaly_alerts_total{rule,severity}`, one structured log line `anomaly detected`, and a
 *      Warning Event `AnomalyDetected` on the identity's ServiceAccount (on the ModelArtifact for an alert that names
 *      no identity);
 *   2. an `anomaly-alert` audit entry, retried with backoff (the alert must be on the record);
 *   3. when its severity is at least `quarantine.minSeverity` and it names an identity: the identity is quarantined
 *      (a key added to ConfigMap strongroom-quarantines, operator/quarantine/store.ts), then an
 *      `identity-quarantined` audit entry and a Warning Event `Quarantined` on the ServiceAccount. Quarantine writes
 *      run one per identity (a second alert for an identity whose write is pending merges into it), each with its own
 *      backoff; a refusal that retrying will not cure (a 4xx other than 409 and 429: RBAC, admission, a ConfigMap
 *      too large) is logged at error, counted, and retried slowly. An identity already quarantined is left as it is
 *      (idempotent, and a second replica's alert adds nothing).
 * Pending writes are bounded (maxPending audit appends, maxIdentities quarantine writes); past that an alert's write
 * is dropped, logged at error and counted.
 *
 * Restarts: alert ids are deterministic, so the alerts the detector raises while it is seeded from the log written
 * before the restart are checked against that log: those with no `anomaly-alert` entry are handled after start
 * (they were lost to the stop), and quarantine-level ones with no later `identity-quarantined` or `identity-lifted`
 * entry for their identity are quarantined (unless quarantined already), for alerts up to catchUpMs older than the
 * log's last entry. stop() ends every retry loop: each makes one last attempt, all within drainMs; what fails then
 * is logged as given up (and is caught up at the next start from the log). Detection stops before the broker
 * (operator.ts), so the log is still open while it drains.
 *
 * The configuration comes from ConfigMap strongroom-detection (settings.ts); a valid change starts a new detector
 * (its baselines start again). The detector's clock is the entries' time, never the wall clock.
 */
import type { V1ConfigMap } from '@kubernetes/client-node';
import type winston from 'winston';
import { GROUP, MODEL_ARTIFACT_KIND, VERSION } from '../../core/api/index.ts';
import type { AppendedEntry } from '../../core/audit/index.ts';
import {
  AnomalyDetector,
  alertEvent,
  severityAtLeast,
  type Alert,
  type DetectorEntry,
} from '../../core/detection/index.ts';
import { quarantineKey, type WorkloadRef } from '../../core/policy/quarantine.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { Informer } from '../kube/informer.ts';
import type { Runnable } from '../manager/runnable.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';
import { QuarantineWriteError, type QuarantineStore } from '../quarantine/store.ts';
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
  readonly metrics: Pick<OperatorMetrics, 'anomalyAlerts' | 'anomalyResponseFailures'>;
  readonly logger: winston.Logger;
  /** Retry backoff of the audit appends and the quarantine writes: first and longest delay; default 500 ms, 30 s. */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  /** The delay between attempts of a quarantine write the API server refuses for good; default 300 000 ms. */
  readonly permanentRetryMs?: number;
  /** Audit appends pending at once (each alert's, each quarantine's); default 1000. */
  readonly maxPending?: number;
  /** Identities whose quarantine write is pending at once; default 1000. */
  readonly maxIdentities?: number;
  /** How long stop() waits for the last attempts; default 5000 ms. */
  readonly drainMs?: number;
  /** How much older than the log's last entry a seeded alert may be and still be caught up; default 3 600 000 ms. */
  readonly catchUpMs?: number;
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

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return `${error.name}: ${error.message}${cause}`;
}

/** Whether retrying `error` soon cannot help: the API server refused the quarantine write with a 4xx but 409/429. */
export function permanentWriteError(error: unknown): boolean {
  if (!(error instanceof QuarantineWriteError)) return false;
  const cause = error.cause;
  const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
  return typeof code === 'number' && code >= 400 && code < 500 && code !== 409 && code !== 429;
}

/** One identity's pending quarantine write; alerts for it while it is pending merge into it. */
interface QuarantineJob {
  readonly identity: WorkloadRef;
  /** The first alert: its record is the one written. */
  readonly alert: Alert;
  /** The ids of every alert merged into it. */
  readonly alertIds: string[];
}

/** What seeding learned: the alerts raised, and which of them the log shows handled. */
interface SeededAlert {
  readonly alert: Alert;
  audited: boolean;
  /** An identity-quarantined or identity-lifted entry for its identity follows it in the log. */
  settled: boolean;
}

type State = 'new' | 'running' | 'stopping' | 'stopped';

export class AnomalyDetection implements Runnable {
  readonly name = 'anomaly-detection';
  readonly needsLeader = false;
  readonly #o: AnomalyDetectionOptions;
  #detector: AnomalyDetector;
  #state: State = 'new';
  /** Writes in flight (audit appends and quarantine loops). */
  readonly #work = new Set<Promise<void>>();
  #appends = 0;
  readonly #jobs = new Map<string, QuarantineJob>();
  /** Sleeping retry loops, woken by stop(). */
  readonly #sleepers = new Set<() => void>();
  /** Alerts raised by live entries before start(). */
  #early: Alert[] = [];
  #seeded = new Map<string, SeededAlert>();
  #seededUntil = 0;
  /**
   * Writes dropped (queue full) and quarantine writes refused for good, since start (tests); exported as
   * strongroom_anomaly_response_failures_total{kind="dropped"|"refused"}.
   */
  readonly failures = { dropped: 0, permanent: 0 };

  constructor(options: AnomalyDetectionOptions) {
    this.#o = options;
    this.#detector = new AnomalyDetector(options.settings.current);
    options.config.onEvent((event) => {
      if (this.#o.settings.update(event.type === 'deleted' ? undefined : event.object)) this.#reconfigure();
    });
    options.trail.onEntry((entry) => {
      this.observe(entry);
    });
    options.trail.onSeed((entry) => {
      this.#seed(entry);
    });
  }

  start(): void {
    // A change between construction and the first list emits no event: catch up once.
    if (this.#o.settings.update(this.#o.config.get(this.#o.settings.where))) this.#reconfigure();
    this.#state = 'running';
    const early = this.#early;
    this.#early = [];
    this.#catchUp();
    for (const alert of early) this.#raise(alert);
  }

  /** Ends every retry loop: each makes one last attempt; waits for them up to drainMs. */
  async stop(): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped') return;
    this.#state = 'stopping';
    for (const wake of this.#sleepers) wake();
    this.#sleepers.clear();
    const drainMs = this.#o.drainMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      this.idle().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => {
          resolve(false);
        }, drainMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained)
      this.#o.logger.error('anomaly detection stopped with writes still in flight', {
        pending: this.#work.size,
        drainMs,
      });
    this.#state = 'stopped';
  }

  /** Feeds one durable entry to the detector and handles its alerts. */
  observe(entry: AppendedEntry): void {
    if (this.#state === 'stopping' || this.#state === 'stopped') return;
    const time = Date.parse(entry.time);
    if (Number.isNaN(time)) return;
    const alerts = this.#detect({ origin: entry.origin, seq: entry.seq, time, event: entry.event });
    if (this.#state === 'new') {
      this.#early.push(...alerts);
      return;
    }
    // Seeding after start (an operator wired in the other order): its alerts are caught up at the first entry.
    this.#catchUp();
    for (const alert of alerts) this.#raise(alert);
  }

  /** Resolves once every write started so far has ended (tests). */
  async idle(): Promise<void> {
    while (this.#work.size > 0) await Promise.allSettled([...this.#work]);
  }

  #detect(entry: DetectorEntry): Alert[] {
    try {
      return this.#detector.observe(entry);
    } catch (error) {
      this.#o.logger.error('the anomaly detector failed on an audit entry', {
        origin: entry.origin,
        seq: entry.seq,
        error: error instanceof Error ? error.message : String(error),
      });
      return [];
    }
  }

  /** One entry of the log written before this start: builds the detector's state and notes what it handled. */
  #seed(entry: DetectorEntry): void {
    const time = typeof entry.time === 'number' ? entry.time : Date.parse(entry.time);
    if (!Number.isNaN(time)) this.#seededUntil = Math.max(this.#seededUntil, time);
    for (const alert of this.#detect(entry))
      this.#seeded.set(alert.id, { alert, audited: false, settled: false });
    const event = entry.event;
    if (event.type === 'anomaly-alert') {
      const seeded = this.#seeded.get(event.alert.id);
      if (seeded !== undefined) seeded.audited = true;
    } else if (event.type === 'identity-quarantined' || event.type === 'identity-lifted') {
      const key = quarantineKey(event.identity);
      for (const seeded of this.#seeded.values())
        if (seeded.alert.identity !== null && quarantineKey(seeded.alert.identity) === key)
          seeded.settled = true;
    }
  }

  /** Handles what the seeded log shows unhandled (see the module comment). */
  #catchUp(): void {
    if (this.#seeded.size === 0) return;
    const seeded = [...this.#seeded.values()];
    this.#seeded = new Map();
    const since = this.#seededUntil - (this.#o.catchUpMs ?? 3_600_000);
    let alerts = 0;
    let quarantines = 0;
    for (const { alert, audited, settled } of seeded) {
      if (alert.to < since) continue;
      if (!audited) {
        alerts++;
        this.#raise(alert, { quarantine: !settled, caughtUp: true });
      } else if (!settled && this.#quarantineLevel(alert)) {
        quarantines++;
        this.#enqueueQuarantine(alert);
      }
    }
    if (alerts + quarantines > 0)
      this.#o.logger.warn('handling alerts raised before the restart that the audit log shows unhandled', {
        alerts,
        quarantines,
      });
  }

  #reconfigure(): void {
    this.#detector = new AnomalyDetector(this.#o.settings.current);
  }

  #quarantineLevel(alert: Alert): boolean {
    const minimum = this.#o.settings.current.quarantineMinSeverity;
    return minimum !== null && alert.identity !== null && severityAtLeast(alert.severity, minimum);
  }

  /** Reports `alert` at once, and starts its audit append and (at quarantine level) its identity's quarantine. */
  #raise(alert: Alert, options: { quarantine?: boolean; caughtUp?: boolean } = {}): void {
    const o = this.#o;
    o.metrics.anomalyAlerts.inc({ rule: alert.rule, severity: alert.severity });
    o.logger.warn('anomaly detected', { alert, ...(options.caughtUp ? { caughtUp: true } : {}) });
    const target = eventTarget(alert);
    if (target !== undefined)
      o.events.record(
        target,
        'Warning',
        'AnomalyDetected',
        `${alert.message} (alert ${alert.id}, rule ${alert.rule}, severity ${alert.severity})`,
      );
    const fields = { alertId: alert.id, rule: alert.rule, severity: alert.severity };
    this.#append('append the anomaly alert to the audit log', fields, alertEvent(alert));
    if ((options.quarantine ?? true) && this.#quarantineLevel(alert)) this.#enqueueQuarantine(alert);
  }

  /** Appends `event` to the audit log on its own, retried (bounded by maxPending). */
  #append(
    what: string,
    fields: Record<string, unknown>,
    event: Parameters<DetectionAudit['record']>[0],
  ): void {
    if (this.#appends >= (this.#o.maxPending ?? 1000)) {
      this.#failed('dropped');
      this.#o.logger.error(`could not ${what}: too many audit appends pending; dropped`, fields);
      return;
    }
    this.#appends++;
    this.#track(
      this.#retry(what, fields, () => this.#o.audit.record(event)).then(
        () => undefined,
        () => undefined,
      ),
      () => {
        this.#appends--;
      },
    );
  }

  /** Counts a response to an alert that was dropped or refused, in failures and the metric. */
  #failed(kind: 'dropped' | 'refused'): void {
    if (kind === 'dropped') this.failures.dropped++;
    else this.failures.permanent++;
    this.#o.metrics.anomalyResponseFailures.inc({ kind });
  }

  #track(work: Promise<void>, done?: () => void): void {
    const tracked = work.finally(() => {
      this.#work.delete(tracked);
      done?.();
    });
    this.#work.add(tracked);
  }

  /** Quarantines the alert's identity, merged into its pending write if there is one. */
  #enqueueQuarantine(alert: Alert): void {
    const identity = alert.identity;
    if (identity === null) return;
    const key = quarantineKey(identity);
    const pending = this.#jobs.get(key);
    if (pending !== undefined) {
      pending.alertIds.push(alert.id);
      return;
    }
    if (this.#o.quarantines.lookup(identity).state === 'quarantined') return;
    const who = `${identity.namespace}/${identity.serviceAccount}`;
    if (this.#jobs.size >= (this.#o.maxIdentities ?? 1000)) {
      this.#failed('dropped');
      this.#o.logger.error('could not quarantine the identity: too many quarantine writes pending; dropped', {
        alertId: alert.id,
        identity: who,
      });
      return;
    }
    const job: QuarantineJob = { identity, alert, alertIds: [alert.id] };
    this.#jobs.set(key, job);
    this.#track(this.#quarantine(job), () => {
      this.#jobs.delete(key);
    });
  }

  async #quarantine(job: QuarantineJob): Promise<void> {
    const o = this.#o;
    const { identity, alert } = job;
    const who = `${identity.namespace}/${identity.serviceAccount}`;
    const fields = { alertId: alert.id, rule: alert.rule, severity: alert.severity, identity: who };
    const record = {
      since: (o.now?.() ?? new Date()).toISOString(),
      alertId: alert.id,
      rule: alert.rule,
      severity: alert.severity,
      reason: alert.message,
    };
    const added = await this.#retry(
      'quarantine the identity',
      fields,
      () =>
        o.quarantines.lookup(identity).state === 'quarantined'
          ? Promise.resolve('present' as const)
          : o.quarantines.add(identity, record),
      (error) => {
        if (!permanentWriteError(error)) return undefined;
        this.#failed('refused');
        return o.permanentRetryMs ?? 300_000;
      },
    );
    if (added !== 'added') return;
    o.logger.warn('identity quarantined', {
      ...fields,
      alertIds: job.alertIds,
      key: quarantineKey(identity),
    });
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
    this.#append('append the quarantine to the audit log', fields, {
      type: 'identity-quarantined',
      identity: { namespace: identity.namespace, serviceAccount: identity.serviceAccount },
      actor: OPERATOR_ACTOR,
      reason: 'AnomalyDetected',
      alertId: alert.id,
      severity: alert.severity,
      detail: alert.message.slice(0, 1024),
    });
  }

  /**
   * Runs `work` until it succeeds, with exponential backoff (or the delay `slow` names for an error it knows),
   * logging each failure at error; once stop() is called, one last attempt, then its result or undefined.
   */
  async #retry<T>(
    what: string,
    fields: Record<string, unknown>,
    work: () => Promise<T>,
    slow: (error: unknown) => number | undefined = () => undefined,
  ): Promise<T | undefined> {
    const { initial, max } = this.#o.backoffMs ?? { initial: 500, max: 30_000 };
    for (let attempt = 0; ; attempt++) {
      try {
        return await work();
      } catch (error) {
        const permanent = slow(error);
        const details = { ...fields, attempt: attempt + 1, error: describeError(error) };
        if (this.#state === 'stopping' || this.#state === 'stopped') {
          this.#o.logger.error(
            `could not ${what}; giving up as the operator stops (caught up from the audit log at the next start)`,
            details,
          );
          return undefined;
        }
        const delay = permanent ?? Math.min(max, initial * 2 ** Math.min(attempt, 16));
        this.#o.logger.error(
          permanent === undefined
            ? `could not ${what}; retrying`
            : `could not ${what}: the API server refuses it, which retrying soon will not cure; retrying slowly`,
          { ...details, retryInMs: delay },
        );
        await this.#sleep(delay);
      }
    }
  }

  /** Waits `ms`, or until stop() wakes it. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#sleepers.add(wake);
    });
  }
}
