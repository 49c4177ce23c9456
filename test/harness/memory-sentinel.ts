/**
 * A vitest setup file: every test worker gets a sentinel thread (memory-sentinel-thread.ts) that stops the worker
 * when its resident set passes a limit, and leaves a report naming the file, the running test and the main thread's
 * JavaScript stack. Without it a runaway worker is found only by the kernel's OOM killer, which may kill the API
 * server or etcd instead and leaves no clue (a CI run once lost a worker at 23 GiB that way).
 *
 * STRONGROOM_TEST_RSS_LIMIT_MB sets the limit (default 6144; 0 turns the sentinel off). Reports go to
 * STRONGROOM_MEMORY_REPORT_DIR, which vitest.config.ts creates per run and SummaryLineReporter prints at the end.
 */
import { Worker } from 'node:worker_threads';
import { beforeEach, expect } from 'vitest';

const limitMb = Number(process.env.STRONGROOM_TEST_RSS_LIMIT_MB ?? '6144');
const reportDir = process.env.STRONGROOM_MEMORY_REPORT_DIR;

if (Number.isFinite(limitMb) && limitMb > 0 && reportDir !== undefined) {
  const sentinel = new Worker(new URL('./memory-sentinel-thread.ts', import.meta.url), {
    workerData: {
      limitBytes: limitMb * 2 ** 20,
      intervalMs: 500,
      reportDir,
      file: expect.getState().testPath ?? '(unknown file)',
    },
  });
  // Never keeps a finished worker alive.
  sentinel.unref();
  beforeEach((context) => {
    sentinel.postMessage(context.task.name);
  });
}
