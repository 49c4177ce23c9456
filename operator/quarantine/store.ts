/**
 * The quarantined identities (ConfigMap `strongroom-quarantines` in the operator's namespace; the format is
 * core/policy/quarantine.ts). Read from an informer on that one ConfigMap on every replica (the broker and the
 * AccessGrant controller ask it at every decision); written only by {@link QuarantineStore.add}, which adds one key
 * with optimistic concurrency (read, add, replace at that resourceVersion; a conflict reads again), creating the
 * ConfigMap the first time. The operator never removes or changes a key: lifting a quarantine is the security
 * team's (a ValidatingAdmissionPolicy refuses the operator anything but additions).
 *
 * {@link QuarantineStore.lookup} fails closed on a cache it cannot trust: `unknown` before the first list and
 * whenever the informer is not healthy (its watch down for longer than unhealthyAfterMs, or stopped), since a broken
 * watch leaves the last list standing and a quarantine added since would not be in it. And a key this replica added
 * counts at once, before its own watch delivers it (until the cache reaches the write, or for localTtlMs at most, so
 * that a lift the watch delivers is not undone by a stale local copy).
 */
import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import {
  EMPTY_QUARANTINES,
  QUARANTINES_CONFIGMAP,
  formatQuarantineRecord,
  parseQuarantineRecord,
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
  /** The cache has not synced, or its watch is not healthy: nothing can be shown to be free (callers fail closed). */
  | { readonly state: 'unknown' };

export interface QuarantineStoreOptions {
  readonly core: Pick<
    CoreV1Api,
    'readNamespacedConfigMap' | 'createNamespacedConfigMap' | 'replaceNamespacedConfigMap'
  >;
  /** The operator's namespace. */
  readonly namespace: string;
  /**
   * The informer on the one ConfigMap (a metadata.name field selector). Without `healthy`, a synced cache counts as
   * healthy; without `onEvent`, keys this replica added count until localTtlMs has passed.
   */
  readonly informer: Pick<Informer<V1ConfigMap>, 'get' | 'hasSynced'> &
    Partial<Pick<Informer<V1ConfigMap>, 'healthy' | 'onEvent'>>;
  /** How many conflicts a write survives before it fails; default 5. */
  readonly maxAttempts?: number;
  /**
   * How long a key this replica added counts when the cache has not shown it yet; default 900 000 ms (longer than
   * the informer's periodic relist, which repairs a watch that lost the event).
   */
  readonly localTtlMs?: number;
  readonly now?: () => number;
}

/** A key this replica wrote (or found written), counted until the cache has caught up with it. */
interface LocalKey {
  readonly quarantine: Quarantine;
  /** The ConfigMap's resourceVersion after the write ('' when the key was found there already). */
  readonly resourceVersion: string;
  readonly at: number;
}

/** Whether resourceVersion `seen` is at or past `written` (equal, or both integers and not smaller). */
function reached(seen: string | undefined, written: string): boolean {
  if (seen === undefined || seen === '' || written === '') return false;
  if (seen === written) return true;
  return /^\d+$/.test(seen) && /^\d+$/.test(written) && BigInt(seen) >= BigInt(written);
}

function statusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** The record a stored value holds, or `fallback` when it is not readable (the key quarantines all the same). */
function parsedOr(value: string, fallback: QuarantineRecord): QuarantineRecord {
  const parsed = parseQuarantineRecord(value);
  return typeof parsed === 'string' ? fallback : parsed;
}

export class QuarantineStore {
  readonly #o: QuarantineStoreOptions;
  #parsed: { readonly resourceVersion: string; readonly set: QuarantineSet } | undefined;
  /** Keys this replica added, by key, until the cache has them (see {@link QuarantineStore.lookup}). */
  readonly #local = new Map<string, LocalKey>();

  constructor(options: QuarantineStoreOptions) {
    this.#o = options;
    options.informer.onEvent?.((event) => {
      if (event.key !== this.where) return;
      const data = event.type === 'deleted' ? {} : (event.object.data ?? {});
      const seen = event.object.metadata?.resourceVersion;
      for (const [key, local] of this.#local) {
        // The cache has the key, or has moved past the write (a lift after it is the cache's to tell).
        if (data[key] !== undefined || reached(seen, local.resourceVersion)) this.#local.delete(key);
      }
    });
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

  /**
   * Whether `identity` is quarantined: per the cache, or a key this replica added that the cache has not shown yet;
   * `unknown` while the cache is not synced or its watch is not healthy.
   */
  lookup(identity: WorkloadRef): QuarantineLookup {
    const set = this.current();
    const healthy = this.#o.informer.healthy?.() ?? true;
    if (set === undefined || !healthy) return { state: 'unknown' };
    const quarantine = quarantineOf(set, identity) ?? this.#localQuarantine(quarantineKey(identity));
    return quarantine === undefined ? { state: 'free' } : { state: 'quarantined', quarantine };
  }

  #localQuarantine(key: string): Quarantine | undefined {
    const local = this.#local.get(key);
    if (local === undefined) return undefined;
    const cached = this.#o.informer.get(this.where)?.metadata?.resourceVersion;
    const now = this.#o.now?.() ?? Date.now();
    if (reached(cached, local.resourceVersion) || now - local.at > (this.#o.localTtlMs ?? 900_000)) {
      this.#local.delete(key);
      return undefined;
    }
    return local.quarantine;
  }

  #remember(identity: WorkloadRef, record: QuarantineRecord, written: V1ConfigMap | undefined): void {
    const key = quarantineKey(identity);
    this.#local.set(key, {
      quarantine: { identity, key, record },
      resourceVersion: written?.metadata?.resourceVersion ?? '',
      at: this.#o.now?.() ?? Date.now(),
    });
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
          const created = await core.createNamespacedConfigMap({
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
          this.#remember(identity, record, created);
          return 'added';
        }
        if (stored.data?.[key] !== undefined) {
          this.#remember(identity, parsedOr(stored.data[key], record), stored);
          return 'present';
        }
        const replaced = await core.replaceNamespacedConfigMap({
          namespace,
          name,
          // Everything else as read, resourceVersion included: a write in between answers 409.
          body: Object.assign(stored, { data: { ...stored.data, [key]: value } }),
        });
        this.#remember(identity, record, replaced);
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
