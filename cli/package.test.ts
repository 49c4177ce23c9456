/**
 * The installable package: `npm pack` (whose prepack script bundles the CLI, cli/build.ts) and `npm install -g` of the
 * tarball into a temporary prefix give both `strongroom` and `kubectl-strongroom`, which run from the bundle alone.
 *
 * The install resolves the package's declared dependencies (the operator's; the bundle needs none of them) through
 * npm: from its cache when it has them (`--prefer-offline`), else from the registry. About 20 s.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const root = dirname(import.meta.dirname);
const work = mkdtempSync(join(tmpdir(), 'strongroom-pack-'));
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

// npm and the installed commands run with the project's Node.js 24 first on PATH (`#!/usr/bin/env node`).
const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };

function run(
  command: string,
  args: string[],
  cwd = root,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

it('npm pack + npm install -g give strongroom and kubectl-strongroom', { timeout: 180_000 }, async () => {
  const pack = await run('npm', ['pack', '--pack-destination', work, '--json']);
  expect(pack.code, pack.stderr).toBe(0);
  const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as {
    filename: string;
    files: { path: string }[];
  }[];
  expect(info?.files.map((f) => f.path).sort()).toEqual([
    'README.md',
    'dist/cli/segment-worker.js',
    'dist/cli/strongroom.mjs',
    'package.json',
  ]);
  const tarball = join(work, info?.filename ?? '');
  const prefix = join(work, 'prefix');
  const install = await run('npm', [
    'install',
    '-g',
    tarball,
    '--prefix',
    prefix,
    '--prefer-offline',
    '--no-audit',
    '--no-fund',
    '--loglevel=error',
  ]);
  expect(install.code, install.stderr).toBe(0);
  expect(readdirSync(join(prefix, 'bin')).sort()).toEqual(['kubectl-strongroom', 'strongroom']);

  const plain = await run(join(prefix, 'bin', 'strongroom'), ['--help'], work);
  expect(plain.code, plain.stderr).toBe(0);
  expect(plain.stdout).toMatch(/^Usage: strongroom \[options\] \[command\]/);
  expect(plain.stdout).toMatch(/get\s.*list artifacts, grants/);
  const plugin = await run(join(prefix, 'bin', 'kubectl-strongroom'), ['--help'], work);
  expect(plugin.code, plugin.stderr).toBe(0);
  expect(plugin.stdout).toMatch(/^Usage: kubectl strongroom \[options\] \[command\]/);

  // It really runs from the bundle: a usage error, and keygen (the envelope's HPKE code).
  const bad = await run(join(prefix, 'bin', 'strongroom'), ['frobnicate'], work);
  expect(bad.code).toBe(2);
  const keygen = await run(join(prefix, 'bin', 'strongroom'), ['keygen', '-o', join(work, 'id.key')], work);
  expect(keygen.code, keygen.stderr).toBe(0);
});
