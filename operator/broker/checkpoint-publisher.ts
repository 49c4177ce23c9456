/**
 * Publishes this replica's latest signed audit checkpoint outside its log file: ConfigMap
 * `strongroom-audit-checkpoints` in the operator namespace, data key = the writer name, value = the C2SP signed note
 * (docs/audit.md#published-checkpoints). Whoever can rewrite the log file (its volume) cannot rewind this copy; the
 * operator checks the file against it on open (`readPublishedCheckpoint` → AuditLog `trustedCheckpoint`), and
 * `strongroom audit verify --fetch-checkpoint` checks a copy of the log against it.
 *
 * Writes are read-modify-update with optimistic concurrency (`resourceVersion`; every replica updates its own key of
 * the one ConfigMap, so a 409 re-reads and retries), creating the ConfigMap if absent. At most one write is in flight;
 * notes that arrive meanwhile are coalesced, the latest wins. A published checkpoint is never replaced by a smaller
 * one, nor by one of the same size with another root, nor is an unreadable value overwritten: each of those is a
 * rolled-back or forked log (or a forged value), so the publisher refuses, logs at error, sets
 * `strongroom_audit_rollback_detected{writer}` to 1 and records a Warning Event `AuditRollbackDetected`.
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

/** Why a candidate may not replace what is published, or undefined when it may (or is the same note). */
export function refusal(published: string, candidate: Checkpoint): string | undefined {
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

  constructor(options: CheckpointPublisherOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#retryMs = options.retryMs?.min ?? RETRY_MIN_MS;
    options.metrics.auditRollbackDetected.set({ writer: options.writer }, 0);
  }

  /** Queues `note` for publication (the log's onCheckpoint observer). Never throws; failures are logged. */
  publish(note: string): void {
    if (this.#stopped) return;
    this.#next = note;
    this.#kick();
  }

  /** Resolves once nothing is being written (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
  }

  /** Stops publishing: pending retries are dropped, a write in flight is waited for. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    this.#next = undefined;
    await this.idle();
  }

  #kick(): void {
    if (this.#writing !== undefined || this.#retry !== undefined) return;
    this.#writing = this.#drain().finally(() => {
      this.#writing = undefined;
      if (this.#next !== undefined && this.#retry === undefined && !this.#stopped) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    while (this.#next !== undefined && !this.#stopped) {
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
  }

  async #write(note: string): Promise<void> {
    const { core, namespace, writer, metrics } = this.#o;
    const candidate = peekCheckpoint(note);
    for (let conflicts = 0; ; conflicts++) {
      const stored = await readConfigMap(core, namespace);
      const published = stored?.data?.[writer];
      if (published === note) {
        this.#published(candidate);
        return;
      }
      if (published !== undefined) {
        const why = refusal(published, candidate);
        if (why !== undefined) {
          this.#refuse(why, candidate, stored);
          return;
        }
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
        throw error;
      }
      metrics.auditRollbackDetected.set({ writer }, 0);
      this.#published(candidate);
      return;
    }
  }

  #published(cp: Checkpoint): void {
    const { metrics, writer } = this.#o;
    metrics.auditCheckpointSize.set({ writer }, cp.size);
    metrics.auditCheckpointPublished.set({ writer }, this.#now() / 1000);
  }

  #refuse(why: string, candidate: Checkpoint, stored: V1ConfigMap | undefined): void {
    const { metrics, writer, logger, events, namespace } = this.#o;
    metrics.auditRollbackDetected.set({ writer }, 1);
    const message = `refusing to replace the published audit checkpoint of writer ${writer} by size ${candidate.size}: ${why}`;
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
