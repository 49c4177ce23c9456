// A pool worker: runs segment jobs posted by pool.ts and answers with null or a serialized EnvelopeError. A job
// posted with `hash` is this worker's alone (its counter is fresh), so it sees the segments in order and hashes them.
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { EnvelopeError } from './errors.ts';
import { runSegments, type SegmentJob, type WorkCounter } from './segments.ts';

export interface WorkerRequest {
  readonly id: number;
  readonly job: SegmentJob;
  readonly counter: WorkCounter;
  /** Hash the plaintext in order (decrypt jobs run by one worker only). */
  readonly hash: boolean;
}

export interface WorkerReply {
  readonly id: number;
  readonly error: { kind: EnvelopeError['kind']; message: string; segment: number | undefined } | null;
  /** `sha256:<hex>` of the plaintext, for a `hash` request that succeeded. */
  readonly digest: string | null;
}

parentPort?.on('message', (request: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    const hash = request.hash ? createHash('sha256') : null;
    runSegments(request.job, request.counter, hash === null ? undefined : (segment) => hash.update(segment));
    reply = { id: request.id, error: null, digest: hash === null ? null : `sha256:${hash.digest('hex')}` };
  } catch (e) {
    const error = e instanceof EnvelopeError ? e : new EnvelopeError('io', String(e));
    reply = {
      id: request.id,
      error: { kind: error.kind, message: error.message, segment: error.segment },
      digest: null,
    };
  } finally {
    request.job.segmentKey.fill(0);
  }
  parentPort?.postMessage(reply);
});
