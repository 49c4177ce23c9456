/**
 * core/storage/s3.ts against a real S3 server (versitygw, test/harness/s3.ts): a version written by writeVersion,
 * uploaded with uploadVersion and decrypted back through s3DirectorySource; immutability; every kind of damage to the
 * stored objects fails closed with nothing left in the target.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import {
  decryptDirectoryFromSource,
  decryptFromSource,
  generateRecipientKeyPair,
  treeDigest,
  unsealDek,
  type RecipientKeyPair,
} from '../envelope/index.ts';
import { startS3Server, type S3Server } from '../../test/harness/s3.ts';
import {
  StorageError,
  isCiphertextFile,
  isCiphertextObject,
  s3Client,
  s3DirectorySource,
  uploadVersion,
  versionKeyPrefix,
  writeVersion,
  type WrittenVersion,
} from './index.ts';

const BUCKET = 'models';
const artifact = { uid: '3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b', name: 'llama' };
const MiB = 1024 * 1024;
const PART = 5 * MiB;

/** Typed wrappers of vitest's asymmetric string matchers (which are typed `any`). */
const matching = (pattern: RegExp): unknown => expect.stringMatching(pattern) as unknown;
const containing = (text: string): unknown => expect.stringContaining(text) as unknown;

let server: S3Server;
let client: S3Client;
let recipient: RecipientKeyPair;
let work: string;
let versions = 0;
const files = new Map<string, Buffer>([
  ['config.json', Buffer.from('{"layers":32}\n')],
  ['weights/model-00001.safetensors', randomBytes(21 * MiB + 12_345)],
  ['weights/model-00002.safetensors', randomBytes(3 * MiB + 1)],
  ['tokenizer/empty.txt', Buffer.alloc(0)],
  ['README.md', Buffer.from('# llama\n')],
]);
const total = [...files.values()].reduce((n, b) => n + b.length, 0);

beforeAll(async () => {
  // In the integration project the shared cluster's binaries hold versitygw; without it, build.sh --for demo's.
  let binDir: string | undefined;
  try {
    binDir = inject('cluster').binDir;
  } catch {
    binDir = undefined;
  }
  server = await startS3Server(binDir === undefined ? {} : { binDir });
  client = server.client();
  await server.createBucket(BUCKET);
  recipient = await generateRecipientKeyPair();
  work = await mkdtemp('/dev/shm/strongroom-s3-int-');
  const plain = join(work, 'plain');
  for (const [path, bytes] of files) {
    await mkdir(join(plain, path, '..'), { recursive: true });
    await writeFile(join(plain, path), bytes);
  }
}, 300_000);
afterAll(async () => {
  await server.stop();
  await rm(work, { recursive: true, force: true });
});

interface Published {
  readonly written: WrittenVersion;
  readonly keyPrefix: string;
  readonly dek: Buffer;
  readonly version: string;
}

/** writeVersion into a fresh volume directory, then uploadVersion to a fresh key prefix. */
async function publish(progress?: [number, number][]): Promise<Published> {
  const version = `v${++versions}`;
  const written = await writeVersion({
    source: join(work, 'plain'),
    storageRoot: join(work, 'volume'),
    storagePath: 'llm/llama',
    artifact,
    version,
    recipientPublicKey: recipient.publicKey,
  });
  const keyPrefix = versionKeyPrefix(
    { storage: { path: 'llm/llama', s3: { prefix: 'team-a/' } } },
    { name: version },
  );
  const uploaded = await uploadVersion({
    client,
    bucket: BUCKET,
    keyPrefix,
    directory: written.path,
    partSize: PART,
    ...(progress ? { onProgress: (done: number, all: number) => progress.push([done, all]) } : {}),
  });
  const dek = await unsealDek(recipient.privateKey, written.sealedKey, {
    artifactUid: artifact.uid,
    artifactName: artifact.name,
    version,
  });
  expect(uploaded).toBeGreaterThan(total);
  return { written, keyPrefix, dek, version };
}

function contextOf(p: Published) {
  return { artifactUid: artifact.uid, artifactName: artifact.name, version: p.version };
}

async function keys(prefix: string): Promise<string[]> {
  const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key ?? '').sort();
}

let out: string;
beforeEach(async () => {
  out = await mkdtemp(join(work, 'out-'));
});
afterEach(async () => {
  await rm(out, { recursive: true, force: true });
});

/** Decrypts `p` from S3 into `out/tree` and expects a failure that leaves `out` empty. */
async function expectRefused(
  p: Published,
  source = s3DirectorySource({ client, bucket: BUCKET, keyPrefix: p.keyPrefix }),
): Promise<unknown> {
  const error = await decryptDirectoryFromSource(source, join(out, 'tree'), {
    dek: p.dek,
    context: contextOf(p),
    checkDigests: true,
  }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).not.toBeNull();
  expect(await readdir(out)).toEqual([]);
  return error;
}

describe('uploadVersion and s3DirectorySource on a real S3 server', () => {
  it('round-trips byte for byte: multipart for big objects, the manifest last, progress to the total', async () => {
    const progress: [number, number][] = [];
    const p = await publish(progress);
    expect(p.keyPrefix).toBe(`team-a/llm/llama/${p.version}/`);

    // The objects mirror the directory on the volume, sizes equal.
    const local = [
      'manifest.sre',
      ...(await readdir(join(p.written.path, 'objects'))).map((o) => `objects/${o}`),
    ].sort();
    expect(await keys(p.keyPrefix)).toEqual(local.map((k) => `${p.keyPrefix}${k}`));
    let ciphertextBytes = 0;
    let multipart = 0;
    for (const name of local) {
      const bytes = await readFile(join(p.written.path, ...name.split('/')));
      ciphertextBytes += bytes.length;
      const head = await client.send(
        new HeadObjectCommand({ Bucket: BUCKET, Key: `${p.keyPrefix}${name}`, PartNumber: 1 }),
      );
      const parts = head.PartsCount ?? 1;
      // A part count only for objects larger than one part: 21 MiB in 5 MiB parts is 5 parts.
      if (bytes.length > PART) {
        expect(parts, name).toBe(Math.ceil(bytes.length / PART));
        multipart++;
      }
      const stored = await client.send(
        new GetObjectCommand({ Bucket: BUCKET, Key: `${p.keyPrefix}${name}` }),
      );
      expect(
        Buffer.from(await (stored.Body as NonNullable<typeof stored.Body>).transformToByteArray()).equals(
          bytes,
        ),
        name,
      ).toBe(true);
    }
    expect(multipart).toBe(1);
    // No multipart upload left open.
    const open = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    expect(open.Uploads ?? []).toEqual([]);
    // Progress only grows and ends at the total ciphertext bytes.
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.at(-1)).toEqual([ciphertextBytes, ciphertextBytes]);
    for (let i = 1; i < progress.length; i++)
      expect(progress[i]?.[0]).toBeGreaterThanOrEqual(progress[i - 1]?.[0] ?? 0);

    const source = s3DirectorySource({ client, bucket: BUCKET, keyPrefix: p.keyPrefix });
    const manifest = await decryptDirectoryFromSource(source, join(out, 'tree'), {
      dek: p.dek,
      context: contextOf(p),
      checkDigests: true,
    });
    expect(treeDigest(manifest)).toBe(p.written.digest);
    for (const [path, bytes] of files)
      expect((await readFile(join(out, 'tree', ...path.split('/')))).equals(bytes), path).toBe(true);
    expect(await readdir(out)).toEqual(['tree']);
  });

  it('refuses to upload over an existing version, or over any object under its prefix, and changes nothing', async () => {
    const p = await publish();
    const before = await keys(p.keyPrefix);
    const etag = (
      await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${p.keyPrefix}manifest.sre` }))
    ).ETag;
    const error = await uploadVersion({
      client,
      bucket: BUCKET,
      keyPrefix: p.keyPrefix,
      directory: p.written.path,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ kind: 'exists', message: matching(/versions are immutable/) });
    expect(await keys(p.keyPrefix)).toEqual(before);
    expect(
      (await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${p.keyPrefix}manifest.sre` }))).ETag,
    ).toBe(etag);

    // One stray object is enough to refuse a prefix.
    await client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: 'team-a/llm/llama/v99/objects/x', Body: 'x' }),
    );
    await expect(
      uploadVersion({
        client,
        bucket: BUCKET,
        keyPrefix: 'team-a/llm/llama/v99/',
        directory: p.written.path,
      }),
    ).rejects.toMatchObject({ kind: 'exists' });
    expect(await keys('team-a/llm/llama/v99/')).toEqual(['team-a/llm/llama/v99/objects/x']);
    // A directory that is not a version, and key prefixes that are not a version's, are refused before any call.
    await expect(
      uploadVersion({ client, bucket: BUCKET, keyPrefix: 'fresh/', directory: join(work, 'plain') }),
    ).rejects.toMatchObject({ kind: 'invalid' });
    for (const keyPrefix of ['', '/abs/', 'no-slash', 'a/../b/', 'a//b/'])
      await expect(
        uploadVersion({ client, bucket: BUCKET, keyPrefix, directory: p.written.path }),
      ).rejects.toMatchObject({ kind: 'invalid' });
  });

  it('an aborted upload deletes what it wrote and leaves no multipart upload open', async () => {
    const version = `v${++versions}`;
    const written = await writeVersion({
      source: join(work, 'plain'),
      storageRoot: join(work, 'volume'),
      storagePath: 'llm/llama',
      artifact,
      version,
      recipientPublicKey: recipient.publicKey,
    });
    const keyPrefix = `aborted/${version}/`;
    const controller = new AbortController();
    let seen = 0;
    const error = await uploadVersion({
      client,
      bucket: BUCKET,
      keyPrefix,
      directory: written.path,
      partSize: PART,
      concurrency: 1,
      signal: controller.signal,
      onProgress: (done) => {
        seen = done;
        if (done > 0) controller.abort(new Error('stop'));
      },
    }).catch((e: unknown) => e);
    expect(seen).toBeGreaterThan(0);
    expect(error).toMatchObject({ kind: 'aborted' });
    expect(await keys(keyPrefix)).toEqual([]);
    const open = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: keyPrefix }));
    expect(open.Uploads ?? []).toEqual([]);
    // The same version can then be uploaded: nothing blocks it.
    await uploadVersion({ client, bucket: BUCKET, keyPrefix, directory: written.path, partSize: PART });
    expect((await keys(keyPrefix)).length).toBe(6);
  });

  it('fails closed, leaving nothing, on a deleted, truncated, extra or replaced object, a missing manifest or bucket', async () => {
    const objectKey = async (p: Published, minSize: number) => {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${p.keyPrefix}objects/` }),
      );
      const found = (page.Contents ?? []).find((o) => (o.Size ?? 0) >= minSize);
      if (found?.Key === undefined) throw new Error('no such object');
      return { key: found.Key, size: found.Size ?? 0 };
    };

    const deleted = await publish();
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: (await objectKey(deleted, 1)).key }));
    expect(await expectRefused(deleted)).toMatchObject({
      kind: 'manifest',
      message: matching(/missing: objects\//),
    });

    const truncated = await publish();
    const big = await objectKey(truncated, 20 * MiB);
    const bytes = await readFile(
      join(truncated.written.path, ...big.key.slice(truncated.keyPrefix.length).split('/')),
    );
    await client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: big.key, Body: bytes.subarray(0, bytes.length - 1000) }),
    );
    expect(await expectRefused(truncated)).toMatchObject({ kind: 'truncated' });

    const flipped = await publish();
    const flip = await objectKey(flipped, 20 * MiB);
    const altered = Buffer.from(
      await readFile(join(flipped.written.path, ...flip.key.slice(flipped.keyPrefix.length).split('/'))),
    );
    altered[15 * MiB] = (altered[15 * MiB] ?? 0) ^ 1;
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: flip.key, Body: altered }));
    expect(await expectRefused(flipped)).toMatchObject({ kind: 'segment', segment: 14 });

    const extra = await publish();
    await client.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: `${extra.keyPrefix}objects/000099.sre`,
        Body: 'SRENVLP\u0000',
      }),
    );
    expect(await expectRefused(extra)).toMatchObject({
      kind: 'manifest',
      message: matching(/extra: objects\/000099.sre/),
    });

    const noManifest = await publish();
    await client.send(
      new DeleteObjectCommand({ Bucket: BUCKET, Key: `${noManifest.keyPrefix}manifest.sre` }),
    );
    const missing = await expectRefused(noManifest);
    expect(missing).toBeInstanceOf(StorageError);
    expect(missing).toMatchObject({
      kind: 'not-found',
      message: containing(`s3://${BUCKET}/${noManifest.keyPrefix}manifest.sre`),
    });

    const wrongBucket = await expectRefused(
      extra,
      s3DirectorySource({ client, bucket: 'no-such-bucket', keyPrefix: extra.keyPrefix }),
    );
    expect(wrongBucket).toMatchObject({
      kind: 'not-found',
      message: containing('s3://no-such-bucket/'),
    });

    // Replaced after it was listed: the ranged reads are pinned to the listed ETag.
    const replaced = await publish();
    const source = s3DirectorySource({ client, bucket: BUCKET, keyPrefix: replaced.keyPrefix });
    const listed = await source.listObjects();
    const victim = await objectKey(replaced, 20 * MiB);
    const name = victim.key.slice(replaced.keyPrefix.length);
    const same = await readFile(join(replaced.written.path, ...name.split('/')));
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: victim.key, Body: same }));
    const object = listed.get(name);
    if (object === undefined) throw new Error(`${name} not listed`);
    const changed = await decryptFromSource(object, join(out, 'one'), {
      dek: replaced.dek,
      context: { ...contextOf(replaced), path: 'weights/model-00001.safetensors' },
    }).catch((e: unknown) => e);
    expect(await readdir(out)).toEqual([]);
    // Same bytes, but a new object: versitygw's ETag is the MD5 for a single PUT, which differs from the multipart ETag.
    expect(changed).toMatchObject({ kind: 'corrupt', message: containing(victim.key) });

    // Credentials the server refuses.
    const stranger = s3Client(
      { endpoint: server.endpoint, region: server.region, bucket: BUCKET, prefix: '', forcePathStyle: true },
      { accessKeyId: server.accessKeyId, secretAccessKey: 'not-the-secret' },
    );
    try {
      expect(
        await expectRefused(
          extra,
          s3DirectorySource({ client: stranger, bucket: BUCKET, keyPrefix: extra.keyPrefix }),
        ),
      ).toMatchObject({ kind: 'denied' });
    } finally {
      stranger.destroy();
    }
  });

  it('tells ciphertext objects and files from anything else', async () => {
    const p = await publish();
    expect(await isCiphertextObject({ client, bucket: BUCKET, key: `${p.keyPrefix}manifest.sre` })).toBe(
      true,
    );
    for (const [key, body] of [
      ['plain/weights.bin', 'PK\u0003\u0004 not ciphertext'],
      ['plain/short', 'SRE'],
      ['plain/empty', Buffer.alloc(0)],
    ] as const) {
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
      expect(await isCiphertextObject({ client, bucket: BUCKET, key }), key).toBe(false);
    }
    await expect(isCiphertextObject({ client, bucket: BUCKET, key: 'plain/none' })).rejects.toMatchObject({
      kind: 'not-found',
    });
    expect(await isCiphertextFile(join(p.written.path, 'manifest.sre'))).toBe(true);
    expect(await isCiphertextFile(join(work, 'plain', 'config.json'))).toBe(false);
    expect(await isCiphertextFile(join(work, 'plain', 'tokenizer', 'empty.txt'))).toBe(false);
  });
});
