import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV } from '../core/injection/contract.ts';
import { testCa } from './testdata/ca.ts';

function run(env: Record<string, string>): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'main.ts')], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.once('exit', (code) => {
      resolve({ code, stderr, stdout });
    });
  });
}

describe('node sidecar/main.ts', () => {
  it('exits 2 with a JSON error naming the missing variable', async () => {
    const { code, stderr } = await run({ [ENV.brokerAddress]: '127.0.0.1:9444' });
    expect(code).toBe(2);
    const line = JSON.parse(stderr.trim().split('\n')[0] ?? '{}') as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'error', variable: ENV.attestAddress });
    expect(String(line['message'])).toContain(`${ENV.attestAddress}: is not set`);
  });

  it('exits 2 for a malformed plan, naming STRONGROOM_PLAN and the field', async () => {
    const { code, stderr } = await run({
      [ENV.brokerAddress]: '127.0.0.1:9444',
      [ENV.attestAddress]: '127.0.0.1:9443',
      [ENV.caBundle]: testCa(),
      [ENV.tokenPath]: '/var/run/strongroom/token/token',
      [ENV.plan]: JSON.stringify({ version: 'v1', artifacts: [{ namespace: 'ml' }] }),
    });
    expect(code).toBe(2);
    expect(stderr).toContain(`${ENV.plan}: artifacts[0].name is missing or malformed`);
  });
});
