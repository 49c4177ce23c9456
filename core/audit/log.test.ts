import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import winston from 'winston';
import { Writable } from 'node:stream';
import { AuditError } from './errors.ts';
import { AuditLog, withAuditedRelease, type AuditMetrics } from './log.ts';
import {
  AUDIT_KEY,
  makeKeys,
  ORIGIN,
  releaseEvent,
  TOKEN,
  WRAPPED_KEY,
  type Keys,
} from './testdata/fixtures.ts';
import { verifyLog } from './verify.ts';
import type { KeyReleaseEvent } from './event.ts';

let dir: string;
let keys: Keys;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'audit-log-'));
  keys = makeKeys();
});
afterEach(() => {
  vi.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
});

function counting(): AuditMetrics & { appends: number[]; batches: number[]; failures: [string, string][] } {
  const m = {
    appends: [] as number[],
    batches: [] as number[],
    failures: [] as [string, string][],
    onAppend(info: { seq: number; batchSize: number }) {
      m.appends.push(info.seq);
      m.batches.push(info.batchSize);
    },
    onFailure(err: AuditError, stage: 'append' | 'export') {
      m.failures.push([err.kind, stage]);
    },
  };
  return m;
}

const openLog = (extra: Partial<Parameters<typeof AuditLog.open>[0]> = {}) =>
  AuditLog.open({
    path: join(dir, 'a.log'),
    origin: ORIGIN,
    signer: keys.signer,
    heartbeatIntervalMs: 0,
    ...extra,
  });

describe('AuditLog', () => {
  it('acknowledges appends in order with receipts, and the file verifies', async () => {
    const metrics = counting();
    const log = await openLog({ metrics });
    const receipts = await Promise.all(Array.from({ length: 50 }, (_, i) => log.append(releaseEvent(i))));
    expect(receipts.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    await log.close();
    const report = verifyLog(readFileSync(join(dir, 'a.log')), { verifiers: [keys.verifier] });
    expect(report.findings).toEqual([]);
    expect(report.entries).toBe(51);
    expect(report.tree.leaf(7).toString('hex')).toBe(receipts[6]?.leafHash);
    expect(metrics.appends).toHaveLength(51); // writer-started + 50
    expect(metrics.failures).toEqual([]);
  });

  it('group-commits: concurrent appends share one fdatasync', async () => {
    const metrics = counting();
    const log = await openLog({ metrics });
    const fh = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(fh) as { datasync: () => Promise<void> };
    await fh.close();
    const syncs = vi.spyOn(proto, 'datasync');
    await Promise.all(Array.from({ length: 200 }, (_, i) => log.append(releaseEvent(i))));
    // The first append syncs alone; the 199 queued behind it go out together.
    expect(syncs.mock.calls.length).toBeLessThanOrEqual(3);
    expect(Math.max(...metrics.batches)).toBeGreaterThanOrEqual(100);
    await log.close();
  });

  it('resolves an append only after its bytes are synced', async () => {
    const log = await openLog();
    const fh = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(fh) as { datasync: () => Promise<void> };
    await fh.close();
    const original = proto.datasync;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    vi.spyOn(proto, 'datasync').mockImplementation(async function (this: unknown) {
      await gate;
      return original.call(this);
    });
    let done = false;
    const p = log.append(releaseEvent(1)).then(() => {
      done = true;
    });
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    release();
    await p;
    expect(done).toBe(true);
    await log.close();
  });

  it('fails closed: a failed sync rejects the append, counts it, blocks further appends, and release never runs', async () => {
    const metrics = counting();
    const log = await openLog({ metrics });
    const fh = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(fh) as { datasync: () => Promise<void> };
    await fh.close();
    vi.spyOn(proto, 'datasync').mockRejectedValueOnce(
      Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }),
    );
    const release = vi.fn(() => 'wrapped-key');
    const event = releaseEvent(0) as KeyReleaseEvent;
    await expect(withAuditedRelease(log, event, release)).rejects.toMatchObject({ kind: 'io' });
    expect(release).not.toHaveBeenCalled();
    await expect(withAuditedRelease(log, event, release)).rejects.toMatchObject({ kind: 'failed' });
    expect(release).not.toHaveBeenCalled();
    expect(metrics.failures).toEqual([
      ['io', 'append'],
      ['failed', 'append'],
    ]);
    const err = await log.append(event).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditError);
    expect((err as AuditError).cause).toBeInstanceOf(AuditError);
    await log.close();
    // Reopening recovers: the log verifies and accepts appends again.
    const again = await openLog();
    await expect(withAuditedRelease(again, event, release)).resolves.toBe('wrapped-key');
    expect(release).toHaveBeenCalledTimes(1);
    await again.close();
  });

  it('runs release only after a successful append, with the receipt; refuses deny decisions', async () => {
    const log = await openLog();
    const order: string[] = [];
    const result = await withAuditedRelease(log, releaseEvent(0) as KeyReleaseEvent, (receipt) => {
      order.push(`release after seq ${receipt.seq}`);
      return 42;
    });
    expect(result).toBe(42);
    expect(order).toEqual(['release after seq 1']);
    await expect(withAuditedRelease(log, releaseEvent(4) as KeyReleaseEvent, () => 1)).rejects.toMatchObject({
      kind: 'invalid',
    });
    await log.close();
    await expect(log.append(releaseEvent(0))).rejects.toMatchObject({ kind: 'closed' });
  });

  it('refuses malformed events and secrets in clear, counting each as a failure', async () => {
    const metrics = counting();
    const log = await openLog({ metrics });
    const good = releaseEvent(0) as KeyReleaseEvent;
    const bad: unknown[] = [
      { ...good, secrets: { token: TOKEN } },
      { ...good, decision: 'maybe' },
      { ...good, grant: null },
      { ...good, workload: { ...good.workload, podUid: '' } },
      { type: 'grant-deleted', grant: good.grant, actor: 'a', reason: 'r' },
      { type: 'heartbeat', intervalMs: 0 },
      { ...good, reason: 1.5 },
    ];
    for (const e of bad) {
      await expect(log.append(e as KeyReleaseEvent)).rejects.toMatchObject({ kind: 'invalid' });
    }
    expect(metrics.failures).toHaveLength(bad.length);
    expect(log.size).toBe(1);
    // A refused event does not poison the log.
    await expect(log.append(good)).resolves.toMatchObject({ seq: 1 });
    await log.close();
  });

  it('repairs a torn tail on open and records it; refuses to extend a tampered log', async () => {
    const path = join(dir, 'a.log');
    const log = await openLog();
    await log.append(releaseEvent(0));
    await log.close();
    appendFileSync(path, '{"event":{"type":"grant-cre');
    const reopened = await openLog();
    expect(reopened.size).toBe(3);
    await reopened.close();
    const text = readFileSync(path, 'utf8');
    expect(text).not.toContain('grant-cre"');
    expect(text).toContain('"repairedBytes":27');
    expect(verifyLog(readFileSync(path), { verifiers: [keys.verifier] }).ok).toBe(true);
    writeFileSync(path, text.replace('"granted"', '"GRANTED"'));
    await expect(openLog()).rejects.toMatchObject({
      kind: 'corrupt',
      message: expect.stringContaining('edited') as string,
    });
    // Another writer's key or origin cannot extend this file.
    writeFileSync(path, text);
    await expect(openLog({ origin: 'strongroom.audit/test-cluster/replica-9' })).rejects.toMatchObject({
      kind: 'corrupt',
    });
    await expect(openLog({ signer: makeKeys().signer })).rejects.toMatchObject({ kind: 'corrupt' });
  });

  it('writes periodic checkpoints and heartbeats on its own', async () => {
    const path = join(dir, 'a.log');
    const log = await openLog({ checkpointIntervalMs: 20, heartbeatIntervalMs: 10 });
    await log.append(releaseEvent(0));
    await vi.waitFor(
      () => {
        const r = verifyLog(readFileSync(path), { verifiers: [keys.verifier] });
        expect(r.entries).toBeGreaterThanOrEqual(5);
        expect(r.latest?.size).toBeGreaterThanOrEqual(4);
      },
      { timeout: 5000, interval: 20 },
    );
    await log.close();
    expect(readFileSync(path, 'utf8')).toContain('"intervalMs":10,"type":"heartbeat"');
  });

  it('exports every durable entry through winston as a JSON line with no secret in clear', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(
          ...chunk
            .toString()
            .split('\n')
            .filter((l) => l.length > 0),
        );
        done();
      },
    });
    const logger = winston.createLogger({
      format: winston.format.json(),

      transports: [new winston.transports.Stream({ stream: sink })],
    });
    const log = await openLog({ exporter: logger });
    await log.append(releaseEvent(0));
    await log.append({
      type: 'grant-revoked',
      grant: { namespace: 'n', name: 'g', uid: 'u', resourceVersion: '9' },
      actor: 'carol',
      reason: 'expired',
    });
    await log.close();
    expect(lines).toHaveLength(3);
    const parsed = lines.map(
      (l) =>
        JSON.parse(l) as { message: string; audit: { seq: number; origin: string; event: KeyReleaseEvent } },
    );
    expect(parsed.map((p) => p.audit.seq)).toEqual([0, 1, 2]);
    expect(parsed[1]?.audit.origin).toBe(ORIGIN);
    expect(parsed[1]?.audit.event.secrets.token).toBe(AUDIT_KEY.redact(TOKEN));
    expect(parsed[1]?.audit.event.workload.podUid).toBe('pod-0');
    const all = lines.join('\n') + readFileSync(join(dir, 'a.log'), 'utf8');
    for (const secret of [
      TOKEN,
      WRAPPED_KEY,
      'secret-token-payload',
      Buffer.alloc(32, 9).toString('base64'),
    ]) {
      expect(all).not.toContain(secret);
    }
    expect(JSON.stringify({ k: AUDIT_KEY })).toBe('{"k":"[audit key]"}');
  });

  it('an exporter failure is counted but does not fail the durable append', async () => {
    const metrics = counting();
    const log = await openLog({
      metrics,
      exporter: {
        info: () => {
          throw new Error('SIEM down');
        },
      },
    });
    await expect(log.append(releaseEvent(0))).resolves.toMatchObject({ seq: 1 });
    expect(metrics.failures).toEqual([
      ['io', 'export'],
      ['io', 'export'],
    ]);
    await log.close();
  });
});

describe('AuditLog observers', () => {
  it('onCheckpoint gets every durable signed note, in order, each verifying against the file', async () => {
    const path = join(dir, 'a.log');
    const notes: { note: string; fileHasIt: boolean }[] = [];
    const log = await openLog({
      observers: {
        // Called after the sync: the note is already in the file when the observer sees it.
        onCheckpoint: (note) =>
          notes.push({ note, fileHasIt: readFileSync(path, 'utf8').includes(JSON.stringify(note)) }),
      },
      checkpointIntervalMs: 1e12,
    });
    expect(notes).toHaveLength(1); // the checkpoint of open
    await log.append(releaseEvent(0));
    const second = await log.checkpoint();
    await log.checkpoint(); // the tree did not grow: no new note, no new call
    await log.append(releaseEvent(1));
    await log.close(); // the final checkpoint
    expect(notes.map((n) => n.fileHasIt)).toEqual([true, true, true]);
    expect(notes[1]?.note).toBe(second);
    expect(notes.map((n) => n.note.split('\n')[1])).toEqual(['1', '2', '3']);
    const report = verifyLog(readFileSync(path), {
      verifiers: [keys.verifier],
      trustedCheckpoint: notes[1]?.note ?? '',
    });
    expect(report.ok).toBe(true);
    expect(report.latest?.note).toBe(notes[2]?.note);
  });

  it('onAppended gets every durable entry once, in seq order, with what the file holds', async () => {
    const seen: { seq: number; type: string; time: string; origin: string }[] = [];
    const log = await openLog({
      observers: {
        onAppended: (e) => seen.push({ seq: e.seq, type: e.event.type, time: e.time, origin: e.origin }),
      },
    });
    // Concurrent appends are group-committed; the observer still sees them one by one in seq order.
    const receipts = await Promise.all(Array.from({ length: 40 }, (_, i) => log.append(releaseEvent(i))));
    await log.close();
    expect(seen.map((e) => e.seq)).toEqual(Array.from({ length: 41 }, (_, i) => i));
    expect(seen[0]?.type).toBe('writer-started');
    expect(seen.slice(1).every((e) => e.type === 'key-release' && e.origin === ORIGIN)).toBe(true);
    expect(seen.slice(1).map((e) => e.time)).toEqual(receipts.map((r) => r.time));
  });

  it('an observer sees nothing that is not durable: a failed sync calls neither observer', async () => {
    const appended: number[] = [];
    const checkpoints: string[] = [];
    const log = await openLog({
      observers: { onAppended: (e) => appended.push(e.seq), onCheckpoint: (n) => checkpoints.push(n) },
    });
    const fh = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(fh) as { datasync: () => Promise<void> };
    await fh.close();
    vi.spyOn(proto, 'datasync').mockRejectedValueOnce(Object.assign(new Error('EIO'), { code: 'EIO' }));
    await expect(log.append(releaseEvent(0))).rejects.toMatchObject({ kind: 'io' });
    await expect(log.checkpoint()).rejects.toMatchObject({ kind: 'failed' });
    expect(appended).toEqual([0]);
    expect(checkpoints).toHaveLength(1);
    await log.close();
  });

  it('a throwing observer never fails an append or a checkpoint; each throw is an export failure', async () => {
    const metrics = counting();
    const after: number[] = [];
    const log = await openLog({
      metrics,
      checkpointIntervalMs: 1e12,
      observers: {
        onAppended: (e) => {
          if (e.seq === 1) throw new Error('detector crashed');
          after.push(e.seq);
        },
        onCheckpoint: () => {
          throw new Error('publisher crashed');
        },
      },
    });
    await expect(log.append(releaseEvent(0))).resolves.toMatchObject({ seq: 1 });
    await expect(log.append(releaseEvent(1))).resolves.toMatchObject({ seq: 2 });
    await expect(log.checkpoint()).resolves.toContain('\n3\n');
    await log.close();
    // open's checkpoint and the explicit one threw; seq 1 threw; the later entries were still observed.
    expect(after).toEqual([0, 2]);
    expect(metrics.failures).toEqual([
      ['io', 'export'],
      ['io', 'export'],
      ['io', 'export'],
    ]);
    expect(verifyLog(readFileSync(join(dir, 'a.log')), { verifiers: [keys.verifier] }).findings).toEqual([]);
  });
});

describe('AuditLog.open with a trusted (published) checkpoint', () => {
  /** A log with checkpoints at sizes 1 (open), 4, 7 and 8 (close); returns the notes in order. */
  async function written(): Promise<string[]> {
    const notes: string[] = [];
    const log = await openLog({
      checkpointIntervalMs: 1e12,
      observers: { onCheckpoint: (n) => notes.push(n) },
    });
    for (let i = 0; i < 6; i++) {
      await log.append(releaseEvent(i));
      if (i % 3 === 2) await log.checkpoint();
    }
    await log.append(releaseEvent(6));
    await log.close();
    expect(notes.map((n) => n.split('\n')[1])).toEqual(['1', '4', '7', '8']);
    return notes;
  }

  it('opens a log that extends it, and goes on appending', async () => {
    const notes = await written();
    const log = await openLog({ trustedCheckpoint: notes[1] as string });
    expect(log.size).toBe(9);
    await log.close();
    const again = await openLog({ trustedCheckpoint: notes.at(-1) as string });
    await again.close();
  });

  it('refuses a log cut back to an earlier checkpoint (a valid prefix), and leaves the file as it found it', async () => {
    const path = join(dir, 'a.log');
    const notes = await written();
    const lines = readFileSync(path, 'utf8').split('\n');
    const cut = lines.findIndex((l) => l.startsWith('{"checkpoint"') && l.includes('\\n4\\n'));
    const prefix = lines.slice(0, cut + 1).join('\n') + '\n';
    writeFileSync(path, prefix);
    // Alone, the prefix verifies with the pinned key: nothing in the file betrays the rollback.
    expect(verifyLog(readFileSync(path), { verifiers: [keys.verifier] }).ok).toBe(true);
    const err = await openLog({ trustedCheckpoint: notes.at(-1) as string }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditError);
    expect(err).toMatchObject({ kind: 'rollback' });
    expect((err as AuditError).message).toMatch(/does not extend the published checkpoint \(size 8\)/);
    expect((err as AuditError).message).toMatch(
      /ERROR rollback entry=4: the trusted checkpoint signs 8 entries/,
    );
    expect(readFileSync(path, 'utf8')).toBe(prefix);
    // Without the published checkpoint the writer cannot tell, and extends it (what this option prevents).
    const blind = await openLog();
    await blind.close();
  });

  it('refuses an empty (deleted and recreated) log', async () => {
    const path = join(dir, 'a.log');
    const notes = await written();
    writeFileSync(path, '');
    await expect(openLog({ trustedCheckpoint: notes[0] as string })).rejects.toMatchObject({
      kind: 'rollback',
      message: expect.stringContaining('is empty but a checkpoint of size 1 was published') as string,
    });
    expect(readFileSync(path, 'utf8')).toBe('');
  });

  it('refuses a history rewritten under the same key (inconsistent), and a checkpoint of another key', async () => {
    const path = join(dir, 'a.log');
    const notes = await written();
    const lines = readFileSync(path, 'utf8').split('\n');
    // Rewrite entry 2 and re-sign everything with the writer's key: the file alone verifies.
    const rewritten = await (async () => {
      writeFileSync(path, '');
      const log = await openLog({ checkpointIntervalMs: 1e12 });
      for (let i = 0; i < 6; i++) await log.append(releaseEvent(i === 1 ? 4 : i));
      await log.append(releaseEvent(6));
      await log.close();
      return readFileSync(path, 'utf8');
    })();
    expect(rewritten).not.toBe(lines.join('\n'));
    expect(verifyLog(readFileSync(path), { verifiers: [keys.verifier] }).ok).toBe(true);
    await expect(openLog({ trustedCheckpoint: notes[2] as string })).rejects.toMatchObject({
      kind: 'rollback',
    });
    const stranger = makeKeys();
    writeFileSync(path, lines.join('\n'));
    const foreign = await (async () => {
      const other = join(dir, 'b.log');
      const log = await AuditLog.open({
        path: other,
        origin: ORIGIN,
        signer: stranger.signer,
        heartbeatIntervalMs: 0,
      });
      await log.close();
      return log.latestCheckpoint;
    })();
    await expect(openLog({ trustedCheckpoint: foreign })).rejects.toMatchObject({
      kind: 'rollback',
      message: expect.stringContaining('untrusted-signature') as string,
    });
  });
});
