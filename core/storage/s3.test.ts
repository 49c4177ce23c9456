import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  StorageError,
  isCiphertextFile,
  s3Client,
  s3DirectorySource,
  uploadVersion,
  versionKeyPrefix,
} from './index.ts';

// Nothing here reaches a server (core/storage/s3.int.test.ts runs against a real one): every case fails, or
// answers, before the first request. The client points at a closed loopback port so that a request would fail.
const client = s3Client(
  { endpoint: 'http://127.0.0.1:9', region: 'us-east-1', bucket: 'models', prefix: '', forcePathStyle: true },
  { accessKeyId: 'AKIA', secretAccessKey: 'secret' },
);

describe('versionKeyPrefix', () => {
  const spec = (path: string | undefined, prefix?: string) => ({
    storage: { ...(path === undefined ? {} : { path }), s3: prefix === undefined ? {} : { prefix } },
  });

  it('is <s3.prefix>/<storage.path>/<version.path ?? version.name>/ with empty segments dropped', () => {
    expect(versionKeyPrefix(spec('llm/llama', 'team-a'), { name: 'v1' })).toBe('team-a/llm/llama/v1/');
    expect(versionKeyPrefix(spec('llm/llama', 'team-a/'), { name: 'v1' })).toBe('team-a/llm/llama/v1/');
    expect(versionKeyPrefix(spec('llm'), { name: 'v2', path: 'v2-ft/x.y' })).toBe('llm/v2-ft/x.y/');
    expect(versionKeyPrefix(spec(''), { name: 'v3' })).toBe('v3/');
    expect(versionKeyPrefix(spec(undefined, '/a//b/'), { name: 'v3' })).toBe('a/b/v3/');
    expect(versionKeyPrefix({ storage: { path: 'p' } }, { name: 'v4' })).toBe('p/v4/');
  });

  it("refuses '.' and '..' segments, odd characters and version names that are not DNS labels", () => {
    const bad: [ReturnType<typeof spec>, { name: string; path?: string }][] = [
      [spec('../up'), { name: 'v1' }],
      [spec('ok', 'a/../b'), { name: 'v1' }],
      [spec('ok', '.'), { name: 'v1' }],
      [spec('ok'), { name: 'v1', path: '..' }],
      [spec('ok'), { name: 'v1', path: 'a b' }],
      [spec('ok'), { name: 'V1' }],
      [spec('ok'), { name: '' }],
      [spec('ok'), { name: 'a/b' }],
      [spec('we?ird'), { name: 'v1' }],
    ];
    for (const [s, version] of bad)
      expect(() => versionKeyPrefix(s, version), JSON.stringify([s, version])).toThrow(StorageError);
  });
});

describe('S3 arguments refused before any request', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp('/dev/shm/strongroom-s3-unit-');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses empty credentials and region, and key prefixes not of a version', () => {
    const location = { region: 'us-east-1', bucket: 'b', prefix: '', forcePathStyle: true };
    expect(() => s3Client(location, { accessKeyId: '', secretAccessKey: 's' })).toThrow(/empty/);
    expect(() => s3Client({ ...location, region: '' }, { accessKeyId: 'a', secretAccessKey: 's' })).toThrow(
      /region/,
    );
    for (const keyPrefix of ['', '/', 'a', '/a/', 'a/../b/', 'a//', './a/'])
      expect(() => s3DirectorySource({ client, bucket: 'models', keyPrefix }), keyPrefix).toThrow(
        StorageError,
      );
  });

  it('uploads only a ciphertext version directory: manifest.sre and objects/NNNNNN.sre, each with the magic', async () => {
    const refused = async (prepare: () => Promise<void>, pattern: RegExp) => {
      await rm(join(dir, 'v'), { recursive: true, force: true });
      await mkdir(join(dir, 'v', 'objects'), { recursive: true });
      await prepare();
      const error = await uploadVersion({
        client,
        bucket: 'models',
        keyPrefix: 'a/v1/',
        directory: join(dir, 'v'),
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StorageError);
      expect((error as StorageError).kind).toBe('invalid');
      expect((error as Error).message).toMatch(pattern);
    };
    const magic = 'SRENVLP\u0000rest';
    await refused(() => Promise.resolve(), /no manifest.sre/);
    await refused(
      () => writeFile(join(dir, 'v', 'manifest.sre'), 'plain text'),
      /manifest.sre is not Strongroom ciphertext/,
    );
    await refused(async () => {
      await writeFile(join(dir, 'v', 'manifest.sre'), magic);
      await writeFile(join(dir, 'v', 'notes.txt'), magic);
    }, /unexpected "notes.txt"/);
    await refused(async () => {
      await writeFile(join(dir, 'v', 'manifest.sre'), magic);
      await writeFile(join(dir, 'v', 'objects', 'weights.bin'), magic);
    }, /unexpected objects\/"weights.bin"/);
    await refused(async () => {
      await writeFile(join(dir, 'v', 'manifest.sre'), magic);
      await writeFile(join(dir, 'v', 'objects', '000000.sre'), 'PK\u0003\u0004');
    }, /objects\/000000.sre is not Strongroom ciphertext/);
    const error = await uploadVersion({
      client,
      bucket: 'models',
      keyPrefix: 'a/v1/',
      directory: join(dir, 'v'),
      partSize: 1024,
    }).catch((e: unknown) => e);
    expect((error as StorageError).kind).toBe('invalid');
  });

  it('tells a ciphertext file by its first 8 bytes', async () => {
    await writeFile(join(dir, 'c'), 'SRENVLP\u0000 and more');
    await writeFile(join(dir, 'p'), 'SRENVLP');
    await writeFile(join(dir, 'e'), '');
    expect(await isCiphertextFile(join(dir, 'c'))).toBe(true);
    expect(await isCiphertextFile(join(dir, 'p'))).toBe(false);
    expect(await isCiphertextFile(join(dir, 'e'))).toBe(false);
    await expect(isCiphertextFile(join(dir, 'none'))).rejects.toMatchObject({ kind: 'not-found' });
  });
});
