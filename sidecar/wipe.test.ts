import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { wipeDirectory } from './wipe.ts';

let root: string;
beforeEach(async () => {
  root = await mkdtemp('/dev/shm/strongroom-wipe-test-');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('wipeDirectory (on tmpfs)', () => {
  it('removes every file and subdirectory, read-only or not, and keeps the directory itself', async () => {
    await mkdir(join(root, 'a', 'b'), { recursive: true });
    await writeFile(join(root, 'top.bin'), randomBytes(3 * 1024 * 1024 + 17));
    await writeFile(join(root, 'a', 'b', 'deep.txt'), 'weights');
    await writeFile(join(root, 'empty'), '');
    await chmod(join(root, 'top.bin'), 0o444);
    await chmod(join(root, 'a', 'b', 'deep.txt'), 0o444);
    await chmod(join(root, 'a', 'b'), 0o555);
    await chmod(join(root, 'a'), 0o555);
    await symlink('/etc/hostname', join(root, 'link'));
    const report = await wipeDirectory(root);
    expect(await readdir(root)).toEqual([]);
    expect(report).toEqual({ files: 3, bytes: 3 * 1024 * 1024 + 17 + 7, directories: 2 });
    // The symlink was unlinked, not followed.
    expect((await readFile('/etc/hostname', 'utf8')).length).toBeGreaterThan(0);
  });

  it('overwrites the content with zeros: a reader holding the file open sees zeros afterwards', async () => {
    const secret = randomBytes(2 * 1024 * 1024);
    await writeFile(join(root, 'model.bin'), secret);
    const reader = await open(join(root, 'model.bin'), 'r');
    try {
      await wipeDirectory(root);
      const after = Buffer.alloc(secret.length);
      const { bytesRead } = await reader.read(after, 0, after.length, 0);
      expect(bytesRead).toBe(secret.length);
      expect(after.equals(Buffer.alloc(secret.length))).toBe(true);
    } finally {
      await reader.close();
    }
    expect(await readdir(root)).toEqual([]);
  });

  it('is a no-op on an empty or missing directory, and refuses a file', async () => {
    expect(await wipeDirectory(root)).toEqual({ files: 0, bytes: 0, directories: 0 });
    expect(await wipeDirectory(join(root, 'missing'))).toEqual({ files: 0, bytes: 0, directories: 0 });
    await writeFile(join(root, 'f'), 'x');
    await expect(wipeDirectory(join(root, 'f'))).rejects.toThrow(/could not wipe 1 entry/);
  });

  it('wipes many files (more than one batch of open descriptors)', async () => {
    await Promise.all(
      Array.from({ length: 600 }, (_, i) => writeFile(join(root, `f${String(i)}`), randomBytes(100))),
    );
    const report = await wipeDirectory(root);
    expect(report.files).toBe(600);
    expect(await readdir(root)).toEqual([]);
  });
});
