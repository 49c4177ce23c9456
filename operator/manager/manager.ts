/**
 * The manager runs the operator's runnables (runnable.ts), in the manner of controller-runtime's manager:
 * - start(): the runnables that do not need the leader start one after another, in the order they were added, each
 *   awaited; then this replica campaigns for the Lease (or, without leader election, leads at once). A start that
 *   throws stops the sequence and start() rejects; stop() then stops what had started.
 * - leading: each time this replica acquires the Lease, a leadership term begins and the leader-only runnables start,
 *   in order (in the operator: the controllers' work queues; everything else serves on every replica). Losing the
 *   Lease ends the term: they stop in reverse order, then the replica campaigns again with a fresh elector. A leader-only runnable that cannot start is fatal.
 * - stop(): every started runnable's beforeStop() first (readiness turns false), then the runnables stop in the
 *   reverse of the order they were added, each awaited; the Lease sits where the first leader-only runnable was
 *   added: once the leader-only runnables have stopped it is released (another replica takes over at once), and the
 *   runnables added before them stop after that. A step that fails is logged and the next one runs. Idempotent.
 */
import type winston from 'winston';
import type { RunContext, Runnable } from './runnable.ts';

/** One campaign for the Lease (kube/leader.ts LeaderElector); the manager makes a new one to campaign again. */
export interface Elector {
  start(): void;
  /** Stops campaigning and releases the Lease if held (after calling onStoppedLeading when leading). */
  stop(): Promise<void>;
}

/** What the manager hands each elector it makes. */
export interface ElectorCallbacks {
  readonly onStartedLeading: () => void;
  readonly onStoppedLeading: () => void;
}

export interface ManagerOptions {
  /** Logs the leadership changes and the shutdown steps. */
  readonly logger: winston.Logger;
  /** This replica's identity, in the leadership logs. */
  readonly identity: string;
  /** Makes the elector of one campaign. Absent: no leader election, this replica leads from the start. */
  readonly elector?: (callbacks: ElectorCallbacks) => Elector;
  /** Something failed that the process cannot recover from: it must shut down and exit non-zero. */
  readonly onFatal: (reason: string) => void;
  /** Told when this replica starts (true) and stops (false) leading. */
  readonly onLeading?: (leading: boolean) => void;
}

/** The manager was used out of order. */
export class ManagerError extends Error {
  override readonly name = 'ManagerError';
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

export class Manager {
  readonly #o: ManagerOptions;
  readonly #log: winston.Logger;
  readonly #context: RunContext;
  readonly #runnables: Runnable[] = [];
  /** Runnables not needing the leader whose start was called (including one whose start threw). */
  readonly #running = new Set<Runnable>();
  /** The leader-only runnables started in the current term, in start order; undefined while not leading. */
  #term: Runnable[] | undefined;
  /** Settles once the term ended by a lost Lease has stopped. */
  #termEnded: Promise<void> = Promise.resolve();
  #elector: Elector | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: ManagerOptions) {
    this.#o = options;
    this.#log = options.logger;
    this.#context = {
      fatal: (reason) => {
        options.onFatal(reason);
      },
    };
  }

  /** Adds runnables, in start order. Only before start(). */
  add(...runnables: Runnable[]): this {
    if (this.#starting !== undefined) throw new ManagerError('runnables are added before the manager starts');
    for (const r of runnables) {
      if (this.#runnables.includes(r)) throw new ManagerError(`runnable ${r.name} was added twice`);
      this.#runnables.push(r);
    }
    return this;
  }

  /** Leader election is under way (or off): the readiness check `leader-election`. */
  electing(): boolean {
    return this.#elector !== undefined || this.#o.elector === undefined;
  }

  /** Whether a leadership term is running. */
  leading(): boolean {
    return this.#term !== undefined;
  }

  /**
   * Starts the runnables that do not need the leader, in order, then campaigns. Rejects with the first start that
   * throws, or if stop() was called before it finished. Only once.
   */
  start(): Promise<void> {
    if (this.#starting !== undefined)
      return Promise.reject(new ManagerError('the manager was started twice'));
    this.#starting = this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    for (const r of this.#runnables) {
      if (r.needsLeader) continue;
      if (this.#stopping !== undefined) throw new ManagerError('the manager was stopped while starting');
      this.#running.add(r);
      this.#log.debug('starting', { runnable: r.name });
      await r.start(this.#context);
    }
    if (this.#stopping !== undefined) throw new ManagerError('the manager was stopped while starting');
    if (this.#o.elector === undefined) this.#startLeading();
    else this.#campaign();
  }

  #campaign(): void {
    const make = this.#o.elector;
    if (make === undefined) return;
    const elector = make({
      onStartedLeading: () => {
        this.#startLeading();
      },
      onStoppedLeading: () => {
        this.#stoppedLeading();
      },
    });
    this.#elector = elector;
    elector.start();
  }

  /** A new term: the leader-only runnables start in order (the first ones queue a full resync). */
  #startLeading(): void {
    if (this.#stopping !== undefined) return;
    const term: Runnable[] = [];
    this.#term = term;
    this.#o.onLeading?.(true);
    this.#log.info('leading: starting controllers', { identity: this.#o.identity });
    void (async () => {
      for (const r of this.#runnables) {
        if (!r.needsLeader) continue;
        if (this.#term !== term) return; // the term ended while it was starting
        term.push(r);
        try {
          await r.start(this.#context);
        } catch (error) {
          if (this.#term !== term) return;
          this.#log.error('a leader-only runnable could not start', {
            runnable: r.name,
            error: describe(error),
          });
          this.#o.onFatal(`${r.name} could not start: ${describe(error)}`);
          return;
        }
      }
    })();
  }

  #stoppedLeading(): void {
    this.#o.onLeading?.(false);
    if (this.#stopping !== undefined) return;
    // Lost the Lease (API server unreachable, or someone else holds it): stop reconciling at once, then campaign
    // again. renewDeadline < leaseDuration leaves the queues time to drain before another replica can acquire.
    this.#log.warn('lost the Lease: stopping controllers and campaigning again', {
      identity: this.#o.identity,
    });
    this.#termEnded = this.#endTerm(async (r) => r.stop()).then(
      () => {
        if (this.#stopping === undefined) this.#campaign();
      },
      (error: unknown) => {
        this.#o.onFatal(`could not stop the controllers after losing the Lease: ${String(error)}`);
      },
    );
  }

  /** Stops the term's runnables in reverse order, every one even if another fails; rejects with the failures. */
  async #endTerm(stop: (r: Runnable) => Promise<void>): Promise<void> {
    const term = this.#term;
    this.#term = undefined;
    if (term === undefined) return;
    const errors: unknown[] = [];
    for (const r of [...term].reverse()) {
      try {
        await stop(r);
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1)
      throw new AggregateError(errors, `${errors.length} leader-only runnables could not stop`);
  }

  /** Graceful shutdown in the order described at the top of this file. Safe to call more than once. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#log.info('shutting down');
    for (const r of [...this.#running, ...(this.#term ?? [])]) {
      try {
        r.beforeStop?.();
      } catch (error) {
        this.#log.error('shutdown step failed', { step: `${r.name} (before stop)`, error });
      }
    }
    const first = this.#runnables.findIndex((r) => r.needsLeader);
    const lease = first === -1 ? this.#runnables.length : first;
    for (const r of this.#runnables.slice(lease).reverse()) if (!r.needsLeader) await this.#stopOne(r);
    await this.#termEnded;
    await this.#endTerm((r) => this.#step(r.name, async () => r.stop()));
    await this.#step('lease', async () => this.#elector?.stop());
    for (const r of this.#runnables.slice(0, lease).reverse()) await this.#stopOne(r);
  }

  async #stopOne(r: Runnable): Promise<void> {
    if (!this.#running.delete(r)) return;
    await this.#step(r.name, async () => r.stop());
  }

  /** One shutdown step: logged, and never stopping the sequence. */
  async #step(name: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
      this.#log.info('shutdown step done', { step: name });
    } catch (error) {
      this.#log.error('shutdown step failed', { step: name, error });
    }
  }
}
