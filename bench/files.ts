/** Inputs that benchmarks write for themselves. */
import { randomFillSync } from 'node:crypto';
import { open } from 'node:fs/promises';
import { MiB } from './report.ts';

/**
 * Writes `bytes` of random data to a new file at `path` with one reused 8 MiB buffer (fresh chunks would inflate the
 * writer's RSS); with `sync`, flushes it to the disk before closing.
 */
export async function writeRandomFile(
  path: string,
  bytes: number,
  options: { readonly mode?: number; readonly sync?: boolean } = {},
): Promise<void> {
  const handle = await open(path, 'wx', options.mode ?? 0o600);
  const buffer = Buffer.allocUnsafe(8 * MiB);
  try {
    for (let done = 0; done < bytes;) {
      const n = Math.min(buffer.length, bytes - done);
      randomFillSync(buffer, 0, n);
      await handle.write(buffer, 0, n, done);
      done += n;
    }
    if (options.sync === true) await handle.sync();
  } finally {
    await handle.close();
  }
}
