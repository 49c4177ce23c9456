/**
 * Anomaly detection's side of this replica's audit log (operator/broker/runnable.ts attaches it while the log is
 * open, on every replica): every durable entry goes to the listeners (the detector), and `record` appends the
 * detection's own events (anomaly-alert, identity-quarantined, identity-lifted). Until a log is attached, `record`
 * waits a little for it, then rejects, so the caller retries instead of losing the record; once it is detached (the
 * log closes at shutdown), `record` rejects at once, so that a stopping detection does not wait on a closed log.
 */
import { existsSync } from 'node:fs';
import { AuditError, type AppendedEntry, type AuditLog } from '../../core/audit/index.ts';
import type { DetectionEvent } from '../../core/audit/event.ts';
import { logEntries, type DetectorEntry } from '../../core/detection/index.ts';
import type { AuditTap } from '../broker/runnable.ts';

/** Where detection records its events. Resolves once the event is durable. */
export interface DetectionAudit {
  record(event: DetectionEvent): Promise<void>;
}

export class DetectionTrail implements AuditTap, DetectionAudit {
  #log: Pick<AuditLog, 'append'> | undefined;
  #detached = false;
  readonly #listeners: ((entry: AppendedEntry) => void)[] = [];
  readonly #seeders: ((entry: DetectorEntry) => void)[] = [];
  #waiters: (() => void)[] = [];
  readonly #waitMs: number;

  /** `waitMs`: how long a record waits for a log to be attached before it fails. */
  constructor(options: { waitMs?: number } = {}) {
    this.#waitMs = options.waitMs ?? 5_000;
  }

  /** Calls `listener` with every durable entry of the log, synchronously and in order. */
  onEntry(listener: (entry: AppendedEntry) => void): void {
    this.#listeners.push(listener);
  }

  /** Calls `seeder` with every entry already in the log when it is opened (before any new entry). */
  onSeed(seeder: (entry: DetectorEntry) => void): void {
    this.#seeders.push(seeder);
  }

  /**
   * Reads the log at `path` as it is before the writer opens it and hands every complete entry to the seeders, so
   * that the detector's baselines and first touches survive a restart (docs/detection.md). A missing file seeds
   * nothing. Resolves with the number of entries read.
   */
  async seed(path: string): Promise<number> {
    if (this.#seeders.length === 0 || !existsSync(path)) return 0;
    let n = 0;
    for await (const entry of logEntries(path)) {
      for (const seeder of this.#seeders) seeder(entry);
      n++;
    }
    return n;
  }

  observe(entry: AppendedEntry): void {
    for (const listener of this.#listeners) listener(entry);
  }

  attach(log: Pick<AuditLog, 'append'>): void {
    this.#log = log;
    this.#detached = false;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  detach(): void {
    this.#log = undefined;
    this.#detached = true;
  }

  async record(event: DetectionEvent): Promise<void> {
    if (this.#log === undefined && !this.#detached) await this.#attached();
    const log = this.#log;
    if (log === undefined) throw new AuditError('closed', 'the audit log is not open');
    await log.append(event);
  }

  #attached(): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve();
      }, this.#waitMs);
      timer.unref();
      this.#waiters.push(done);
    });
  }
}
