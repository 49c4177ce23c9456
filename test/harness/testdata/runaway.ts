/**
 * A process that runs away, for memory-sentinel.test.ts: it starts the sentinel thread with the limit given in MiB,
 * names a test, then retains 1 MiB buffers in a synchronous loop (so that nothing but an interrupt can stop it).
 *
 * Usage: node runaway.ts <limitMiB> <reportDir> retain|idle
 */
import { Worker } from 'node:worker_threads';

const [limit, reportDir, mode] = process.argv.slice(2);
const sentinel = new Worker(new URL('../memory-sentinel-thread.ts', import.meta.url), {
  workerData: { limitBytes: Number(limit) * 2 ** 20, intervalMs: 100, reportDir, file: 'runaway.ts' },
});
sentinel.unref();
sentinel.postMessage('keeps every buffer it makes');

const kept: Buffer[] = [];
function retainForever(): void {
  for (;;) kept.push(Buffer.alloc(2 ** 20, 1));
}
// Give the thread time to start; a process that never passes the limit exits on its own after that.
setTimeout(mode === 'idle' ? () => undefined : retainForever, 500);
