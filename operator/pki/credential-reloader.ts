/**
 * Keeps the credentials of a TLS server current: its serving certificate (from a `kubernetes.io/tls` Secret that the
 * PKI controller may not have issued yet when the server starts) and the operator CA bundle. `waitForFirst` reads
 * until a reading succeeds, backing off between attempts, and gives up only when aborted; `startRefreshing` then
 * re-reads every `refreshMs` and hands each reading that differs from the current one to `onChange`. A failed re-read
 * keeps the current material and is logged as a warning. `stop` ends the wait and the refreshing.
 */
import { setTimeout as delay } from 'node:timers/promises';

/** Why the credentials could not be had. */
export type CredentialReloadErrorCode =
  /** The read failed (no Secret yet, API server unreachable, malformed material); `cause` holds the failure. */
  | 'unavailable'
  /** Stopped or aborted before a first reading succeeded; `cause` holds the last read failure, if any. */
  | 'aborted';

/** A failure to read or wait for credentials. */
export class CredentialReloadError extends Error {
  override readonly name = 'CredentialReloadError';
  readonly code: CredentialReloadErrorCode;
  constructor(code: CredentialReloadErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Waits `ms`, rejecting as soon as `signal` aborts. `ref: false` lets the process exit during the wait (the periodic
 * re-read does not keep the process alive; the wait for the first reading does).
 */
export type Sleep = (ms: number, signal: AbortSignal, ref: boolean) => Promise<void>;

/** Where the reloader reports waiting and failed re-reads. */
export interface ReloadLog {
  info(message: string, meta: Record<string, unknown>): void;
  warn(message: string, meta: Record<string, unknown>): void;
}

export interface CredentialReloaderOptions<T> {
  /** What is read, for logs and errors, e.g. `the serving certificate`. */
  readonly what: string;
  /** Reads the material; rejects while it is unavailable. */
  readonly read: () => Promise<T>;
  /** Whether two readings hold the same material (then nothing is reloaded). */
  readonly same: (a: T, b: T) => boolean;
  /** Called with each re-read that differs from the current material. */
  readonly onChange: (next: T) => void;
  /** The delay between re-reads once the first reading succeeded. */
  readonly refreshMs: number;
  /** The wait after the first failed read; it doubles after each failure up to `maxMs`. Default 200 → 2000 ms. */
  readonly backoff?: { readonly firstMs: number; readonly maxMs: number };
  readonly logger: ReloadLog;
  /** Default: a timer from node:timers/promises. */
  readonly sleep?: Sleep;
}

/** Failed reads between two repeats of the same "waiting for" log line. */
const LOG_EVERY = 10;

const timerSleep: Sleep = async (ms, signal, ref) => {
  await delay(ms, undefined, { signal, ref });
};

/** See the module comment. */
export class CredentialReloader<T> {
  readonly #o: CredentialReloaderOptions<T>;
  readonly #sleep: Sleep;
  readonly #stop = new AbortController();
  #current: T | undefined;
  #refreshing = false;

  constructor(options: CredentialReloaderOptions<T>) {
    this.#o = options;
    this.#sleep = options.sleep ?? timerSleep;
  }

  /** The material in use, once a reading succeeded. */
  get current(): T | undefined {
    return this.#current;
  }

  /**
   * Reads until a reading succeeds and returns it (it becomes the current material). Between failed reads it waits
   * `backoff.firstMs`, doubling up to `backoff.maxMs`, and logs what it waits for when the problem changes and every
   * tenth attempt. Throws CredentialReloadError `aborted` when `signal` aborts or `stop()` is called first.
   */
  async waitForFirst(signal?: AbortSignal): Promise<T> {
    const abort = signal === undefined ? this.#stop.signal : AbortSignal.any([signal, this.#stop.signal]);
    const { firstMs, maxMs } = this.#o.backoff ?? { firstMs: 200, maxMs: 2000 };
    // A function, not the property: the compiler would take it as unchanged across the awaits.
    const aborted = (): boolean => abort.aborted;
    let lastError: unknown;
    let lastProblem: string | undefined;
    for (let attempt = 0; ; attempt++) {
      if (aborted()) break;
      try {
        const value = await this.#o.read();
        if (aborted()) break;
        this.#current = value;
        return value;
      } catch (error) {
        lastError = error;
        const problem = messageOf(error);
        if (problem !== lastProblem || attempt % LOG_EVERY === 0)
          this.#o.logger.info(`waiting for ${this.#o.what}`, { problem });
        lastProblem = problem;
      }
      try {
        await this.#sleep(Math.min(maxMs, firstMs * 2 ** Math.min(attempt, 30)), abort, true);
      } catch (error) {
        if (!aborted()) throw error;
      }
    }
    throw new CredentialReloadError('aborted', `stopped while waiting for ${this.#o.what}`, {
      cause: lastError ?? abort.reason,
    });
  }

  /**
   * Re-reads the material now and, when it differs from the current one, makes it current and calls `onChange`.
   * Returns true when it changed. Throws CredentialReloadError `unavailable` when the read fails (the current material
   * stays). After `stop()` nothing changes.
   */
  async reload(): Promise<boolean> {
    let next: T;
    try {
      next = await this.#o.read();
    } catch (error) {
      throw new CredentialReloadError('unavailable', `cannot read ${this.#o.what}: ${messageOf(error)}`, {
        cause: error,
      });
    }
    const current = this.#current;
    if (this.#stop.signal.aborted || (current !== undefined && this.#o.same(current, next))) return false;
    this.#current = next;
    this.#o.onChange(next);
    return true;
  }

  /** Re-reads every `refreshMs` until `stop()`; a failed re-read is logged and the current material kept. */
  startRefreshing(): void {
    if (this.#refreshing || this.#stop.signal.aborted) return;
    this.#refreshing = true;
    this.#refresh().catch((error: unknown) => {
      this.#o.logger.warn(`stopped re-reading ${this.#o.what}`, { error: messageOf(error) });
    });
  }

  /** Ends the wait for a first reading and the refreshing; a re-read in flight changes nothing. */
  stop(): void {
    this.#stop.abort();
  }

  async #refresh(): Promise<void> {
    const signal = this.#stop.signal;
    for (;;) {
      try {
        await this.#sleep(this.#o.refreshMs, signal, false);
      } catch (error) {
        if (signal.aborted) return;
        throw error;
      }
      if (signal.aborted) return;
      try {
        await this.reload();
      } catch (error) {
        this.#o.logger.warn(`could not re-read ${this.#o.what}; keeping the current one`, {
          error: messageOf(error),
        });
      }
    }
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
