import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encryptBytes, encryptDirectory, newDek, readManifest } from '../core/envelope/index.ts';
import { treeDigest } from '../core/envelope/tree-digest.ts';
import type { PlannedArtifact } from '../core/injection/contract.ts';
import { materialize, MaterializeError } from './materialize.ts';

let work: string;
let artifact: PlannedArtifact;
let dek: Buffer;
const files: Record<string, Buffer> = {
  'config.json': Buffer.from('{"layers":50}'),
  'weights/model.safetensors': randomBytes(1024 * 1024 + 3),
  'weights/shards/part-0': randomBytes(4096),
  'empty.txt': Buffer.alloc(0),
};

beforeEach(async () => {
  work = await mkdtemp('/dev/shm/strongroom-materialize-test-');
  const source = join(work, 'source');
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(source, path, '..'), { recursive: true });
    await writeFile(join(source, path), content);
  }
  dek = newDek();
  const context = { artifactUid: 'uid-1', artifactName: 'resnet', version: 'v1' };
  const manifest = await encryptDirectory(source, join(work, 'cipher'), { dek, keyId: 'k', context });
  await mkdir(join(work, 'plain'));
  artifact = {
    namespace: 'ml',
    name: 'resnet',
    uid: 'uid-1',
    version: 'v1',
    digest: treeDigest(manifest),
    ciphertextPath: join(work, 'cipher'),
    plaintextDir: join(work, 'plain'),
    mountPath: '/models/resnet',
  };
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function tree(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    out.push(rel);
    if (e.isDirectory()) out.push(...(await tree(dir, rel)));
  }
  return out.sort();
}

describe('materialize', () => {
  it('installs byte-identical files, files 0444 and directories 0555, no staging left, and zeroes the DEK', async () => {
    const key = Buffer.from(dek);
    const result = await materialize(artifact, key);
    expect(result).toMatchObject({ files: 4, digest: artifact.digest });
    for (const [path, content] of Object.entries(files)) {
      const installed = join(artifact.plaintextDir, path);
      expect((await readFile(installed)).equals(content), path).toBe(true);
      expect((await stat(installed)).mode & 0o777, path).toBe(0o444);
    }
    for (const dir of ['weights', 'weights/shards'])
      expect((await stat(join(artifact.plaintextDir, dir))).mode & 0o777, dir).toBe(0o555);
    expect(await tree(artifact.plaintextDir)).toEqual([
      'config.json',
      'empty.txt',
      'weights',
      'weights/model.safetensors',
      'weights/shards',
      'weights/shards/part-0',
    ]);
    expect(key.equals(Buffer.alloc(32))).toBe(true);
  });

  it('refuses a tree whose digest is not the planned one, leaving nothing behind', async () => {
    const other = `sha256:${createHash('sha256').update('other').digest('hex')}`;
    const key = Buffer.from(dek);
    const error = await materialize({ ...artifact, digest: other }, key).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MaterializeError);
    expect((error as MaterializeError).step).toBe('verify');
    expect((error as Error).message).toMatch(/is not the planned/);
    expect(await readdir(artifact.plaintextDir)).toEqual([]);
    expect(key.equals(Buffer.alloc(32))).toBe(true);
  });

  it("refuses files whose content is not what the manifest's digests (and so the planned digest) say", async () => {
    // A publisher holding the DEK records the digest of known-good weights for other weights: the manifest's
    // digests and the planned tree digest agree with each other, only the files' content does not.
    const context = { artifactUid: 'uid-1', artifactName: 'resnet', version: 'v1' };
    const manifest = await readManifest(artifact.ciphertextPath, { dek, context });
    const lie = {
      ...manifest,
      files: manifest.files.map((f) =>
        f.path === 'weights/model.safetensors'
          ? { ...f, sha256: `sha256:${createHash('sha256').update('known-good').digest('hex')}` }
          : f,
      ),
    };
    await writeFile(
      join(artifact.ciphertextPath, 'manifest.sre'),
      encryptBytes(Buffer.from(JSON.stringify(lie)), {
        dek,
        keyId: 'k',
        context: { ...context, path: '\u0000manifest' },
      }),
    );
    const error = await materialize({ ...artifact, digest: treeDigest(lie) }, Buffer.from(dek)).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MaterializeError);
    expect((error as MaterializeError).step).toBe('verify');
    expect((error as Error).message).toMatch(/weights\/model.safetensors: its content does not match/);
    expect(await readdir(artifact.plaintextDir)).toEqual([]);
  });

  it('refuses the wrong DEK and a ciphertext of another artifact (context), leaving nothing behind', async () => {
    const wrong = await materialize(artifact, newDek()).catch((e: unknown) => e);
    expect((wrong as MaterializeError).step).toBe('decrypt');
    expect(await readdir(artifact.plaintextDir)).toEqual([]);
    const foreign = await materialize({ ...artifact, uid: 'uid-2' }, Buffer.from(dek)).catch(
      (e: unknown) => e,
    );
    expect((foreign as MaterializeError).step).toBe('decrypt');
    expect(await readdir(artifact.plaintextDir)).toEqual([]);
  });

  it('refuses a tampered object (one flipped byte) and never shows a partial file', async () => {
    const manifest = await readManifest(artifact.ciphertextPath, {
      dek,
      context: { artifactUid: 'uid-1', artifactName: 'resnet', version: 'v1' },
    });
    const big = manifest.files.find((f) => f.path === 'weights/model.safetensors');
    const object = join(artifact.ciphertextPath, big?.object ?? '');
    const bytes = await readFile(object);
    bytes[bytes.length - 100] = (bytes[bytes.length - 100] ?? 0) ^ 1;
    await writeFile(object, bytes);
    const error = await materialize(artifact, Buffer.from(dek)).catch((e: unknown) => e);
    expect((error as MaterializeError).step).toBe('decrypt');
    expect(await readdir(artifact.plaintextDir)).toEqual([]);
  });

  it('wipes leftovers of an earlier attempt first, and installs nothing when aborted', async () => {
    await writeFile(join(artifact.plaintextDir, 'stale'), 'old plaintext');
    const controller = new AbortController();
    controller.abort();
    const error = await materialize(artifact, Buffer.from(dek), controller.signal).catch((e: unknown) => e);
    expect((error as MaterializeError).step).toBe('aborted');
    expect(await readdir(artifact.plaintextDir)).toEqual([]);
    await materialize(artifact, Buffer.from(dek));
    expect(await readdir(artifact.plaintextDir)).not.toContain('stale');
  });
});

describe('materialize from S3 (without a server: what fails before or at the first request)', () => {
  const ENV_ID = 'STRONGROOM_S3_7_ACCESS_KEY_ID';
  const ENV_SECRET = 'STRONGROOM_S3_7_SECRET_ACCESS_KEY';
  const s3 = (endpoint: string) => ({
    ...artifact,
    ciphertextPath: '',
    s3: {
      endpoint,
      region: 'us-east-1',
      bucket: 'models',
      keyPrefix: 'team-a/resnet/v1/',
      forcePathStyle: true,
      credentialsEnv: { accessKeyId: ENV_ID, secretAccessKey: ENV_SECRET },
    },
  });
  afterEach(() => {
    Reflect.deleteProperty(process.env, ENV_ID);
    Reflect.deleteProperty(process.env, ENV_SECRET);
  });

  it('fails closed when the credentials are missing or empty, naming the variable, and zeroes the DEK', async () => {
    await writeFile(join(artifact.plaintextDir, 'stale'), 'old plaintext');
    for (const [id, secret, missing] of [
      [undefined, undefined, ENV_ID],
      ['AKIA', undefined, ENV_SECRET],
      ['', 'secret', ENV_ID],
    ] as const) {
      if (id === undefined) Reflect.deleteProperty(process.env, ENV_ID);
      else process.env[ENV_ID] = id;
      if (secret === undefined) Reflect.deleteProperty(process.env, ENV_SECRET);
      else process.env[ENV_SECRET] = secret;
      const key = Buffer.from(dek);
      const error = await materialize(s3('http://127.0.0.1:9'), key).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MaterializeError);
      expect((error as MaterializeError).step).toBe('decrypt');
      expect((error as Error).message).toContain(`s3://models/team-a/resnet/v1/`);
      expect((error as Error).message).toContain(`environment variable ${missing} is not set`);
      expect(await readdir(artifact.plaintextDir)).toEqual([]);
      expect(key.equals(Buffer.alloc(32))).toBe(true);
    }
  });

  it('fails closed, naming the bucket and key, when the store cannot be reached', async () => {
    process.env[ENV_ID] = 'AKIA';
    process.env[ENV_SECRET] = 'secret';
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    const error = await materialize(s3('http://127.0.0.1:9'), Buffer.from(dek)).catch((e: unknown) => e);
    expect((error as MaterializeError).step).toBe('decrypt');
    expect((error as Error).message).toContain('s3://models/team-a/resnet/v1/manifest.sre');
    expect(await readdir(artifact.plaintextDir)).toEqual([]);
  });
});
