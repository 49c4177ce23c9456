/**
 * Retry pacing for the sidecar: exponential backoff with full jitter, so that the sidecars of many pods that lost
 * the broker at the same moment do not come back in lockstep.
 */

/** Bounds of a backoff schedule. */
export interface BackoffPolicy {
  /** The first delay's upper bound. */
  readonly baseMs: number;
  /** The largest delay. */
  readonly maxMs: number;
}

/** The default: 0.5 s doubling up to 30 s. */
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 500, maxMs: 30_000 };

/**
 * The delay before retry number `attempt` (1 for the first retry): uniformly random between half and all of
 * `min(maxMs, baseMs * 2^(attempt-1))`, so it never collapses to zero.
 */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(attempt, 1) - 1, 30);
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** exponent);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}
