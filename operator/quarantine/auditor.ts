/**
 * What happens to ConfigMap strongroom-quarantines outside the operator's own additions, as the informer shows it:
 * - on every replica, `strongroom_quarantines_active` follows the number of quarantined identities;
 * - on the leader only (a runnable per leadership term), each key that disappears is audited as `identity-lifted`
 *   (actor `unknown`: Kubernetes does not tell the operator who removed it; the admission policy lets only the
 *   security groups do so), and each key that appears with an empty alertId (a security team's manual quarantine)
 *   as `identity-quarantined` (actor `unknown`, reason `QuarantinedManually`). The operator's own additions are
 *   audited where they are made (operator/detection/runnable.ts). The comparison starts from what the cache holds
 *   when the term starts: a lift while no replica leads is not audited (docs/detection.md).
 * A failed append is retried with backoff until it succeeds or the term ends.
 */
import type { V1ConfigMap } from '@kubernetes/client-node';
import type winston from 'winston';
import { isSeverity } from '../../core/detection/index.ts';
import type { Quarantine, QuarantineSet } from '../../core/policy/quarantine.ts';
import type { DetectionAudit } from '../detection/trail.ts';
import type { Informer } from '../kube/informer.ts';
import type { Runnable } from '../manager/runnable.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';
import type { QuarantineStore } from './store.ts';

export interface QuarantineAuditorOptions {
  readonly store: Pick<QuarantineStore, 'current'>;
  readonly informer: Pick<Informer<V1ConfigMap>, 'onEvent'>;
  readonly audit: DetectionAudit;
  readonly metrics: Pick<OperatorMetrics, 'quarantinesActive'>;
  readonly logger: winston.Logger;
  readonly retryMs?: number;
}

export class QuarantineAuditor implements Runnable {
  readonly name = 'quarantine-audit';
  readonly needsLeader = true;
  readonly #o: QuarantineAuditorOptions;
  /** The keys as last compared; undefined while not leading. */
  #known: Map<string, Quarantine> | undefined;
  #chain: Promise<void> = Promise.resolve();
  #running = false;

  constructor(options: QuarantineAuditorOptions) {
    this.#o = options;
    options.informer.onEvent(() => {
      const set = options.store.current();
      if (set !== undefined) options.metrics.quarantinesActive.set(set.byKey.size);
      if (set !== undefined && this.#running) this.#compare(set);
    });
  }

  start(): void {
    this.#running = true;
    const set = this.#o.store.current();
    this.#known = set === undefined ? undefined : new Map(set.byKey);
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#known = undefined;
    await this.#chain;
  }

  /** Whether this term goes on (read after an await). */
  #leading(): boolean {
    return this.#running;
  }

  #compare(set: QuarantineSet): void {
    const before = this.#known;
    this.#known = new Map(set.byKey);
    if (before === undefined) return;
    for (const [key, q] of before) {
      if (set.byKey.has(key)) continue;
      this.#append(key, {
        type: 'identity-lifted',
        identity: { ...q.identity },
        actor: 'unknown',
        reason: 'QuarantineLifted',
      });
    }
    for (const [key, q] of set.byKey) {
      if (before.has(key) || q.record.alertId !== '') continue;
      this.#append(key, {
        type: 'identity-quarantined',
        identity: { ...q.identity },
        actor: 'unknown',
        reason: 'QuarantinedManually',
        alertId: '',
        severity: isSeverity(q.record.severity) ? q.record.severity : 'high',
        detail: q.problem === undefined ? q.record.reason.slice(0, 1024) : `unreadable record: ${q.problem}`,
      });
    }
  }

  #append(key: string, event: Parameters<QuarantineAuditorOptions['audit']['record']>[0]): void {
    this.#chain = this.#chain.then(async () => {
      // At least one attempt (a change seen just before the term ended is still recorded); retries while leading.
      for (let attempt = 1; ; attempt++) {
        try {
          await this.#o.audit.record(event);
          this.#o.logger.info(
            event.type === 'identity-lifted' ? 'quarantine lifted' : 'quarantine added manually',
            {
              key,
            },
          );
          return;
        } catch (error) {
          this.#o.logger.error('could not audit a quarantine change', {
            key,
            type: event.type,
            attempt,
            retrying: this.#leading(),
            error: error instanceof Error ? error.message : String(error),
          });
          if (!this.#leading()) return;
          await new Promise((resolve) => setTimeout(resolve, this.#o.retryMs ?? 1000).unref());
        }
      }
    });
  }
}
