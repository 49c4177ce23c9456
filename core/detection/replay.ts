/**
 * Reading a log file back as detector entries: for seeding a detector on start (AnomalyDetector.seed) and for
 * replaying a recorded log (test/detection/replay.int.test.ts). The origin comes from the file's header line.
 */
import { open } from 'node:fs/promises';
import type { AuditEvent } from '../audit/event.ts';
import { tailLog } from '../audit/tail.ts';
import type { DetectorEntry } from './observation.ts';

/** The origin named by the header line of the log at `path`. */
export async function logOrigin(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buffer, 0, buffer.length, 0);
    const first = buffer.toString('utf8', 0, bytesRead).split('\n', 1)[0] ?? '';
    const header = JSON.parse(first) as { format?: unknown; origin?: unknown };
    if (typeof header.format !== 'string' || typeof header.origin !== 'string' || header.origin === '') {
      throw new Error(`${path} does not start with an audit log header`);
    }
    return header.origin;
  } finally {
    await fh.close();
  }
}

/**
 * Every complete entry of the log at `path`, in order, as detector entries (no verification: run
 * `strongroom audit verify` for that). Stops at the end of the file.
 */
export async function* logEntries(
  path: string,
  options: { fromSeq?: number } = {},
): AsyncGenerator<DetectorEntry> {
  const origin = await logOrigin(path);
  for await (const record of tailLog(path, { follow: false, fromSeq: options.fromSeq ?? 0 })) {
    if (record.kind !== 'entry') continue;
    const parsed = JSON.parse(record.line) as { seq: number; time: string; event: AuditEvent };
    yield { origin, seq: parsed.seq, time: parsed.time, event: parsed.event };
  }
}
