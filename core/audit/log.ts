/**
 * The durable, append-only audit log writer: one file and one origin per writer (operator replica).
 *
 * - `append` resolves only after the entry's bytes are fdatasync'ed. Appends that arrive while a sync is in
 *   flight are written and synced together by the next one (group commit).
 * - A signed checkpoint is written into the same file every `checkpointIntervalMs` (when the tree grew) and on
 *   close; a heartbeat entry every `heartbeatIntervalMs`.
 * - On open the file is verified; an incomplete last line (a crash mid-write) is cut off and synced; the writer
 *   refuses to extend a file that does not verify. Acknowledged entries were complete lines before the sync
 *   returned, so the repair never removes one.
 * - Fail closed: after any write or sync error every further append rejects until the log is reopened.
 * - A checkpoint that cannot be signed (a KMS that is unreachable, or answers with another key's signature) does not
 *   fail the log: the batch is written and acknowledged without it (its entries are durable; verify reports them as
 *   `unsigned-tail` until a later checkpoint covers them), the failure is counted (stage 'sign'), and signing is
 *   tried again at the next checkpoint interval.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isValidOrigin, peekCheckpoint, signCheckpointAsync } from './checkpoint.ts';
import { AuditError } from './errors.ts';
import { validateEvent, type AuditEvent, type KeyReleaseEvent } from './event.ts';
import { CompactMerkleTree, leafHash } from './merkle.ts';
import type { AnyNoteSigner } from './note.ts';
import { checkpointLine, entryLine, headerLine } from './record.ts';
import { formatFindings, verifyLog } from './verify.ts';

/** Where each durable entry is also sent, e.g. a winston logger writing JSON lines for a SIEM. */

/** The longest delay setTimeout/setInterval honour; a longer one fires after 1 ms (with a warning). */
const MAX_TIMER_MS = 2 ** 31 - 1;
export interface AuditExporter {
  info(message: string, meta: Record<string, unknown>): unknown;
}

/** Hooks for metrics, e.g. audit_appends_total and audit_append_failures_total. */
export interface AuditMetrics {
  onAppend?(info: { readonly seq: number; readonly latencyMs: number; readonly batchSize: number }): void;
  /**
   * `stage` is 'append' (the caller was refused), 'export' (the entry is durable, the SIEM copy failed) or 'sign'
   * (a checkpoint could not be signed: the batch was written without it, signing is tried again at the next
   * checkpoint interval).
   */
  onFailure?(error: AuditError, stage: 'append' | 'export' | 'sign'): void;
}

/** A durable entry, as the log's observers see it (after fdatasync, in seq order). */
export interface AppendedEntry {
  readonly origin: string;
  readonly seq: number;
  /** RFC 3339 with milliseconds, as written. */
  readonly time: string;
  readonly event: AuditEvent;
}

/**
 * Observers of the log, called synchronously after the bytes are durable, in order. A throwing observer is counted
 * as an export failure and never fails an append: the file is the record.
 */
export interface AuditObservers {
  /** Every durable entry. */
  onAppended?(entry: AppendedEntry): void;
  /** Every signed checkpoint once it is durable in the file (the signed note text). */
  onCheckpoint?(note: string): void;
}

export interface AuditLogOptions {
  readonly path: string;
  readonly origin: string;
  /**
   * Signs checkpoints; its key name should be the origin. It may sign asynchronously (a key held in a KMS,
   * core/kms/signing.ts). A signing failure does not fail the log: the batch is written without a checkpoint, the
   * failure is counted (onFailure stage 'sign'), and checkpoint() callers waiting for that note are rejected.
   */
  readonly signer: AnyNoteSigner;
  readonly exporter?: AuditExporter;
  readonly metrics?: AuditMetrics;
  readonly observers?: AuditObservers;
  /**
   * A signed checkpoint of this log published earlier outside the file (e.g. the ConfigMap
   * `strongroom-audit-checkpoints`). On open the file must extend it: a file shorter than it (rolled back, or
   * deleted and started anew) or inconsistent with it (rewritten) is refused with AuditError `rollback`.
   */
  readonly trustedCheckpoint?: string;
  /** Default 1000 ms; intervals over 2^31 − 1 ms (24.8 days, the longest timer Node has) are that long. */
  readonly checkpointIntervalMs?: number;
  /** Default 60000 ms; 0 disables heartbeats. */
  readonly heartbeatIntervalMs?: number;
  /** Clock in ms since the epoch (tests). */
  readonly now?: () => number;
}

export interface AppendReceipt {
  readonly seq: number;
  readonly time: string;
  /** Hex leaf hash: with an inclusion proof and a checkpoint, a receipt for this entry. */
  readonly leafHash: string;
}

interface Pending {
  readonly text: string;
  readonly receipt: AppendReceipt;
  readonly event: AuditEvent;
  readonly started: number;
  resolve(r: AppendReceipt): void;
  reject(e: AuditError): void;
}

type State = 'open' | 'failed' | 'closed';

export class AuditLog {
  readonly origin: string;
  readonly path: string;
  readonly #fh: FileHandle;
  readonly #signer: AnyNoteSigner;
  readonly #tree: CompactMerkleTree;
  readonly #exporter: AuditExporter | undefined;
  readonly #observers: AuditObservers;
  readonly #metrics: AuditMetrics;
  readonly #now: () => number;
  readonly #checkpointIntervalMs: number;
  readonly #timers: NodeJS.Timeout[] = [];
  #state: State = 'open';
  #failure: AuditError | undefined;
  #prev: string;
  #lastTime: number;
  #pending: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #checkpointed: number;
  #lastCheckpointAt: number;
  /** When signing last failed: the next attempt waits a checkpoint interval from then, not from the last note. */
  #signFailedAt = Number.NEGATIVE_INFINITY;
  #forceCheckpoint = false;
  #checkpointWaiters: { resolve(note: string): void; reject(e: AuditError): void }[] = [];
  #lastNote = '';

  private constructor(
    fh: FileHandle,
    options: AuditLogOptions,
    tree: CompactMerkleTree,
    checkpointed: number,
    lastTime: number,
  ) {
    this.#fh = fh;
    this.path = options.path;
    this.origin = options.origin;
    this.#signer = options.signer;
    this.#tree = tree;
    this.#exporter = options.exporter;
    this.#observers = options.observers ?? {};
    this.#metrics = options.metrics ?? {};
    this.#now = options.now ?? Date.now;
    this.#checkpointIntervalMs = options.checkpointIntervalMs ?? 1000;
    this.#prev = tree.lastLeaf?.toString('base64') ?? '';
    this.#lastTime = lastTime;
    this.#checkpointed = checkpointed;
    this.#lastCheckpointAt = this.#now();
  }

  /** Opens (creating if needed) the log at `options.path`, repairing a torn tail. */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    if (!isValidOrigin(options.origin))
      throw new AuditError('invalid', `invalid origin ${JSON.stringify(options.origin)}`);
    let fh: FileHandle;
    try {
      fh = await open(options.path, 'a+');
    } catch (err) {
      throw new AuditError('io', `cannot open ${options.path}`, { cause: err });
    }
    let log: AuditLog | undefined;
    try {
      const { tree, checkpointed, lastTime, repaired, previousSize } = await AuditLog.#recover(fh, options);
      log = new AuditLog(fh, options, tree, checkpointed, lastTime);
      log.#startTimers(options.heartbeatIntervalMs ?? 60_000);
      await log.append({ type: 'writer-started', previousSize, repairedBytes: repaired });
      // A writer starts only with a signed checkpoint: a signer that fails now fails the open.
      await log.checkpoint();
      return log;
    } catch (err) {
      if (log !== undefined) {
        for (const t of log.#timers) clearInterval(t);
        log.#state = 'closed';
        await log.#flushing;
      }
      await fh.close().catch(() => undefined);
      if (err instanceof AuditError) throw err;
      throw new AuditError('io', `cannot open ${options.path}`, { cause: err });
    }
  }

  static async #recover(
    fh: FileHandle,
    options: AuditLogOptions,
  ): Promise<{
    tree: CompactMerkleTree;
    checkpointed: number;
    lastTime: number;
    repaired: number;
    previousSize: number;
  }> {
    const bytes = await fh.readFile();
    const vkey = options.signer.verifier.key;
    const trusted = options.trustedCheckpoint;
    if (bytes.length === 0 && trusted !== undefined) refuseEmptyLog(options.path, trusted);
    if (bytes.length === 0) {
      await fh.write(headerLine(options.origin, vkey) + '\n');
      await fh.sync();
      await syncDirectory(options.path);
      return { tree: new CompactMerkleTree(), checkpointed: 0, lastTime: 0, repaired: 0, previousSize: 0 };
    }
    const report = verifyLog(bytes, {
      verifiers: [options.signer.verifier],
      origin: options.origin,
      skipGaps: true,
      ...(trusted === undefined ? {} : { trustedCheckpoint: trusted }),
    });
    if (report.trustedVerified === false) {
      throw new AuditError(
        'rollback',
        `${options.path} does not extend the published checkpoint (size ${checkpointSize(trusted)}): it was rolled back or rewritten; refusing to extend it:\n${formatFindings(report)}`,
      );
    }
    if (!report.ok) {
      throw new AuditError(
        'corrupt',
        `${options.path} does not verify; refusing to extend it:\n${formatFindings(report)}`,
      );
    }
    const header = JSON.parse(bytes.toString('utf8', 0, bytes.indexOf(10))) as { vkey: string };
    if (header.vkey !== vkey) {
      throw new AuditError(
        'invalid',
        `${options.path} was written with key ${header.vkey}; start a new log to rotate keys`,
      );
    }
    const repaired = bytes.length - report.completeLength;
    if (repaired > 0) {
      await fh.truncate(report.completeLength);
      await fh.sync();
    }
    return {
      tree: CompactMerkleTree.from(report.tree),
      checkpointed: report.latest?.size ?? 0,
      lastTime: report.lastTime === undefined ? 0 : Date.parse(report.lastTime),
      repaired,
      previousSize: report.entries,
    };
  }

  #startTimers(heartbeatIntervalMs: number): void {
    const cp = setInterval(
      () => {
        if (this.#tree.size > this.#checkpointed) this.#schedule();
      },
      Math.min(this.#checkpointIntervalMs, MAX_TIMER_MS),
    );
    cp.unref();
    this.#timers.push(cp);
    if (heartbeatIntervalMs > 0) {
      const hb = setInterval(() => {
        // A failed heartbeat is already counted by onFailure; the next append will reject too.
        this.append({ type: 'heartbeat', intervalMs: heartbeatIntervalMs }).catch(() => undefined);
      }, heartbeatIntervalMs);
      hb.unref();
      this.#timers.push(hb);
    }
  }

  /** Entries in the log, acknowledged or in flight. */
  get size(): number {
    return this.#tree.size;
  }

  /**
   * Appends `event`. Resolves once it is durable (fdatasync), with its receipt; rejects with an AuditError if it
   * is not, in which case the caller must not act on the decision.
   */
  append(event: AuditEvent): Promise<AppendReceipt> {
    const started = performance.now();
    try {
      this.#checkOpen();
      validateEvent(event);
      const seq = this.#tree.size;
      const time = new Date(Math.max(this.#now(), this.#lastTime)).toISOString();
      const line = entryLine({ seq, time, prev: this.#prev, event });
      const leaf = leafHash(Buffer.from(line, 'utf8'));
      this.#tree.push(leaf);
      this.#prev = leaf.toString('base64');
      this.#lastTime = Date.parse(time);
      const receipt: AppendReceipt = { seq, time, leafHash: leaf.toString('hex') };
      return new Promise<AppendReceipt>((resolve, reject) => {
        this.#pending.push({ text: line + '\n', receipt, event, started, resolve, reject });
        this.#schedule();
      });
    } catch (err) {
      const error =
        err instanceof AuditError
          ? err
          : new AuditError('invalid', 'the event cannot be recorded', { cause: err });
      this.#metrics.onFailure?.(error, 'append');
      return Promise.reject(error);
    }
  }

  /** Writes and syncs a signed checkpoint of the current tree now; resolves with the signed note. */
  checkpoint(): Promise<string> {
    try {
      this.#checkOpen();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return new Promise<string>((resolve, reject) => {
      this.#forceCheckpoint = true;
      this.#checkpointWaiters.push({ resolve, reject });
      this.#schedule();
    });
  }

  /** The latest checkpoint written by this writer. */
  get latestCheckpoint(): string {
    return this.#lastNote;
  }

  /**
   * Stops the timers, writes a final checkpoint and closes the file. A final checkpoint that cannot be signed does
   * not fail the close (the failure is counted; the entries are durable and the next open signs them); a write
   * error does.
   */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    for (const t of this.#timers) clearInterval(t);
    if (this.#state === 'open') {
      try {
        await this.checkpoint();
      } catch (err) {
        // A write error failed the log (and is thrown); a signing failure did not (and was counted).
        if (this.#failure !== undefined) throw err;
      } finally {
        this.#state = 'closed';
        await this.#flushing;
        await this.#fh.close();
      }
      return;
    }
    this.#state = 'closed';
    await this.#flushing;
    await this.#fh.close();
  }

  #checkOpen(): void {
    if (this.#state === 'closed') throw new AuditError('closed', 'the audit log is closed');
    if (this.#state === 'failed') {
      throw new AuditError('failed', 'an earlier audit write failed; reopen the log', {
        cause: this.#failure,
      });
    }
  }

  #schedule(): void {
    this.#flushing ??= this.#flushLoop();
  }

  async #flushLoop(): Promise<void> {
    // Yield once so that #schedule has stored this promise before the loop can finish and clear it.
    await Promise.resolve();
    try {
      while (
        this.#state === 'open' &&
        (this.#pending.length > 0 || this.#forceCheckpoint || this.#checkpointDue())
      ) {
        const batch = this.#pending;
        this.#pending = [];
        let text = '';
        for (const p of batch) text += p.text;
        const waiters = this.#checkpointWaiters;
        this.#checkpointWaiters = [];
        let note: string | undefined;
        let signError: AuditError | undefined;
        const signedSize = this.#tree.size;
        const forced = this.#forceCheckpoint && (signedSize > this.#checkpointed || this.#lastNote === '');
        this.#forceCheckpoint = false;
        if (forced || this.#checkpointDue()) {
          // The tree is read now; appends arriving while the signer works go to the next batch.
          const body = { origin: this.origin, size: signedSize, rootHash: this.#tree.root(), extensions: [] };
          try {
            note = await signCheckpointAsync(body, this.#signer);
            text += checkpointLine(note) + '\n';
          } catch (err) {
            // The entries do not wait for the signer: they are written without a checkpoint, and the next interval
            // tries again (a checkpoint then covers them all).
            signError = new AuditError('io', `signing the checkpoint of ${this.path} failed`, { cause: err });
            this.#signFailedAt = this.#now();
            this.#metrics.onFailure?.(signError, 'sign');
          }
        }
        try {
          await this.#fh.write(text);
          await this.#fh.datasync();
        } catch (err) {
          this.#fail(new AuditError('io', `writing ${this.path} failed`, { cause: err }), batch, waiters);
          return;
        }
        if (note !== undefined) {
          this.#checkpointed = signedSize;
          this.#lastCheckpointAt = this.#now();
          this.#lastNote = note;
        }
        this.#acknowledge(batch);
        if (note !== undefined) this.#observe(() => this.#observers.onCheckpoint?.(note));
        for (const w of waiters) {
          if (signError === undefined) w.resolve(this.#lastNote);
          else w.reject(signError);
        }
      }
    } finally {
      this.#flushing = undefined;
      if (this.#state === 'open' && (this.#pending.length > 0 || this.#forceCheckpoint)) this.#schedule();
    }
  }

  #checkpointDue(): boolean {
    return (
      this.#tree.size > this.#checkpointed &&
      this.#now() - Math.max(this.#lastCheckpointAt, this.#signFailedAt) >= this.#checkpointIntervalMs
    );
  }

  #observe(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#metrics.onFailure?.(
        new AuditError('io', 'an audit log observer failed', { cause: err }),
        'export',
      );
    }
  }

  #acknowledge(batch: readonly Pending[]): void {
    const done = performance.now();
    for (const p of batch) {
      p.resolve(p.receipt);
      this.#metrics.onAppend?.({ seq: p.receipt.seq, latencyMs: done - p.started, batchSize: batch.length });
      if (this.#observers.onAppended !== undefined) {
        const entry = { origin: this.origin, seq: p.receipt.seq, time: p.receipt.time, event: p.event };
        this.#observe(() => this.#observers.onAppended?.(entry));
      }
      if (this.#exporter !== undefined) {
        try {
          this.#exporter.info('audit', {
            audit: { origin: this.origin, seq: p.receipt.seq, time: p.receipt.time, event: p.event },
          });
        } catch (err) {
          this.#metrics.onFailure?.(
            new AuditError('io', 'exporting an audit entry failed', { cause: err }),
            'export',
          );
        }
      }
    }
  }

  #fail(
    error: AuditError,
    batch: readonly Pending[],
    waiters: readonly { reject(e: AuditError): void }[],
  ): void {
    this.#state = 'failed';
    this.#failure = error;
    const all = [...batch, ...this.#pending];
    this.#pending = [];
    for (const p of all) {
      p.reject(error);
      this.#metrics.onFailure?.(error, 'append');
    }
    for (const w of [...waiters, ...this.#checkpointWaiters]) w.reject(error);
    this.#checkpointWaiters = [];
  }
}

/** The size a checkpoint note claims, for messages ('?' when unreadable). */
function checkpointSize(note: string | undefined): string {
  try {
    return note === undefined ? '?' : String(peekCheckpoint(note).size);
  } catch {
    return '?';
  }
}

/** An empty (or deleted and recreated) file cannot extend a published checkpoint, which covers at least one entry. */
function refuseEmptyLog(path: string, trusted: string): void {
  throw new AuditError(
    'rollback',
    `${path} is empty but a checkpoint of size ${checkpointSize(trusted)} was published for it: the log was deleted or rolled back; refusing to start it anew`,
  );
}

async function syncDirectory(path: string): Promise<void> {
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * Runs `release` only after the allow decision `event` is durably in the log; if the append fails, `release`
 * never runs and the append's AuditError propagates. Deny decisions have nothing to release.
 */
export async function withAuditedRelease<T>(
  log: Pick<AuditLog, 'append'>,
  event: KeyReleaseEvent,
  release: (receipt: AppendReceipt) => T | Promise<T>,
): Promise<T> {
  if (event.decision !== 'allow') throw new AuditError('invalid', 'only an allow decision releases anything');
  const receipt = await log.append(event);
  return release(receipt);
}
