/**
 * The Cloud KMS checkpoint signing key with the real `@google-cloud/kms` client (google-gax over grpc-js, real TLS)
 * against the local server built on the published protos (test/kms-server/gcp-kms-server.ts): an EC_SIGN_ED25519
 * key created at first use, signatures node crypto accepts, byte-identical notes to the same key in software, and
 * every CRC32C and name check failing closed.
 */
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_TEST_KEY_RING,
  startFakeGcpKms,
  type FakeGcpKms,
} from '../../test/kms-server/gcp-kms-server.ts';
import { openCheckpoint, signCheckpoint, signCheckpointAsync } from '../audit/checkpoint.ts';
import { AuditLog } from '../audit/log.ts';
import { EMPTY_ROOT } from '../audit/merkle.ts';
import { parseSignerKey, parseVerifierKey } from '../audit/note.ts';
import { releaseEvent } from '../audit/testdata/fixtures.ts';
import { verifyLog } from '../audit/verify.ts';
import { GcpKmsProvider } from './gcp.ts';
import { expectKmsError } from './conformance.ts';
import { KmsError } from './provider.ts';
import { CHECKPOINT_SIGNING_KEY_ID, kmsNoteSigner } from './signing.ts';

const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const NAME = 'strongroom.audit/test-cluster';

/** As gcp.test.ts: the test CA, no call credentials, nothing leaves the loopback. */
function localProvider(fake: FakeGcpKms): GcpKmsProvider {
  return new GcpKmsProvider({
    keyRing: DEFAULT_TEST_KEY_RING,
    clientOptions: {
      apiEndpoint: fake.endpoint,
      port: fake.port,
      sslCreds: grpc.credentials.createSsl(Buffer.from(fake.caPem)),
      universeDomain: 'googleapis.com',
      'grpc.ssl_target_name_override': 'localhost',
    },
    timeoutMs: 5000,
  });
}

describe('checkpoint signing key in Cloud KMS (real client → local KMS server)', () => {
  let fake: FakeGcpKms;
  let provider: GcpKmsProvider;
  let dir: string;

  beforeAll(async () => {
    fake = await startFakeGcpKms();
    provider = localProvider(fake);
    dir = mkdtempSync(join(tmpdir(), 'gcp-signing-'));
  });
  afterAll(async () => {
    fake.setResponseHook(undefined);
    await provider.close();
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates an EC_SIGN_ED25519 key at first use, signs data (not a digest) with CRC32C, and finds it again', async () => {
    const key = await provider.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID);
    const publicKey = await key.publicKey();
    expect(publicKey).toHaveLength(32);
    const data = Buffer.from('strongroom.audit/test-cluster/replica-0\n1\nroot\n');
    const signature = await key.sign(data);
    const spki = createPublicKey({
      key: Buffer.concat([SPKI_ED25519, publicKey]),
      format: 'der',
      type: 'spki',
    });
    expect(verify(null, data, spki, signature)).toBe(true);

    const created = fake.requests.filter((r) => r.method === 'CreateCryptoKey');
    expect(created).toHaveLength(1);
    expect(created[0]?.request).toMatchObject({
      parent: DEFAULT_TEST_KEY_RING,
      cryptoKeyId: CHECKPOINT_SIGNING_KEY_ID,
      cryptoKey: { purpose: 'ASYMMETRIC_SIGN', versionTemplate: { algorithm: 'EC_SIGN_ED25519' } },
    });
    const signRequest = fake.requests.find((r) => r.method === 'AsymmetricSign')?.request;
    const version = `${DEFAULT_TEST_KEY_RING}/cryptoKeys/${CHECKPOINT_SIGNING_KEY_ID}/cryptoKeyVersions/1`;
    expect(signRequest?.['name']).toBe(version);
    expect(Buffer.from(signRequest?.['data'] as Buffer).equals(data)).toBe(true);
    expect(signRequest?.['dataCrc32c']).toBeTruthy();
    expect(signRequest?.['digest']).toBeNull();
    expect(fake.requests.find((r) => r.method === 'GetPublicKey')?.request['name']).toBe(version);

    // A restarted replica (another provider, another client) finds the same key and creates nothing.
    const again = localProvider(fake);
    try {
      const found = await again.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID);
      expect(Buffer.from(await found.publicKey()).equals(Buffer.from(publicKey))).toBe(true);
    } finally {
      await again.close();
    }
    expect(fake.requests.filter((r) => r.method === 'CreateCryptoKey')).toHaveLength(1);
  });

  it('signs checkpoints byte for byte as the same key does in software, and the audit log verifies', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
    fake.importSigningKey(provider.keyName('imported'), pkcs8);
    const signer = await kmsNoteSigner(NAME, await provider.checkpointSigningKey('imported'));
    const seed = pkcs8.subarray(PKCS8_ED25519.length);
    const hex = signer.keyId.toString(16).padStart(8, '0');
    const software = parseSignerKey(
      `PRIVATE+KEY+${NAME}+${hex}+${Buffer.concat([Buffer.from([1]), seed]).toString('base64')}`,
    );
    expect(signer.verifier.key).toBe(software.verifier.key);
    const cp = { origin: `${NAME}/replica-0`, size: 9, rootHash: EMPTY_ROOT, extensions: [] };
    const note = await signCheckpointAsync(cp, signer);
    expect(note).toBe(signCheckpoint(cp, software));
    expect(openCheckpoint(note, [parseVerifierKey(signer.verifier.key)]).size).toBe(9);

    const path = join(dir, 'gcp.log');
    const log = await AuditLog.open({ path, origin: `${NAME}/replica-0`, signer, heartbeatIntervalMs: 0 });
    await Promise.all([0, 1, 2].map((i) => log.append(releaseEvent(i))));
    await log.checkpoint();
    await log.close();
    const report = verifyLog(readFileSync(path), { verifiers: [parseVerifierKey(signer.verifier.key)] });
    expect(report.findings).toEqual([]);
    expect(report.latest?.size).toBe(4);
  });

  it('fails closed on every integrity check: checksums both ways, the version named, the key type', async () => {
    const key = await provider.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID);
    const data = Buffer.from('checkpoint\n');
    const corrupt: [string, (r: Record<string, unknown>) => void, 'publicKey' | 'sign', RegExp][] = [
      ['AsymmetricSign', (r) => (r['signature'] as Buffer).fill(0, 0, 1), 'sign', /CRC32C/],
      ['AsymmetricSign', (r) => (r['verifiedDataCrc32c'] = false), 'sign', /did not confirm/],
      ['AsymmetricSign', (r) => (r['name'] = `${String(r['name'])}0`), 'sign', /answered for/],
      ['GetPublicKey', (r) => (r['pem'] = String(r['pem']).replace('MC', 'MD')), 'publicKey', /CRC32C/],
      ['GetPublicKey', (r) => (r['name'] = 'projects/x'), 'publicKey', /answered for/],
    ];
    for (const [method, alter, call, message] of corrupt) {
      fake.setResponseHook((m, response) => {
        if (m === method) alter(response);
      });
      try {
        await expectKmsError(call === 'sign' ? key.sign(data) : key.publicKey(), 'unavailable', message);
      } finally {
        fake.setResponseHook(undefined);
      }
    }
    // A refusal by Cloud KMS (IAM) surfaces as unavailable with the reason; the log writes the entries without the
    // checkpoint and goes on (core/audit/log.ts), signing again at the next interval.
    const signer = await kmsNoteSigner(NAME, key);
    const log = await AuditLog.open({
      path: join(dir, 'refused.log'),
      origin: `${NAME}/replica-1`,
      signer,
      heartbeatIntervalMs: 0,
    });
    fake.failNext(
      'AsymmetricSign',
      grpc.status.PERMISSION_DENIED,
      'Permission cloudkms.cryptoKeyVersions.useToSign denied',
    );
    const refused = await log
      .append(releaseEvent(0))
      .then(() => log.checkpoint())
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ kind: 'io' });
    expect((refused as Error).cause).toBeInstanceOf(KmsError);
    expect(((refused as Error).cause as Error).message).toMatch(/useToSign/);
    expect((await log.append(releaseEvent(1))).seq).toBe(2);
    await log.close();
  });

  it('refuses a key that is not an Ed25519 signing key, and a key with no enabled version', async () => {
    await provider.createKey(provider.keyName('symmetric'));
    await expectKmsError(
      (await provider.checkpointSigningKey('symmetric')).publicKey(),
      'invalid',
      /ASYMMETRIC_SIGN/,
    );

    const key = await provider.checkpointSigningKey('destroyed-signer');
    await key.publicKey();
    const version = `${provider.keyName('destroyed-signer')}/cryptoKeyVersions/1`;
    const client = new (await import('@google-cloud/kms')).KeyManagementServiceClient({
      apiEndpoint: fake.endpoint,
      port: fake.port,
      sslCreds: grpc.credentials.createSsl(Buffer.from(fake.caPem)),
      universeDomain: 'googleapis.com',
      'grpc.ssl_target_name_override': 'localhost',
    });
    try {
      await client.destroyCryptoKeyVersion({ name: version });
    } finally {
      await client.close();
    }
    await expectKmsError(key.sign(Buffer.from('x')), 'unavailable', /not enabled/);
    const fresh = await provider.checkpointSigningKey('destroyed-signer');
    await expectKmsError(fresh.publicKey(), 'unavailable', /no ENABLED EC_SIGN_ED25519 version/);
    await expectKmsError(provider.checkpointSigningKey('not/an/id'), 'invalid');
  });
});
