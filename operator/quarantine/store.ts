/**
 * The quarantined identities (ConfigMap `strongroom-quarantines` in the operator's namespace; the format is
 * core/policy/quarantine.ts). Read from an informer on that one ConfigMap on every replica (the broker and the
 * AccessGrant controller ask it at every decision); written only by {@link QuarantineStore.add}, which adds one key
 * with optimistic concurrency (read, add, replace at that resourceVersion; a conflict reads again), creating the
 * ConfigMap the first time. The operator never removes or changes a key: lifting a quarantine is the security
 * team's (a ValidatingAdmissionPolicy refuses the operator anything but additions).
 */
import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import {
  EMPTY_QUARANTINES,
  QUARANTINES_CONFIGMAP,
  formatQuarantineRecord,
  parseQuarantines,
  quarantineKey,
  quarantineOf,
  type Quarantine,
  type QuarantineRecord,
  type QuarantineSet,
  type WorkloadRef,
} from '../../core/policy/quarantine.ts';
import type { Informer } from '../kube/informer.ts';

export { QUARANTINES_CONFIGMAP } from '../../core/policy/quarantine.ts';

/** Why a quarantine could not be written. */
export class QuarantineWriteError extends Error {
  override readonly name = 'QuarantineWriteError';
}

/** The answer of {@link QuarantineStore.lookup}. */
export type QuarantineLookup =
  | { readonly state: 'free' }
  | { readonly state: 'quarantined'; readonly quarantine: Quarantine }
  /** The cache has not synced: nothing can be shown to be free (callers fail closed). */
  | { readonly state: 'unknown' };

export interface QuarantineStoreOptions {
  readonly core: Pick<
    CoreV1Api,
    'readNamespacedConfigMap' | 'createNamespacedConfigMap' | 'replaceNamespacedConfigMap'
  >;
  /** The operator's namespace. */
  readonly namespace: string;
  /** The informer on the one ConfigMap (a metadata.name field selector). */
  readonly informer: Pick<Informer<V1ConfigMap>, 'get' | 'hasSynced'>;
  /** How many conflicts a write survives before it fails; default 5. */
  readonly maxAttempts?: number;
}

function statusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export class QuarantineStore {
  readonly #o: QuarantineStoreOptions;
  #parsed: { readonly resourceVersion: string; readonly set: QuarantineSet } | undefined;

  constructor(options: QuarantineStoreOptions) {
    this.#o = options;
  }

  /** `namespace/name` of the ConfigMap. */
  get where(): string {
    return `${this.#o.namespace}/${QUARANTINES_CONFIGMAP}`;
  }

  /** The quarantines as the cache has them (an absent ConfigMap: none); undefined before the cache synced. */
  current(): QuarantineSet | undefined {
    if (!this.#o.informer.hasSynced()) return undefined;
    const configMap = this.#o.informer.get(this.where);
    if (configMap === undefined) return EMPTY_QUARANTINES;
    const resourceVersion = configMap.metadata?.resourceVersion ?? '';
    if (this.#parsed?.resourceVersion !== resourceVersion || resourceVersion === '')
      this.#parsed = { resourceVersion, set: parseQuarantines(configMap.data ?? {}) };
    return this.#parsed.set;
  }

  /** Whether `identity` is quarantined, per the cache. */
  lookup(identity: WorkloadRef): QuarantineLookup {
    const set = this.current();
    if (set === undefined) return { state: 'unknown' };
    const quarantine = quarantineOf(set, identity);
    return quarantine === undefined ? { state: 'free' } : { state: 'quarantined', quarantine };
  }

  /**
   * Quarantines `identity`: adds its key with `record` unless it is there already (then the record in place is kept:
   * the operator never changes a key). Returns whether this call added it.
   * @throws {QuarantineWriteError} when the API server refuses, or conflicts persist.
   */
  async add(identity: WorkloadRef, record: QuarantineRecord): Promise<'added' | 'present'> {
    const { core, namespace } = this.#o;
    const name = QUARANTINES_CONFIGMAP;
    const key = quarantineKey(identity);
    const value = formatQuarantineRecord(record);
    const attempts = this.#o.maxAttempts ?? 5;
    let last: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      let stored: V1ConfigMap | undefined;
      try {
        stored = await core.readNamespacedConfigMap({ namespace, name });
      } catch (error) {
        if (statusCode(error) !== 404)
          throw new QuarantineWriteError(`reading ${this.where}`, { cause: error });
      }
      try {
        if (stored === undefined) {
          await core.createNamespacedConfigMap({
            namespace,
            body: {
              metadata: {
                name,
                namespace,
                labels: {
                  'app.kubernetes.io/managed-by': 'strongroom',
                  'app.kubernetes.io/name': 'strongroom',
                },
              },
              data: { [key]: value },
            },
          });
          return 'added';
        }
        if (stored.data?.[key] !== undefined) return 'present';
        await core.replaceNamespacedConfigMap({
          namespace,
          name,
          // Everything else as read, resourceVersion included: a write in between answers 409.
          body: Object.assign(stored, { data: { ...stored.data, [key]: value } }),
        });
        return 'added';
      } catch (error) {
        // 409: someone wrote in between (create raced, or the resourceVersion moved): read again.
        if (statusCode(error) !== 409)
          throw new QuarantineWriteError(`writing ${this.where}`, { cause: error });
        last = error;
      }
    }
    throw new QuarantineWriteError(
      `writing ${this.where}: still conflicting after ${String(attempts)} attempts`,
      {
        cause: last,
      },
    );
  }
}
