import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, type AppendedEntry } from '../audit/log.ts';
import { makeKeys, ORIGIN } from '../audit/testdata/fixtures.ts';
import { alertEvent, type Alert } from './alert.ts';
import { parseDetectionConfig } from './config.ts';
import { AnomalyDetector } from './detector.ts';
import { logEntries, logOrigin } from './replay.ts';
import { releaseEvent, T0 } from './testdata/entries.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'detect-replay-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('a real log read back', () => {
  it('gives the detector the same entries the log observers saw, and the same alerts', async () => {
    const path = join(dir, 'a.log');
    const appended: AppendedEntry[] = [];
    let now = T0;
    const log = await AuditLog.open({
      path,
      origin: ORIGIN,
      signer: makeKeys().signer,
      heartbeatIntervalMs: 0,
      observers: { onAppended: (e) => appended.push(e) },
      now: () => now,
    });
    const config = parseDetectionConfig({ 'denial-burst.perIdentity': '3' });
    const live = new AnomalyDetector(config);
    const liveAlerts: Alert[] = [];
    for (let i = 0; i < 5; i++) {
      now += 1000;
      await log.append(releaseEvent({ decision: 'deny' }));
      for (const entry of appended.splice(0)) {
        const alerts = live.observe(entry);
        liveAlerts.push(...alerts);
        // The wiring appends each alert to the same log; the detector ignores it when it comes back.
        for (const alert of alerts) await log.append(alertEvent(alert));
      }
    }
    for (const entry of appended.splice(0)) expect(live.observe(entry)).toEqual([]);
    await log.close();

    expect(await logOrigin(path)).toBe(ORIGIN);
    const entries = [];
    for await (const entry of logEntries(path)) entries.push(entry);
    // writer-started, 5 denials, 1 alert.
    expect(entries.map((e) => e.event.type)).toEqual([
      'writer-started',
      'key-release',
      'key-release',
      'key-release',
      'anomaly-alert',
      'key-release',
      'key-release',
    ]);
    expect(entries.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const replayed = new AnomalyDetector(config);
    expect(entries.flatMap((e) => replayed.observe(e))).toEqual(liveAlerts);
    expect(liveAlerts.map((a) => a.evidence.map((e) => e.seq))).toEqual([[1, 2, 3]]);
  });

  it('refuses a file that is not an audit log', async () => {
    const { writeFileSync } = await import('node:fs');
    const path = join(dir, 'not.log');
    writeFileSync(path, '{"hello":"world"}\n');
    await expect(logOrigin(path)).rejects.toThrow(/does not start with an audit log header/);
  });
});
