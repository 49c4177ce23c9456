/**
 * Follows a log file as it is written: yields each complete record once, in order, polling for growth.
 */
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CHECKPOINT_PREFIX, HEADER_PREFIX } from './record.ts';

export type TailRecord =
  | { readonly kind: 'entry'; readonly line: string; readonly seq: number }
  | { readonly kind: 'checkpoint'; readonly line: string };

export interface TailOptions {
  /** Keep waiting for new records (default true). */
  readonly follow?: boolean;
  /** Skip entries before this seq. */
  readonly fromSeq?: number;
  readonly pollMs?: number;
  readonly signal?: AbortSignal;
}

/** Yields records of the log at `path`; with `follow`, waits for more until `signal` aborts. */
export async function* tailLog(path: string, options: TailOptions = {}): AsyncGenerator<TailRecord> {
  const fh = await open(path, 'r');
  const chunk = Buffer.alloc(1 << 16);
  let offset = 0;
  let carry = Buffer.alloc(0);
  let index = 0;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, offset);
      if (bytesRead === 0) {
        if (options.follow === false || options.signal?.aborted === true) return;
        try {
          await sleep(options.pollMs ?? 200, undefined, { signal: options.signal });
        } catch {
          return;
        }
        continue;
      }
      offset += bytesRead;
      let data = Buffer.concat([carry, chunk.subarray(0, bytesRead)]);
      let nl: number;
      while ((nl = data.indexOf(10)) >= 0) {
        const line = data.toString('utf8', 0, nl);
        data = data.subarray(nl + 1);
        if (line.startsWith(HEADER_PREFIX)) continue;
        if (line.startsWith(CHECKPOINT_PREFIX)) {
          yield { kind: 'checkpoint', line };
          continue;
        }
        const seq = index++;
        if (seq >= (options.fromSeq ?? 0)) yield { kind: 'entry', line, seq };
      }
      carry = Buffer.from(data);
    }
  } finally {
    await fh.close();
  }
}
