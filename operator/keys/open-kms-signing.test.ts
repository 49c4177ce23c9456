/** KmsRunnable.checkpointSigningKey: --audit-signer kms asks the opened KMS for its checkpoint signing key. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSoftHsmToken } from '../../test/hsm/softhsm.ts';
import { FileKeySetStore, LocalKmsProvider } from '../../core/kms/local.ts';
import { Pkcs11KmsProvider } from '../../core/kms/pkcs11.ts';
import { CHECKPOINT_SIGNING_KEY_ID } from '../../core/kms/signing.ts';
import { KmsRunnable } from './open-kms.ts';

const dir = mkdtempSync(join(tmpdir(), 'strongroom-kms-signing-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('KmsRunnable.checkpointSigningKey', () => {
  it('is unavailable before the KMS opens, and refused by the local KMS', async () => {
    const kms = new KmsRunnable('local', () =>
      Promise.resolve(new LocalKmsProvider(new FileKeySetStore(join(dir, 'keyset.json')))),
    );
    await expect(kms.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID)).rejects.toMatchObject({
      code: 'unavailable',
    });
    await kms.start();
    await expect(kms.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID)).rejects.toMatchObject({
      code: 'invalid',
      message: 'the local KMS cannot hold a checkpoint signing key',
    });
    await kms.stop();
  });

  it('gives the pkcs11 token’s Ed25519 key', async () => {
    const token = await createSoftHsmToken('open-kms-signing');
    const kms = new KmsRunnable('pkcs11', () =>
      Pkcs11KmsProvider.open({ module: token.module, tokenLabel: token.tokenLabel, pin: token.pin }),
    );
    try {
      await kms.start();
      const key = await kms.checkpointSigningKey(CHECKPOINT_SIGNING_KEY_ID);
      expect(key.description).toContain(`"${CHECKPOINT_SIGNING_KEY_ID}"`);
      expect(await key.publicKey()).toHaveLength(32);
      expect(await key.sign(Buffer.from('note\n'))).toHaveLength(64);
    } finally {
      await kms.stop();
      await token.cleanup();
    }
  });
});
