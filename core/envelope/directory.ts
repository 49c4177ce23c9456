/**
 * Directory artifacts: every regular file is encrypted on its own (its relative path bound into its keys) under an
 * opaque object name, and an encrypted manifest lists paths, sizes and SHA-256 digests. File names are not exposed.
 * Decryption builds the whole tree in a staging directory and renames it into place only when everything verified.
 */
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, open, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, posix, sep } from 'node:path';
import { decryptBytes, encryptBytes } from './bytes.ts';
import { EnvelopeError } from './errors.ts';
import { decryptFile, decryptFileOnOneWorker, encryptFile, type DecryptResult } from './file.ts';
import type { EnvelopeContext } from './format.ts';
import type { SegmentPool } from './pool.ts';
import { decryptFromSource, type CiphertextDirectorySource, type RangedReadOptions } from './ranged.ts';

export const MANIFEST_FILE = 'manifest.sre';
const OBJECTS_DIR = 'objects';
/** The manifest's own context path: a NUL byte never occurs in a real path. */
const MANIFEST_PATH = '\u0000manifest';

export interface ManifestEntry {
  readonly path: string;
  readonly object: string;
  readonly size: number;
  readonly sha256: string;
}

export interface Manifest {
  readonly format: 'strongroom-manifest/v1';
  readonly files: readonly ManifestEntry[];
}

export interface DirectoryOptions {
  readonly dek: Uint8Array;
  readonly keyId: string;
  /** Artifact uid, name and version; each file's path is added per file. */
  readonly context: Omit<EnvelopeContext, 'path'>;
  readonly pool?: SegmentPool;
}

/** What `encryptDirectory` can do beyond the default (no exclusions, owner-only modes while written, no fsync). */
export interface EncryptDirectoryOptions extends DirectoryOptions {
  /** Relative, `/`-separated paths in `source` to leave out; a directory's whole subtree is left out with it. */
  readonly exclude?: readonly string[];
  /**
   * Modes for every file and every directory of the finished tree, set before it is renamed into place. Without it
   * the objects stay 0600 and the directories 0700 (the manifest as the umask leaves it).
   */
  readonly modes?: { readonly file: number; readonly dir: number };
  /**
   * Sync every written file, the objects directory and the staging directory before the rename, and the target's
   * parent after it. If that last sync fails the target is removed again and the error thrown: the directory is
   * then either complete and synced, or absent.
   */
  readonly durable?: boolean;
}

/** What `decryptDirectory` can do beyond the default. */
export interface DecryptDirectoryOptions extends DirectoryOptions {
  /**
   * Check every file's SHA-256 against the manifest, computed in the same pass as the decrypt (default false). The
   * AEAD already proves the files are what the DEK's holder encrypted; this also proves the manifest's digests
   * describe them, which matters when a digest recorded elsewhere (the ModelArtifact's) is checked against the
   * manifest: a holder of the DEK could otherwise pair a known-good model's digests with other weights.
   */
  readonly checkDigests?: boolean;
}

/**
 * The regular files under `source` as `encryptDirectory` encrypts them: relative, `/`-separated, in its order (the
 * manifest's), minus `exclude` (exact relative paths; an excluded directory is not entered).
 *
 * @throws EnvelopeError kind 'invalid' for anything that is not a regular file or a directory (symlinks, devices);
 *   the file system's error if `source` cannot be read.
 */
export async function listTree(source: string, exclude: readonly string[] = []): Promise<string[]> {
  return listFiles(source, new Set(exclude));
}

async function listFiles(root: string, exclude: ReadonlySet<string>, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of (await readdir(join(root, prefix), { withFileTypes: true })).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    const rel = prefix ? posix.join(prefix, entry.name) : entry.name;
    if (exclude.has(rel)) continue;
    if (entry.isDirectory()) out.push(...(await listFiles(root, exclude, rel)));
    else if (entry.isFile()) out.push(rel);
    else
      throw new EnvelopeError(
        'invalid',
        `${rel}: only regular files and directories can be encrypted (no symlinks or devices)`,
      );
  }
  return out;
}

function checkPath(path: string): void {
  const parts = path.split('/');
  if (
    path === '' ||
    path.startsWith('/') ||
    parts.some((p) => p === '' || p === '.' || p === '..') ||
    path.includes('\u0000') ||
    path.includes('\\')
  ) {
    throw new EnvelopeError('manifest', `unsafe path in manifest: ${JSON.stringify(path)}`);
  }
}

async function assertAbsent(path: string): Promise<void> {
  const exists = await lstat(path).then(
    () => true,
    () => false,
  );
  if (exists) throw new EnvelopeError('invalid', `${path} already exists`);
}

async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Encrypts the tree under `source` into a new directory `target` (which must not exist), through a staging directory
 * beside it (`.<name>.partial-<random>`) that is renamed into place only when complete; any failure removes it. See
 * `EncryptDirectoryOptions` for leaving paths out, the finished tree's modes and syncing.
 */
export async function encryptDirectory(
  source: string,
  target: string,
  options: EncryptDirectoryOptions,
): Promise<Manifest> {
  await assertAbsent(target);
  const files = await listTree(source, options.exclude);
  const staging = join(dirname(target), `.${basename(target)}.partial-${randomBytes(6).toString('hex')}`);
  const objects = join(staging, OBJECTS_DIR);
  await mkdir(objects, { recursive: true, mode: 0o700 });
  let manifest: Manifest;
  try {
    const entries: ManifestEntry[] = [];
    for (const [i, path] of files.entries()) {
      const object = `${OBJECTS_DIR}/${String(i).padStart(6, '0')}.sre`;
      const result = await encryptFile(
        join(source, ...path.split('/')),
        join(staging, ...object.split('/')),
        {
          dek: options.dek,
          keyId: options.keyId,
          context: { ...options.context, path },
          ...(options.pool ? { pool: options.pool } : {}),
        },
      );
      entries.push({ path, object, size: result.plaintextLength, sha256: result.digest ?? '' });
    }
    manifest = { format: 'strongroom-manifest/v1', files: entries };
    const written = [
      ...entries.map((e) => join(staging, ...e.object.split('/'))),
      join(staging, MANIFEST_FILE),
    ];
    await writeFile(
      join(staging, MANIFEST_FILE),
      encryptBytes(Buffer.from(JSON.stringify(manifest)), {
        dek: options.dek,
        keyId: options.keyId,
        context: { ...options.context, path: MANIFEST_PATH },
      }),
      { flag: 'wx' },
    );
    if (options.modes) {
      for (const file of written) await chmod(file, options.modes.file);
      await chmod(objects, options.modes.dir);
      await chmod(staging, options.modes.dir);
    }
    if (options.durable === true) {
      for (const path of [...written, objects, staging]) await syncPath(path);
    }
    await rename(staging, target);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
  if (options.durable === true) {
    try {
      await syncPath(dirname(target));
    } catch (error) {
      // The rename may not survive a crash: take the directory back rather than leave one that might vanish.
      await rm(target, { recursive: true, force: true });
      throw error;
    }
  }
  return manifest;
}

function parseManifest(text: string): Manifest {
  const raw = JSON.parse(text) as unknown;
  const bad = (why: string) => new EnvelopeError('manifest', `malformed manifest: ${why}`);
  if (typeof raw !== 'object' || raw === null) throw bad('not an object');
  const { format, files } = raw as { format?: unknown; files?: unknown };
  if (format !== 'strongroom-manifest/v1') throw bad(`unknown format ${JSON.stringify(format)}`);
  if (!Array.isArray(files)) throw bad('files is not a list');
  return {
    format,
    files: files.map((f: unknown, i) => {
      const e = f as Partial<Record<keyof ManifestEntry, unknown>>;
      if (
        typeof e.path !== 'string' ||
        typeof e.object !== 'string' ||
        typeof e.sha256 !== 'string' ||
        !Number.isSafeInteger(e.size)
      ) {
        throw bad(`entry ${i} lacks path, object, size or sha256`);
      }
      return { path: e.path, object: e.object, size: e.size as number, sha256: e.sha256 };
    }),
  };
}

/** Decrypts and checks the manifest of an encrypted directory. */
export async function readManifest(
  source: string,
  options: Pick<DirectoryOptions, 'dek' | 'context'>,
): Promise<Manifest> {
  const bytes = await readFile(join(source, MANIFEST_FILE)).catch((cause: unknown) => {
    throw new EnvelopeError('manifest', `${source} has no ${MANIFEST_FILE}`, { cause });
  });
  return openManifest(bytes, options);
}

/** Decrypts and checks the bytes of a `manifest.sre`. */
function openManifest(bytes: Buffer, options: Pick<DirectoryOptions, 'dek' | 'context'>): Manifest {
  const { plaintext } = decryptBytes(bytes, {
    dek: options.dek,
    context: { ...options.context, path: MANIFEST_PATH },
  });
  const manifest = parseManifest(plaintext.toString('utf8'));
  const seen = new Set<string>();
  for (const f of manifest.files) {
    checkPath(f.path);
    if (seen.has(f.path)) throw new EnvelopeError('manifest', `duplicate path in manifest: ${f.path}`);
    seen.add(f.path);
    if (!/^objects\/\d{6}\.sre$/.test(f.object))
      throw new EnvelopeError('manifest', `bad object name ${JSON.stringify(f.object)}`);
  }
  return manifest;
}

/**
 * Decrypts an encrypted directory into `target` (which must not exist), all or nothing.
 *
 * @throws EnvelopeError: any decrypt failure of a file or the manifest; kind 'manifest' when the objects do not
 *   match the manifest or a size differs; kind 'digest' (with `checkDigests`) when a file's content is not what the
 *   manifest's SHA-256 says.
 */
export async function decryptDirectory(
  source: string,
  target: string,
  options: DecryptDirectoryOptions,
): Promise<Manifest> {
  await assertAbsent(target);
  const manifest = await readManifest(source, options);
  matchObjects(
    manifest,
    (await readdir(join(source, OBJECTS_DIR)).catch(() => [] as string[])).map((o) => `${OBJECTS_DIR}/${o}`),
  );
  const staging = join(dirname(target), `.${basename(target)}.partial-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    const outputs = await stagingOutputs(staging, manifest);
    const decryptOne = async (file: ManifestEntry, oneWorker: boolean): Promise<void> => {
      const input = join(source, ...file.object.split('/'));
      const output = outputs.get(file) ?? '';
      const fileOptions = { dek: options.dek, context: { ...options.context, path: file.path } };
      let result: DecryptResult;
      if (oneWorker && options.pool)
        result = await decryptFileOnOneWorker(input, output, { ...fileOptions, pool: options.pool });
      else
        result = await decryptFile(input, output, {
          ...fileOptions,
          ...(options.pool ? { pool: options.pool } : {}),
          ...(options.checkDigests === true ? { digest: true } : {}),
        });
      checkDecrypted(file, result, options.checkDigests === true);
    };
    if (options.checkDigests === true && options.pool && filesPerWorker(manifest.files, options.pool.size)) {
      await decryptConcurrently(manifest.files, options.pool.size, (file) => decryptOne(file, true));
    } else {
      for (const file of manifest.files) await decryptOne(file, false);
    }
    await rename(staging, target);
    return manifest;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** Throws EnvelopeError 'manifest' unless the stored objects (`objects/<name>`) are exactly those listed. */
function matchObjects(manifest: Manifest, stored: Iterable<string>): void {
  const objects = new Set(stored);
  const listed = new Set(manifest.files.map((f) => f.object));
  const extra = [...objects].filter((o) => !listed.has(o));
  const missing = [...listed].filter((o) => !objects.has(o));
  if (extra.length > 0 || missing.length > 0) {
    throw new EnvelopeError(
      'manifest',
      `objects do not match the manifest (missing: ${missing.join(', ') || 'none'}; extra: ${extra.join(', ') || 'none'})`,
    );
  }
}

/** Creates the directories of every file under `staging` and returns where each file goes. */
async function stagingOutputs(staging: string, manifest: Manifest): Promise<Map<ManifestEntry, string>> {
  const outputs = new Map<ManifestEntry, string>();
  for (const file of manifest.files) {
    const out = join(staging, ...file.path.split('/'));
    if (!out.startsWith(staging + sep))
      throw new EnvelopeError('manifest', `path escapes the target: ${file.path}`);
    await mkdir(dirname(out), { recursive: true });
    outputs.set(file, out);
  }
  return outputs;
}

/** Checks one decrypted file's size (and, when asked, digest) against its manifest entry. */
function checkDecrypted(file: ManifestEntry, result: DecryptResult, checkDigests: boolean): void {
  if (result.plaintextLength !== file.size)
    throw new EnvelopeError(
      'manifest',
      `${file.path}: size ${result.plaintextLength} does not match the manifest's ${file.size}`,
    );
  if (checkDigests && result.digest !== file.sha256)
    throw new EnvelopeError('digest', `${file.path}: its content does not match the manifest's SHA-256`);
}

/** What `decryptDirectoryFromSource` can do: `decryptDirectory`'s options (no pool) and how the source is read. */
export type SourceDirectoryOptions = Omit<DecryptDirectoryOptions, 'pool' | 'keyId'> &
  RangedReadOptions & { readonly keyId?: string };

/**
 * `decryptDirectory` from a ranged source (object storage): the same manifest checks (the stored objects exactly
 * those listed, safe paths, sizes, and with `checkDigests` each file's SHA-256 in the same pass), the same staging
 * directory beside `target` renamed into place only when every file verified, and nothing left on any failure.
 * Files are decrypted one after another, each read in windows (`decryptFromSource`); no ciphertext touches the
 * disk.
 *
 * @throws EnvelopeError as `decryptDirectory` does; errors thrown by the source and the abort reason unchanged.
 */
export async function decryptDirectoryFromSource(
  source: CiphertextDirectorySource,
  target: string,
  options: SourceDirectoryOptions,
): Promise<Manifest> {
  await assertAbsent(target);
  if (options.signal?.aborted === true) throw options.signal.reason;
  const manifest = openManifest(Buffer.from(await source.readManifest(options.signal)), options);
  const objects = await source.listObjects(options.signal);
  matchObjects(manifest, objects.keys());
  const staging = join(dirname(target), `.${basename(target)}.partial-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    const outputs = await stagingOutputs(staging, manifest);
    for (const file of manifest.files) {
      const object = objects.get(file.object);
      if (object === undefined) throw new EnvelopeError('manifest', `${file.object} is missing`);
      const result = await decryptFromSource(object, outputs.get(file) ?? '', {
        dek: options.dek,
        context: { ...options.context, path: file.path },
        digest: options.checkDigests === true,
        ...(options.windowSegments === undefined ? {} : { windowSegments: options.windowSegments }),
        ...(options.readsInFlight === undefined ? {} : { readsInFlight: options.readsInFlight }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
      checkDecrypted(file, result, options.checkDigests === true);
    }
    await rename(staging, target);
    return manifest;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Whether hashing files whole, one per worker, beats splitting each file's segments across the workers and
 * hashing behind them: when there are enough files of similar enough size that no worker is left with much more
 * than its share (the largest file at most 1.5 × total / workers).
 */
function filesPerWorker(files: readonly ManifestEntry[], workers: number): boolean {
  if (workers < 2 || files.length < workers) return false;
  const total = files.reduce((sum, f) => sum + f.size, 0);
  const largest = Math.max(...files.map((f) => f.size));
  return largest * workers <= 1.5 * total;
}

/**
 * Runs `work` for every file, `concurrency` at a time, largest first (so the small ones fill the gaps at the end).
 * Waits for every started file to settle before throwing the first failure, so nothing is still being written
 * when the caller removes the staging directory.
 */
async function decryptConcurrently(
  files: readonly ManifestEntry[],
  concurrency: number,
  work: (file: ManifestEntry) => Promise<void>,
): Promise<void> {
  const queue = [...files].sort((a, b) => b.size - a.size);
  let failed = false;
  const lane = async (): Promise<void> => {
    for (let file = queue.shift(); file !== undefined && !failed; file = queue.shift()) {
      try {
        await work(file);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: concurrency }, lane));
  const failure = results.find((r) => r.status === 'rejected');
  if (failure) throw failure.reason;
}
