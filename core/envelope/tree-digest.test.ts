import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvelopeError, encryptDirectory, newDek, treeDigest, type Manifest } from './index.ts';

const SHELL_DIGEST =
  "find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 -r sha256sum -- | sha256sum";

function sh(command: string, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', command], { cwd }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command}: ${stderr}`, { cause: error }));
      else resolve(stdout);
    });
  });
}

/** What the documented coreutils pipeline prints for `dir`, as `sha256:<hex>`. */
async function coreutilsDigest(dir: string): Promise<string> {
  const out = await sh(SHELL_DIGEST, dir);
  const hex = /^([0-9a-f]{64}) {2}-\n$/.exec(out)?.[1];
  if (hex === undefined) throw new Error(`unexpected sha256sum output ${JSON.stringify(out)}`);
  return `sha256:${hex}`;
}

const hex = (text: string) => createHash('sha256').update(text).digest('hex');

let root: string;
beforeAll(async () => {
  root = await mkdtemp('/dev/shm/tree-digest-');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function manifestOf(dir: string): Promise<Manifest> {
  const dek = newDek();
  const out = join(root, `enc-${randomBytes(4).toString('hex')}`);
  try {
    return await encryptDirectory(dir, out, {
      dek,
      keyId: 'uid/v1',
      context: { artifactUid: 'uid', artifactName: 'a', version: 'v1' },
    });
  } finally {
    dek.fill(0);
  }
}

describe('treeDigest', () => {
  it('equals the coreutils pipeline on a real tree with nested directories, spaces, unicode and odd names', async () => {
    const dir = join(root, 'tree');
    await mkdir(join(dir, 'weights', 'layer 1', 'deep'), { recursive: true });
    await mkdir(join(dir, 'Ünïcode'), { recursive: true });
    await writeFile(join(dir, 'config.json'), '{"layers": 50}\n');
    await writeFile(join(dir, 'model card.md'), '# ResNet\n');
    await writeFile(join(dir, 'weights', 'layer 1', 'w.bin'), randomBytes(70_000));
    await writeFile(join(dir, 'weights', 'layer 1', 'deep', 'b.bin'), randomBytes(10));
    await writeFile(join(dir, 'weights', 'a'), 'a');
    await writeFile(join(dir, 'weights', 'B'), 'B');
    await writeFile(join(dir, 'weights', 'a b'), 'space sorts before slash');
    await writeFile(join(dir, 'Ünïcode', 'ß.txt'), 'utf-8 bytes decide the order');
    await writeFile(join(dir, '\u{1F600}.txt'), 'astral: UTF-16 order would differ from byte order');
    await writeFile(join(dir, '\uFF21.txt'), 'fullwidth A');
    await writeFile(join(dir, '-dash'), 'looks like an option');
    await writeFile(join(dir, 'empty'), '');
    const manifest = await manifestOf(dir);
    expect(manifest.files).toHaveLength(12);
    const expected = await coreutilsDigest(dir);
    expect(treeDigest(manifest)).toBe(expected);
    // The order of the manifest does not matter.
    expect(treeDigest({ files: [...manifest.files].reverse() })).toBe(expected);
  });

  it('changes when a byte, a name or the set of files changes', async () => {
    const dir = join(root, 'small');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'sub', 'x'), 'hello');
    await writeFile(join(dir, 'y'), 'world');
    const base = treeDigest(await manifestOf(dir));
    expect(base).toBe(await coreutilsDigest(dir));

    await writeFile(join(dir, 'y'), 'worle');
    const changedByte = treeDigest(await manifestOf(dir));
    expect(changedByte).not.toBe(base);
    expect(changedByte).toBe(await coreutilsDigest(dir));

    await writeFile(join(dir, 'sub', 'z'), '');
    const added = treeDigest(await manifestOf(dir));
    expect(added).not.toBe(changedByte);
    expect(added).toBe(await coreutilsDigest(dir));
  });

  it('is SHA-256 over "<hex>  <path>\\n" lines in byte order of the path', () => {
    const files = [
      { path: 'b', object: 'objects/000000.sre', size: 1, sha256: `sha256:${hex('b')}` },
      { path: 'a/c', object: 'objects/000001.sre', size: 1, sha256: `sha256:${hex('c')}` },
      { path: 'a b', object: 'objects/000002.sre', size: 1, sha256: `sha256:${hex('d')}` },
    ];
    const lines = `${hex('d')}  a b\n${hex('c')}  a/c\n${hex('b')}  b\n`;
    expect(treeDigest({ files })).toBe(`sha256:${hex(lines)}`);
    expect(treeDigest({ files: [] })).toBe(`sha256:${hex('')}`);
  });

  it('refuses names that sha256sum would escape, duplicate paths and malformed digests', () => {
    const entry = (path: string, sha256 = `sha256:${hex(path)}`) => ({
      path,
      object: 'objects/000000.sre',
      size: 1,
      sha256,
    });
    for (const path of ['new\nline', 'back\\slash', 'carriage\rreturn']) {
      expect(() => treeDigest({ files: [entry(path)] })).toThrow(EnvelopeError);
      expect(() => treeDigest({ files: [entry(path)] })).toThrow(/cannot be part of a version/);
    }
    expect(() => treeDigest({ files: [entry('a'), entry('a')] })).toThrow(/duplicate path/);
    for (const sha256 of [hex('a'), `sha256:${hex('a').toUpperCase()}`, 'sha256:abc', `md5:${hex('a')}`, ''])
      expect(() => treeDigest({ files: [entry('a', sha256)] })).toThrow(/no sha256:<hex> digest/);
  });
});
