import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog } from './log.ts';
import { makeKeys, ORIGIN } from './testdata/fixtures.ts';
import { verifyLog } from './verify.ts';

const dir = mkdtempSync(join(tmpdir(), 'audit-crash-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const WRITER = join(import.meta.dirname, 'testdata', 'crash-writer.ts');

/**
 * Runs a child writer until it has acknowledged at least `killAfter` appends, then SIGKILLs it while its
 * appenders are still mid-flight. Returns every (seq, id) the child acknowledged.
 */
function runAndKill(
  path: string,
  signerKey: string,
  round: number,
  killAfter: number,
): Promise<Map<number, string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, path, signerKey, ORIGIN, String(round), '8'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Map<number, string>();
    let buffer = '';
    let stderr = '';
    let killed = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const m = /^ack (\d+) (\S+)$/.exec(line);
        if (m !== null) acked.set(Number(m[1]), m[2] as string);
      }
      if (!killed && acked.size >= killAfter) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      if (signal !== 'SIGKILL')
        reject(new Error(`the writer exited on its own (${String(signal)}): ${stderr}`));
      else resolve(acked);
    });
  });
}

describe('crash recovery', () => {
  it('loses no acknowledged entry across repeated SIGKILLs mid-append, and the log still verifies', async () => {
    const keys = makeKeys();
    const path = join(dir, 'crash.log');
    const allAcked = new Map<number, string>();
    const rounds = 6;
    for (let round = 0; round < rounds; round++) {
      const acked = await runAndKill(path, keys.signerKey, round, 150 + round * 37);
      expect(acked.size).toBeGreaterThanOrEqual(150);
      for (const [seq, id] of acked) allAcked.set(seq, id);
      if (round === 2) {
        // A crash between write() and its completion can leave half a line: simulate one.
        appendFileSync(path, '{"event":{"actor":"bob","grant":{"name":"g","names');
      }
    }
    // Reopen as the writer does after a restart: it repairs a torn tail and signs what it found.
    const log = await AuditLog.open({ path, origin: ORIGIN, signer: keys.signer, heartbeatIntervalMs: 0 });
    await log.close();
    const bytes = readFileSync(path);
    const report = verifyLog(bytes, { verifiers: [keys.verifier] });
    expect(report.findings.filter((f) => f.severity === 'error')).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.latest?.size).toBe(report.entries);
    // Every acknowledged entry is present, at its seq, with the content the child wrote.
    const lines = bytes.toString('utf8').split('\n');
    const bySeq = new Map<number, string>();
    for (const line of lines) {
      const m = /"seq":(\d+),/.exec(line);
      if (m !== null && line.startsWith('{"event"')) bySeq.set(Number(m[1]), line);
    }
    for (const [seq, id] of allAcked) {
      expect(bySeq.get(seq), `seq ${seq}`).toContain(`"uid":"${id}"`);
    }
    // The writer recorded each restart, and the one torn tail it cut off.
    const starts = lines.filter((l) => l.includes('"type":"writer-started"'));
    expect(starts).toHaveLength(rounds + 1);
    expect(starts.filter((l) => !l.includes('"repairedBytes":0'))).toHaveLength(1);
  }, 60_000);
});
