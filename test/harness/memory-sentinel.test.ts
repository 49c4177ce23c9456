/**
 * The memory sentinel on a real runaway process: it interrupts a synchronous allocation loop, reports where the main
 * thread was and how its memory splits, and SIGKILLs the process; a process below the limit is left alone.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const nodeBin = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const runaway = fileURLToPath(new URL('./testdata/runaway.ts', import.meta.url));
const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function run(
  limitMiB: number,
  mode: 'retain' | 'idle',
): Promise<{ code: number | null; signal: string | null; stderr: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-test-'));
  dirs.push(dir);
  return new Promise((resolve, reject) => {
    const child = spawn(nodeBin, [runaway, String(limitMiB), dir, mode], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 60_000,
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({ code, signal, stderr, dir });
    });
  });
}

describe('memory sentinel', () => {
  it('stops a worker past its limit and reports the test, the stack and the memory breakdown', async () => {
    const { signal, stderr, dir } = await run(256, 'retain');
    expect(signal).toBe('SIGKILL');
    const reports = readdirSync(dir);
    expect(reports).toHaveLength(1);
    const report = readFileSync(join(dir, reports[0] ?? ''), 'utf8');
    expect(report).toMatch(/resident set \d+ MiB passed the limit 256 MiB/);
    expect(report).toContain('file: runaway.ts');
    expect(report).toContain('test: keeps every buffer it makes');
    expect(report).toMatch(/at retainForever \(file:\/\/.*runaway\.ts:\d+:\d+\)/);
    const breakdown = /main thread: (\{.*\})/.exec(report)?.[1];
    const parsed = JSON.parse(breakdown ?? 'null') as { memory: { arrayBuffers: number } };
    expect(parsed.memory.arrayBuffers).toBeGreaterThan(128 * 2 ** 20);
    expect(stderr).toContain('[memory-sentinel] killing this test worker');
  });

  it('leaves a process below the limit alone', async () => {
    const { code, signal, dir } = await run(256, 'idle');
    expect(signal).toBeNull();
    expect(code).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
  });
});
