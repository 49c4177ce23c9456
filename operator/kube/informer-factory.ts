/**
 * Makes the operator's informers: `factory.for<ModelArtifact>(resource)` is an `Informer<ModelArtifact>`, the same
 * instance every time it is asked for the same resource and selectors, so that two parts that read the same
 * collection share one cache and one watch. The factory keeps them all: as a runnable (manager/runnable.ts) it starts
 * every informer and waits until each has synced, and stops them all; health lists them (one readiness check each).
 */
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import type winston from 'winston';
import { componentLogger } from '../log.ts';
import type { Runnable } from '../manager/runnable.ts';
import { Informer, type ResourceRef, type WatchObserver } from './informer.ts';

export interface InformerFactoryOptions {
  readonly kubeConfig: KubeConfig;
  /** The root logger: each informer logs as component `watch` with its resource's plural. */
  readonly logger: winston.Logger;
  readonly observer?: WatchObserver;
  /** Every informer's periodic relist (--resync-period). */
  readonly relistIntervalMs?: number;
  /** Every informer's watch stall timeout (--watch-stall-timeout). */
  readonly stallTimeoutMs?: number;
}

/** What the factory's users read of any informer, whatever it caches. */
export type InformerStatus = Pick<Informer<KubernetesObject>, 'resourceName' | 'healthy' | 'hasSynced'>;

interface Made {
  /** An Informer<T> for the T it was first asked for (see for()). */
  readonly informer: unknown;
  readonly lifecycle: Pick<
    Informer<KubernetesObject>,
    'resourceName' | 'healthy' | 'hasSynced' | 'start' | 'stop'
  >;
  readonly transform: unknown;
}

/** The identity of an informer: its resource, namespace and selectors. */
function identity(r: ResourceRef): string {
  return JSON.stringify([
    r.group,
    r.version,
    r.plural,
    r.namespace ?? '',
    r.labelSelector ?? '',
    r.fieldSelector ?? '',
  ]);
}

export class InformerFactory implements Runnable {
  readonly name = 'informers';
  readonly needsLeader = false;
  readonly #o: InformerFactoryOptions;
  readonly #log: winston.Logger;
  readonly #made = new Map<string, Made>();
  #started = false;

  constructor(options: InformerFactoryOptions) {
    this.#o = options;
    this.#log = componentLogger(options.logger, 'informers');
  }

  /**
   * The informer of `resource` (with its namespace and selectors), made on first use. `transform` reduces each
   * object before it is cached (InformerOptions.transform); asking again for the same resource with another transform
   * is an error, since both would share one cache. Every caller of one resource must name the same T.
   */
  for<T extends KubernetesObject>(
    resource: ResourceRef,
    options: { readonly transform?: (object: T) => T } = {},
  ): Informer<T> {
    const id = identity(resource);
    const made = this.#made.get(id);
    if (made !== undefined) {
      if (made.transform !== options.transform)
        throw new TypeError(
          `informer ${made.lifecycle.resourceName} ${id}: asked for with another transform`,
        );
      // Made by this method for the same resource: the type the callers of one resource agree on.
      return made.informer as Informer<T>;
    }
    if (this.#started) throw new TypeError(`informer ${id}: informers are made before they start`);
    const informer = new Informer<T>({
      kubeConfig: this.#o.kubeConfig,
      resource,
      logger: componentLogger(this.#o.logger, 'watch', { resource: resource.plural }),
      ...(this.#o.observer ? { observer: this.#o.observer } : {}),
      ...(this.#o.relistIntervalMs === undefined ? {} : { relistIntervalMs: this.#o.relistIntervalMs }),
      ...(this.#o.stallTimeoutMs === undefined ? {} : { stallTimeoutMs: this.#o.stallTimeoutMs }),
      ...(options.transform ? { transform: options.transform } : {}),
    });
    this.#made.set(id, { informer, lifecycle: informer, transform: options.transform });
    return informer;
  }

  /** Every informer made, in the order they were first asked for. */
  all(): readonly InformerStatus[] {
    return [...this.#made.values()].map((m) => m.lifecycle);
  }

  /** Starts every informer; resolves once all have synced (rejects if stopped before that). */
  async start(): Promise<void> {
    this.#started = true;
    const all = [...this.#made.values()].map((m) => m.lifecycle);
    await Promise.all(all.map((i) => i.start()));
    this.#log.info('caches synced', { informers: all.map((i) => i.resourceName) });
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#made.values()].map((m) => m.lifecycle.stop()));
  }
}
