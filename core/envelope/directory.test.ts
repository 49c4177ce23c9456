import { randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encryptBytes } from './bytes.ts';
import { decryptDirectory, encryptDirectory, listTree, readManifest } from './directory.ts';
import { EnvelopeError } from './errors.ts';
import { SegmentPool } from './pool.ts';

const dek = randomBytes(32);
const context = { artifactUid: 'uid-9', artifactName: 'tokenizer', version: 'v1' };
const options = { dek, keyId: 'uid-9/v1', context };
let root: string;
let source: string;
let sealed: string;

function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else out[p] = readFileSync(join(dir, p)).toString('hex');
    }
  };
  walk('');
  return out;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'strongroom-dir-'));
  source = join(root, 'src');
  mkdirSync(join(source, 'weights', 'shards'), { recursive: true });
  writeFileSync(join(source, 'config.json'), '{"layers": 50}');
  writeFileSync(join(source, 'weights', 'shards', 'secret-customer-name.bin'), randomBytes(70_000));
  writeFileSync(join(source, 'empty'), '');
  sealed = join(root, 'sealed');
  await encryptDirectory(source, sealed, options);
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('directory artifacts', () => {
  it('round-trip byte for byte, with file names hidden and the manifest listing paths, sizes and digests', async () => {
    const names = readdirSync(join(sealed, 'objects'));
    expect(names.sort()).toEqual(['000000.sre', '000001.sre', '000002.sre']);
    const everything =
      readdirSync(sealed, { recursive: true }).join(' ') +
      readFileSync(join(sealed, 'manifest.sre')).toString('latin1');
    expect(everything).not.toContain('secret-customer-name');
    const manifest = await readManifest(sealed, options);
    expect(manifest.files.map((f) => [f.path, f.size])).toEqual([
      ['config.json', 14],
      ['empty', 0],
      ['weights/shards/secret-customer-name.bin', 70_000],
    ]);
    expect(manifest.files[0]?.sha256).toBe(
      'sha256:' + (await import('node:crypto')).createHash('sha256').update('{"layers": 50}').digest('hex'),
    );
    const out = join(root, 'out-ok');
    await decryptDirectory(sealed, out, options);
    expect(tree(out)).toEqual(tree(source));
  });

  it('detects objects swapped between paths, and leaves no partial tree', async () => {
    const copy = join(root, 'swapped');
    await encryptDirectory(source, copy, options);
    renameSync(join(copy, 'objects', '000000.sre'), join(copy, 'objects', 'tmp'));
    renameSync(join(copy, 'objects', '000001.sre'), join(copy, 'objects', '000000.sre'));
    renameSync(join(copy, 'objects', 'tmp'), join(copy, 'objects', '000001.sre'));
    const out = join(root, 'out-swapped');
    const error = await decryptDirectory(copy, out, options).catch((e: unknown) => e);
    expect((error as EnvelopeError).kind).toBe('wrong-context');
    expect(readdirSync(root).filter((n) => n.includes('out-swapped'))).toEqual([]);
  });

  it('with checkDigests, refuses a manifest whose SHA-256 lies about a file (sealed by the DEK holder), leaving no tree', async () => {
    // The DEK holder pairs the real weights with another digest: the AEAD cannot tell, the digest check can.
    const copy = join(root, 'lying');
    await encryptDirectory(source, copy, options);
    const manifest = await readManifest(copy, options);
    const lie = {
      ...manifest,
      files: manifest.files.map((f) =>
        f.path.endsWith('.bin') ? { ...f, sha256: `sha256:${'ab'.repeat(32)}` } : f,
      ),
    };
    writeFileSync(
      join(copy, 'manifest.sre'),
      encryptBytes(Buffer.from(JSON.stringify(lie)), {
        ...options,
        context: { ...context, path: '\u0000manifest' },
      }),
    );
    // Without the check the lie goes through (the AEAD is satisfied); with it, nothing is left behind.
    const unchecked = join(root, 'out-lying-unchecked');
    await decryptDirectory(copy, unchecked, options);
    expect(tree(unchecked)).toEqual(tree(source));
    const out = join(root, 'out-lying');
    const error = await decryptDirectory(copy, out, { ...options, checkDigests: true }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EnvelopeError);
    expect((error as EnvelopeError).kind).toBe('digest');
    expect((error as Error).message).toBe(
      "weights/shards/secret-customer-name.bin: its content does not match the manifest's SHA-256",
    );
    expect(readdirSync(root).filter((n) => n.includes('out-lying') && n !== 'out-lying-unchecked')).toEqual(
      [],
    );
    // An honest directory passes the check.
    const honest = join(root, 'out-honest');
    await decryptDirectory(sealed, honest, { ...options, checkDigests: true });
    expect(tree(honest)).toEqual(tree(source));
  });

  it('detects a missing or an extra object, and a manifest from another version', async () => {
    const copy = join(root, 'extra');
    await encryptDirectory(source, copy, options);
    writeFileSync(join(copy, 'objects', '000003.sre'), 'x');
    await expect(decryptDirectory(copy, join(root, 'out-extra'), options)).rejects.toThrow(
      /extra: objects\/000003.sre/,
    );
    rmSync(join(copy, 'objects', '000003.sre'));
    rmSync(join(copy, 'objects', '000002.sre'));
    await expect(decryptDirectory(copy, join(root, 'out-missing'), options)).rejects.toThrow(
      /missing: objects\/000002.sre/,
    );
    const error = await decryptDirectory(sealed, join(root, 'out-v2'), {
      ...options,
      context: { ...context, version: 'v2' },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EnvelopeError);
    expect((error as EnvelopeError).kind).toBe('wrong-context');
  });

  it('refuses to overwrite an existing destination and to encrypt symlinks', async () => {
    await expect(encryptDirectory(source, sealed, options)).rejects.toThrow(/already exists/);
    const withLink = join(root, 'with-link');
    mkdirSync(withLink);
    (await import('node:fs')).symlinkSync('/etc/passwd', join(withLink, 'link'));
    await expect(encryptDirectory(withLink, join(root, 'sealed-link'), options)).rejects.toThrow(
      /only regular files/,
    );
  });

  it('leaves out excluded files and whole excluded directories, in the order listTree gives', async () => {
    const src = join(root, 'src-exclude');
    mkdirSync(join(src, 'logs', 'deep'), { recursive: true });
    mkdirSync(join(src, 'weights'));
    writeFileSync(join(src, 'a.bin'), 'a');
    writeFileSync(join(src, '.strongroom-complete'), 'marker');
    writeFileSync(join(src, 'logs', 'deep', 'x'), 'log');
    writeFileSync(join(src, 'weights', 'w'), 'w');
    writeFileSync(join(src, 'weights', 'skip'), 's');
    const exclude = ['.strongroom-complete', 'logs', 'weights/skip', 'not/there'];
    expect(await listTree(src, exclude)).toEqual(['a.bin', 'weights/w']);
    expect(await listTree(src)).toEqual([
      '.strongroom-complete',
      'a.bin',
      'logs/deep/x',
      'weights/skip',
      'weights/w',
    ]);

    const out = join(root, 'sealed-exclude');
    const manifest = await encryptDirectory(src, out, { ...options, exclude });
    expect(manifest.files.map((f) => f.path)).toEqual(['a.bin', 'weights/w']);
    expect(readdirSync(join(out, 'objects')).sort()).toEqual(['000000.sre', '000001.sre']);
    await decryptDirectory(out, join(root, 'plain-exclude'), options);
    expect(tree(join(root, 'plain-exclude'))).toEqual({
      'a.bin': Buffer.from('a').toString('hex'),
      'weights/w': Buffer.from('w').toString('hex'),
    });
  });

  it('keeps objects 0600 and directories 0700 by default, and applies the modes it is given to the whole tree', () => {
    const mode = (p: string) => statSync(p).mode & 0o777;
    expect(mode(sealed)).toBe(0o700);
    expect(mode(join(sealed, 'objects'))).toBe(0o700);
    for (const o of readdirSync(join(sealed, 'objects')))
      expect(mode(join(sealed, 'objects', o))).toBe(0o600);
    return (async () => {
      const out = join(root, 'sealed-modes');
      await encryptDirectory(source, out, { ...options, modes: { file: 0o640, dir: 0o750 } });
      expect(mode(out)).toBe(0o750);
      expect(mode(join(out, 'objects'))).toBe(0o750);
      expect(mode(join(out, 'manifest.sre'))).toBe(0o640);
      const objects = readdirSync(join(out, 'objects'));
      expect(objects).toHaveLength(3);
      for (const o of objects) expect(mode(join(out, 'objects', o))).toBe(0o640);
    })();
  });

  it('durable output round-trips and leaves no staging directory beside the target', async () => {
    const parent = join(root, 'durable');
    mkdirSync(parent);
    const out = join(parent, 'v1');
    await encryptDirectory(source, out, { ...options, durable: true, modes: { file: 0o644, dir: 0o755 } });
    expect(readdirSync(parent)).toEqual(['v1']);
    await decryptDirectory(out, join(root, 'plain-durable'), options);
    expect(tree(join(root, 'plain-durable'))).toEqual(tree(source));
  });

  it('a failure after the staging directory was made removes it and leaves no target', async () => {
    const parent = join(root, 'failing');
    mkdirSync(parent);
    // A key id longer than a header can hold fails the first object, inside the staging directory.
    const error = await encryptDirectory(source, join(parent, 'v1'), {
      ...options,
      keyId: 'k'.repeat(100_000),
      durable: true,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(readdirSync(parent)).toEqual([]);
    // The same call with a valid key id succeeds: nothing was left in its way.
    await encryptDirectory(source, join(parent, 'v1'), { ...options, durable: true });
    expect(readdirSync(parent)).toEqual(['v1']);
  });

  it('listTree refuses symlinks like encryptDirectory does', async () => {
    const withLink = join(root, 'list-link');
    mkdirSync(withLink);
    symlinkSync('/etc/passwd', join(withLink, 'link'));
    const error = await listTree(withLink).catch((e: unknown) => e);
    expect((error as EnvelopeError).kind).toBe('invalid');
    expect((error as EnvelopeError).message).toMatch(/link: only regular files/);
    // Excluding it is enough.
    expect(await listTree(withLink, ['link'])).toEqual([]);
  });
});

describe('checkDigests through a pool', () => {
  let pool: SegmentPool;
  beforeAll(() => {
    pool = new SegmentPool(2);
  });
  afterAll(async () => {
    await pool.close();
  });

  /** A tree of similar files (decrypted one file per worker) or one dominated by a big file (segments split). */
  function makeTree(name: string, sizes: readonly number[]): string {
    const dir = join(root, name);
    mkdirSync(join(dir, 'shards'), { recursive: true });
    sizes.forEach((size, i) => {
      writeFileSync(join(dir, 'shards', `part-${String(i)}`), randomBytes(size));
    });
    writeFileSync(join(dir, 'config.json'), '{}');
    return dir;
  }

  async function lie(sealedDir: string, path: string): Promise<void> {
    const manifest = await readManifest(sealedDir, options);
    const files = manifest.files.map((f) =>
      f.path === path ? { ...f, sha256: `sha256:${'cd'.repeat(32)}` } : f,
    );
    writeFileSync(
      join(sealedDir, 'manifest.sre'),
      encryptBytes(Buffer.from(JSON.stringify({ ...manifest, files })), {
        ...options,
        context: { ...context, path: '\u0000manifest' },
      }),
    );
  }

  it.each([
    ['similar files', [3_000_000, 2_500_000, 2_900_000, 1_000_000]],
    ['one big file', [9_000_000, 1000]],
  ])(
    '%s: round-trip, refuse a lying manifest and a flipped byte, leave nothing behind',
    async (name, sizes) => {
      const src = makeTree(`pool-${name}`, sizes);
      const sealedDir = join(root, `pool-${name}-sealed`);
      await encryptDirectory(src, sealedDir, { ...options, pool });
      const out = join(root, `pool-${name}-out`);
      await decryptDirectory(sealedDir, out, { ...options, pool, checkDigests: true });
      expect(tree(out)).toEqual(tree(src));

      await lie(sealedDir, 'shards/part-1');
      const lied = await decryptDirectory(sealedDir, join(root, `pool-${name}-lied`), {
        ...options,
        pool,
        checkDigests: true,
      }).catch((e: unknown) => e);
      expect((lied as EnvelopeError).kind).toBe('digest');
      expect((lied as Error).message).toMatch(/^shards\/part-1: its content does not match/);
      expect(readdirSync(root).filter((n) => n.includes(`pool-${name}-lied`))).toEqual([]);

      const fresh = join(root, `pool-${name}-sealed2`);
      await encryptDirectory(src, fresh, { ...options, pool });
      const manifest = await readManifest(fresh, options);
      const object = join(fresh, manifest.files.find((f) => f.path === 'shards/part-0')?.object ?? '');
      const bytes = readFileSync(object);
      bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 1;
      writeFileSync(object, bytes);
      const flipped = await decryptDirectory(fresh, join(root, `pool-${name}-flipped`), {
        ...options,
        pool,
        checkDigests: true,
      }).catch((e: unknown) => e);
      expect((flipped as EnvelopeError).kind).toBe('segment');
      expect(readdirSync(root).filter((n) => n.includes(`pool-${name}-flipped`))).toEqual([]);
    },
  );
});
