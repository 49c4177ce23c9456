/**
 * The segment engine: encrypts, decrypts or verifies a range of segments with positional, synchronous I/O. It runs
 * inside pool workers (segment-worker.ts) and, for small files or without a pool, on the calling thread.
 * A segment's plaintext is written only after its tag has verified.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { closeSync, openSync, readSync, writevSync } from 'node:fs';
import { EnvelopeError } from './errors.ts';
import { TAG_LENGTH, segmentCount, segmentNonce } from './format.ts';

export type SegmentOperation = 'encrypt' | 'decrypt' | 'verify';

/** Everything a worker needs; keys are copied in and zeroed when the job ends. */
export interface SegmentJob {
  readonly op: SegmentOperation;
  readonly input: string;
  /** The output file (already created and sized); null for verify. */
  readonly output: string | null;
  readonly segmentKey: Uint8Array;
  readonly noncePrefix: Uint8Array;
  readonly segmentLog2: number;
  readonly headerLength: number;
  readonly plaintextLength: number;
  /**
   * One flag per batch (shared memory), set and notified once the batch's output is written, so that a reader can
   * follow the written plaintext in order while the workers are still decrypting. Null when nobody follows.
   */
  readonly done: Int32Array | null;
}

/** Segments per read/write batch: 8 MiB at the default 1 MiB segments. */
export const BATCH_SEGMENTS = 8;

/** Shared progress: [0] next segment to claim, [1] non-zero once any worker failed. */
export type WorkCounter = Int32Array;

export function newWorkCounter(): WorkCounter {
  return new Int32Array(new SharedArrayBuffer(8));
}

/**
 * Frees a buffer's memory at once by detaching its ArrayBuffer. cipher.update() returns a fresh 1 MiB buffer per
 * segment, and V8 frees those only under external-memory pressure: without this each worker carries ~100 MiB of dead
 * segments (peak RSS 280-410 MiB instead of 120-170 MiB in bench/crypto/).
 */
export function release(buffer: Buffer): void {
  const ab = buffer.buffer;
  if (
    ab instanceof ArrayBuffer &&
    buffer.byteOffset === 0 &&
    ab.byteLength === buffer.byteLength &&
    ab.byteLength >= 4096
  ) {
    ab.transfer(0);
  }
}

/**
 * Decrypts and authenticates segment `index` of `count`: `sealed` is its ciphertext followed by its 16-byte tag.
 * Returns the plaintext only once the tag verified; on failure the unverified plaintext is zeroed and freed, and an
 * EnvelopeError kind 'segment' naming the index is thrown. `nonce` is an optional 12-byte scratch buffer.
 */
export function decryptSegment(
  segmentKey: Uint8Array,
  noncePrefix: Uint8Array,
  index: number,
  count: number,
  sealed: Uint8Array,
  nonce: Buffer<ArrayBuffer> = Buffer.alloc(12),
): Buffer {
  if (sealed.length < TAG_LENGTH)
    throw new EnvelopeError('truncated', `segment ${index} is shorter than its tag`, { segment: index });
  const len = sealed.length - TAG_LENGTH;
  segmentNonce(noncePrefix, index, index === count - 1, nonce);
  const decipher = createDecipheriv('aes-256-gcm', segmentKey, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAuthTag(sealed.subarray(len));
  const plain = decipher.update(sealed.subarray(0, len));
  try {
    decipher.final();
  } catch (cause) {
    // Unverified plaintext never leaves this function.
    plain.fill(0);
    release(plain);
    throw new EnvelopeError(
      'segment',
      `segment ${index} failed authentication (altered, moved or reordered)`,
      {
        cause,
        segment: index,
      },
    );
  }
  return plain;
}

function readFully(fd: number, buffer: Buffer, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buffer, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function writeFully(fd: number, buffers: Buffer[], position: number): void {
  let pending = buffers.filter((b) => b.length > 0);
  let at = position;
  while (pending.length > 0) {
    let n = writevSync(fd, pending, at);
    at += n;
    const rest: Buffer[] = [];
    for (const b of pending) {
      if (n >= b.length) n -= b.length;
      else {
        rest.push(b.subarray(n));
        n = 0;
      }
    }
    pending = rest;
  }
}

/** Batch flags for `SegmentJob.done`, all clear. */
export function newBatchFlags(segments: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * Math.ceil(segments / BATCH_SEGMENTS)));
}

/**
 * Claims batches from `counter` until all segments are done or another worker failed. Throws EnvelopeError
 * ('segment' with its index, or 'io') on the first failure and raises the shared failure flag.
 *
 * `onPlaintext`, for a job run on the calling thread only (where batches are claimed in order), sees every verified
 * plaintext segment in order before it is written and released.
 */
export function runSegments(
  job: SegmentJob,
  counter: WorkCounter,
  onPlaintext?: (segment: Buffer) => void,
): void {
  const size = 2 ** job.segmentLog2;
  const n = segmentCount(job.plaintextLength, job.segmentLog2);
  const lastLength = job.plaintextLength - (n - 1) * size;
  const inFd = openSync(job.input, 'r');
  const outFd = job.output === null ? null : openSync(job.output, 'r+');
  const encrypt = job.op === 'encrypt';
  const inBuffer = Buffer.allocUnsafe(BATCH_SEGMENTS * (size + TAG_LENGTH));
  const nonce = Buffer.alloc(12);
  const key = Buffer.from(job.segmentKey);
  try {
    for (;;) {
      if (Atomics.load(counter, 1) !== 0) return;
      const first = Atomics.add(counter, 0, BATCH_SEGMENTS);
      if (first >= n) return;
      const last = Math.min(first + BATCH_SEGMENTS, n);
      // Plaintext lengths of the batch's segments, and where the batch sits in the input and output.
      const lengths: number[] = [];
      for (let i = first; i < last; i++) lengths.push(i === n - 1 ? lastLength : size);
      const plainBytes = lengths.reduce((a, b) => a + b, 0);
      const cipherBytes = plainBytes + TAG_LENGTH * lengths.length;
      const cipherOffset = job.headerLength + first * (size + TAG_LENGTH);
      const plainOffset = first * size;
      const want = encrypt ? plainBytes : cipherBytes;
      const got = readFully(inFd, inBuffer, want, encrypt ? plainOffset : cipherOffset);
      if (got !== want) {
        throw encrypt
          ? new EnvelopeError(
              'io',
              `the input changed while it was being encrypted (short read at segment ${first})`,
            )
          : new EnvelopeError('truncated', `the file ends inside segment ${first}`, { segment: first });
      }
      let at = 0;
      for (let k = 0; k < lengths.length; k++) {
        const index = first + k;
        const len = lengths[k] ?? 0;
        let out: Buffer[];
        if (encrypt) {
          segmentNonce(job.noncePrefix, index, index === n - 1, nonce);
          const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LENGTH });
          out = [cipher.update(inBuffer.subarray(at, at + len)), cipher.final(), cipher.getAuthTag()];
          at += len;
        } else {
          const plain = decryptSegment(
            key,
            job.noncePrefix,
            index,
            n,
            inBuffer.subarray(at, at + len + TAG_LENGTH),
            nonce,
          );
          onPlaintext?.(plain);
          out = [plain];
          at += len + TAG_LENGTH;
        }
        // One segment at a time: write it, then free its buffers now rather than at the next GC.
        if (outFd !== null)
          writeFully(outFd, out, encrypt ? cipherOffset + k * (size + TAG_LENGTH) : plainOffset + k * size);
        for (const b of out) release(b);
      }
      if (job.done !== null) {
        const batch = first / BATCH_SEGMENTS;
        Atomics.store(job.done, batch, 1);
        Atomics.notify(job.done, batch);
      }
    }
  } catch (error) {
    Atomics.store(counter, 1, 1);
    if (error instanceof EnvelopeError) throw error;
    throw new EnvelopeError('io', `segment I/O failed: ${String(error)}`, { cause: error });
  } finally {
    key.fill(0);
    closeSync(inFd);
    if (outFd !== null) closeSync(outFd);
  }
}
