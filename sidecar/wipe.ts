/**
 * Wiping plaintext: every regular file under a directory is unlinked and its content overwritten with zeros and
 * fsync'd; every subdirectory is removed; the directory itself stays (it is the volume's mount point).
 *
 * Order per file: open, unlink, zero through the open descriptor, fsync, close. The name goes first so that the
 * files disappear from the application's view at once (the revocation bound is about that), and an application
 * that still holds a file open reads zeros afterwards, because it shares the inode that is overwritten. Read-only
 * modes (0444 files, 0555 directories) are lifted first so a non-root sidecar can do this. Symlinks and other
 * special files are unlinked, never followed.
 */
import { chmod, lstat, open, readdir, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/** What a wipe removed. */
export interface WipeReport {
  readonly files: number;
  readonly bytes: number;
  readonly directories: number;
}

/** Some entries could not be wiped; the others were. */
export class WipeError extends Error {
  override readonly name = 'WipeError';
  readonly failures: readonly { readonly path: string; readonly error: unknown }[];
  constructor(dir: string, failures: readonly { path: string; error: unknown }[]) {
    super(`could not wipe ${failures.length} entr${failures.length === 1 ? 'y' : 'ies'} under ${dir}`, {
      cause: failures[0]?.error,
    });
    this.failures = failures;
  }
}

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);
const FILE_CONCURRENCY = 8;
const DETACH_BATCH = 256;

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** An unlinked file, still open for zeroing. */
interface Detached {
  readonly handle: FileHandle;
  readonly size: number;
}

/** Opens one file for writing and unlinks it. A file that is already gone gives undefined. */
async function detach(path: string): Promise<Detached | undefined> {
  await chmod(path, 0o600).catch(() => undefined);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r+');
  } catch (error) {
    if (isMissing(error)) return undefined;
    // It cannot be opened for writing: at least make it disappear, and report it.
    await unlink(path).catch(() => undefined);
    throw error;
  }
  try {
    const { size } = await handle.stat();
    await unlink(path).catch((e: unknown) => {
      if (!isMissing(e)) throw e;
    });
    return { handle, size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Overwrites a detached file with zeros, fsyncs and closes it. */
async function zero({ handle, size }: Detached): Promise<void> {
  try {
    for (let offset = 0; offset < size; offset += ZERO_CHUNK.length) {
      const length = Math.min(ZERO_CHUNK.length, size - offset);
      await handle.write(ZERO_CHUNK, 0, length, offset);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Runs `task` over `items` with at most `limit` at a time. */
async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

interface Walk {
  readonly files: string[];
  /** Deepest first. */
  readonly dirs: string[];
  readonly others: string[];
}

async function walk(dir: string, out: Walk, failures: { path: string; error: unknown }[]): Promise<void> {
  let entries;
  try {
    await chmod(dir, 0o700).catch(() => undefined);
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if (!isMissing(error)) failures.push({ path: dir, error });
    return;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      await walk(path, out, failures);
      out.dirs.push(path);
    } else if (entry.isFile()) out.files.push(path);
    else out.others.push(path);
  }
}

/**
 * Wipes everything under `dir` (see the module comment) and keeps `dir`. Tries every entry even when some fail,
 * then throws a {@link WipeError} listing the failures. A missing `dir` is an empty wipe.
 */
export async function wipeDirectory(dir: string): Promise<WipeReport> {
  const info = await lstat(dir).catch((error: unknown) => {
    if (isMissing(error)) return undefined;
    throw error;
  });
  if (info === undefined) return { files: 0, bytes: 0, directories: 0 };
  if (!info.isDirectory()) throw new WipeError(dir, [{ path: dir, error: new Error('not a directory') }]);
  const failures: { path: string; error: unknown }[] = [];
  const found: Walk = { files: [], dirs: [], others: [] };
  await walk(dir, found, failures);
  let bytes = 0;
  let files = 0;
  // In batches (bounded open descriptors): every name of the batch goes first, then the contents are zeroed.
  for (let i = 0; i < found.files.length; i += DETACH_BATCH) {
    const detached: Detached[] = [];
    await eachLimited(found.files.slice(i, i + DETACH_BATCH), DETACH_BATCH, async (path) => {
      try {
        const d = await detach(path);
        if (d !== undefined) detached.push(d);
      } catch (error) {
        failures.push({ path, error });
      }
    });
    await eachLimited(detached, FILE_CONCURRENCY, async (d) => {
      try {
        await zero(d);
        bytes += d.size;
        files++;
      } catch (error) {
        failures.push({ path: '(unlinked file)', error });
      }
    });
  }
  for (const path of found.others)
    await unlink(path).catch((error: unknown) => {
      if (!isMissing(error)) failures.push({ path, error });
    });
  let directories = 0;
  for (const path of found.dirs) {
    try {
      await rmdir(path);
      directories++;
    } catch (error) {
      if (!isMissing(error)) failures.push({ path, error });
    }
  }
  if (failures.length > 0) throw new WipeError(dir, failures);
  return { files, bytes, directories };
}
