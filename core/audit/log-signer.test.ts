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

  it('fails closed when signing fails: the pending appends reject, and every later one too', async () => {
    const keys = makeKeys();
    const signer = remote(keys.signer);
    const failures: [string, string][] = [];
    const log = await AuditLog.open({
      path: join(dir, 'b.log'),
      origin: ORIGIN,
      signer,
      heartbeatIntervalMs: 0,
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
    await expect(pending).rejects.toMatchObject({ kind: 'io' });
    await expect(pending).rejects.toThrow(/signing the checkpoint/);
    await expect(checkpoint).rejects.toMatchObject({ kind: 'io' });
    const cause = await pending.catch((e: unknown) => (e as Error).cause);
    expect(cause).toMatchObject({ message: 'CKR_DEVICE_REMOVED' });
    await expect(log.append(releaseEvent(2))).rejects.toMatchObject({ kind: 'failed' });
    expect(failures).toEqual([
      ['io', 'append'],
      ['failed', 'append'],
    ]);
    await log.close();
    // Nothing of the failed batch reached the file; reopened with a working signer, the log verifies and goes on.
    signer.failWith = undefined;
    const again = await AuditLog.open({
      path: join(dir, 'b.log'),
      origin: ORIGIN,
      signer,
      heartbeatIntervalMs: 0,
    });
    await again.append(releaseEvent(3));
    await again.close();
    const report = verifyLog(readFileSync(join(dir, 'b.log')), { verifiers: [keys.verifier] });
    expect(report.findings).toEqual([]);
  });

  it('a signer that answers with another key’s signature fails the log closed too', async () => {
    const keys = makeKeys();
    const impostor = makeKeys();
    const signer = remote(keys.signer);
    const log = await AuditLog.open({
      path: join(dir, 'c.log'),
      origin: ORIGIN,
      signer,
      heartbeatIntervalMs: 0,
    });
    signer.sign = (text) => Promise.resolve(impostor.signer.sign(text));
    await expect(log.append(releaseEvent(1)).then(() => log.checkpoint())).rejects.toMatchObject({
      kind: 'io',
    });
    await expect(log.append(releaseEvent(2))).rejects.toMatchObject({ kind: 'failed' });
    await log.close();
  });
});
