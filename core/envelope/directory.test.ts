import { randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptDirectory, encryptDirectory, readManifest } from './directory.ts';
import { EnvelopeError } from './errors.ts';

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
});
