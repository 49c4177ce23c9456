// A pool worker: runs segment jobs posted by pool.ts and answers with null or a serialized EnvelopeError.
import { parentPort } from 'node:worker_threads';
import { EnvelopeError } from './errors.ts';
import { runSegments, type SegmentJob, type WorkCounter } from './segments.ts';

export interface WorkerRequest {
  readonly id: number;
  readonly job: SegmentJob;
  readonly counter: WorkCounter;
}

export interface WorkerReply {
  readonly id: number;
  readonly error: { kind: EnvelopeError['kind']; message: string; segment: number | undefined } | null;
}

parentPort?.on('message', (request: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    runSegments(request.job, request.counter);
    reply = { id: request.id, error: null };
  } catch (e) {
    const error = e instanceof EnvelopeError ? e : new EnvelopeError('io', String(e));
    reply = { id: request.id, error: { kind: error.kind, message: error.message, segment: error.segment } };
  } finally {
    request.job.segmentKey.fill(0);
  }
  parentPort?.postMessage(reply);
});
