/**
 * The controllers' side of the audit log: governance decisions (grants, versions, environment labels) go to the
 * same AuditLog the key broker writes, opened only on the leader. Until a log is attached, or after it is detached,
 * `record` rejects (after a short wait for the log to open), so the reconcile fails and is retried instead of
 * writing a status whose transition is not on the record (fail closed, never a silent drop).
 */
import { AuditError, type AuditLog, type GovernanceEvent } from '../../core/audit/index.ts';

/** Where controllers record governance events. Resolves once the event is durable. */
export interface GovernanceAudit {
  record(event: GovernanceEvent): Promise<void>;
}

/** Appends governance events to the leader's AuditLog. */
export class GovernanceAuditTrail implements GovernanceAudit {
  #log: Pick<AuditLog, 'append'> | undefined;
  #waiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  readonly #waitMs: number;
  readonly #onRecord: (type: string) => void;

  /** `waitMs`: how long a record waits for a log to be attached before it fails. */
  constructor(options: { waitMs?: number; onRecord?: (type: string) => void } = {}) {
    this.#waitMs = options.waitMs ?? 5_000;
    this.#onRecord = options.onRecord ?? (() => undefined);
  }

  /** Starts appending to `log` (the leader opened it). */
  attach(log: Pick<AuditLog, 'append'>): void {
    this.#log = log;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve();
  }

  /** Stops appending (the log is about to close): waiting and later records fail. */
  detach(): void {
    this.#log = undefined;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(new AuditError('closed', 'the audit log was closed'));
  }

  async record(event: GovernanceEvent): Promise<void> {
    if (this.#log === undefined) await this.#attached();
    const log = this.#log;
    if (log === undefined) throw new AuditError('closed', 'the audit log is not open');
    await log.append(event);
    this.#onRecord(event.type);
  }

  #attached(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new AuditError('closed', 'the audit log is not open (not leading, or not started yet)'));
      }, this.#waitMs);
      timer.unref();
      this.#waiters.push(waiter);
    });
  }
}
