/** The operator process refuses bad configuration before touching any cluster: exit 2 and a message naming it. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const main = join(import.meta.dirname, '..', '..', 'operator', 'main.ts');
const run = (...args: string[]) =>
  spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 30_000 });

describe('operator/main.ts configuration errors', () => {
  it.each([
    [['--workers', '0', '--namespace', 'x'], /--workers="0" is invalid/],
    [['--namespace', 'Not_A_Label'], /namespace/i],
    [
      ['--namespace', 'x', '--kek-rotation', 'secret=3d'],
      /--kek-rotation: .*unknown classification "secret"/,
    ],
    [['--namespace', 'x', '--kms', 'pkcs11'], /pkcs11/],
    [['--namespace', 'x', '--no-such-flag'], /no-such-flag/],
  ])('%j exits 2 with a specific message', (args, message) => {
    const r = run(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });

  it('--help prints the flags and exits 0', () => {
    const r = run('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('--kek-rotation');
  });
});
