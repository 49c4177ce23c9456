/**
 * publishOutput's decisions against an in-process gRPC KeyBroker that answers PublishVersion as told (the real
 * broker's refusals are tested end to end in test/sidecar/publish.int.test.ts). It opens every sealed DEK it
 * receives with the recipient private key, so the test knows the DEK and can check that no log holds it.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import winston from 'winston';
import { memoryLogger } from '../test/harness/logger.ts';
import { PUBLISH_COMPLETE_MARKER, type PlannedPublish } from '../core/injection/contract.ts';
import {
  decryptDirectory,
  generateRecipientKeyPair,
  treeDigest,
  unsealDek,
  type RecipientKeyPair,
} from '../core/envelope/index.ts';
import { recipientKeyFingerprint } from '../core/storage/index.ts';
import type { PublishVersionRequest__Output } from '../proto/generated/strongroom/v1/PublishVersionRequest.ts';
import type { PublishVersionResponse } from '../proto/generated/strongroom/v1/PublishVersionResponse.ts';
import { loadKeyBroker, type KeyBrokerClient } from '../proto/keybroker.ts';
import { publishOutput } from './publish.ts';

const keyBroker = loadKeyBroker();
const UID = '0f6e7c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b';
const PUBLISHER = 'spiffe://strongroom.test/ns/ml/sa/trainer';

type Answer = { status: grpc.status; details: string; notLeader?: boolean } | 'ok';

let server: grpc.Server;
let client: KeyBrokerClient;
let target: string;
/** Retries without waiting. */
const fast = { backoff: { baseMs: 1, maxMs: 2 } };
let recipient: RecipientKeyPair;
/** What the broker answers next; the last one repeats. */
let answers: Answer[] = [];
const received: PublishVersionRequest__Output[] = [];
const deks: Buffer[] = [];

beforeAll(async () => {
  recipient = await generateRecipientKeyPair();
  server = new grpc.Server();
  server.addService(keyBroker.service, {
    PublishVersion: (
      call: grpc.ServerUnaryCall<PublishVersionRequest__Output, PublishVersionResponse>,
      callback: grpc.sendUnaryData<PublishVersionResponse>,
    ) => {
      const request = call.request;
      received.push(request);
      const sealed = request.sealedKey;
      void unsealDek(
        recipient.privateKey,
        {
          suite: 'HPKE-Base-X25519-SHA256-AES256GCM',
          enc: Buffer.from(sealed?.enc ?? []).toString('base64'),
          ciphertext: Buffer.from(sealed?.ciphertext ?? []).toString('base64'),
        },
        { artifactUid: UID, artifactName: request.artifact?.name ?? '', version: request.version },
      ).then(
        (dek) => {
          deks.push(dek);
          const answer = answers.length > 1 ? answers.shift() : answers[0];
          if (answer === undefined || answer === 'ok')
            callback(null, {
              version: {
                name: request.version,
                digest: request.digest,
                size: request.size,
                keyFingerprint: request.keyFingerprint,
                publisher: PUBLISHER,
              },
              resourceVersion: '4242',
            });
          else {
            const metadata = new grpc.Metadata();
            if (answer.notLeader === true) metadata.set('strongroom-retry', 'not-leader');
            callback({ code: answer.status, details: answer.details, metadata });
          }
        },
        () => {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: 'the sealed DEK does not open' });
        },
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => {
      if (error) reject(error);
      else resolve(bound);
    });
  });
  target = `127.0.0.1:${String(port)}`;
  client = new keyBroker.Client(target, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client.close();
  await new Promise<void>((resolve) => {
    server.tryShutdown(() => {
      resolve();
    });
  });
});

let dir: string;
let logs: string[];
let logger: winston.Logger;

beforeEach(async () => {
  dir = await mkdtemp('/dev/shm/sidecar-publish-');
  answers = ['ok'];
  received.length = 0;
  logs = [];
  ({ logger, lines: logs } = memoryLogger());

  await mkdir(join(dir, 'output', 'checkpoints'), { recursive: true });
  await mkdir(join(dir, 'claim', 'models', 'finetune'), { recursive: true });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function plan(extra: Partial<PlannedPublish> = {}): PlannedPublish {
  return {
    namespace: 'ml',
    name: 'finetune',
    uid: UID,
    version: 'v7',
    outputDir: join(dir, 'output'),
    ciphertextPath: join(dir, 'claim', 'models', 'finetune', 'v7'),
    recipientPublicKey: recipient.publicKey,
    mountPath: '/output',
    ...extra,
  };
}

async function jobOutput(complete = true): Promise<void> {
  await writeFile(join(dir, 'output', 'model.safetensors'), Buffer.alloc(100_000, 7));
  await writeFile(join(dir, 'output', 'checkpoints', 'step 100.pt'), 'checkpoint');
  if (complete) await writeFile(join(dir, 'output', PUBLISH_COMPLETE_MARKER), '');
}

const artifactDir = () => join(dir, 'claim', 'models', 'finetune');

function noKeyMaterialLogged(): void {
  const text = logs.join('');
  expect(text.length).toBeGreaterThan(0);
  for (const dek of deks) {
    expect(text).not.toContain(dek.toString('base64'));
    expect(text).not.toContain(dek.toString('hex'));
  }
  for (const r of received)
    expect(text).not.toContain(Buffer.from(r.sealedKey?.ciphertext ?? []).toString('base64'));
}

describe('publishOutput', () => {
  it('publishes a marked output: the request carries the digest, size, fingerprint and a DEK that opens the ciphertext', async () => {
    await jobOutput();
    const outcome = await publishOutput(plan(), client, logger);
    expect(outcome).toMatchObject({
      published: true,
      version: 'v7',
      publisher: PUBLISHER,
      resourceVersion: '4242',
    });
    if (!outcome.published) throw new Error('not published');
    expect(outcome.path).toBe(join(artifactDir(), 'v7'));
    expect(received).toHaveLength(1);
    const request = received[0];
    expect(request?.artifact).toEqual({ namespace: 'ml', name: 'finetune' });
    expect(request?.version).toBe('v7');
    expect(request?.digest).toBe(outcome.digest);
    expect(request?.size).toBe(String(100_000 + 'checkpoint'.length));
    expect(request?.keyFingerprint).toBe(recipientKeyFingerprint(recipient.publicKey));
    expect(request?.sealedKey?.suite).toBe('HPKE_SUITE_BASE_X25519_SHA256_AES256GCM');
    expect(request?.lineage).toBeNull();
    const dek = deks.at(-1) ?? Buffer.alloc(32);
    const manifest = await decryptDirectory(outcome.path, join(dir, 'plain'), {
      dek,
      keyId: '',
      context: { artifactUid: UID, artifactName: 'finetune', version: 'v7' },
    });
    expect(manifest.files.map((f) => f.path).sort()).toEqual([
      'checkpoints/step 100.pt',
      'model.safetensors',
    ]);
    expect(treeDigest(manifest)).toBe(request?.digest);
    expect(await readFile(join(dir, 'plain', 'checkpoints', 'step 100.pt'), 'utf8')).toBe('checkpoint');
    expect(await readdir(artifactDir())).toEqual(['v7']);
    noKeyMaterialLogged();
  });

  it('does not publish an output without the marker: nothing written, no call, the reason logged', async () => {
    await jobOutput(false);
    const outcome = await publishOutput(plan(), client, logger);
    expect(outcome).toMatchObject({ published: false, reason: 'incomplete' });
    expect(outcome.published ? '' : outcome.message).toMatch(/did not write \.strongroom-complete/);
    expect(received).toHaveLength(0);
    expect(await readdir(artifactDir())).toEqual([]);
    expect(logs.join('')).toMatch(/not marked complete/);

    // A directory named like the marker is not a marker.
    await mkdir(join(dir, 'output', PUBLISH_COMPLETE_MARKER));
    const again = await publishOutput(plan(), client, logger);
    expect(again).toMatchObject({ published: false, reason: 'incomplete' });
    expect(received).toHaveLength(0);
  });

  for (const [status, name] of [
    [grpc.status.PERMISSION_DENIED, 'PERMISSION_DENIED'],
    [grpc.status.ALREADY_EXISTS, 'ALREADY_EXISTS'],
    [grpc.status.FAILED_PRECONDITION, 'FAILED_PRECONDITION'],
    [grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
  ] as const)
    it(`removes the ciphertext when the broker refuses with ${name}, and returns the status and message`, async () => {
      await jobOutput();
      answers = [{ status, details: `refused: ${name}` }];
      const outcome = await publishOutput(plan(), client, logger);
      expect(outcome).toEqual({
        published: false,
        reason: 'refused',
        code: status,
        message: `refused: ${name}`,
      });
      expect(received).toHaveLength(1);
      expect(await readdir(artifactDir())).toEqual([]);
      noKeyMaterialLogged();
    });

  it('retries ABORTED (nothing was written) and publishes; gives up after four, removing the ciphertext', async () => {
    await jobOutput();
    const aborted = { status: grpc.status.ABORTED, details: 'the artifact changed concurrently; retry' };
    answers = [aborted, aborted, 'ok'];
    expect((await publishOutput(plan(), client, logger)).published).toBe(true);
    expect(received).toHaveLength(3);

    received.length = 0;
    answers = [aborted];
    const outcome = await publishOutput(
      plan({ version: 'v8', ciphertextPath: join(artifactDir(), 'v8') }),
      client,
      logger,
    );
    expect(outcome).toMatchObject({ published: false, reason: 'refused', code: grpc.status.ABORTED });
    expect(received).toHaveLength(4);
    expect(await readdir(artifactDir())).toEqual(['v7']);
  });

  it('retries UNAVAILABLE from a follower (not the leader) with backoff, on a new connection, and publishes', async () => {
    await jobOutput();
    const follower = {
      status: grpc.status.UNAVAILABLE,
      details: 'this replica is not the leader (the leader is op-0); retry',
      notLeader: true,
    };
    answers = [follower, follower, 'ok'];
    let reconnects = 0;
    const outcome = await publishOutput(plan(), client, logger, {
      ...fast,
      reconnect: () => {
        reconnects += 1;
        return new keyBroker.Client(target, grpc.credentials.createInsecure(), {
          'grpc.use_local_subchannel_pool': 1,
        });
      },
    });
    expect(outcome.published).toBe(true);
    expect(received).toHaveLength(3);
    expect(reconnects).toBe(2);
  });

  it('removes the ciphertext when every replica answered "not the leader" until it gave up (nothing written)', async () => {
    await jobOutput();
    answers = [{ status: grpc.status.UNAVAILABLE, details: 'not the leader; retry', notLeader: true }];
    const outcome = await publishOutput(plan(), client, logger, fast);
    expect(outcome).toMatchObject({ published: false, reason: 'refused', code: grpc.status.UNAVAILABLE });
    // The first attempt and 15 retries, each refused by a follower.
    expect(received).toHaveLength(16);
    expect(await readdir(artifactDir())).toEqual([]);
  });

  it('does not take ALREADY_EXISTS after a lost answer as a refusal: the version may be its own', async () => {
    await jobOutput();
    answers = [
      { status: grpc.status.UNAVAILABLE, details: 'connection lost' },
      { status: grpc.status.ALREADY_EXISTS, details: 'VersionExists' },
    ];
    const outcome = await publishOutput(plan(), client, logger, fast);
    expect(outcome).toMatchObject({ published: false, reason: 'unknown', code: grpc.status.ALREADY_EXISTS });
    expect(await readdir(artifactDir())).toEqual(['v7']);
  });

  it('keeps the ciphertext when the answer is unknown (the version may be recorded)', async () => {
    await jobOutput();
    for (const [status, version] of [
      [grpc.status.UNAVAILABLE, 'v9'],
      [grpc.status.DEADLINE_EXCEEDED, 'v10'],
      [grpc.status.INTERNAL, 'v11'],
    ] as const) {
      answers = [{ status, details: 'lost' }];
      const outcome = await publishOutput(
        plan({ version, ciphertextPath: join(artifactDir(), version) }),
        client,
        logger,
        fast,
      );
      expect(outcome).toEqual({
        published: false,
        reason: 'unknown',
        code: status,
        message: 'lost',
        path: join(artifactDir(), version),
      });
    }
    expect((await readdir(artifactDir())).sort()).toEqual(['v10', 'v11', 'v9']);
    noKeyMaterialLogged();
  });

  it('refuses to overwrite an existing version directory, leaves it alone and never calls the broker', async () => {
    await jobOutput();
    await mkdir(join(artifactDir(), 'v7'));
    await writeFile(join(artifactDir(), 'v7', 'manifest.sre'), 'the first publisher');
    const outcome = await publishOutput(plan(), client, logger);
    expect(outcome).toMatchObject({ published: false, reason: 'write-failed', storageError: 'exists' });
    expect(received).toHaveLength(0);
    expect(await readFile(join(artifactDir(), 'v7', 'manifest.sre'), 'utf8')).toBe('the first publisher');
    expect(await readdir(artifactDir())).toEqual(['v7']);
  });

  it('refuses a plan whose ciphertext path is not named after the version, or whose key is not a key', async () => {
    await jobOutput();
    const misnamed = await publishOutput(plan({ ciphertextPath: join(artifactDir(), 'v6') }), client, logger);
    expect(misnamed).toMatchObject({ published: false, reason: 'write-failed', storageError: 'invalid' });
    const badKey = await publishOutput(plan({ recipientPublicKey: 'bm90IGEga2V5' }), client, logger);
    expect(badKey).toMatchObject({ published: false, reason: 'write-failed', storageError: 'invalid' });
    expect(received).toHaveLength(0);
    expect(await readdir(artifactDir())).toEqual([]);
  });
});
