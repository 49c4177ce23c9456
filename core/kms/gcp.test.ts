/**
 * The gcp provider with the real `@google-cloud/kms` client (google-gax over grpc-js, real TLS) against a local
 * server implementing the published Cloud KMS protos (test/kms-server/gcp-kms-server.ts). No official Cloud KMS
 * emulator exists.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { KeyManagementServiceClient } from '@google-cloud/kms';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority } from '../../test/cluster/pki.ts';
import {
  DEFAULT_TEST_KEY_RING,
  startFakeGcpKms,
  type FakeGcpKms,
} from '../../test/kms-server/gcp-kms-server.ts';
import { describeKmsProvider, expectKmsError } from './conformance.ts';
import { crc32c, GcpKmsProvider, type GcpKmsProviderOptions } from './gcp.ts';
import { KmsError } from './provider.ts';

const DAY_S = 86_400;
let counter = 0;
const uniqueId = (): string => `k${String(++counter)}-${randomBytes(4).toString('hex')}`;

/**
 * Client options for the local server. `sslCreds` makes google-gax use exactly these channel credentials (TLS with
 * the test CA, no call credentials), and an explicit `universeDomain` stops google-auth-library from looking for
 * Application Default Credentials (which could probe the GCE metadata server), so nothing leaves the loopback.
 */
function localClientOptions(fake: { endpoint: string; port: number; caPem: string }) {
  return {
    apiEndpoint: fake.endpoint,
    port: fake.port,
    sslCreds: grpc.credentials.createSsl(Buffer.from(fake.caPem)),
    universeDomain: 'googleapis.com',
    // Connect to the IP but verify (and send as SNI) the certificate's DNS name: SNI must not be an IP address.
    'grpc.ssl_target_name_override': 'localhost',
  };
}

function localProvider(fake: FakeGcpKms, extra: Partial<GcpKmsProviderOptions> = {}): GcpKmsProvider {
  return new GcpKmsProvider({
    keyRing: DEFAULT_TEST_KEY_RING,
    clientOptions: localClientOptions(fake),
    ...extra,
  });
}

describe('crc32c', () => {
  it('matches the Castagnoli check value and the RFC 3720 (iSCSI) test vectors', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
  });
});

let conformanceFake: FakeGcpKms | undefined;
describeKmsProvider('gcp (real @google-cloud/kms client → local KMS server)', async () => {
  const fake = await startFakeGcpKms();
  conformanceFake = fake;
  const provider = localProvider(fake);
  return {
    provider,
    newKeyId: () => provider.keyName(uniqueId()),
    teardown: () => fake.stop(),
  };
});

describe('gcp provider against the local Cloud KMS server', () => {
  let fake: FakeGcpKms;
  let provider: GcpKmsProvider;
  const aad = Buffer.from('strongroom/v1 artifact=bert version=v1');

  beforeAll(async () => {
    fake = await startFakeGcpKms();
    provider = localProvider(fake);
  });
  afterAll(async () => {
    await provider.close();
    await fake.stop();
  });

  const requestsOf = (method: string) => fake.requests.filter((r) => r.method === method);
  const last = (method: string) => {
    const found = requestsOf(method).at(-1);
    if (!found) throw new Error(`no ${method} request`);
    return found;
  };
  const withHook = async <T>(
    hook: (method: string, response: Record<string, unknown>) => void,
    run: () => Promise<T>,
  ): Promise<T> => {
    fake.setResponseHook(hook);
    try {
      return await run();
    } finally {
      fake.setResponseHook(undefined);
    }
  };

  it('the conformance suite really ran against a server (requests were recorded)', () => {
    expect(conformanceFake?.requests.some((r) => r.method === 'Decrypt')).toBe(true);
  });

  it('creates a symmetric ENCRYPT_DECRYPT CryptoKey named by its full resource name in the key ring', async () => {
    const id = uniqueId();
    const keyId = provider.keyName(id);
    expect(keyId).toBe(`${DEFAULT_TEST_KEY_RING}/cryptoKeys/${id}`);
    await provider.createKey(keyId);
    const request = last('CreateCryptoKey').request;
    expect(request.parent).toBe(DEFAULT_TEST_KEY_RING);
    expect(request.cryptoKeyId).toBe(id);
    expect(request.cryptoKey).toMatchObject({
      purpose: 'ENCRYPT_DECRYPT',
      versionTemplate: { algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION', protectionLevel: 'SOFTWARE' },
      labels: { 'managed-by': 'strongroom' },
    });
    expect(fake.inspectVersion(`${keyId}/cryptoKeyVersions/1`)).toEqual({
      state: 'ENABLED',
      hasKeyMaterial: true,
    });
    const versions = await provider.versions(keyId);
    expect(versions).toHaveLength(1);
    expect(versions[0]).toMatchObject({ version: '1', state: 'enabled', primary: true });
    expect(Math.abs(Date.parse(versions[0]?.createdAt ?? '') - Date.now())).toBeLessThan(60_000);
  });

  it('sends the associated data and correct CRC32C checksums on Encrypt and Decrypt, to the CryptoKey', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    const dek = randomBytes(32);
    const wrapped = await provider.wrap(keyId, dek, aad);

    const encrypt = last('Encrypt');
    expect(encrypt.request.name).toBe(keyId);
    expect(Buffer.from(encrypt.request.additionalAuthenticatedData as Buffer).equals(aad)).toBe(true);
    expect(Buffer.from(encrypt.request.plaintext as Buffer).equals(dek)).toBe(true);
    expect(encrypt.request.plaintextCrc32c).toEqual({ value: String(crc32c(dek)) });
    expect(encrypt.request.additionalAuthenticatedDataCrc32c).toEqual({ value: String(crc32c(aad)) });

    expect((await provider.unwrap(wrapped, aad)).equals(dek)).toBe(true);
    const lookup = last('GetCryptoKeyVersion');
    expect(lookup.request.name).toBe(`${keyId}/cryptoKeyVersions/1`);
    const decrypt = last('Decrypt');
    expect(decrypt.request.name).toBe(keyId);
    expect(Buffer.from(decrypt.request.additionalAuthenticatedData as Buffer).equals(aad)).toBe(true);
    const ciphertext = Buffer.from(wrapped.ciphertext, 'base64');
    expect(Buffer.from(decrypt.request.ciphertext as Buffer).equals(ciphertext)).toBe(true);
    expect(decrypt.request.ciphertextCrc32c).toEqual({ value: String(crc32c(ciphertext)) });
    expect(decrypt.request.additionalAuthenticatedDataCrc32c).toEqual({ value: String(crc32c(aad)) });
  });

  it('talks through the real client library: its routing and client headers, and no credentials', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    await provider.wrap(keyId, randomBytes(16), aad);
    const { metadata } = last('Encrypt');
    expect(metadata['x-goog-request-params']).toBe(`name=${encodeURIComponent(keyId)}`);
    expect(metadata['x-goog-api-client']).toMatch(/gax\/\S+ gapic\/\S+ .*grpc\//);
    expect(metadata.authorization).toBeUndefined();
  });

  it('a caller-made client works too, and the library never looks up Google credentials', async () => {
    const client = new KeyManagementServiceClient(localClientOptions(fake));
    let credentialLookups = 0;
    const getClient = client.auth.getClient.bind(client.auth);
    client.auth.getClient = () => {
      credentialLookups++;
      return getClient();
    };
    const own = new GcpKmsProvider({ keyRing: DEFAULT_TEST_KEY_RING, client });
    const keyId = own.keyName(uniqueId());
    await own.createKey(keyId);
    const wrapped = await own.wrap(keyId, randomBytes(32), aad);
    expect((await own.unwrap(wrapped, aad)).length).toBe(32);
    await own.close();
    // The provider does not close a client it was given.
    expect((await client.getCryptoKey({ name: keyId }))[0].name).toBe(keyId);
    expect(credentialLookups).toBe(0);
    await client.close();
  });

  it('refuses key ids outside its key ring and malformed ones without calling Cloud KMS', async () => {
    const before = fake.requests.length;
    const otherRing = 'projects/strongroom-test/locations/global/keyRings/elsewhere/cryptoKeys/k1';
    for (const keyId of [
      'k1',
      otherRing,
      `${DEFAULT_TEST_KEY_RING}/cryptoKeys/`,
      `${DEFAULT_TEST_KEY_RING}/cryptoKeys/a/b`,
    ]) {
      await expectKmsError(provider.createKey(keyId), 'invalid', /key id is a CryptoKey name/);
      await expectKmsError(provider.wrap(keyId, randomBytes(32), aad), 'invalid');
      await expectKmsError(provider.versions(keyId), 'invalid');
      await expectKmsError(provider.rotate(keyId), 'invalid');
      await expectKmsError(provider.destroyKey(keyId), 'invalid');
    }
    const keyId = provider.keyName('kx');
    const good = { provider: 'gcp', keyId, keyVersion: '1', ciphertext: randomBytes(40).toString('base64') };
    await expectKmsError(provider.unwrap({ ...good, keyId: otherRing }, aad), 'invalid');
    await expectKmsError(provider.unwrap({ ...good, keyVersion: '0' }, aad), 'invalid');
    await expectKmsError(provider.unwrap({ ...good, keyVersion: '1/../2' }, aad), 'invalid');
    await expectKmsError(provider.unwrap({ ...good, ciphertext: 'not base64!' }, aad), 'invalid');
    await expectKmsError(provider.unwrap({ ...good, ciphertext: '' }, aad), 'invalid');
    await expectKmsError(provider.destroyVersion(keyId, 'latest'), 'invalid');
    expect(() => provider.keyName('has/slash')).toThrow(KmsError);
    expect(() => provider.keyName('x'.repeat(64))).toThrow(KmsError);
    expect(fake.requests.length).toBe(before);

    expect(() => new GcpKmsProvider({ keyRing: 'projects/p/keyRings/r' })).toThrow(/keyRing must be/);
    expect(() => new GcpKmsProvider({ keyRing: `${DEFAULT_TEST_KEY_RING}/cryptoKeys/k` })).toThrow(
      /keyRing must be/,
    );
    const legacy = new GcpKmsProvider({
      keyRing: 'projects/example.com:ml-prod/locations/europe-west4/keyRings/sr',
    });
    expect(legacy.keyName('k')).toBe(
      'projects/example.com:ml-prod/locations/europe-west4/keyRings/sr/cryptoKeys/k',
    );
    await legacy.close();
    expect(
      () => new GcpKmsProvider({ keyRing: DEFAULT_TEST_KEY_RING, destroyScheduledDurationSeconds: 3600 }),
    ).toThrow(/at least 86400/);
  });

  it('maps Cloud KMS NOT_FOUND for missing keys, versions and key rings to not-found', async () => {
    const missing = provider.keyName(uniqueId());
    await expectKmsError(provider.versions(missing), 'not-found');
    await expectKmsError(provider.rotate(missing), 'not-found');
    await expectKmsError(provider.destroyVersion(missing, '1'), 'not-found');
    await expectKmsError(provider.destroyKey(missing), 'not-found');
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    await expectKmsError(provider.destroyVersion(keyId, '7'), 'not-found');
    const noRing = new GcpKmsProvider({
      keyRing: 'projects/strongroom-test/locations/global/keyRings/never-created',
      clientOptions: localClientOptions(fake),
    });
    try {
      const error = await expectKmsError(noRing.createKey(noRing.keyName('k')), 'not-found', /never-created/);
      expect(grpcCodeOf(error.cause)).toBe(grpc.status.NOT_FOUND);
    } finally {
      await noRing.close();
    }
  });

  it('refuses an Encrypt response whose ciphertext does not match its checksum', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    await withHook(
      (method, response) => {
        if (method === 'Encrypt') flipBit(response.ciphertext, 20);
      },
      () =>
        expectKmsError(
          provider.wrap(keyId, randomBytes(32), aad),
          'unavailable',
          /does not match its CRC32C checksum/,
        ),
    );
    await withHook(
      (method, response) => {
        if (method === 'Encrypt') response.ciphertextCrc32c = null;
      },
      () => expectKmsError(provider.wrap(keyId, randomBytes(32), aad), 'unavailable', /CRC32C/),
    );
    // Sanity: without the hook the same call succeeds.
    expect((await provider.wrap(keyId, randomBytes(32), aad)).keyVersion).toBe('1');
  });

  it('refuses an Encrypt response that does not confirm the request checksums', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    for (const field of ['verifiedPlaintextCrc32c', 'verifiedAdditionalAuthenticatedDataCrc32c']) {
      await withHook(
        (method, response) => {
          if (method === 'Encrypt') response[field] = false;
        },
        () =>
          expectKmsError(
            provider.wrap(keyId, randomBytes(32), aad),
            'unavailable',
            /did not confirm the request checksums/,
          ),
      );
    }
  });

  it('refuses a Decrypt response whose plaintext does not match its checksum', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    const wrapped = await provider.wrap(keyId, randomBytes(32), aad);
    await withHook(
      (method, response) => {
        if (method === 'Decrypt') flipBit(response.plaintext, 0);
      },
      () =>
        expectKmsError(
          provider.unwrap(wrapped, aad),
          'unavailable',
          /plaintext from Cloud KMS does not match its CRC32C/,
        ),
    );
    await withHook(
      (method, response) => {
        if (method === 'Decrypt')
          response.plaintextCrc32c = { value: String((crc32c(response.plaintext as Buffer) + 1) >>> 0) };
      },
      () => expectKmsError(provider.unwrap(wrapped, aad), 'unavailable', /CRC32C/),
    );
    expect((await provider.unwrap(wrapped, aad)).length).toBe(32);
  });

  it('refuses an Encrypt response for a version of another key', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    await withHook(
      (method, response) => {
        if (method === 'Encrypt')
          response.name = `${DEFAULT_TEST_KEY_RING}/cryptoKeys/other/cryptoKeyVersions/1`;
      },
      () =>
        expectKmsError(provider.wrap(keyId, randomBytes(32), aad), 'unavailable', /unexpected key version/),
    );
  });

  it('Decrypt INVALID_ARGUMENT is unwrap-failed; a wrapped key moved to a same-numbered version of another key fails', async () => {
    const a = provider.keyName(uniqueId());
    const b = provider.keyName(uniqueId());
    await provider.createKey(a);
    await provider.createKey(b);
    const wrapped = await provider.wrap(a, randomBytes(32), aad);
    const error = await expectKmsError(
      provider.unwrap({ ...wrapped, keyId: b }, aad),
      'unwrap-failed',
      /ciphertext is invalid/,
    );
    expect(grpcCodeOf(error.cause)).toBe(grpc.status.INVALID_ARGUMENT);
    await expectKmsError(provider.unwrap(wrapped, Buffer.alloc(0)), 'unwrap-failed');
  });

  it('destroy schedules destruction in Cloud KMS; the version is reported destroyed at once and erased later', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    const wrapped = await provider.wrap(keyId, randomBytes(32), aad);
    await provider.rotate(keyId);
    await provider.destroyVersion(keyId, '1');
    const v1 = `${keyId}/cryptoKeyVersions/1`;
    expect(last('DestroyCryptoKeyVersion').request.name).toBe(v1);
    expect(fake.inspectVersion(v1)).toEqual({ state: 'DESTROY_SCHEDULED', hasKeyMaterial: true });
    await expectKmsError(provider.unwrap(wrapped, aad), 'destroyed', /DESTROY_SCHEDULED/);
    // Destroying again is not an error: the goal is already reached.
    await provider.destroyKey(keyId);
    await provider.destroyKey(keyId);
    fake.advanceClock(31 * DAY_S * 1000);
    expect(fake.inspectVersion(v1)).toEqual({ state: 'DESTROYED', hasKeyMaterial: false });
    expect((await provider.versions(keyId)).map((v) => [v.version, v.state, v.primary])).toEqual([
      ['1', 'destroyed', false],
      ['2', 'destroyed', false],
    ]);
    await expectKmsError(provider.unwrap(wrapped, aad), 'destroyed', /state DESTROYED/);
  });

  it('sets destroy_scheduled_duration on new keys when configured', async () => {
    const short = localProvider(fake, { destroyScheduledDurationSeconds: DAY_S });
    try {
      const keyId = short.keyName(uniqueId());
      await short.createKey(keyId);
      expect(last('CreateCryptoKey').request.cryptoKey).toMatchObject({
        destroyScheduledDuration: { seconds: String(DAY_S) },
      });
      await short.rotate(keyId);
      await short.destroyVersion(keyId, '1');
      fake.advanceClock(DAY_S * 1000 + 1000);
      expect(fake.inspectVersion(`${keyId}/cryptoKeyVersions/1`)).toEqual({
        state: 'DESTROYED',
        hasKeyMaterial: false,
      });
    } finally {
      await short.close();
    }
  });

  it('a Decrypt refused for a destroyed version (after the version check raced) is destroyed; disabled is unavailable', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    const wrapped = await provider.wrap(keyId, randomBytes(32), aad);
    fake.failNext(
      'Decrypt',
      grpc.status.FAILED_PRECONDITION,
      `${keyId}/cryptoKeyVersions/1 is not enabled, current state is: DESTROYED.`,
    );
    await expectKmsError(provider.unwrap(wrapped, aad), 'destroyed');
    fake.failNext(
      'Decrypt',
      grpc.status.FAILED_PRECONDITION,
      `${keyId}/cryptoKeyVersions/1 is not enabled, current state is: DISABLED.`,
    );
    await expectKmsError(provider.unwrap(wrapped, aad), 'unavailable', /DISABLED/);
    await withHook(
      (method, response) => {
        if (method === 'GetCryptoKeyVersion') response.state = 'DISABLED';
      },
      () => expectKmsError(provider.unwrap(wrapped, aad), 'unavailable', /is DISABLED, not ENABLED/),
    );
  });

  it('PERMISSION_DENIED is unavailable with a hint about IAM, and keeps the gRPC error as cause', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    fake.failNext(
      'Encrypt',
      grpc.status.PERMISSION_DENIED,
      "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied",
    );
    const error = await expectKmsError(
      provider.wrap(keyId, randomBytes(32), aad),
      'unavailable',
      /useToEncrypt.*IAM/,
    );
    expect(grpcCodeOf(error.cause)).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('a transient UNAVAILABLE is retried by the client library', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    const before = requestsOf('Encrypt').length;
    fake.failNext('Encrypt', grpc.status.UNAVAILABLE, 'try again');
    expect((await provider.wrap(keyId, randomBytes(32), aad)).keyVersion).toBe('1');
    expect(requestsOf('Encrypt').length - before).toBe(2);
  });

  it('rotation waits for a version that is still PENDING_GENERATION', async () => {
    const keyId = provider.keyName(uniqueId());
    await provider.createKey(keyId);
    let pendingAnswers = 0;
    const version = await withHook(
      (method, response) => {
        if ((method === 'CreateCryptoKeyVersion' || method === 'GetCryptoKeyVersion') && pendingAnswers < 2) {
          pendingAnswers++;
          response.state = 'PENDING_GENERATION';
        }
      },
      () => provider.rotate(keyId),
    );
    expect(version).toBe('2');
    expect(pendingAnswers).toBe(2);
    expect(last('UpdateCryptoKeyPrimaryVersion').request).toMatchObject({
      name: keyId,
      cryptoKeyVersionId: '2',
    });
    expect((await provider.versions(keyId)).find((v) => v.primary)?.version).toBe('2');
  });

  it('a closed provider refuses work', async () => {
    const p = localProvider(fake);
    await p.close();
    await p.close();
    await expectKmsError(p.versions(p.keyName('k')), 'unavailable', /closed/);
  });
});

describe('gcp provider when Cloud KMS cannot be reached', () => {
  it('a refused connection is unavailable within the configured timeout', async () => {
    // A port that was just free: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const address = probe.address() as net.AddressInfo;
        probe.close(() => {
          resolve(address.port);
        });
      });
    });
    const provider = new GcpKmsProvider({
      keyRing: DEFAULT_TEST_KEY_RING,
      clientOptions: localClientOptions({ endpoint: '127.0.0.1', port, caPem: unrelatedCaPem() }),
      timeoutMs: 1500,
    });
    const started = Date.now();
    try {
      const error = await expectKmsError(
        provider.wrap(provider.keyName('k'), randomBytes(32), Buffer.from('x')),
        'unavailable',
      );
      expect(error.cause).toBeDefined();
    } finally {
      await provider.close();
    }
    expect(Date.now() - started).toBeLessThan(6000);
  });

  it('a server that accepts TCP but never answers is unavailable within the configured timeout', async () => {
    const sockets: net.Socket[] = [];
    const blackhole = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    const port = (blackhole.address() as net.AddressInfo).port;
    const provider = new GcpKmsProvider({
      keyRing: DEFAULT_TEST_KEY_RING,
      clientOptions: localClientOptions({ endpoint: '127.0.0.1', port, caPem: unrelatedCaPem() }),
      timeoutMs: 1000,
    });
    const started = Date.now();
    try {
      await expectKmsError(provider.versions(provider.keyName('k')), 'unavailable');
    } finally {
      await provider.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => {
        blackhole.close(() => {
          resolve();
        });
      });
    }
    expect(sockets.length).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(6000);
  });

  it('a server with a certificate from another CA is refused (TLS is verified)', async () => {
    const fake = await startFakeGcpKms();
    const provider = new GcpKmsProvider({
      keyRing: DEFAULT_TEST_KEY_RING,
      clientOptions: localClientOptions({
        endpoint: fake.endpoint,
        port: fake.port,
        caPem: unrelatedCaPem(),
      }),
      timeoutMs: 1500,
    });
    try {
      await expectKmsError(provider.createKey(provider.keyName('k')), 'unavailable');
      expect(fake.requests).toHaveLength(0);
    } finally {
      await provider.close();
      await fake.stop();
    }
  });
});

/** A valid trust anchor that signed nothing the servers use. */
function unrelatedCaPem(): string {
  return createCertificateAuthority('unrelated CA', 1).certPem;
}

function grpcCodeOf(error: unknown): unknown {
  return (error as { code?: unknown } | undefined)?.code;
}

function flipBit(bytes: unknown, index: number): void {
  if (!Buffer.isBuffer(bytes) || index >= bytes.length) throw new Error('no such byte to corrupt');
  bytes[index] = (bytes[index] ?? 0) ^ 0x01;
}
