/**
 * Progress of a long operation (encrypting, uploading, streaming into a claim): a `cli-progress` bar on stderr when
 * stderr is a terminal, nothing otherwise (logs and CI stay clean); either way the operation ends with one line giving
 * the bytes and the throughput.
 */
import { SingleBar } from 'cli-progress';
import type { CliIo } from './io.ts';

export interface Progress {
  /** Sets the bytes done so far (monotonic). */
  update(done: number): void;
  /** Stops the bar and prints `<label>: <bytes> in <s> (<MiB/s>)`. Returns the line's numbers. */
  finish(): { bytes: number; seconds: number; mibPerSecond: number };
  /** Stops the bar without the summary (on failure). */
  stop(): void;
}

/** Human-readable bytes: `512 B`, `1.5 KiB`, `20.0 MiB`, `2.00 GiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${String(bytes)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit] ?? ''}`;
}

export function startProgress(io: CliIo, label: string, total: number, enabled = true): Progress {
  const started = process.hrtime.bigint();
  let done = 0;
  let bar: SingleBar | undefined;
  if (enabled && io.interactive === true && total > 0) {
    bar = new SingleBar({
      format: `${label} [{bar}] {percentage}% | {doneText} of {totalText} | {eta_formatted} left`,
      hideCursor: true,
      clearOnComplete: true,
      stream: process.stderr,
    });
    bar.start(total, 0, { doneText: formatBytes(0), totalText: formatBytes(total) });
  }
  const stop = () => {
    bar?.stop();
    bar = undefined;
  };
  return {
    update(value) {
      done = Math.max(done, value);
      bar?.update(Math.min(done, total), { doneText: formatBytes(done), totalText: formatBytes(total) });
    },
    finish() {
      stop();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const bytes = Math.max(done, 0);
      const mibPerSecond = seconds > 0 ? bytes / 2 ** 20 / seconds : 0;
      io.err(
        `${label}: ${formatBytes(bytes)} in ${seconds.toFixed(2)} s (${mibPerSecond.toFixed(1)} MiB/s)\n`,
      );
      return { bytes, seconds, mibPerSecond };
    },
    stop,
  };
}
