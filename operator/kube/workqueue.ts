import type winston from 'winston';

/** What a reconcile handler may ask of the queue after a successful run. */
export interface ReconcileResult {
  /** Run the key again after this many milliseconds (for example to renew something before it expires). */
  readonly requeueAfterMs?: number;
}

/** Optional hooks, for metrics. */
export interface QueueObserver {
  added?(queue: string): void;
  processed?(queue: string, outcome: 'success' | 'error' | 'conflict', durationMs: number): void;
  retried?(queue: string): void;
  depth?(queue: string, depth: number): void;
}

export interface WorkQueueOptions {
  /** Used in logs and metrics. */
  readonly name: string;
  /** How many keys may be processed at once (never two runs of the same key). */
  readonly workers: number;
  readonly handler: (key: string) => Promise<ReconcileResult | undefined>;
  readonly logger: winston.Logger;
  readonly observer?: QueueObserver;
  /** First retry delay after a failure; doubles per consecutive failure of the key. Default 200 ms. */
  readonly retryInitialMs?: number;
  /** Cap of the retry delay. Default 30 s. */
  readonly retryMaxMs?: number;
}

/** Delay before a key whose handler hit a 409 Conflict runs again. Not a failure: someone else wrote first. */
const CONFLICT_RETRY_MS = 100;

/** ±10 % jitter, so that keys failing together do not retry in lockstep. */
function jitter(ms: number): number {
  return ms * (0.9 + 0.2 * Math.random());
}

function isConflict(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && error.code === 409;
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

interface Pending {
  readonly deadline: number;
  readonly timer: NodeJS.Timeout;
}

/**
 * A rate-limited work queue of object keys, as controllers use it: a key waiting is queued once, the same key is
 * never processed by two workers at once (a key added while it runs runs again afterwards, once), failures are
 * retried per key with capped exponential backoff, 409 Conflicts are retried quickly without counting as failures.
 * Keys are taken in FIFO order.
 */
export class WorkQueue {
  readonly #options: WorkQueueOptions;
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  /** Keys ready to be taken, in order. */
  readonly #queue: string[] = [];
  /** Keys that need a run: waiting in #queue, or added again while being processed. */
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #pending = new Map<string, Pending>();
  readonly #idleWorkers: ((key: string | null) => void)[] = [];
  #workers: Promise<void>[] = [];
  #state: 'new' | 'running' | 'shutdown' = 'new';

  constructor(options: WorkQueueOptions) {
    if (!Number.isInteger(options.workers) || options.workers < 1)
      throw new RangeError(`work queue ${options.name}: workers must be a positive integer`);
    this.#options = options;
    this.#retryInitialMs = options.retryInitialMs ?? 200;
    this.#retryMaxMs = options.retryMaxMs ?? 30_000;
  }

  /** Queues `key` unless it is already waiting. Ignored after shutdown. */
  add(key: string): void {
    if (this.#state === 'shutdown' || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    this.#options.observer?.added?.(this.#options.name);
    if (this.#processing.has(key)) return; // it runs again when the current run ends
    this.#enqueue(key);
  }

  /** Adds `key` after `delayMs`. Only the earliest pending deadline per key is kept. */
  addAfter(key: string, delayMs: number): void {
    if (this.#state === 'shutdown') return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const deadline = Date.now() + delayMs;
    const existing = this.#pending.get(key);
    if (existing) {
      if (existing.deadline <= deadline) return;
      clearTimeout(existing.timer);
    }
    // Node fires a longer timer after 1 ms: cap it (the reconcile is level-triggered, so waking early is harmless).
    const timer = setTimeout(
      () => {
        this.#pending.delete(key);
        this.add(key);
      },
      Math.min(delayMs, 2 ** 31 - 1),
    );
    timer.unref();
    this.#pending.set(key, { deadline, timer });
  }

  /** Starts the workers; keys added before start are processed now. */
  start(): void {
    if (this.#state === 'shutdown') throw new Error(`work queue ${this.#options.name} was shut down`);
    if (this.#state === 'running') return;
    this.#state = 'running';
    this.#workers = Array.from({ length: this.#options.workers }, () => this.#work());
  }

  /** Stops taking keys, cancels pending timers and resolves once every in-flight handler has returned. */
  async shutdown(): Promise<void> {
    this.#state = 'shutdown';
    for (const { timer } of this.#pending.values()) clearTimeout(timer);
    this.#pending.clear();
    for (const wake of this.#idleWorkers.splice(0)) wake(null);
    await Promise.all(this.#workers);
  }

  /** Keys waiting to be processed (not counting those being processed or waiting on a timer). */
  len(): number {
    return this.#queue.length;
  }

  #enqueue(key: string): void {
    const idle = this.#idleWorkers.shift(); // only running queues have idle workers
    if (idle) {
      this.#take(key);
      idle(key);
      return;
    }
    this.#queue.push(key);
    this.#options.observer?.depth?.(this.#options.name, this.#queue.length);
  }

  #take(key: string): void {
    this.#dirty.delete(key);
    this.#processing.add(key);
  }

  #next(): Promise<string | null> | string | null {
    if (this.#state !== 'running') return null;
    const key = this.#queue.shift();
    if (key === undefined) return new Promise((resolve) => this.#idleWorkers.push(resolve));
    this.#options.observer?.depth?.(this.#options.name, this.#queue.length);
    this.#take(key);
    return key;
  }

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.#next();
      if (key === null) return;
      await this.#process(key);
      this.#processing.delete(key);
      if (this.#dirty.has(key) && this.#state === 'running') this.#enqueue(key);
    }
  }

  async #process(key: string): Promise<void> {
    const { name, logger, observer, handler } = this.#options;
    const started = performance.now();
    let result: ReconcileResult | undefined;
    try {
      result = await handler(key);
    } catch (error) {
      const durationMs = performance.now() - started;
      observer?.retried?.(name);
      if (isConflict(error)) {
        observer?.processed?.(name, 'conflict', durationMs);
        logger.debug('reconcile hit a conflict, retrying', {
          queue: name,
          key,
          retryInMs: CONFLICT_RETRY_MS,
        });
        this.addAfter(key, CONFLICT_RETRY_MS);
        return;
      }
      observer?.processed?.(name, 'error', durationMs);
      const failures = this.#failures.get(key) ?? 0;
      this.#failures.set(key, failures + 1);
      const retryInMs = Math.min(this.#retryMaxMs, jitter(this.#retryInitialMs * 2 ** failures));
      logger.error('reconcile failed', {
        queue: name,
        key,
        error: describeError(error),
        attempt: failures + 1,
        retryInMs: Math.round(retryInMs),
      });
      this.addAfter(key, retryInMs);
      return;
    }
    observer?.processed?.(name, 'success', performance.now() - started);
    this.#failures.delete(key);
    if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
  }
}
