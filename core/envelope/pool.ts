/**
 * A pool of worker threads for segment work, created once and reused (a warm pool saves ~50 ms per artifact).
 * Workers claim batches of segments from a shared counter, so a slow core never holds up the rest.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { EnvelopeError } from './errors.ts';
import type { WorkerReply, WorkerRequest } from './segment-worker.ts';
import { newWorkCounter, type SegmentJob } from './segments.ts';

// Source runs as .ts (Node's type stripping), the build as .js: load the worker beside this module either way.
const WORKER_URL = new URL(
  `./segment-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`,
  import.meta.url,
);

export class SegmentPool {
  readonly size: number;
  readonly #workers: Worker[];
  readonly #pending = new Map<number, (reply: WorkerReply) => void>();
  /** Whole-file jobs in flight per worker, to give the next one to the least busy. */
  readonly #wholeJobs: number[];
  /** Jobs in flight per worker: a worker keeps the process alive only while it has one. */
  readonly #inFlight: number[];
  #nextId = 0;
  #closed = false;

  constructor(size = availableParallelism()) {
    if (!Number.isInteger(size) || size < 1 || size > 64)
      throw new EnvelopeError('invalid', `pool size ${size} is not 1..64`);
    this.size = size;
    this.#wholeJobs = new Array<number>(size).fill(0);
    this.#inFlight = new Array<number>(size).fill(0);
    this.#workers = Array.from({ length: size }, () => {
      const worker = new Worker(WORKER_URL);
      worker.on('message', (reply: WorkerReply) => {
        const resolve = this.#pending.get(reply.id);
        this.#pending.delete(reply.id);
        resolve?.(reply);
      });
      worker.on('error', (error: Error) => {
        // A crashed worker fails every job in flight; the pool is unusable afterwards.
        this.#closed = true;
        for (const [id, resolve] of this.#pending) {
          resolve({
            id,
            error: { kind: 'io', message: `segment worker crashed: ${error.message}`, segment: undefined },
            digest: null,
          });
        }
        this.#pending.clear();
      });
      worker.unref();
      return worker;
    });
  }

  /**
   * Runs a job across the workers (at most `maxWorkers`, to leave a core to the caller); throws the first failure
   * as an EnvelopeError.
   */
  async run(job: SegmentJob, segments: number, maxWorkers = this.size): Promise<void> {
    if (this.#closed) throw new EnvelopeError('invalid', 'the segment pool is closed');
    const counter = newWorkCounter();
    const helpers = this.#workers.slice(
      0,
      Math.max(1, Math.min(this.size, maxWorkers, Math.ceil(segments / 8))),
    );
    helpers.forEach((_, i) => {
      this.#hold(i);
    });
    try {
      const replies = await Promise.all(
        helpers.map(
          (worker) =>
            new Promise<WorkerReply>((resolve) => {
              const id = this.#nextId++;
              this.#pending.set(id, resolve);
              const request: WorkerRequest = {
                id,
                job: { ...job, segmentKey: Uint8Array.from(job.segmentKey) },
                counter,
                hash: false,
              };
              worker.postMessage(request);
            }),
        ),
      );
      throwFirstFailure(replies);
    } finally {
      helpers.forEach((_, i) => {
        this.#release(i);
      });
    }
  }

  /**
   * Runs a decrypt job on ONE worker (the least busy with such jobs), which hashes the plaintext in order as it
   * decrypts it, while it is still in the CPU's cache; resolves with its `sha256:<hex>`. Several files decrypted
   * this way at once use every worker without a second pass over the plaintext.
   */
  async runHashed(job: SegmentJob): Promise<string> {
    if (this.#closed) throw new EnvelopeError('invalid', 'the segment pool is closed');
    const index = this.#wholeJobs.indexOf(Math.min(...this.#wholeJobs));
    const worker = this.#workers[index] as Worker;
    this.#wholeJobs[index] = (this.#wholeJobs[index] ?? 0) + 1;
    this.#hold(index);
    try {
      const reply = await new Promise<WorkerReply>((resolve) => {
        const id = this.#nextId++;
        this.#pending.set(id, resolve);
        const request: WorkerRequest = {
          id,
          job: { ...job, segmentKey: Uint8Array.from(job.segmentKey) },
          counter: newWorkCounter(),
          hash: true,
        };
        worker.postMessage(request);
      });
      throwFirstFailure([reply]);
      if (reply.digest === null) throw new EnvelopeError('io', 'a segment worker returned no digest');
      return reply.digest;
    } finally {
      this.#wholeJobs[index] = (this.#wholeJobs[index] ?? 1) - 1;
      this.#release(index);
    }
  }

  #hold(index: number): void {
    this.#inFlight[index] = (this.#inFlight[index] ?? 0) + 1;
    if (this.#inFlight[index] === 1) this.#workers[index]?.ref();
  }

  #release(index: number): void {
    this.#inFlight[index] = (this.#inFlight[index] ?? 1) - 1;
    if (this.#inFlight[index] === 0) this.#workers[index]?.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

/** Throws the earliest failing segment's error (the most useful diagnosis when several workers failed), if any. */
function throwFirstFailure(replies: readonly WorkerReply[]): void {
  const failures = replies.flatMap((r) => (r.error ? [r.error] : []));
  failures.sort((a, b) => (a.segment ?? Infinity) - (b.segment ?? Infinity));
  const first = failures[0];
  if (first)
    throw new EnvelopeError(
      first.kind,
      first.message,
      first.segment === undefined ? {} : { segment: first.segment },
    );
}
