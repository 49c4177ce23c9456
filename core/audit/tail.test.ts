import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from './log.ts';
import { tailLog, type TailRecord } from './tail.ts';
import { makeKeys, ORIGIN, releaseEvent } from './testdata/fixtures.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'audit-tail-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('tailLog', () => {
  it('yields existing entries, then entries as they are written, until aborted', async () => {
    const path = join(dir, 'a.log');
    const log = await AuditLog.open({
      path,
      origin: ORIGIN,
      signer: makeKeys().signer,
      heartbeatIntervalMs: 0,
    });
    await log.append(releaseEvent(0));
    const controller = new AbortController();
    const seen: TailRecord[] = [];
    const reading = (async () => {
      for await (const r of tailLog(path, { pollMs: 5, signal: controller.signal })) {
        seen.push(r);
        if (r.kind === 'entry' && r.seq === 1) {
          // Written only after the tail has caught up with the file.
          await log.append(releaseEvent(1));
          await log.append(releaseEvent(2));
        }
        if (r.kind === 'entry' && r.seq === 3) controller.abort();
      }
    })();
    await reading;
    await log.close();
    expect(seen.flatMap((r) => (r.kind === 'entry' ? [r.seq] : []))).toEqual([0, 1, 2, 3]);
    expect(seen.some((r) => r.kind === 'checkpoint')).toBe(true);
  });
});
