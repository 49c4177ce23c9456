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
