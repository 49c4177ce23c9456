/**
 * A runnable is one part of the operator that the manager (manager.ts) starts and stops: a controller's work queue,
 * the webhook server, the key broker, the caches, the health server, a timer. It says whether it needs the leader:
 * runnables that do run only while this replica holds the Lease, one leadership term at a time (started again for
 * every term); the others run on every replica from start to shutdown.
 */

/** What a runnable is given when it starts. */
export interface RunContext {
  /**
   * Reports a failure the process cannot recover from, for work the runnable carries on in the background after its
   * start() returned (a server still waiting for its certificate). The operator then shuts down and exits 1.
   */
  fatal(reason: string): void;
}

export interface Runnable {
  /** In logs: the shutdown steps are named after their runnables. */
  readonly name: string;
  /** Runs only while this replica leads (started when it acquires the Lease, stopped when it loses it). */
  readonly needsLeader: boolean;
  /**
   * Starts; the manager waits for it before starting the next runnable. A rejection fails the manager's start (or,
   * for a leader-only runnable, is fatal). stop() may be called while start() is still under way: it must then
   * make start() end.
   */
  start(context: RunContext): Promise<void> | void;
  /** Stops; the manager waits for it before stopping the previous runnable. Called at most once per start. */
  stop(): Promise<void> | void;
  /**
   * Called on every started runnable, synchronously, as the first step of shutdown before any runnable stops: the
   * place to turn /readyz to 503 so that traffic goes elsewhere while the rest stops.
   */
  beforeStop?(): void;
}

/** A runnable from a name and functions; start and stop default to doing nothing. */
export function runnable(
  name: string,
  parts: {
    readonly needsLeader?: boolean;
    readonly start?: (context: RunContext) => Promise<void> | void;
    readonly stop?: () => Promise<void> | void;
  },
): Runnable {
  return {
    name,
    needsLeader: parts.needsLeader ?? false,
    start: (context) => parts.start?.(context),
    stop: () => parts.stop?.(),
  };
}

/**
 * Calls `tick` every `periodMs` while it runs (never at start). The timer is unref'd: it never keeps the process
 * alive on its own.
 */
export class Periodic implements Runnable {
  readonly name: string;
  readonly needsLeader: boolean;
  readonly #periodMs: number;
  readonly #tick: () => void;
  #timer: NodeJS.Timeout | undefined;

  constructor(name: string, periodMs: number, tick: () => void, options: { needsLeader?: boolean } = {}) {
    this.name = name;
    this.needsLeader = options.needsLeader ?? false;
    this.#periodMs = periodMs;
    this.#tick = tick;
  }

  start(): void {
    clearInterval(this.#timer);
    this.#timer = setInterval(this.#tick, this.#periodMs).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Several runnables that start in order and stop together: stop() calls every member's stop() at once and waits
 * for all of them. The work queues of the controllers are one such group, so that they all stop taking keys at the
 * same moment and drain side by side. If a member's start throws, the members after it are not started; stop()
 * stops the members that were started (including the one that threw). Members must agree on needsLeader.
 */
export class RunnableGroup implements Runnable {
  readonly name: string;
  readonly needsLeader: boolean;
  readonly members: readonly Runnable[];
  #started: Runnable[] = [];

  constructor(name: string, members: readonly Runnable[]) {
    const needsLeader = members[0]?.needsLeader ?? false;
    if (members.some((m) => m.needsLeader !== needsLeader))
      throw new TypeError(`runnable group ${name}: its members must all need the leader, or none`);
    this.name = name;
    this.needsLeader = needsLeader;
    this.members = members;
  }

  async start(context: RunContext): Promise<void> {
    const started: Runnable[] = [];
    this.#started = started;
    for (const member of this.members) {
      if (this.#started !== started) return; // stopped meanwhile
      started.push(member);
      await member.start(context);
    }
  }

  async stop(): Promise<void> {
    const started = this.#started;
    this.#started = [];
    const results = await Promise.allSettled(started.map(async (m) => m.stop()));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length > 0)
      throw new AggregateError(
        failed.map((r) => r.reason as unknown),
        `${this.name}: ${failed.length} of ${started.length} could not stop`,
      );
  }

  beforeStop(): void {
    for (const member of this.#started) member.beforeStop?.();
  }
}
