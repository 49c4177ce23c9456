/**
 * Rotates the shared KEKs (one per classification) on the schedule of the rotation table, and keeps the KEK age and
 * compliance gauges current. After a rotation, every artifact of that classification is queued so its wrapped keys
 * move to the new primary version. (Artifact-scoped KEKs are rotated by the artifact controller itself.)
 */
import type winston from 'winston';
import { CLASSIFICATIONS, type Classification, type ModelArtifact } from '../../core/api/index.ts';
import type { KeyVersionInfo, KmsProvider } from '../../core/kms/provider.ts';
import { rotationStatus, type RotationTable } from '../../core/policy/rotation.ts';
import type { Informer } from '../kube/informer.ts';
import type { ReconcileResult } from '../kube/workqueue.ts';
import { watch, type Controller, type EventSource } from '../manager/controller.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';
import type { KekScope } from '../keys/artifact-keys.ts';

/** Gauges are refreshed at least this often even when no rotation is near. */
const REFRESH_MS = 15_000;

export interface KekRotationOptions {
  readonly kms: KmsProvider;
  readonly artifacts: Informer<ModelArtifact>;
  readonly rotation: RotationTable;
  readonly scopes: Readonly<Record<Classification, KekScope>>;
  readonly metrics: OperatorMetrics;
  readonly logger: winston.Logger;
  /** The KEK's primary version, creating the KEK if needed (ArtifactKeyring.ensureKek). */
  readonly ensureKek: (keyId: string) => Promise<KeyVersionInfo>;
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
      watches: [watch(sources.tableChanged, () => [KekRotationController.KEY])],
    };
  }

  async reconcile(): Promise<ReconcileResult> {
    let nextMs = REFRESH_MS;
    for (const classification of CLASSIFICATIONS) {
      if (this.#o.scopes[classification] !== 'shared') continue;
      nextMs = Math.min(nextMs, await this.#check(classification));
    }
    return { requeueAfterMs: Math.max(0, nextMs) };
  }

  /** Returns ms until this KEK is due. A missing KEK is created: on first start the key set exists at once. */
  async #check(classification: Classification): Promise<number> {
    const keyId = `strongroom-${classification}`;
    const period = this.#o.rotation[classification];
    const primary = await this.#o.ensureKek(keyId);
    const now = this.#o.now?.() ?? new Date();
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
    return state.dueAt.getTime() - now.getTime();
  }
}
