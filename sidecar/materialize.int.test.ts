/**
 * The sidecar's materialize step for an artifact stored in S3, against a real S3 server (versitygw,
 * test/harness/s3.ts): a version written by writeVersion and uploaded by uploadVersion is decrypted from the bucket,
 * verified against the planned digest and installed read-only; a damaged object leaves nothing installed.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateRecipientKeyPair, unsealDek } from '../core/envelope/index.ts';
import type { PlannedArtifact } from '../core/injection/contract.ts';
import { uploadVersion, versionKeyPrefix, writeVersion } from '../core/storage/index.ts';
import { startS3Server, type S3Server } from '../test/harness/s3.ts';
import { MaterializeError, materialize } from './materialize.ts';

const ENV_ID = 'STRONGROOM_S3_0_ACCESS_KEY_ID';
const ENV_SECRET = 'STRONGROOM_S3_0_SECRET_ACCESS_KEY';
const files = new Map<string, Buffer>([
  ['config.json', Buffer.from('{"layers":50}')],
  ['weights/model.safetensors', randomBytes(9 * 1024 * 1024 + 3)],
  ['empty.txt', Buffer.alloc(0)],
]);
let server: S3Server;
let work: string;

beforeAll(async () => {
  let binDir: string | undefined;
  try {
    binDir = inject('cluster').binDir;
  } catch {
    binDir = undefined;
  }
  server = await startS3Server(binDir === undefined ? {} : { binDir });
  await server.createBucket('models');
  work = await mkdtemp('/dev/shm/strongroom-materialize-s3-');
  for (const [path, bytes] of files) {
    await mkdir(join(work, 'source', path, '..'), { recursive: true });
    await writeFile(join(work, 'source', path), bytes);
  }
}, 300_000);
afterAll(async () => {
  Reflect.deleteProperty(process.env, ENV_ID);
  Reflect.deleteProperty(process.env, ENV_SECRET);
  await server.stop();
  await rm(work, { recursive: true, force: true });
});

describe('materialize from S3 on a real S3 server', () => {
  it('installs the version byte for byte, read-only; a deleted object installs nothing', async () => {
    const recipient = await generateRecipientKeyPair();
    const artifact = { uid: 'uid-s3', name: 'resnet' };
    const written = await writeVersion({
      source: join(work, 'source'),
      storageRoot: join(work, 'volume'),
      storagePath: 'vision/resnet',
      artifact,
      version: 'v1',
      recipientPublicKey: recipient.publicKey,
    });
    const keyPrefix = versionKeyPrefix(
      { storage: { path: 'vision/resnet', s3: { prefix: 'prod' } } },
      { name: 'v1' },
    );
    const client = server.client();
    await uploadVersion({ client, bucket: 'models', keyPrefix, directory: written.path });
    await rm(written.path, { recursive: true });
    const dek = () =>
      unsealDek(recipient.privateKey, written.sealedKey, {
        artifactUid: artifact.uid,
        artifactName: artifact.name,
        version: 'v1',
      });
    process.env[ENV_ID] = server.accessKeyId;
    process.env[ENV_SECRET] = server.secretAccessKey;
    await mkdir(join(work, 'plain'));
    const planned: PlannedArtifact = {
      namespace: 'ml',
      name: artifact.name,
      uid: artifact.uid,
      version: 'v1',
      digest: written.digest,
      ciphertextPath: '',
      s3: {
        endpoint: server.endpoint,
        region: server.region,
        bucket: 'models',
        keyPrefix,
        forcePathStyle: true,
        credentialsEnv: { accessKeyId: ENV_ID, secretAccessKey: ENV_SECRET },
      },
      plaintextDir: join(work, 'plain'),
      mountPath: '/models/resnet',
    };
    const result = await materialize(planned, await dek());
    expect(result).toMatchObject({ files: 3, digest: written.digest });
    for (const [path, bytes] of files) {
      expect((await readFile(join(work, 'plain', path))).equals(bytes), path).toBe(true);
      expect((await stat(join(work, 'plain', path))).mode & 0o777).toBe(0o444);
    }

    await client.send(new DeleteObjectCommand({ Bucket: 'models', Key: `${keyPrefix}objects/000002.sre` }));
    const error = await materialize(planned, await dek()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MaterializeError);
    expect((error as MaterializeError).step).toBe('decrypt');
    expect(await readdir(join(work, 'plain'))).toEqual([]);

    // Wrong credentials: refused by the store, nothing installed.
    process.env[ENV_SECRET] = 'not-the-secret';
    const denied = await materialize(planned, await dek()).catch((e: unknown) => e);
    expect((denied as MaterializeError).step).toBe('decrypt');
    expect((denied as Error).message).toMatch(/SignatureDoesNotMatch|AccessDenied/);
    expect(await readdir(join(work, 'plain'))).toEqual([]);
  });
});
