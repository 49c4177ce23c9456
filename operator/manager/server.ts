/**
 * A server that may take long to begin listening, e.g. because it waits for the serving certificate the leader
 * issues (the injection webhook runs on every replica): start() begins it without waiting, a failure to start is
 * fatal unless shutdown has begun, and ready() (a readiness input) says whether it listens.
 */
import type { RunContext, Runnable } from './runnable.ts';

export interface BackgroundServerTarget {
  /** Resolves once it listens; rejects when it cannot start, or once `signal` is aborted. */
  start(signal: AbortSignal): Promise<unknown>;
  stop(): Promise<void>;
  ready(): boolean;
}

export class BackgroundServer implements Runnable {
  readonly name: string;
  readonly needsLeader = false;
  readonly #description: string;
  readonly #make: () => BackgroundServerTarget;
  readonly #abort = new AbortController();
  #server: BackgroundServerTarget | undefined;
  #started: Promise<void> = Promise.resolve();

  /** `make` builds the server when it starts; `description` names it in the fatal reason ("… could not start"). */
  constructor(name: string, description: string, make: () => BackgroundServerTarget) {
    this.name = name;
    this.#description = description;
    this.#make = make;
  }

  start(context: RunContext): void {
    const server = this.#make();
    this.#server = server;
    this.#started = server.start(this.#abort.signal).then(
      () => undefined,
      (error: unknown) => {
        if (this.#abort.signal.aborted) return;
        context.fatal(`${this.#description} could not start: ${String(error)}`);
      },
    );
  }

  /** Aborts a start still waiting, then stops the server. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#started;
    await this.#server?.stop();
  }

  ready(): boolean {
    return this.#server?.ready() === true;
  }
}
