import { describe, expect, it } from 'vitest';
import winston from 'winston';
import { ControllerRunnable, Signal, watch, type Controller } from './controller.ts';

const logger = winston.createLogger({ silent: true });

/** Lets pending promise callbacks and the queue's workers run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('ControllerRunnable', () => {
  function setup() {
    const source = new Signal();
    const mapped: number[] = [];
    const reconciled: string[] = [];
    let keys = ['ns/a', 'ns/b'];
    const controller: Controller = {
      name: 'things',
      workers: 1,
      reconcile: (key) => {
        reconciled.push(key);
        return Promise.resolve(undefined);
      },
      resync: () => keys,
      watches: [
        watch(source, () => {
          mapped.push(mapped.length);
          return ['ns/from-event'];
        }),
      ],
    };
    const runnable = new ControllerRunnable(controller, { logger });
    return {
      source,
      mapped,
      reconciled,
      runnable,
      setKeys: (k: string[]) => {
        keys = k;
      },
    };
  }

  it('connects its watches when made: maps run while not leading, their keys are dropped', async () => {
    const { source, mapped, reconciled, runnable } = setup();
    expect(runnable.needsLeader).toBe(true);
    expect(runnable.name).toBe('things');
    source.emit();
    runnable.enqueue('ns/x');
    runnable.resync();
    await settle();
    expect(mapped).toEqual([0]); // an index kept by a map stays complete on a follower
    expect(reconciled).toEqual([]);
  });

  it('starts a term with a full resync, queues what its watches map, and drains on stop', async () => {
    const { source, reconciled, runnable, setKeys } = setup();
    runnable.start();
    await settle();
    expect(reconciled).toEqual(['ns/a', 'ns/b']);
    source.emit();
    await settle();
    expect(reconciled).toEqual(['ns/a', 'ns/b', 'ns/from-event']);
    await runnable.stop();
    source.emit();
    await settle();
    expect(reconciled).toHaveLength(3);

    // A new term: a new queue, and a full resync again.
    setKeys(['ns/c']);
    runnable.start();
    await settle();
    expect(reconciled.slice(3)).toEqual(['ns/c']);
    await runnable.stop();
  });

  it('stop waits for the reconcile in flight', async () => {
    const gate = Promise.withResolvers<undefined>();
    const done: string[] = [];
    const runnable = new ControllerRunnable(
      {
        name: 'slow',
        workers: 1,
        reconcile: async (key) => {
          await gate.promise;
          done.push(key);
          return undefined;
        },
        resync: () => ['k'],
        watches: [],
      },
      { logger },
    );
    runnable.start();
    await settle();
    let stopped = false;
    const stopping = runnable.stop().then(() => {
      stopped = true;
    });
    await settle();
    expect(stopped).toBe(false);
    gate.resolve(undefined);
    await stopping;
    expect(done).toEqual(['k']);
  });

  it('tells the controller it stopped once its last reconcile returned, once per term, never when it did not run', async () => {
    const gate = Promise.withResolvers<undefined>();
    const seen: string[] = [];
    const runnable = new ControllerRunnable(
      {
        name: 'leader-metrics',
        workers: 1,
        reconcile: async (key) => {
          seen.push(`start ${key}`);
          await gate.promise;
          seen.push(`end ${key}`);
          return undefined;
        },
        resync: () => ['k'],
        watches: [],
        stopped: () => seen.push('stopped'),
      },
      { logger },
    );
    await runnable.stop(); // never started: nothing to tell
    expect(seen).toEqual([]);
    runnable.start();
    await settle();
    const stopping = runnable.stop();
    await settle();
    expect(seen).toEqual(['start k']);
    gate.resolve(undefined);
    await stopping;
    expect(seen).toEqual(['start k', 'end k', 'stopped']);
    await runnable.stop(); // a second stop of the same term: told once
    expect(seen).toEqual(['start k', 'end k', 'stopped']);
  });
});
