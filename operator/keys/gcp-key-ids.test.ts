import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GcpKmsProvider } from '../../core/kms/gcp.ts';
import { KmsError } from '../../core/kms/provider.ts';
import { DEFAULT_TEST_KEY_RING, startFakeGcpKms } from '../../test/kms-server/gcp-kms-server.ts';
import { withShortKeyIds } from './gcp-key-ids.ts';

describe('gcp with the operator short key ids', () => {
  let fake: Awaited<ReturnType<typeof startFakeGcpKms>>;
  let gcp: GcpKmsProvider;
  beforeAll(async () => {
    fake = await startFakeGcpKms();
    gcp = new GcpKmsProvider({
      keyRing: DEFAULT_TEST_KEY_RING,
      clientOptions: {
        apiEndpoint: fake.endpoint,
        port: fake.port,
        sslCreds: grpc.credentials.createSsl(Buffer.from(fake.caPem)),
        universeDomain: 'googleapis.com',
        'grpc.ssl_target_name_override': 'localhost',
      },
    });
  });
  afterAll(async () => {
    await gcp.close();
    await fake.stop();
  });

  it('the bare provider refuses a short id: the operator must go through the adapter', async () => {
    await expect(gcp.createKey('strongroom-public')).rejects.toBeInstanceOf(KmsError);
  });

  it('creates, wraps, rotates and unwraps by short id, and records the short id in the wrapped key', async () => {
    const kms = withShortKeyIds(gcp);
    await kms.createKey('strongroom-internal');
    const dek = randomBytes(32);
    const aad = Buffer.from('artifact/v1');
    const wrapped = await kms.wrap('strongroom-internal', dek, aad);
    expect(wrapped.keyId).toBe('strongroom-internal');
    expect(Buffer.from(await kms.unwrap(wrapped, aad)).equals(dek)).toBe(true);
    expect(await kms.rotate('strongroom-internal')).toBe('2');
    const versions = await kms.versions('strongroom-internal');
    expect(versions.map((v) => [v.version, v.primary])).toEqual([
      ['1', false],
      ['2', true],
    ]);
    await kms.destroyVersion('strongroom-internal', '1');
    await expect(kms.unwrap(wrapped, aad)).rejects.toMatchObject({ code: 'destroyed' });
    // The key lives in the configured key ring under the full name.
    expect((await gcp.versions(gcp.keyName('strongroom-internal'))).length).toBe(2);
  });
});
