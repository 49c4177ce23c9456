/**
 * Decrypting an envelope file from a ranged byte source (object storage) instead of a local path: the same bytes,
 * the same checks, the same all-or-nothing output as `decryptFile`, with bounded memory and no copy of the
 * ciphertext on disk (docs/format.md, "Reading from object storage").
 *
 * The file is read in windows of whole segments (default 8: 8 MiB at 1 MiB segments), at most a few reads in
 * flight; each window's segments are authenticated and decrypted on the calling thread, hashed in order when asked,
 * and written at their offsets into a temporary file beside the output, which is renamed into place only after the
 * last segment verified. Any failure (a source error, a short read, a wrong byte, an abort) removes it.
 */
import { createHash } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { EnvelopeError } from './errors.ts';
import {
  MAGIC,
  TAG_LENGTH,
  authenticateHeader,
  ciphertextLength,
  deriveKeys,
  parseHeader,
  segmentCount,
  zeroKeys,
  type DerivedKeys,
  type EnvelopeContext,
  type ParsedHeader,
} from './format.ts';
import { createTemp, type DecryptResult } from './file.ts';
import { decryptSegment, release } from './segments.ts';

/** One envelope file that can be read by byte ranges (an object in a bucket, a file, bytes in memory). */
export interface CiphertextSource {
  /** Where it is, for error messages (for example `s3://bucket/key`). */
  readonly name: string;
  /** Its size in bytes as the store reports it; checked against the authenticated header before any decrypt. */
  readonly size: number;
  /**
   * Exactly `length` bytes from `offset` (`length` ≥ 1, `offset + length` ≤ `size`). Fewer bytes are treated as
   * truncation and more as a broken source; errors the source throws are passed on unchanged.
   */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
}

/** A directory version (docs/format.md, "Directory versions on disk") whose files can be read by byte ranges. */
export interface CiphertextDirectorySource {
  /** Where it is, for error messages (for example `s3://bucket/prefix/`). */
  readonly name: string;
  /** The bytes of `manifest.sre` (an in-memory envelope: at most 64 MiB of plaintext). */
  readManifest(signal?: AbortSignal): Promise<Uint8Array>;
  /**
   * Every object of the version, by its name relative to the version (`objects/000000.sre`, …): everything stored
   * under `objects/`, so that an extra or missing object is detected against the manifest.
   */
  listObjects(signal?: AbortSignal): Promise<ReadonlyMap<string, CiphertextSource>>;
}

/** How a source is read. */
export interface RangedReadOptions {
  /** Whole segments per ranged read, 1..64 (default 8: 8 MiB at the default 1 MiB segments). */
  readonly windowSegments?: number;
  /** Ranged reads in flight at once, 1..8 (default 3). Memory ≈ (readsInFlight + 2) × window per file. */
  readonly readsInFlight?: number;
  /** Stops reading; the output is removed and the abort reason (or an EnvelopeError 'io') thrown. */
  readonly signal?: AbortSignal;
}

export interface SourceDecryptOptions extends RangedReadOptions {
  readonly dek: Uint8Array;
  readonly context: EnvelopeContext;
  /** Compute the plaintext's SHA-256 in the same pass (default false). */
  readonly digest?: boolean;
}

export const DEFAULT_WINDOW_SEGMENTS = 8;
export const DEFAULT_READS_IN_FLIGHT = 3;
/** Enough to hold any header (key ids are at most 1 KiB, the header at most 1,166 bytes). */
const HEADER_READ = 4096;
/**
 * The first read holds the header and a window of segments of this stride (the default 1 MiB segments): a small
 * file is read in one request. The segment size is known only once the header is parsed, so windows that the first
 * read does not hold entirely (larger segments) are read again from the source.
 */
const FIRST_READ_STRIDE = 2 ** 20 + TAG_LENGTH;

/** Whether `bytes` begins with the envelope magic `SRENVLP\0` (a cheap "is this Strongroom ciphertext" test). */
export function startsWithEnvelopeMagic(bytes: Uint8Array): boolean {
  return bytes.length >= MAGIC.length && MAGIC.equals(bytes.subarray(0, MAGIC.length));
}

function checkReadOptions(options: RangedReadOptions): { window: number; inFlight: number } {
  const window = options.windowSegments ?? DEFAULT_WINDOW_SEGMENTS;
  const inFlight = options.readsInFlight ?? DEFAULT_READS_IN_FLIGHT;
  if (!Number.isInteger(window) || window < 1 || window > 64)
    throw new EnvelopeError('invalid', `windowSegments must be an integer 1..64, got ${window}`);
  if (!Number.isInteger(inFlight) || inFlight < 1 || inFlight > 8)
    throw new EnvelopeError('invalid', `readsInFlight must be an integer 1..8, got ${inFlight}`);
  return { window, inFlight };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) {
    throw signal.reason instanceof Error
      ? signal.reason
      : new EnvelopeError('io', 'reading the ciphertext was aborted', { cause: signal.reason });
  }
}

/** `source.read`, checked to return exactly `length` bytes, as a Buffer view of them. */
async function readExact(
  source: CiphertextSource,
  offset: number,
  length: number,
  signal: AbortSignal | undefined,
): Promise<Buffer> {
  const bytes = await source.read(offset, length, signal);
  if (bytes.length < length)
    throw new EnvelopeError(
      'truncated',
      `${source.name}: ${length} bytes at offset ${offset} were asked for, ${bytes.length} came back`,
    );
  if (bytes.length > length)
    throw new EnvelopeError(
      'io',
      `${source.name}: ${length} bytes at offset ${offset} were asked for, ${bytes.length} came back`,
    );
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Reads the header and the first window in one read, parses and authenticates the header and checks the source's
 * size against it (truncated / extended) before anything is decrypted.
 */
async function openSource(
  source: CiphertextSource,
  options: SourceDecryptOptions,
  windowBytes: number,
): Promise<{ header: ParsedHeader; keys: DerivedKeys; first: Buffer }> {
  if (!Number.isSafeInteger(source.size) || source.size < 0)
    throw new EnvelopeError('invalid', `${source.name}: size ${source.size} is not a byte count`);
  if (source.size === 0)
    throw new EnvelopeError('header', `${source.name}: the file is too short to hold a header (0 bytes)`);
  const first = await readExact(source, 0, Math.min(source.size, HEADER_READ + windowBytes), options.signal);
  const header = parseHeader(first);
  const keys = deriveKeys(options.dek, header.salt, options.context);
  try {
    authenticateHeader(header, keys);
    const expected = ciphertextLength(header);
    if (source.size < expected)
      throw new EnvelopeError(
        'truncated',
        `${source.name} is ${expected - source.size} bytes shorter than its header says (${source.size} of ${expected})`,
      );
    if (source.size > expected)
      throw new EnvelopeError(
        'extended',
        `${source.name} has ${source.size - expected} bytes more than its header says`,
      );
  } catch (error) {
    zeroKeys(keys);
    throw error;
  }
  return { header, keys, first };
}

async function writeAll(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let pending = buffers.filter((b) => b.length > 0);
  let at = position;
  while (pending.length > 0) {
    let { bytesWritten: n } = await handle.writev(pending, at);
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

/**
 * Decrypts every segment of an opened source into `handle`, window by window, keeping up to `inFlight` reads
 * running ahead of the window being decrypted. Throws the first failure after cancelling and settling the reads
 * still in flight.
 */
async function decryptWindows(
  source: CiphertextSource,
  opened: { header: ParsedHeader; keys: DerivedKeys; first: Buffer },
  handle: FileHandle,
  hash: ReturnType<typeof createHash> | null,
  window: number,
  inFlight: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { header, keys, first } = opened;
  const size = 2 ** header.segmentLog2;
  const stride = size + TAG_LENGTH;
  const n = segmentCount(header.plaintextLength, header.segmentLog2);
  const windows = Math.ceil(n / window);
  const range = (w: number) => {
    const start = header.length + w * window * stride;
    return { start, end: Math.min(header.length + (w + 1) * window * stride, source.size) };
  };
  // Reads are cancelled through this controller when anything fails, and follow the caller's signal.
  const controller = new AbortController();
  const onAbort = () => {
    controller.abort(signal?.reason);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const pending: Promise<Buffer>[] = [];
  // Windows entirely inside the first read are decrypted from it; the rest are read ahead, in order.
  let inFirst = 0;
  while (inFirst < windows && range(inFirst).end <= first.length) inFirst++;
  let requested = inFirst;
  const requestAhead = () => {
    while (pending.length < inFlight && requested < windows) {
      const { start, end } = range(requested++);
      const read = readExact(source, start, end - start, controller.signal);
      read.catch(() => undefined); // awaited in order below; never an unhandled rejection meanwhile
      pending.push(read);
    }
  };
  const nonce = Buffer.alloc(12);
  try {
    requestAhead();
    for (let w = 0; w < windows; w++) {
      throwIfAborted(signal);
      const { start, end } = range(w);
      const bytes = w < inFirst ? first.subarray(start, end) : await (pending.shift() as Promise<Buffer>);
      requestAhead();
      throwIfAborted(signal);
      const firstSegment = w * window;
      const plain: Buffer[] = [];
      try {
        for (let at = 0, index = firstSegment; at < bytes.length; index++) {
          const len = Math.min(stride, bytes.length - at);
          const segment = decryptSegment(
            keys.segmentKey,
            header.noncePrefix,
            index,
            n,
            bytes.subarray(at, at + len),
            nonce,
          );
          hash?.update(segment);
          plain.push(segment);
          at += len;
        }
        await writeAll(handle, plain, firstSegment * size);
      } finally {
        for (const b of plain) {
          b.fill(0);
          release(b);
        }
      }
    }
  } catch (error) {
    controller.abort(error);
    await Promise.allSettled(pending);
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Decrypts the envelope `source` into `output` atomically, exactly as `decryptFile` does for a local path: a
 * temporary file beside `output` (created exclusively, mode 0600, pre-sized), renamed into place only when every
 * segment verified, removed on any failure. With `digest` the plaintext's SHA-256 is computed in the same pass.
 *
 * @throws EnvelopeError as `decryptFile` does ('header', 'wrong-key', 'wrong-context', 'truncated', 'extended',
 *   'segment', 'io', 'invalid'); errors thrown by the source and the abort reason are passed on unchanged.
 */
export async function decryptFromSource(
  source: CiphertextSource,
  output: string,
  options: SourceDecryptOptions,
): Promise<DecryptResult> {
  const { window, inFlight } = checkReadOptions(options);
  throwIfAborted(options.signal);
  const opened = await openSource(source, options, window * FIRST_READ_STRIDE);
  let temp: string | null = null;
  let handle: FileHandle | null = null;
  try {
    const { header } = opened;
    temp = await createTemp(output, header.plaintextLength);
    handle = await open(temp, 'r+');
    const hash = options.digest === true ? createHash('sha256') : null;
    await decryptWindows(source, opened, handle, hash, window, inFlight, options.signal);
    await handle.close();
    handle = null;
    throwIfAborted(options.signal);
    await rename(temp, output);
    temp = null;
    return {
      plaintextLength: header.plaintextLength,
      keyId: header.keyId,
      digest: hash === null ? null : `sha256:${hash.digest('hex')}`,
    };
  } finally {
    zeroKeys(opened.keys);
    if (handle !== null) await handle.close().catch(() => undefined);
    if (temp !== null) await unlink(temp).catch(() => undefined);
  }
}
