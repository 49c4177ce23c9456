/**
 * A controller as the manager runs it: a work queue that lives for one leadership term, fed by the controller's
 * watches. Each controller (operator/controllers/) describes itself with a {@link Controller}: its queue name and
 * workers, its reconcile, the keys of a full resync, and which events queue which keys (its watches). The
 * {@link ControllerRunnable} connects the watches once, when it is made (before the caches start), and makes a new
 * queue at the start of every term, filled with a full resync, so nothing seen between two terms is lost.
 */
import type winston from 'winston';
import { WorkQueue, type QueueObserver, type ReconcileResult } from '../kube/workqueue.ts';
import type { Runnable } from './runnable.ts';

/** Anything that calls handlers with events: an Informer (kube/informer.ts), a {@link Signal}. */
export interface EventSource<E> {
  onEvent(handler: (event: E) => void): void;
}

/** One watch of a controller: connects a source to the controller's queue. Made with {@link watch}. */
export interface Watch {
  connect(enqueue: (key: string) => void): void;
}

/**
 * Every event of `source` queues the keys `map` returns. `map` runs for every event on every replica, leading or
 * not (the keys are dropped while there is no queue), so an index it keeps up to date stays complete.
 */
export function watch<E>(source: EventSource<E>, map: (event: E) => Iterable<string>): Watch {
  return {
    connect: (enqueue) => {
      source.onEvent((event) => {
        for (const key of map(event)) enqueue(key);
      });
    },
  };
}

/** An event source without payload that code fires itself, e.g. "the classification table changed". */
export class Signal implements EventSource<undefined> {
  readonly #handlers: ((event: undefined) => void)[] = [];

  onEvent(handler: (event: undefined) => void): void {
    this.#handlers.push(handler);
  }

  /** Calls every handler, in order. */
  emit(): void {
    for (const handler of this.#handlers) handler(undefined);
  }
}

/** What the manager needs to run a controller. */
export interface Controller {
  /** The queue's name: in logs and in the `queue` label of the strongroom_queue_* and strongroom_reconcile_* metrics. */
  readonly name: string;
  /** Keys processed at once (never two runs of the same key). */
  readonly workers: number;
  readonly reconcile: (key: string) => Promise<ReconcileResult | undefined>;
  /** Every key a full resync queues: at the start of every leadership term and every --resync-period. */
  readonly resync: () => Iterable<string>;
  /** Which events queue which keys. */
  readonly watches: readonly Watch[];
  /**
   * Called when the queue has stopped and every reconcile has returned (the end of a leadership term, or shutdown):
   * the place to remove metric series only the leader exports.
   */
  readonly stopped?: () => void;
}

export interface ControllerRunnableOptions {
  readonly logger: winston.Logger;
  readonly observer?: QueueObserver;
}

/** Runs a {@link Controller}'s work queue while this replica leads. */
export class ControllerRunnable implements Runnable {
  readonly name: string;
  readonly needsLeader = true;
  readonly #controller: Controller;
  readonly #options: ControllerRunnableOptions;
  #queue: WorkQueue | undefined;

  constructor(controller: Controller, options: ControllerRunnableOptions) {
    this.name = controller.name;
    this.#controller = controller;
    this.#options = options;
    for (const w of controller.watches)
      w.connect((key) => {
        this.enqueue(key);
      });
  }

  /** Queues `key` for reconcile; ignored while not leading. */
  enqueue(key: string): void {
    this.#queue?.add(key);
  }

  /** Queues every key of a full resync; ignored while not leading. */
  resync(): void {
    if (this.#queue === undefined) return;
    for (const key of this.#controller.resync()) this.enqueue(key);
  }

  /** A new queue, filled with a full resync, then its workers start. */
  start(): void {
    const c = this.#controller;
    const { logger, observer } = this.#options;
    this.#queue = new WorkQueue({
      name: c.name,
      workers: c.workers,
      handler: (key) => c.reconcile(key),
      logger,
      ...(observer ? { observer } : {}),
    });
    this.resync();
    this.#queue.start();
  }

  /** The queue stops taking keys; resolves once every in-flight reconcile has returned. */
  async stop(): Promise<void> {
    const queue = this.#queue;
    this.#queue = undefined;
    if (queue === undefined) return;
    await queue.shutdown();
    this.#controller.stopped?.();
  }
}
