/**
 * The floor a durable audit append cannot go under: the latency of `write` + `fdatasync` of one audit-sized record
 * on the disk the audit log lives on, at the benchmark's fixed rate, measured alone (no broker running). A request
 * whose answer waits for its own fdatasync can be no faster than this; `bench/broker/` prints it next to the
 * ReleaseKey p99 target. Synchronous calls on purpose: the timing is of the disk, not of the event loop.
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { percentile } from './report.ts';

export interface FsyncFloor {
  readonly dir: string;
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

/** Appends `count` records of `bytes` bytes under a fresh directory in `parent`, one every `intervalMs`. */
export async function measureFsyncFloor(
  parent: string,
  options: { count?: number; intervalMs?: number; bytes?: number } = {},
): Promise<FsyncFloor> {
  const count = options.count ?? 1000;
  const dir = mkdtempSync(join(parent, 'strongroom-fsync-floor-'));
  const record = Buffer.alloc(options.bytes ?? 420, 0x61);
  const fd = openSync(join(dir, 'append.log'), 'a', 0o600);
  const samples: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const t0 = process.hrtime.bigint();
      writeSync(fd, record);
      fdatasyncSync(fd);
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
      await sleep(options.intervalMs ?? 2);
    }
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  const at = (p: number): number => percentile(samples, p) ?? NaN;
  return { dir: parent, count, p50Ms: at(50), p99Ms: at(99), p999Ms: at(99.9), maxMs: at(100) };
}

if (import.meta.main) {
  const parent = process.argv[2] ?? '/var/tmp';
  const floor = await measureFsyncFloor(parent);
  console.log(
    `write+fdatasync of 420 B at 500/s in ${parent} (${String(floor.count)} appends): p50 ${floor.p50Ms.toFixed(3)} ms, ` +
      `p99 ${floor.p99Ms.toFixed(3)} ms, p99.9 ${floor.p999Ms.toFixed(3)} ms, max ${floor.maxMs.toFixed(3)} ms`,
  );
}
