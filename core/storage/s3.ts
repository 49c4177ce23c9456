/**
 * A version's ciphertext in S3-compatible object storage (docs/format.md, "Reading from object storage"). The layout
 * mirrors the directory on a volume: `<dir>/manifest.sre` and `<dir>/objects/NNNNNN.sre` are the objects
 * `<keyPrefix>manifest.sre` and `<keyPrefix>objects/NNNNNN.sre`, where keyPrefix is
 * `<spec.storage.s3.prefix>/<spec.storage.path>/<version.path ?? version.name>/` (`versionKeyPrefix`).
 *
 * - `uploadVersion` publishes a local ciphertext directory (as `writeVersion` writes it): never over an existing
 *   version, every object with a multipart upload that cannot replace an object (`If-None-Match: *`), the manifest
 *   last, sizes checked, and everything it wrote deleted again on failure.
 * - `s3DirectorySource` is the ranged source `decryptDirectoryFromSource` decrypts from: the manifest by GetObject,
 *   the objects by ListObjectsV2, each window by a ranged GetObject pinned to the listed ETag, every answer checked
 *   (Content-Range, length, body) and every failure a StorageError naming the bucket and key.
 * - `isCiphertextObject` / `isCiphertextFile` tell Strongroom ciphertext from anything else by its first 8 bytes.
 */
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  type GetObjectCommandOutput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { isDns1123Label, isRelativePath } from '../api/validation.ts';
import {
  MANIFEST_FILE,
  startsWithEnvelopeMagic,
  type CiphertextDirectorySource,
  type CiphertextSource,
} from '../envelope/index.ts';
import { StorageError, type StorageErrorKind } from './errors.ts';

/** Where an artifact's objects are: `spec.storage.s3` resolved (region defaulted). */
export interface S3Location {
  /** `http(s)://host[:port]` of an S3-compatible store; absent for AWS S3 in `region`. */
  readonly endpoint?: string;
  readonly region: string;
  readonly bucket: string;
  /** `spec.storage.s3.prefix`, or '' for the bucket's root. */
  readonly prefix: string;
  /** Path-style URLs (`endpoint/bucket/key`), which most S3-compatible stores need. */
  readonly forcePathStyle: boolean;
}

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

const OBJECTS_PREFIX = 'objects/';
const OBJECT_NAME = /^\d{6}\.sre$/;
/** A manifest is an in-memory envelope of at most 64 MiB of plaintext; its ciphertext adds a header and tags. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024 + 64 * 16 + 4096;
/** S3's smallest part (but the last); the default part size of `uploadVersion`. */
const MIN_PART_SIZE = 5 * 1024 * 1024;
const DEFAULT_PART_SIZE = 16 * 1024 * 1024;

/**
 * An S3 client for `location` with static credentials. Checksums are computed and validated only when an operation
 * requires them (S3-compatible stores differ in their support of the newer default ones; every envelope is
 * authenticated end to end anyway).
 *
 * @throws StorageError 'invalid' for an empty region or credentials.
 */
export function s3Client(location: S3Location, credentials: S3Credentials): S3Client {
  if (location.region === '') throw new StorageError('invalid', 'the S3 region is empty');
  if (credentials.accessKeyId === '' || credentials.secretAccessKey === '')
    throw new StorageError('invalid', 'the S3 access key id or secret access key is empty');
  return new S3Client({
    region: location.region,
    ...(location.endpoint === undefined ? {} : { endpoint: location.endpoint }),
    forcePathStyle: location.forcePathStyle,
    credentials: {
      accessKeyId: credentials.accessKeyId,
      secretAccessKey: credentials.secretAccessKey,
      ...(credentials.sessionToken === undefined ? {} : { sessionToken: credentials.sessionToken }),
    },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * The key prefix of a version's objects: `<spec.storage.s3.prefix>/<spec.storage.path>/<version.path ??
 * version.name>/`, empty segments dropped; never starts with '/' and always ends with one.
 *
 * @throws StorageError 'invalid' for a prefix or path with '.', '..' or characters outside `[A-Za-z0-9._-/]`, or a
 *   version name that is not a DNS-1123 label.
 */
export function versionKeyPrefix(
  spec: { readonly storage: { readonly path?: string; readonly s3?: { readonly prefix?: string } } },
  version: { readonly name: string; readonly path?: string },
): string {
  const relative = (what: string, value: string): string[] => {
    const segments = value.split('/').filter((s) => s !== '');
    if (segments.length === 0) return [];
    const problem = isRelativePath(segments.join('/'))[0];
    if (problem !== undefined)
      throw new StorageError('invalid', `${what} ${JSON.stringify(value)} ${problem}`);
    return segments;
  };
  let last: string[];
  if (version.path !== undefined && version.path !== '')
    last = relative(`the path of version ${version.name}`, version.path);
  else {
    if (isDns1123Label(version.name).length > 0)
      throw new StorageError(
        'invalid',
        `version name ${JSON.stringify(version.name)} is not a DNS-1123 label`,
      );
    last = [version.name];
  }
  const segments = [
    ...relative('spec.storage.s3.prefix', spec.storage.s3?.prefix ?? ''),
    ...relative('spec.storage.path', spec.storage.path ?? ''),
    ...last,
  ];
  return `${segments.join('/')}/`;
}

/** Refuses a key prefix that is not of `versionKeyPrefix`'s form: reading or writing elsewhere is never intended. */
function checkKeyPrefix(keyPrefix: string): void {
  const body = keyPrefix.slice(0, -1);
  if (!keyPrefix.endsWith('/') || body === '' || isRelativePath(body).length > 0)
    throw new StorageError(
      'invalid',
      `the key prefix ${JSON.stringify(keyPrefix)} must be relative segments of [A-Za-z0-9._-] ending with '/', without '.' or '..'`,
    );
}

const where = (bucket: string, key: string): string => `s3://${bucket}/${key}`;

/** Maps an S3 SDK failure to a StorageError naming `bucket` and `key`; 412 means `onPrecondition`. */
function s3Failure(
  error: unknown,
  what: string,
  bucket: string,
  key: string,
  onPrecondition: StorageErrorKind = 'corrupt',
): StorageError {
  if (error instanceof StorageError) return error;
  const e = error as { name?: unknown; message?: unknown; $metadata?: { httpStatusCode?: number } };
  const name = typeof e.name === 'string' ? e.name : 'Error';
  const status = e.$metadata?.httpStatusCode;
  let kind: StorageErrorKind = 'io';
  if (name === 'AbortError') kind = 'aborted';
  else if (['NoSuchKey', 'NoSuchBucket', 'NotFound'].includes(name) || status === 404) kind = 'not-found';
  else if (['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch'].includes(name) || status === 403)
    kind = 'denied';
  else if (name === 'PreconditionFailed' || status === 412) kind = onPrecondition;
  const detail = typeof e.message === 'string' && e.message !== '' ? `${name}: ${e.message}` : name;
  return new StorageError(kind, `${what} ${where(bucket, key)}: ${detail}`, { cause: error });
}

/** Whether `signal` has aborted (a function, so that TypeScript does not narrow it across awaits). */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function abortedError(signal: AbortSignal, what: string): StorageError {
  return new StorageError('aborted', `${what}: aborted`, { cause: signal.reason });
}

/**
 * Reads a GetObject body into one buffer of exactly `length` bytes; a body of any other length fails with
 * StorageError 'corrupt'. Destroys the body when `signal` aborts or on failure.
 */
async function readBody(
  output: GetObjectCommandOutput,
  length: number,
  context: { bucket: string; key: string; what: string; signal?: AbortSignal | undefined },
): Promise<Buffer> {
  const body = output.Body as Readable | undefined;
  if (body === undefined) {
    if (length === 0) return Buffer.alloc(0);
    throw new StorageError('corrupt', `${context.what} ${where(context.bucket, context.key)}: no body`);
  }
  const buffer = Buffer.allocUnsafe(length);
  let at = 0;
  const onAbort = () => {
    body.destroy(abortedError(context.signal as AbortSignal, context.what));
  };
  context.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (at + chunk.length > length)
        throw new StorageError(
          'corrupt',
          `${context.what} ${where(context.bucket, context.key)}: the body is longer than the ${length} bytes asked for`,
        );
      chunk.copy(buffer, at);
      at += chunk.length;
    }
  } catch (error) {
    body.destroy();
    if (context.signal?.aborted === true) throw abortedError(context.signal, context.what);
    throw s3Failure(error, context.what, context.bucket, context.key);
  } finally {
    context.signal?.removeEventListener('abort', onAbort);
  }
  if (at !== length)
    throw new StorageError(
      'corrupt',
      `${context.what} ${where(context.bucket, context.key)}: ${at} of ${length} bytes came back (short read)`,
    );
  return buffer;
}

export interface S3ObjectRef {
  readonly client: S3Client;
  readonly bucket: string;
  readonly key: string;
}

/**
 * One object as a ranged source for `decryptFromSource`: every read is a GetObject with `Range: bytes=a-b`, pinned
 * with `If-Match` to `etag` when given (an object replaced after it was listed fails instead of mixing versions),
 * and checked: Content-Range exactly `bytes a-b/size`, Content-Length and the body exactly `b-a+1` bytes.
 *
 * @param size the object's size as listed (checked by the decrypt against the envelope's header).
 */
export function s3ObjectSource(
  object: S3ObjectRef & { readonly size: number; readonly etag?: string },
): CiphertextSource {
  const { client, bucket, key, size, etag } = object;
  return {
    name: where(bucket, key),
    size,
    async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
      const what = `cannot read ${length} bytes at ${offset} of`;
      if (
        !Number.isSafeInteger(offset) ||
        !Number.isSafeInteger(length) ||
        offset < 0 ||
        length < 1 ||
        offset + length > size
      )
        throw new StorageError('invalid', `${what} ${where(bucket, key)}: outside its ${size} bytes`);
      if (signal?.aborted === true) throw abortedError(signal, what);
      const end = offset + length - 1;
      let output: GetObjectCommandOutput;
      try {
        output = await client.send(
          new GetObjectCommand({
            Bucket: bucket,
            Key: key,
            Range: `bytes=${offset}-${end}`,
            ...(etag === undefined ? {} : { IfMatch: etag }),
          }),
          signal === undefined ? {} : { abortSignal: signal },
        );
      } catch (error) {
        throw s3Failure(error, what, bucket, key);
      }
      const range = `bytes ${offset}-${end}/${size}`;
      if (output.ContentRange !== range || output.ContentLength !== length) {
        (output.Body as Readable | undefined)?.destroy();
        throw new StorageError(
          'corrupt',
          `${what} ${where(bucket, key)}: the answer is Content-Range ${String(output.ContentRange)}, ` +
            `Content-Length ${String(output.ContentLength)}, not ${range}, ${length} (the object changed?)`,
        );
      }
      return readBody(output, length, { bucket, key, what, signal });
    },
  };
}

export interface S3VersionRef {
  readonly client: S3Client;
  readonly bucket: string;
  /** The version's key prefix (`versionKeyPrefix`), ending with '/'. */
  readonly keyPrefix: string;
}

/**
 * The objects of a version as the ranged directory source `decryptDirectoryFromSource` reads: the manifest by one
 * GetObject (at most 64 MiB), every key under `<keyPrefix>objects/` by ListObjectsV2 (all pages), and each object
 * by `s3ObjectSource` pinned to its listed ETag. A missing bucket, manifest or object is a StorageError 'not-found',
 * refused credentials 'denied', an answer that is not what was asked for 'corrupt', an abort 'aborted'; each names
 * the bucket and key.
 *
 * @throws StorageError 'invalid' at once for a key prefix not of `versionKeyPrefix`'s form.
 */
export function s3DirectorySource(version: S3VersionRef): CiphertextDirectorySource {
  const { client, bucket, keyPrefix } = version;
  checkKeyPrefix(keyPrefix);
  return {
    name: where(bucket, keyPrefix),
    async readManifest(signal?: AbortSignal): Promise<Uint8Array> {
      const key = `${keyPrefix}${MANIFEST_FILE}`;
      const what = 'cannot read the manifest';
      if (signal?.aborted === true) throw abortedError(signal, what);
      let output: GetObjectCommandOutput;
      try {
        output = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: key }),
          signal === undefined ? {} : { abortSignal: signal },
        );
      } catch (error) {
        throw s3Failure(error, what, bucket, key);
      }
      const length = output.ContentLength;
      if (length === undefined || !Number.isSafeInteger(length) || length > MAX_MANIFEST_BYTES) {
        (output.Body as Readable | undefined)?.destroy();
        throw new StorageError(
          'corrupt',
          `${what} ${where(bucket, key)}: its length ${String(length)} is unknown or above ${MAX_MANIFEST_BYTES} bytes`,
        );
      }
      return readBody(output, length, { bucket, key, what, signal });
    },
    async listObjects(signal?: AbortSignal): Promise<ReadonlyMap<string, CiphertextSource>> {
      const prefix = `${keyPrefix}${OBJECTS_PREFIX}`;
      const objects = new Map<string, CiphertextSource>();
      for await (const entry of listKeys(client, bucket, prefix, signal)) {
        const name = entry.key.slice(keyPrefix.length);
        objects.set(
          name,
          s3ObjectSource({
            client,
            bucket,
            key: entry.key,
            size: entry.size,
            ...(entry.etag === undefined ? {} : { etag: entry.etag }),
          }),
        );
      }
      return objects;
    },
  };
}

interface ListedObject {
  readonly key: string;
  readonly size: number;
  readonly etag: string | undefined;
}

/** Every object under `prefix`, all pages of ListObjectsV2. */
async function* listKeys(
  client: S3Client,
  bucket: string,
  prefix: string,
  signal?: AbortSignal,
  maxKeys?: number,
): AsyncGenerator<ListedObject> {
  let token: string | undefined;
  do {
    if (signal?.aborted === true) throw abortedError(signal, 'cannot list the objects');
    let page;
    try {
      page = await client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix,
          ...(token === undefined ? {} : { ContinuationToken: token }),
          ...(maxKeys === undefined ? {} : { MaxKeys: maxKeys }),
        }),
        signal === undefined ? {} : { abortSignal: signal },
      );
    } catch (error) {
      throw s3Failure(error, 'cannot list the objects under', bucket, prefix);
    }
    for (const object of page.Contents ?? []) {
      if (object.Key === undefined || !object.Key.startsWith(prefix)) continue;
      if (object.Size === undefined || !Number.isSafeInteger(object.Size))
        throw new StorageError(
          'corrupt',
          `the listing of ${where(bucket, prefix)} gives ${object.Key} no size`,
        );
      yield { key: object.Key, size: object.Size, etag: object.ETag };
    }
    if (maxKeys !== undefined) return;
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    if (page.IsTruncated === true && token === undefined)
      throw new StorageError(
        'corrupt',
        `the listing of ${where(bucket, prefix)} is truncated without a continuation token`,
      );
  } while (token !== undefined);
}

export interface UploadVersionOptions extends S3VersionRef {
  /** A local version directory as `writeVersion` / `encryptDirectory` write it: `manifest.sre` and `objects/`. */
  readonly directory: string;
  /** Multipart part size in bytes, at least 5 MiB (default 16 MiB); smaller objects take one PutObject. */
  readonly partSize?: number;
  /** Objects uploaded at once (default 4), each with up to 4 parts in flight. */
  readonly concurrency?: number;
  /** Called as bytes are sent: ciphertext bytes done (acknowledged parts and objects) of the total. */
  readonly onProgress?: (bytesDone: number, bytesTotal: number) => void;
  readonly signal?: AbortSignal;
}

interface LocalObject {
  readonly name: string;
  readonly path: string;
  readonly size: number;
}

/** The files of a local version directory, objects first (in order) and the manifest last; refuses anything else. */
async function localVersion(directory: string): Promise<LocalObject[]> {
  const fail = (why: string, cause?: unknown) =>
    new StorageError(
      'invalid',
      `${directory} is not a ciphertext version directory: ${why}`,
      cause === undefined ? {} : { cause },
    );
  const top = await readdir(directory).catch((cause: unknown) => {
    throw new StorageError('io', `cannot read ${directory}`, { cause });
  });
  const unexpected = top.filter((name) => name !== MANIFEST_FILE && name !== 'objects');
  if (unexpected.length > 0) throw fail(`unexpected ${unexpected.map((n) => JSON.stringify(n)).join(', ')}`);
  if (!top.includes(MANIFEST_FILE)) throw fail(`no ${MANIFEST_FILE}`);
  const names = top.includes('objects') ? (await readdir(join(directory, 'objects'))).sort() : [];
  const bad = names.filter((n) => !OBJECT_NAME.test(n));
  if (bad.length > 0)
    throw fail(`unexpected objects/${bad.map((n) => JSON.stringify(n)).join(', objects/')}`);
  const files = [...names.map((n) => `${OBJECTS_PREFIX}${n}`), MANIFEST_FILE];
  const out: LocalObject[] = [];
  for (const name of files) {
    const path = join(directory, ...name.split('/'));
    const info = await lstat(path);
    if (!info.isFile()) throw fail(`${name} is not a regular file`);
    if (!(await isCiphertextFile(path)))
      throw fail(`${name} is not Strongroom ciphertext (no envelope magic)`);
    out.push({ name, path, size: info.size });
  }
  return out;
}

/**
 * Uploads a local ciphertext version directory to `<keyPrefix>` in `bucket`, and returns the bytes uploaded.
 *
 * 1. refuses (StorageError 'exists') if any object exists under `keyPrefix`: published versions are immutable;
 * 2. uploads every object (`concurrency` at a time) with `@aws-sdk/lib-storage`'s Upload, multipart in `partSize`
 *    parts, each with `If-None-Match: *` so that it never replaces an object (a concurrent writer makes it fail
 *    with 'exists'), and checks each stored size with HeadObject;
 * 3. uploads `manifest.sre` LAST, so that a reader never finds a manifest whose objects are missing.
 *
 * On any failure (or abort) the uploads in flight are aborted (no multipart upload is left behind) and every object
 * this call wrote is deleted again; nothing it did not write is touched.
 *
 * @throws StorageError 'invalid' (not a version directory, bad key prefix or part size), 'exists', 'not-found' (no
 *   bucket), 'denied', 'corrupt' (a stored size differs), 'aborted' or 'io'.
 */
export async function uploadVersion(options: UploadVersionOptions): Promise<number> {
  const { client, bucket, keyPrefix, directory, signal } = options;
  checkKeyPrefix(keyPrefix);
  const partSize = options.partSize ?? DEFAULT_PART_SIZE;
  const concurrency = options.concurrency ?? 4;
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE)
    throw new StorageError(
      'invalid',
      `the part size must be at least ${MIN_PART_SIZE} bytes, got ${partSize}`,
    );
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64)
    throw new StorageError('invalid', `the upload concurrency must be 1..64, got ${concurrency}`);
  const files = await localVersion(directory);
  for await (const existing of listKeys(client, bucket, keyPrefix, signal, 1))
    throw new StorageError(
      'exists',
      `${where(bucket, keyPrefix)} already holds ${existing.key}: versions are immutable`,
    );

  const total = files.reduce((sum, f) => sum + f.size, 0);
  let done = 0;
  let reported = 0;
  const inFlight = new Map<Upload, number>();
  const progress = () => {
    let sending = 0;
    for (const loaded of inFlight.values()) sending += loaded;
    // Never backwards (a part can be reported before an earlier one), never twice the same figure.
    if (done + sending <= reported) return;
    reported = done + sending;
    options.onProgress?.(reported, total);
  };
  const written: string[] = [];
  const uncertain: string[] = [];
  const uploads = new Set<Upload>();
  let failed = false;
  const hasFailed = () => failed;

  const uploadOne = async (file: LocalObject): Promise<void> => {
    const key = `${keyPrefix}${file.name}`;
    const upload = new Upload({
      client,
      params: {
        Bucket: bucket,
        Key: key,
        // One part or less: one PutObject of the bytes (bounded by the part size); larger: streamed in parts.
        Body: file.size <= partSize ? await readFile(file.path) : createReadStream(file.path),
        ContentLength: file.size,
        IfNoneMatch: '*',
      },
      partSize,
      queueSize: 4,
      leavePartsOnError: false,
    });
    uploads.add(upload);
    inFlight.set(upload, 0);
    upload.on('httpUploadProgress', (p) => {
      if (p.loaded !== undefined && inFlight.has(upload)) {
        inFlight.set(upload, Math.min(file.size, Math.max(inFlight.get(upload) ?? 0, p.loaded)));
        progress();
      }
    });
    try {
      try {
        await upload.done();
      } catch (error) {
        const failure = s3Failure(error, 'cannot upload', bucket, key, 'exists');
        // Not refused by If-None-Match: the object may have been stored before the failure or abort was seen, and
        // if it exists it is this call's, so cleaning up deletes it.
        if (failure.kind !== 'exists') uncertain.push(key);
        throw failure;
      } finally {
        uploads.delete(upload);
      }
      written.push(key);
      inFlight.set(upload, file.size);
      let size: number | undefined;
      try {
        size = (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ContentLength;
      } catch (error) {
        throw s3Failure(error, 'cannot check the upload of', bucket, key);
      }
      if (size !== file.size)
        throw new StorageError(
          'corrupt',
          `${where(bucket, key)} holds ${String(size)} bytes after uploading ${file.size}`,
        );
      done += file.size;
    } finally {
      inFlight.delete(upload);
    }
    progress();
  };

  const onAbort = () => {
    for (const upload of uploads) void upload.abort().catch(() => undefined);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal?.aborted === true) throw abortedError(signal, `uploading ${where(bucket, keyPrefix)}`);
    const objects = files.filter((f) => f.name !== MANIFEST_FILE);
    const queue = [...objects];
    const lane = async (): Promise<void> => {
      for (let file = queue.shift(); file !== undefined && !hasFailed(); file = queue.shift()) {
        try {
          await uploadOne(file);
        } catch (error) {
          if (!hasFailed()) onAbort();
          failed = true;
          throw error;
        }
      }
    };
    // Every lane settles before a failure is thrown, so nothing is still being written while it is cleaned up.
    const results = await Promise.allSettled(
      Array.from({ length: Math.min(concurrency, objects.length) }, lane),
    );
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) throw failure.reason;
    if (isAborted(signal)) throw abortedError(signal as AbortSignal, `uploading ${where(bucket, keyPrefix)}`);
    const manifest = files.find((f) => f.name === MANIFEST_FILE) as LocalObject;
    await uploadOne(manifest);
    return total;
  } catch (error) {
    await deleteKeys(client, bucket, [...written, ...uncertain]).catch((cleanup: unknown) => {
      if (error instanceof Error && error.cause === undefined) error.cause = cleanup;
    });
    if (isAborted(signal) && !(error instanceof StorageError && error.kind === 'aborted'))
      throw new StorageError('aborted', `uploading ${where(bucket, keyPrefix)}: aborted`, { cause: error });
    throw error instanceof StorageError
      ? error
      : new StorageError('io', `cannot upload ${where(bucket, keyPrefix)}: ${String(error)}`, {
          cause: error,
        });
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Deletes `keys` (1,000 per request); throws if any could not be deleted. */
async function deleteKeys(client: S3Client, bucket: string, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 1000) {
    const batch = keys.slice(i, i + 1000);
    const result = await client.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
      }),
    );
    const errors = result.Errors ?? [];
    if (errors.length > 0)
      throw new StorageError(
        'io',
        `cannot delete ${errors.map((e) => where(bucket, e.Key ?? '?')).join(', ')} again: ${errors[0]?.Message ?? ''}`,
      );
  }
}

/**
 * Whether the object begins with Strongroom's envelope magic (`SRENVLP\0`): one ranged GetObject of 8 bytes. An
 * empty or shorter object is not ciphertext. For `verify`-style reports of storage holding something else.
 *
 * @throws StorageError 'not-found' for a missing bucket or key, 'denied', 'aborted' or 'io'.
 */
export async function isCiphertextObject(
  object: S3ObjectRef & { readonly signal?: AbortSignal },
): Promise<boolean> {
  const { client, bucket, key, signal } = object;
  const what = 'cannot read the start of';
  let output: GetObjectCommandOutput;
  try {
    output = await client.send(
      new GetObjectCommand({ Bucket: bucket, Key: key, Range: 'bytes=0-7' }),
      signal === undefined ? {} : { abortSignal: signal },
    );
  } catch (error) {
    const e = error as { name?: unknown; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'InvalidRange' || e.$metadata?.httpStatusCode === 416) return false; // an empty object
    throw s3Failure(error, what, bucket, key);
  }
  const length = output.ContentLength ?? 0;
  if (length > 8) {
    (output.Body as Readable | undefined)?.destroy();
    throw new StorageError('corrupt', `${what} ${where(bucket, key)}: ${length} bytes came back for 8`);
  }
  return startsWithEnvelopeMagic(await readBody(output, length, { bucket, key, what, signal }));
}

/** Whether the local file begins with Strongroom's envelope magic (`SRENVLP\0`); reads 8 bytes. */
export async function isCiphertextFile(path: string): Promise<boolean> {
  const handle = await open(path, 'r').catch((cause: unknown) => {
    throw new StorageError(
      (cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'not-found' : 'io',
      `cannot read ${path}`,
      { cause },
    );
  });
  try {
    const buffer = Buffer.alloc(8);
    const { bytesRead } = await handle.read(buffer, 0, 8, 0);
    return startsWithEnvelopeMagic(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}
