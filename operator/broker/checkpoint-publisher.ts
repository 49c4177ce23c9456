/**
 * Publishes this replica's latest signed audit checkpoint outside its log file: ConfigMap
 * `strongroom-audit-checkpoints` in the operator namespace, data key = the writer name, value = the C2SP signed note
 * (docs/audit.md#published-checkpoints). Whoever can rewrite the log file (its volume) cannot rewind this copy; the
 * operator checks the file against it on open (`readPublishedCheckpoint` → AuditLog `trustedCheckpoint`), and
 * `strongroom audit verify --fetch-checkpoint` checks a copy of the log against it.
 *
 * Writes are read-modify-update with optimistic concurrency (`resourceVersion`; every replica updates its own key of
 * the one ConfigMap, so a 409 re-reads and retries), creating the ConfigMap if absent. At most one write is in flight;
 * notes that arrive meanwhile are coalesced, the latest wins.
 *
 * The publisher overwrites only a value it trusts: its **baseline**, which is the checkpoint the log verified on open
 * (`trusted`, the one published before this process started) or the last note it wrote itself (or sent, when the
 * API server's answer was lost). Any other stored value, whatever its size, is foreign: a rolled-back or forked log
 * (two processes with one identity) or a forged value. The publisher then refuses, logs at error, sets
 * `strongroom_audit_rollback_detected{writer}` to 1, records a Warning Event `AuditRollbackDetected`, and stays
 * refused until the process restarts (sticky): it writes nothing more and the gauge stays 1, so that the value is
 * left for forensics and the alert cannot clear itself. A key that was removed is written again (nothing is
 * overwritten). On stop, the last pending note (the one the log's close wrote) is tried once more, even during a
 * backoff.
 */
import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import type winston from 'winston';
import { AUDIT_CHECKPOINTS_CONFIGMAP, peekCheckpoint, type Checkpoint } from '../../core/audit/index.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';

export { AUDIT_CHECKPOINTS_CONFIGMAP };

/** The Event reason of a refused (rolled-back or forked) checkpoint. */
export const ROLLBACK_EVENT_REASON = 'AuditRollbackDetected';

/** Conflicts in a row before the publisher backs off instead of re-reading at once. */
const MAX_CONFLICTS = 10;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;
/** Notes sent whose outcome is unknown (the request failed) that are still trusted if found stored. */
const MAX_UNCONFIRMED = 16;

type ConfigMapApi = Pick<
  CoreV1Api,
  'readNamespacedConfigMap' | 'createNamespacedConfigMap' | 'replaceNamespacedConfigMap'
>;

export interface CheckpointPublisherOptions {
  readonly core: ConfigMapApi;
  /** The operator's namespace. */
  readonly namespace: string;
  /** The log's writer name (writerName(identity)): the data key. */
  readonly writer: string;
  readonly logger: winston.Logger;
  readonly metrics: Pick<
    OperatorMetrics,
    'auditCheckpointSize' | 'auditCheckpointPublished' | 'auditRollbackDetected'
  >;
  readonly events: Pick<EventRecorder, 'record'>;
  /**
   * The checkpoint published for this writer that the log verified on open (AuditLog `trustedCheckpoint`): the
   * first baseline. Undefined when none was published.
   */
  readonly trusted?: string;
  /** Clock in ms (tests). */
  readonly now?: () => number;
  /** Backoff after a failed write, before the note is tried again (tests); default 1 s doubling to 30 s. */
  readonly retryMs?: { readonly min: number; readonly max: number };
}

function statusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** The ConfigMap, or undefined when it does not exist. Any other failure throws. */
async function readConfigMap(core: ConfigMapApi, namespace: string): Promise<V1ConfigMap | undefined> {
  try {
    return await core.readNamespacedConfigMap({ namespace, name: AUDIT_CHECKPOINTS_CONFIGMAP });
  } catch (error) {
    if (statusCode(error) === 404) return undefined;
    throw error;
  }
}

/**
 * The checkpoint published for `writer`, or undefined when none is (no ConfigMap, or no key). Throws when it cannot
 * be read (fail closed: the caller must not open the log without knowing).
 */
export async function readPublishedCheckpoint(
  core: Pick<CoreV1Api, 'readNamespacedConfigMap'>,
  namespace: string,
  writer: string,
): Promise<string | undefined> {
  const cm = await readConfigMap(core as ConfigMapApi, namespace);
  return cm?.data?.[writer];
}

/**
 * Why `candidate` may not replace the stored value `published`, or undefined when it may. `ours` says whether the
 * stored value is one this publisher trusts (its baseline, or a note it sent): anything else is foreign and is never
 * overwritten, whatever its size; the reason names what it looks like (a rollback, a fork, another origin, garbage).
 */
export function refusal(published: string, candidate: Checkpoint, ours: boolean): string | undefined {
  let old: Checkpoint;
  try {
    old = peekCheckpoint(published);
  } catch (error) {
    return `the published value is not a checkpoint (${(error as Error).message}); it was not written by this writer`;
  }
  if (old.origin !== candidate.origin)
    return `the published checkpoint is for origin ${old.origin}, not ${candidate.origin}`;
  if (candidate.size < old.size)
    return `the published checkpoint has size ${old.size}, this log's latest only ${candidate.size}: the log was rolled back`;
  if (candidate.size === old.size && !candidate.rootHash.equals(old.rootHash))
    return `the published checkpoint and this log's latest both have size ${old.size} with different roots: a forked log`;
  if (!ours)
    return (
      `the published checkpoint (size ${old.size}) is neither the one this log was verified against on open nor ` +
      'one this replica wrote: another writer (a forked log, two processes with one identity) or a forged value'
    );
  return undefined;
}

export class CheckpointPublisher {
  readonly #o: CheckpointPublisherOptions;
  readonly #now: () => number;
  /** The latest note not yet written (coalesced). */
  #next: string | undefined;
  #writing: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs: number;
  #stopped = false;
  /** The stored value this publisher may overwrite: the trusted checkpoint of the open, or its last write. */
  #baseline: string | undefined;
  /** Notes sent whose write failed without an answer (they may have been stored): trusted as well, newest last. */
  #unconfirmed: string[] = [];
  /** Why publishing was refused, once it was: sticky until the process restarts. */
  #refused: string | undefined;

  constructor(options: CheckpointPublisherOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#retryMs = options.retryMs?.min ?? RETRY_MIN_MS;
    this.#baseline = options.trusted;
    options.metrics.auditRollbackDetected.set({ writer: options.writer }, 0);
  }

  /** Why publishing is refused (a foreign checkpoint was found), or undefined while it is not. */
  get refused(): string | undefined {
    return this.#refused;
  }

  /** Queues `note` for publication (the log's onCheckpoint observer). Never throws; failures are logged. */
  publish(note: string): void {
    if (this.#stopped || this.#refused !== undefined) return;
    this.#next = note;
    this.#kick();
  }

  /** Resolves once nothing is being written (tests). */
  async idle(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
  }

  /**
   * Stops publishing: the write in flight is waited for, then the newest pending note (the final checkpoint the
   * log's close wrote) is tried once, even during a backoff; nothing is retried after that. The caller's shutdown
   * timeout bounds it.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    await this.idle();
    // A write that failed meanwhile set a backoff: dropped, the pending note is tried below.
    clearTimeout(this.#retry);
    this.#retry = undefined;
    const note = this.#next;
    this.#next = undefined;
    if (note === undefined || this.#refused !== undefined) return;
    try {
      await this.#write(note);
    } catch (error) {
      this.#o.logger.warn('the final audit checkpoint could not be published', {
        configMap: AUDIT_CHECKPOINTS_CONFIGMAP,
        writer: this.#o.writer,
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }

  #kick(): void {
    if (this.#writing !== undefined || this.#retry !== undefined) return;
    this.#writing = this.#drain().finally(() => {
      this.#writing = undefined;
      if (this.#next !== undefined && this.#retry === undefined && !this.#stopped) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    while (this.#next !== undefined && !this.#stopped && this.#refused === undefined) {
      const note = this.#next;
      this.#next = undefined;
      try {
        await this.#write(note);
        this.#retryMs = this.#o.retryMs?.min ?? RETRY_MIN_MS;
      } catch (error) {
        // Keep the note unless a newer one arrived meanwhile, and try again after a backoff.
        this.#next ??= note;
        const delay = this.#retryMs;
        this.#retryMs = Math.min(delay * 2, this.#o.retryMs?.max ?? RETRY_MAX_MS);
        this.#o.logger.warn('publishing the audit checkpoint failed; retrying', {
          configMap: AUDIT_CHECKPOINTS_CONFIGMAP,
          writer: this.#o.writer,
          retryInMs: delay,
          error: error instanceof Error ? error.message : String(error),
        });
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          this.#kick();
        }, delay);
        this.#retry.unref();
        return;
      }
    }
    if (this.#refused !== undefined) this.#next = undefined;
  }

  /** Whether `value` is one this publisher may overwrite. */
  #ours(value: string): boolean {
    return value === this.#baseline || this.#unconfirmed.includes(value);
  }

  async #write(note: string): Promise<void> {
    const { core, namespace, writer, logger } = this.#o;
    const candidate = peekCheckpoint(note);
    for (let conflicts = 0; ; conflicts++) {
      const stored = await readConfigMap(core, namespace);
      const published = stored?.data?.[writer];
      if (published === note) {
        this.#confirmed(note, candidate);
        return;
      }
      if (published !== undefined) {
        const why = refusal(published, candidate, this.#ours(published));
        if (why !== undefined) {
          this.#refuse(why, candidate, stored);
          return;
        }
      } else if (this.#baseline !== undefined) {
        // Removed by someone (the ConfigMap or the key): nothing is overwritten by writing it again.
        logger.warn('the published audit checkpoint of this writer was removed; publishing it again', {
          configMap: `${namespace}/${AUDIT_CHECKPOINTS_CONFIGMAP}`,
          writer,
        });
      }
      const body: V1ConfigMap = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: AUDIT_CHECKPOINTS_CONFIGMAP,
          namespace,
          labels: { ...(stored?.metadata?.labels ?? {}), 'app.kubernetes.io/managed-by': 'strongroom' },
          ...(stored?.metadata?.annotations ? { annotations: stored.metadata.annotations } : {}),
          ...(stored?.metadata?.resourceVersion ? { resourceVersion: stored.metadata.resourceVersion } : {}),
        },
        data: { ...(stored?.data ?? {}), [writer]: note },
      };
      try {
        if (stored === undefined) await core.createNamespacedConfigMap({ namespace, body });
        else await core.replaceNamespacedConfigMap({ namespace, name: AUDIT_CHECKPOINTS_CONFIGMAP, body });
      } catch (error) {
        // 409: another replica wrote first (a stale resourceVersion, or a concurrent create): re-read and retry.
        if (statusCode(error) === 409 && conflicts < MAX_CONFLICTS) continue;
        // Any other failure may have been stored all the same (a lost answer): the note stays trusted.
        if (statusCode(error) !== 409)
          this.#unconfirmed = [...this.#unconfirmed, note].slice(-MAX_UNCONFIRMED);
        throw error;
      }
      this.#confirmed(note, candidate);
      return;
    }
  }

  /** `note` is what is stored now: the new baseline. */
  #confirmed(note: string, cp: Checkpoint): void {
    const { metrics, writer } = this.#o;
    this.#baseline = note;
    this.#unconfirmed = [];
    metrics.auditCheckpointSize.set({ writer }, cp.size);
    metrics.auditCheckpointPublished.set({ writer }, this.#now() / 1000);
  }

  #refuse(why: string, candidate: Checkpoint, stored: V1ConfigMap | undefined): void {
    const { metrics, writer, logger, events, namespace } = this.#o;
    this.#refused = why;
    this.#next = undefined;
    metrics.auditRollbackDetected.set({ writer }, 1);
    const message =
      `refusing to replace the published audit checkpoint of writer ${writer} by size ${candidate.size}: ${why}. ` +
      'Publishing stays refused until the replica restarts';
    logger.error('audit checkpoint rollback detected', {
      configMap: `${namespace}/${AUDIT_CHECKPOINTS_CONFIGMAP}`,
      writer,
      size: candidate.size,
      reason: why,
    });
    events.record(
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: stored?.metadata ?? { name: AUDIT_CHECKPOINTS_CONFIGMAP, namespace },
      },
      'Warning',
      ROLLBACK_EVENT_REASON,
      message,
    );
  }
}
