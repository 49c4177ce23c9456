/**
 * Rotates the shared KEKs (one per classification) on the schedule of the rotation table, and keeps the KEK age and
 * compliance gauges current. After a rotation, every artifact of that classification is queued so its wrapped keys
 * move to the new primary version. Once they all have (every wrapped DEK in every artifact's status, and every
 * recipient private key, as the synced informers show them), versions retired longer than the classification's
 * `kekVersionRetention` are destroyed, so a wrapped key copied before the rotation stops opening (docs/kms.md,
 * "Rotation, retention, destruction"). (Artifact-scoped KEKs are rotated and retired by the artifact controller.)
 */
import type { V1Secret } from '@kubernetes/client-node';
import type winston from 'winston';
import { CLASSIFICATIONS, type Classification, type ModelArtifact } from '../../core/api/index.ts';
import type { KeyVersionInfo, KmsProvider } from '../../core/kms/provider.ts';
import { rotationStatus, type RotationTable } from '../../core/policy/rotation.ts';
import type { Informer } from '../kube/informer.ts';
import type { ReconcileResult } from '../kube/workqueue.ts';
import { watch, type Controller, type EventSource } from '../manager/controller.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';
import {
  kekVersionsInUse,
  recipientWrapOf,
  type KekScope,
  type RetiredVersionsResult,
} from '../keys/artifact-keys.ts';

/** Gauges are refreshed at least this often even when no rotation is near. */
const REFRESH_MS = 15_000;

export interface KekRotationOptions {
  readonly kms: KmsProvider;
  readonly artifacts: Informer<ModelArtifact>;
  /** The recipient-key Secrets (their private keys are wrapped under the same KEKs). */
  readonly recipientKeys: Pick<Informer<V1Secret>, 'list' | 'hasSynced'>;
  readonly rotation: RotationTable;
  /** How long a retired version is kept (`<c>.kekVersionRetention` of the table in force). */
  readonly retention: (classification: Classification) => number;
  readonly scopes: Readonly<Record<Classification, KekScope>>;
  readonly metrics: OperatorMetrics;
  readonly logger: winston.Logger;
  /** The KEK's primary version, creating the KEK if needed (ArtifactKeyring.ensureKek). */
  readonly ensureKek: (keyId: string) => Promise<KeyVersionInfo>;
  /** Destroys the versions the retention rule allows (ArtifactKeyring.destroyRetiredVersions). */
  readonly destroyRetiredVersions: (
    keyId: string,
    options: { inUse: ReadonlySet<string> | undefined; retentionMs: number; now: Date },
  ) => Promise<RetiredVersionsResult>;
  /** Queues an artifact key for reconcile. */
  readonly enqueueArtifact: (key: string) => void;
  readonly now?: () => Date;
}

export class KekRotationController {
  /** The one key of its queue. */
  static readonly KEY = 'kek-rotation';
  readonly #o: KekRotationOptions;

  constructor(options: KekRotationOptions) {
    this.#o = options;
  }

  /**
   * How the manager runs this controller (operator/manager/controller.ts): its own queue `kek-rotation` with one
   * worker and one key, queued on a resync and on a valid change of the classification table (rotation periods,
   * dedicatedKek); the reconcile itself asks to come back when the next KEK is due.
   */
  controller(sources: { readonly tableChanged: EventSource<unknown> }): Controller {
    return {
      name: 'kek-rotation',
      workers: 1,
      reconcile: () => this.reconcile(),
      resync: () => [KekRotationController.KEY],
      stopped: () => {
        this.forgetKekSeries();
      },
      watches: [watch(sources.tableChanged, () => [KekRotationController.KEY])],
    };
  }

  /**
   * Removes the strongroom_kek_age_seconds and strongroom_kek_rotation_compliant series of the shared KEKs. The
   * manager calls it when the controller stops (this replica stopped leading, every reconcile has returned): only the
   * leader exports them, so a former leader's last value (a 0 would keep StrongroomKekRotationOverdue firing) goes.
   */
  forgetKekSeries(): void {
    for (const classification of CLASSIFICATIONS) {
      const labels = { key: `strongroom-${classification}`, classification };
      this.#o.metrics.kekAgeSeconds.remove(labels);
      this.#o.metrics.kekRotationCompliant.remove(labels);
    }
  }

  async reconcile(): Promise<ReconcileResult> {
    let nextMs = REFRESH_MS;
    for (const classification of CLASSIFICATIONS) {
      if (this.#o.scopes[classification] !== 'shared') continue;
      nextMs = Math.min(nextMs, await this.#check(classification));
    }
    return { requeueAfterMs: Math.max(0, nextMs) };
  }

  /**
   * Returns ms until this KEK needs attention (rotation or a retired version's destruction). A missing KEK is
   * created: on first start the key set exists at once. Retired versions are destroyed before any rotation, while
   * the previous rewrap is complete; right after a rotation nothing can go (the wrapped keys have not moved yet).
   */
  async #check(classification: Classification): Promise<number> {
    const keyId = `strongroom-${classification}`;
    const period = this.#o.rotation[classification];
    const primary = await this.#o.ensureKek(keyId);
    const now = this.#o.now?.() ?? new Date();
    const retirement = await this.#retire(classification, keyId, now);
    let state = rotationStatus(new Date(primary.createdAt), period, now);
    if (!state.compliant) {
      const version = await this.#o.kms.rotate(keyId);
      this.#o.metrics.kekRotations.inc({ key: keyId, classification });
      this.#o.logger.info('rotated KEK', { keyId, kekVersion: version, classification });
      state = rotationStatus(now, period, now);
      for (const artifact of this.#o.artifacts.list())
        if (artifact.spec.classification === classification)
          this.#o.enqueueArtifact(`${artifact.metadata.namespace ?? ''}/${artifact.metadata.name ?? ''}`);
    }
    this.#o.metrics.kekAgeSeconds.set({ key: keyId, classification }, state.ageMs / 1000);
    this.#o.metrics.kekRotationCompliant.set({ key: keyId, classification }, state.compliant ? 1 : 0);
    return Math.min(state.dueAt.getTime(), retirement) - now.getTime();
  }

  /**
   * Destroys the retired versions of a shared KEK that are due; returns when to look again (ms since the epoch):
   * the next version's due time, or soon while the rewrap is under way or the caches are not synced.
   */
  async #retire(classification: Classification, keyId: string, now: Date): Promise<number> {
    this.#o.metrics.kekVersionsDestroyed.inc({ classification }, 0);
    // Fail closed: without both synced caches nobody can say which versions are still in use.
    const synced = this.#o.artifacts.hasSynced() && this.#o.recipientKeys.hasSynced();
    const inUse = synced
      ? kekVersionsInUse(keyId, this.#o.artifacts.list(), this.#o.recipientKeys.list().map(recipientWrapOf))
      : undefined;
    const retentionMs = this.#o.retention(classification);
    let result: RetiredVersionsResult;
    try {
      result = await this.#o.destroyRetiredVersions(keyId, { inUse, retentionMs, now });
    } catch (error) {
      // A KMS failure here must not hold up rotation: nothing more is destroyed, and we look again soon.
      this.#o.logger.warn('could not destroy retired KEK versions', {
        keyId,
        classification,
        error: (error as Error).message,
      });
      return now.getTime() + REFRESH_MS;
    }
    if (result.destroyed.length > 0) {
      this.#o.metrics.kekVersionsDestroyed.inc({ classification }, result.destroyed.length);
      this.#o.logger.info('destroyed retired KEK versions', {
        keyId,
        classification,
        kekVersions: result.destroyed,
        retentionMs,
      });
    }
    if (result.blocked === 'in-use' || result.blocked === 'unknown') return now.getTime() + REFRESH_MS;
    return result.nextDueAt?.getTime() ?? Number.POSITIVE_INFINITY;
  }
}
