/**
 * Encrypt, decrypt and verify one file. Output always goes to a temporary file in the destination directory and is
 * renamed into place only after every segment has verified; on any failure the temporary file is removed, so no
 * partial plaintext is ever left behind.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { EnvelopeError } from './errors.ts';
import {
  DEFAULT_SEGMENT_LOG2,
  NONCE_PREFIX_LENGTH,
  SALT_LENGTH,
  authenticateHeader,
  ciphertextLength,
  deriveKeys,
  encodeHeader,
  parseHeader,
  segmentCount,
  zeroKeys,
  type DerivedKeys,
  type EnvelopeContext,
  type Header,
  type ParsedHeader,
} from './format.ts';
import type { SegmentPool } from './pool.ts';
import { BATCH_SEGMENTS, newBatchFlags, newWorkCounter, runSegments, type SegmentJob } from './segments.ts';

export interface EncryptOptions {
  readonly dek: Uint8Array;
  /** Names the DEK in the header (the wrapped DEK lives in artifact metadata). */
  readonly keyId: string;
  readonly context: EnvelopeContext;
  readonly segmentLog2?: number;
  /** Workers for large files; without one, segments are processed on the calling thread. */
  readonly pool?: SegmentPool;
  /** Compute the plaintext's SHA-256 while encrypting (default true). */
  readonly digest?: boolean;
}

export interface EncryptResult {
  readonly plaintextLength: number;
  readonly ciphertextLength: number;
  /** `sha256:<hex>` of the plaintext, when requested. */
  readonly digest: string | null;
}

export interface DecryptOptions {
  readonly dek: Uint8Array;
  readonly context: EnvelopeContext;
  readonly pool?: SegmentPool;
  /**
   * Compute the plaintext's SHA-256 while decrypting (default false): on the calling thread, following the
   * workers' output in order, so the plaintext is not read a second time after the decrypt. `decryptFile` only.
   */
  readonly digest?: boolean;
}

export interface DecryptResult {
  readonly plaintextLength: number;
  readonly keyId: string;
  /** `sha256:<hex>` of the plaintext, when requested. */
  readonly digest: string | null;
}

/** Enough to hold any header (key ids are at most 1 KiB). */
const HEADER_READ = 4096;

async function runJob(job: SegmentJob, pool: SegmentPool | undefined, maxWorkers?: number): Promise<void> {
  const segments = segmentCount(job.plaintextLength, job.segmentLog2);
  if (pool && segments > 1) await pool.run(job, segments, maxWorkers);
  else runSegments(job, newWorkCounter());
}

/**
 * Decrypts `job` (whose output is `job.output`) and returns the plaintext's `sha256:<hex>`, hashed in the same
 * pass: on one thread the segments are hashed as they are decrypted; with a pool this thread follows the workers,
 * reading each batch back from the output (still in the page cache) as soon as its flag says it is written, while
 * later batches are still being decrypted. On any failure nothing is returned and the job's error is thrown.
 */
async function decryptAndHash(job: SegmentJob, pool: SegmentPool | undefined): Promise<string> {
  const hash = createHash('sha256');
  const segments = segmentCount(job.plaintextLength, job.segmentLog2);
  if (!pool || segments <= 1) {
    runSegments(job, newWorkCounter(), (segment) => hash.update(segment));
    return `sha256:${hash.digest('hex')}`;
  }
  const done = newBatchFlags(segments);
  let settled = false;
  const decrypting = pool.run({ ...job, done }, segments).finally(() => {
    settled = true;
  });
  const following = followInOrder(job, done, () => settled, hash);
  const [decrypted, followed] = await Promise.allSettled([decrypting, following]);
  if (decrypted.status === 'rejected') throw decrypted.reason;
  if (followed.status === 'rejected') throw followed.reason;
  return `sha256:${hash.digest('hex')}`;
}

/** How long the follower sleeps between checks that the job has not ended without finishing the next batch. */
const FOLLOW_POLL_MS = 20;

/** Feeds the written output of `job` to `hash` batch by batch, in order, as the batches' flags are set. */
async function followInOrder(
  job: SegmentJob,
  done: Int32Array,
  ended: () => boolean,
  hash: ReturnType<typeof createHash>,
): Promise<void> {
  const batchBytes = BATCH_SEGMENTS * 2 ** job.segmentLog2;
  const buffer = Buffer.allocUnsafe(Math.min(batchBytes, job.plaintextLength));
  const handle = await open(job.output ?? '', 'r');
  try {
    for (let batch = 0; batch < done.length; batch++) {
      while (Atomics.load(done, batch) === 0) {
        // The job ended (failed: a finished job has set every flag) or is still running: wait for the flag.
        if (ended()) return;
        const wait = Atomics.waitAsync(done, batch, 0, FOLLOW_POLL_MS);
        if (wait.async) await wait.value;
      }
      const start = batch * batchBytes;
      const length = Math.min(batchBytes, job.plaintextLength - start);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await handle.read(buffer, got, length - got, start + got);
        if (bytesRead === 0)
          throw new EnvelopeError('io', `the output ended inside batch ${batch} while hashing it`);
        got += bytesRead;
      }
      hash.update(buffer.subarray(0, length));
    }
  } finally {
    buffer.fill(0);
    await handle.close();
  }
}

/** A fresh temporary file beside `target`, created exclusively and private to the owner. Package-internal. */
export async function createTemp(target: string, size: number, header?: Buffer): Promise<string> {
  const temp = join(dirname(target), `.${basename(target)}.partial-${randomBytes(6).toString('hex')}`);
  const handle = await open(temp, 'wx', 0o600).catch((cause: unknown) => {
    throw new EnvelopeError('io', `cannot create the output beside ${target}`, { cause });
  });
  try {
    await handle.truncate(size);
    if (header) await handle.write(header, 0, header.length, 0);
  } finally {
    await handle.close();
  }
  return temp;
}

/**
 * `sha256:<hex>` of a file's bytes, reading the next 4 MiB while hashing the current one, into two reused buffers
 * (the digest of a plaintext file; the sidecar checks decrypted files with it).
 */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  const buffers = [Buffer.allocUnsafe(4 << 20), Buffer.allocUnsafe(4 << 20)] as const;
  const handle = await open(path, 'r');
  try {
    let position = 0;
    let turn = 0;
    let pending = handle.read(buffers[0], 0, buffers[0].length, 0);
    for (;;) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) break;
      position += bytesRead;
      turn ^= 1;
      const next = turn === 0 ? buffers[0] : buffers[1];
      pending = handle.read(next, 0, next.length, position);
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return `sha256:${hash.digest('hex')}`;
}

export async function encryptFile(
  input: string,
  output: string,
  options: EncryptOptions,
): Promise<EncryptResult> {
  const info = await stat(input).catch((cause: unknown) => {
    throw new EnvelopeError('io', `cannot read ${input}`, { cause });
  });
  if (!info.isFile()) throw new EnvelopeError('invalid', `${input} is not a regular file`);
  const salt = randomBytes(SALT_LENGTH);
  const header: Header = {
    segmentLog2: options.segmentLog2 ?? DEFAULT_SEGMENT_LOG2,
    plaintextLength: info.size,
    salt,
    noncePrefix: randomBytes(NONCE_PREFIX_LENGTH),
    keyId: options.keyId,
  };
  const keys = deriveKeys(options.dek, salt, options.context);
  let temp: string | null = null;
  try {
    const headerBytes = encodeHeader(header, keys);
    const total = ciphertextLength(header);
    temp = await createTemp(output, total, headerBytes);
    const job: SegmentJob = {
      op: 'encrypt',
      input,
      output: temp,
      segmentKey: keys.segmentKey,
      noncePrefix: header.noncePrefix,
      segmentLog2: header.segmentLog2,
      headerLength: headerBytes.length,
      plaintextLength: header.plaintextLength,
      done: null,
    };
    const [, digest] = await Promise.all([
      // The digest is one sequential SHA-256 pass on this thread: leave it a core rather than oversubscribe.
      runJob(
        job,
        options.pool,
        options.digest === false ? undefined : Math.max(1, availableParallelism() - 1),
      ),
      options.digest === false ? null : sha256File(input),
    ]);
    if ((await stat(input)).size !== info.size)
      throw new EnvelopeError('io', `${input} changed size while it was being encrypted`);
    const handleSync = await open(temp, 'r+');
    try {
      await handleSync.sync();
    } finally {
      await handleSync.close();
    }
    await rename(temp, output);
    temp = null;
    return { plaintextLength: info.size, ciphertextLength: total, digest };
  } finally {
    zeroKeys(keys);
    if (temp !== null) await unlink(temp).catch(() => undefined);
  }
}

/** Opens, parses and authenticates the header, and checks the file's length. Returns what decryption needs. */
async function openEnvelope(input: string, options: DecryptOptions) {
  const handle = await open(input, 'r').catch((cause: unknown) => {
    throw new EnvelopeError('io', `cannot read ${input}`, { cause });
  });
  try {
    const size = (await handle.stat()).size;
    const buffer = Buffer.alloc(Math.min(HEADER_READ, size));
    await handle.read(buffer, 0, buffer.length, 0);
    const header = parseHeader(buffer);
    const keys = deriveKeys(options.dek, header.salt, options.context);
    try {
      authenticateHeader(header, keys);
    } catch (error) {
      zeroKeys(keys);
      throw error;
    }
    const expected = ciphertextLength(header);
    if (size !== expected) {
      zeroKeys(keys);
      throw size < expected
        ? new EnvelopeError(
            'truncated',
            `the file is ${expected - size} bytes shorter than its header says (${size} of ${expected})`,
          )
        : new EnvelopeError('extended', `the file has ${size - expected} bytes more than its header says`);
    }
    return { header, keys };
  } finally {
    await handle.close();
  }
}

/** The segment job that verifies (output null) or decrypts an opened envelope. */
function openJob(
  op: 'verify' | 'decrypt',
  input: string,
  output: string | null,
  header: ParsedHeader,
  keys: DerivedKeys,
): SegmentJob {
  return {
    op,
    input,
    output,
    segmentKey: keys.segmentKey,
    noncePrefix: header.noncePrefix,
    segmentLog2: header.segmentLog2,
    headerLength: header.length,
    plaintextLength: header.plaintextLength,
    done: null,
  };
}

/** Checks every segment without writing any plaintext. */
export async function verifyFile(input: string, options: DecryptOptions): Promise<DecryptResult> {
  const { header, keys } = await openEnvelope(input, options);
  try {
    await runJob(openJob('verify', input, null, header, keys), options.pool);
    return { plaintextLength: header.plaintextLength, keyId: header.keyId, digest: null };
  } finally {
    zeroKeys(keys);
  }
}

/**
 * Decrypts into `output` atomically: a temporary file beside it, renamed only when every segment verified. With
 * `digest` the plaintext's SHA-256 is computed in the same pass.
 */
export async function decryptFile(
  input: string,
  output: string,
  options: DecryptOptions,
): Promise<DecryptResult> {
  return decryptInto(input, output, options, async (job) => {
    if (options.digest === true) return decryptAndHash(job, options.pool);
    await runJob(job, options.pool);
    return null;
  });
}

/**
 * `decryptFile` with the digest, the whole file decrypted and hashed by one worker of `pool` (in order, while the
 * plaintext is in the CPU's cache). For decrypting several files at once; package-internal (directory.ts).
 */
export async function decryptFileOnOneWorker(
  input: string,
  output: string,
  options: DecryptOptions & { readonly pool: SegmentPool },
): Promise<DecryptResult> {
  return decryptInto(input, output, options, (job) => options.pool.runHashed(job));
}

async function decryptInto(
  input: string,
  output: string,
  options: DecryptOptions,
  run: (job: SegmentJob) => Promise<string | null>,
): Promise<DecryptResult> {
  const { header, keys } = await openEnvelope(input, options);
  let temp: string | null = null;
  try {
    temp = await createTemp(output, header.plaintextLength);
    const digest = await run(openJob('decrypt', input, temp, header, keys));
    await rename(temp, output);
    temp = null;
    return { plaintextLength: header.plaintextLength, keyId: header.keyId, digest };
  } finally {
    zeroKeys(keys);
    if (temp !== null) await unlink(temp).catch(() => undefined);
  }
}
