import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import winston from 'winston';
import { capturingLogger as jsonLogger } from '../../test/harness/logger.ts';
import { WorkQueue, type QueueObserver, type ReconcileResult, type WorkQueueOptions } from './workqueue.ts';

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

type Handler = WorkQueueOptions['handler'];

function queue(handler: Handler, extra: Partial<WorkQueueOptions> = {}): WorkQueue {
  return new WorkQueue({
    name: 'test',
    workers: 1,
    handler,
    logger: winston.createLogger({ silent: true }),
    ...extra,
  });
}

/** Lets every pending promise callback and zero-delay timer run. */
async function settle(): Promise<void> {
  await vi.advanceTimersByTimeAsync(0);
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5); // jitter factor exactly 1
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('WorkQueue', () => {
  it('queues a waiting key once and keeps keys added before start until start', async () => {
    const seen: string[] = [];
    const q = queue((key) => {
      seen.push(key);
      return Promise.resolve(undefined);
    });
    for (const k of ['a', 'a', 'b', 'a', 'b']) q.add(k);
    expect(q.len()).toBe(2);
    await settle();
    expect(seen).toEqual([]);
    q.start();
    await settle();
    expect(seen).toEqual(['a', 'b']);
    expect(q.len()).toBe(0);
    await q.shutdown();
  });

  it('never runs one key on two workers at once; a key added while running runs once more afterwards', async () => {
    const running = new Map<string, number>();
    let maxSameKey = 0;
    let maxTotal = 0;
    const runs: string[] = [];
    const gates = new Map<string, Deferred[]>();
    const q = queue(
      async (key) => {
        runs.push(key);
        running.set(key, (running.get(key) ?? 0) + 1);
        maxSameKey = Math.max(maxSameKey, running.get(key) ?? 0);
        maxTotal = Math.max(
          maxTotal,
          [...running.values()].reduce((a, b) => a + b, 0),
        );
        const gate = deferred();
        gates.set(key, [...(gates.get(key) ?? []), gate]);
        await gate.promise;
        running.set(key, (running.get(key) ?? 0) - 1);
        return undefined;
      },
      { workers: 4 },
    );
    q.start();
    q.add('x');
    await settle();
    expect(runs).toEqual(['x']);
    // x is running: three more adds of x while it runs must lead to exactly one more run, after this one.
    q.add('x');
    q.add('x');
    q.add('y');
    q.add('x');
    q.add('z');
    await settle();
    expect(runs).toEqual(['x', 'y', 'z']); // free workers took y and z, not a second x
    expect(q.len()).toBe(0);
    gates.get('x')?.[0]?.resolve();
    await settle();
    expect(runs).toEqual(['x', 'y', 'z', 'x']);
    for (const list of gates.values()) for (const g of list) g.resolve();
    await settle();
    expect(runs).toEqual(['x', 'y', 'z', 'x']); // and not a third time
    expect(maxSameKey).toBe(1);
    expect(maxTotal).toBe(3);
    await q.shutdown();
  });

  it('is FIFO: a key re-added while running goes behind the keys already waiting', async () => {
    const runs: string[] = [];
    const q = queue((key) => {
      runs.push(key);
      if (runs.length === 1) q.add('a'); // re-added during its own run
      return Promise.resolve(undefined);
    });
    q.add('a');
    q.add('b');
    q.add('c');
    q.start();
    await settle();
    expect(runs).toEqual(['a', 'b', 'c', 'a']);
    await q.shutdown();
  });

  it('retries a failing key with exponential backoff capped at retryMaxMs, and logs key and error', async () => {
    const { logger, lines } = jsonLogger();
    const times: number[] = [];
    const start = Date.now();
    const q = queue(
      (key) => {
        times.push(Date.now() - start);
        return Promise.reject(new Error(`cannot reach the KMS for ${key}`));
      },
      { logger, retryInitialMs: 100, retryMaxMs: 1000 },
    );
    q.start();
    q.add('ns/model');
    await vi.advanceTimersByTimeAsync(5000);
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? 0));
    expect(gaps.slice(0, 7)).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
    const errors = lines.filter((l) => l.level === 'error');
    expect(errors.length).toBe(times.length);
    expect(errors[0]).toMatchObject({
      message: 'reconcile failed',
      key: 'ns/model',
      error: 'Error: cannot reach the KMS for ns/model',
      retryInMs: 100,
    });
    await q.shutdown();
  });

  it('spreads retries with jitter of at most ±10 %', async () => {
    const times: number[] = [];
    const q = queue(
      () => {
        times.push(Date.now());
        return Promise.reject(new Error('boom'));
      },
      { retryInitialMs: 1000, retryMaxMs: 60_000 },
    );
    vi.spyOn(Math, 'random').mockReturnValue(0);
    q.start();
    q.add('k');
    await vi.advanceTimersByTimeAsync(1000);
    expect(times.length).toBe(2); // first retry after 900 ms, not 1000
    expect((times[1] ?? 0) - (times[0] ?? 0)).toBe(900);
    await q.shutdown();
  });

  it('forgets the failure count on success', async () => {
    const times: number[] = [];
    const outcomes = ['fail', 'fail', 'ok', 'fail', 'ok'];
    const start = Date.now();
    const q = queue(
      () => {
        times.push(Date.now() - start);
        return outcomes.shift() === 'fail' ? Promise.reject(new Error('no')) : Promise.resolve(undefined);
      },
      { retryInitialMs: 100, retryMaxMs: 10_000 },
    );
    q.start();
    q.add('k');
    await vi.advanceTimersByTimeAsync(1000);
    expect(times).toEqual([0, 100, 300]); // 100, then 200, then success
    q.add('k');
    await vi.advanceTimersByTimeAsync(1000);
    // after the success the next failure starts again at 100 ms, not 400 ms
    expect(times).toEqual([0, 100, 300, 1000, 1100]);
    await q.shutdown();
  });

  it('runs a key again after requeueAfterMs on success', async () => {
    const times: number[] = [];
    const start = Date.now();
    const q = queue(() => {
      times.push(Date.now() - start);
      const result: ReconcileResult | undefined = times.length < 3 ? { requeueAfterMs: 250 } : undefined;
      return Promise.resolve(result);
    });
    q.start();
    q.add('k');
    await vi.advanceTimersByTimeAsync(2000);
    expect(times).toEqual([0, 250, 500]);
    await q.shutdown();
  });

  it('waits for a requeue longer than the longest Node timer (24.8 days) instead of firing at once', async () => {
    const times: number[] = [];
    const start = Date.now();
    const q = queue(() => {
      times.push(Date.now() - start);
      return Promise.resolve(undefined);
    });
    q.start();
    q.addAfter('k', 40 * 24 * 3600_000);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(times).toEqual([]);
    await vi.advanceTimersByTimeAsync(25 * 24 * 3600_000);
    expect(times).toEqual([2 ** 31 - 1]);
    await q.shutdown();
  });

  it('keeps only the earliest addAfter deadline per key', async () => {
    const times: number[] = [];
    const start = Date.now();
    const q = queue((key) => {
      times.push(Date.now() - start);
      expect(key).toBe('k');
      return Promise.resolve(undefined);
    });
    q.start();
    q.addAfter('k', 1000);
    q.addAfter('k', 300);
    q.addAfter('k', 2000);
    await vi.advanceTimersByTimeAsync(5000);
    expect(times).toEqual([300]);
    await q.shutdown();
  });

  it('retries a 409 Conflict after ~100 ms without counting a failure, logged at debug only', async () => {
    const { logger, lines } = jsonLogger();
    const events: string[] = [];
    const observer: QueueObserver = {
      processed: (_q, outcome) => events.push(outcome),
      retried: () => events.push('retried'),
    };
    const times: number[] = [];
    const start = Date.now();
    const script = ['conflict', 'conflict', 'fail', 'ok'];
    const q = queue(
      () => {
        times.push(Date.now() - start);
        const step = script.shift();
        if (step === 'conflict') return Promise.reject(Object.assign(new Error('Conflict'), { code: 409 }));
        if (step === 'fail') return Promise.reject(Object.assign(new Error('Server Error'), { code: 500 }));
        return Promise.resolve(undefined);
      },
      { logger, observer, retryInitialMs: 1000, retryMaxMs: 10_000 },
    );
    q.start();
    q.add('k');
    await vi.advanceTimersByTimeAsync(5000);
    // The failure after two conflicts waits the *first* backoff step (1000 ms): conflicts did not count.
    expect(times).toEqual([0, 100, 200, 1200]);
    expect(events).toEqual(['retried', 'conflict', 'retried', 'conflict', 'retried', 'error', 'success']);
    expect(lines.filter((l) => l.level === 'error').length).toBe(1);
    expect(lines.filter((l) => l.level === 'debug').map((l) => l.key)).toEqual(['k', 'k']);
    await q.shutdown();
  });

  it('shutdown waits for in-flight handlers, drops timers and waiting keys, and ignores later adds', async () => {
    const gate = deferred();
    const runs: string[] = [];
    let finished = false;
    const q = queue(async (key) => {
      runs.push(key);
      if (key === 'slow') {
        await gate.promise;
        finished = true;
      }
      return undefined;
    });
    q.start();
    q.add('slow');
    await settle();
    q.add('waiting');
    q.addAfter('timer', 500);
    let shutDown = false;
    const done = q.shutdown().then(() => {
      shutDown = true;
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(shutDown).toBe(false);
    gate.resolve();
    await done;
    expect(finished).toBe(true);
    q.add('late');
    q.addAfter('late-timer', 10);
    await vi.advanceTimersByTimeAsync(1000);
    expect(runs).toEqual(['slow']);
    expect(vi.getTimerCount()).toBe(0);
    expect(() => {
      q.start();
    }).toThrow(/shut down/);
  });

  it('reports depth, adds and outcomes to the observer', async () => {
    const depths: number[] = [];
    let added = 0;
    const outcomes: string[] = [];
    const q = queue((key) => (key === 'bad' ? Promise.reject(new Error('x')) : Promise.resolve(undefined)), {
      observer: {
        added: () => added++,
        depth: (_q, d) => depths.push(d),
        processed: (_q, o, ms) => {
          expect(ms).toBeGreaterThanOrEqual(0);
          outcomes.push(o);
        },
      },
      retryInitialMs: 10_000,
    });
    q.add('a');
    q.add('bad');
    q.add('a');
    expect(added).toBe(2);
    expect(depths).toEqual([1, 2]);
    q.start();
    await settle();
    expect(depths).toEqual([1, 2, 1, 0]);
    expect(outcomes).toEqual(['success', 'error']);
    await q.shutdown();
  });

  it('refuses a worker count below one', () => {
    expect(() => queue(() => Promise.resolve(undefined), { workers: 0 })).toThrow(RangeError);
  });
});
