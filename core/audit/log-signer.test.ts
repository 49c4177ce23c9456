/** The audit log with a signer that signs asynchronously (a checkpoint key held in a KMS, core/kms/signing.ts). */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from './log.ts';
import type { AsyncNoteSigner, NoteSigner } from './note.ts';
import { makeKeys, ORIGIN, releaseEvent } from './testdata/fixtures.ts';
import { verifyLog } from './verify.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'audit-log-signer-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** `signer` behind a gate: each signature waits for the test, or fails when told to. */
function remote(signer: NoteSigner): AsyncNoteSigner & {
  calls: number;
  failWith: Error | undefined;
  hold: Promise<void> | undefined;
} {
  const s = {
    name: signer.name,
    keyId: signer.keyId,
    verifier: signer.verifier,
    calls: 0,
    failWith: undefined as Error | undefined,
    hold: undefined as Promise<void> | undefined,
    async sign(text: Uint8Array): Promise<Uint8Array> {
      s.calls++;
      await s.hold;
      await new Promise((resolve) => setImmediate(resolve));
      if (s.failWith) throw s.failWith;
      return signer.sign(text);
    },
  };
  return s;
}

describe('AuditLog with an asynchronous checkpoint signer', () => {
  it('writes notes identical to the software signer’s, and appends made while it signs land in the next batch', async () => {
    const keys = makeKeys();
    const signer = remote(keys.signer);
    const path = join(dir, 'a.log');
    const log = await AuditLog.open({ path, origin: ORIGIN, signer, heartbeatIntervalMs: 0 });
    await log.append(releaseEvent(0));
    let release!: () => void;
    signer.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const checkpoint = log.checkpoint();
    await new Promise((resolve) => setImmediate(resolve));
    // The signer is now holding the checkpoint of size 2; these appends arrive meanwhile.
    const later = Promise.all([log.append(releaseEvent(1)), log.append(releaseEvent(2))]);
    release();
    const note = await checkpoint;
    expect(note.split('\n')[1]).toBe('2');
    await later;
    await log.close();
    expect(signer.calls).toBeGreaterThanOrEqual(3);
    const report = verifyLog(readFileSync(path), { verifiers: [keys.verifier] });
    expect(report.findings).toEqual([]);
    expect(report.entries).toBe(4);
    expect(report.latest?.size).toBe(4);
    // The note the remote signer made is the one the key in software makes: same key, same bytes.
    const text = note.slice(0, note.lastIndexOf('\n\n') + 1);
    expect(note.slice(text.length + 1)).toBe(
      `— ${keys.signer.name} ${Buffer.concat([
        Buffer.from(keys.signer.keyId.toString(16).padStart(8, '0'), 'hex'),
        keys.signer.sign(Buffer.from(text)),
      ]).toString('base64')}\n`,
    );
  });

  it('a failed signature does not stop the log: the batch is durable without a checkpoint, counted, and signed again at the next interval', async () => {
    const keys = makeKeys();
    const signer = remote(keys.signer);
    const failures: [string, string][] = [];
    const notes: string[] = [];
    let clock = Date.parse('2026-12-07T10:00:00Z');
    const path = join(dir, 'b.log');
    const log = await AuditLog.open({
      path,
      origin: ORIGIN,
      signer,
      heartbeatIntervalMs: 0,
      checkpointIntervalMs: 1000,
      now: () => clock,
      observers: { onCheckpoint: (note) => notes.push(note) },
      metrics: {
        onFailure: (error, stage) => {
          failures.push([error.kind, stage]);
        },
      },
    });
    await log.append(releaseEvent(0));
    signer.failWith = new Error('CKR_DEVICE_REMOVED');
    const pending = log.append(releaseEvent(1));
    const checkpoint = log.checkpoint();
    // The entry is acknowledged; only the caller who asked for the note is refused.
    expect((await pending).seq).toBe(2);
    await expect(checkpoint).rejects.toMatchObject({ kind: 'io' });
    await expect(checkpoint).rejects.toThrow(/signing the checkpoint/);
    expect(await checkpoint.catch((e: unknown) => (e as Error).cause)).toMatchObject({
      message: 'CKR_DEVICE_REMOVED',
    });
    expect(failures).toEqual([['io', 'sign']]);
    let report = verifyLog(readFileSync(path), { verifiers: [keys.verifier] });
    expect(report.ok).toBe(true);
    expect(report.entries).toBe(3);
    expect(report.latest?.size).toBe(1);
    expect(report.findings.map((f) => [f.kind, f.severity])).toEqual([['unsigned-tail', 'warning']]);

    // Within the interval the signer is not asked again: appends go on at the speed of the disk.
    const calls = signer.calls;
    clock += 999;
    expect((await log.append(releaseEvent(2))).seq).toBe(3);
    expect(signer.calls).toBe(calls);
    // An interval later it is; still failing, the batch is written all the same and the failure counted again.
    clock += 1;
    expect((await log.append(releaseEvent(3))).seq).toBe(4);
    expect(signer.calls).toBe(calls + 1);
    expect(failures).toEqual([
      ['io', 'sign'],
      ['io', 'sign'],
    ]);
    // The signer is back: the next interval's checkpoint covers every entry written meanwhile.
    signer.failWith = undefined;
    clock += 1000;
    await log.append(releaseEvent(4));
    expect(log.latestCheckpoint.split('\n')[1]).toBe('6');
    expect(notes.map((n) => n.split('\n')[1])).toEqual(['1', '6']);
    expect(failures).toHaveLength(2);
    report = verifyLog(readFileSync(path), { verifiers: [keys.verifier] });
    expect(report.findings).toEqual([]);
    expect(report.latest?.size).toBe(6);
    await log.close();

    // A log whose tail was never signed (the process stopped while the signer failed) reopens and goes on.
    signer.failWith = new Error('CKR_DEVICE_REMOVED');
    const failing = await AuditLog.open({ path, origin: ORIGIN, signer, heartbeatIntervalMs: 0 }).catch(
      (e: unknown) => e,
    );
    // Opening signs a checkpoint of the writer-started entry: without a signer the writer does not start.
    expect(failing).toMatchObject({ kind: 'io' });
    signer.failWith = undefined;
    const again = await AuditLog.open({ path, origin: ORIGIN, signer, heartbeatIntervalMs: 0 });
    await again.append(releaseEvent(5));
    await again.close();
    report = verifyLog(readFileSync(path), { verifiers: [keys.verifier] });
    expect(report.findings.filter((f) => f.severity === 'error')).toEqual([]);
    expect(report.latest?.size).toBe(report.entries);
  });

  it('a signer that answers with another key’s signature is a signing failure too: no such note reaches the file', async () => {
    const keys = makeKeys();
    const impostor = makeKeys();
    const signer = remote(keys.signer);
    const stages: string[] = [];
    const path = join(dir, 'c.log');
    const log = await AuditLog.open({
      path,
      origin: ORIGIN,
      signer,
      heartbeatIntervalMs: 0,
      metrics: { onFailure: (_error, stage) => stages.push(stage) },
    });
    signer.sign = (text) => Promise.resolve(impostor.signer.sign(text));
    await log.append(releaseEvent(1));
    await expect(log.checkpoint()).rejects.toMatchObject({ kind: 'io' });
    expect((await log.append(releaseEvent(2))).seq).toBe(2);
    expect(stages).toEqual(['sign']);
    // Closing signs a final checkpoint; that failure too is counted, and the file is closed all the same.
    await log.close();
    expect(stages).toEqual(['sign', 'sign']);
    const report = verifyLog(readFileSync(path), { verifiers: [keys.verifier] });
    expect(report.ok).toBe(true);
    expect(report.latest?.size).toBe(1);
    expect(report.findings.map((f) => f.kind)).toEqual(['unsigned-tail']);
  });
});
