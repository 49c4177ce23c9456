import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  EnvelopeError,
  decryptFile,
  encryptFile,
  generateRecipientKeyPair,
  newDek,
  sealDek,
} from '../envelope/index.ts';
import { FileKeySetStore, LocalKmsProvider } from './local.ts';
import { rewrapSealedDek } from './sealed.ts';

const dir = mkdtempSync(join(tmpdir(), 'strongroom-sealed-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
const seal = { artifactUid: 'uid-3', artifactName: 'bert', version: 'v2' };
const aad = Buffer.from('uid-3/bert/v2');

describe('publishing a version without holding a KEK', () => {
  it('a writer encrypts and seals; the key service rewraps under the KEK; a reader decrypts with the unwrapped DEK', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, 'kms.json')));
    await kms.createKey('artifacts/bert');
    const recipient = await generateRecipientKeyPair(); // the key service's; only the public half is published

    // The writer: public key only.
    const dek = newDek();
    writeFileSync(join(dir, 'model.bin'), 'fine-tuned weights');
    await encryptFile(join(dir, 'model.bin'), join(dir, 'model.sre'), {
      dek,
      keyId: 'uid-3/v2',
      context: { ...seal, path: '' },
    });
    const sealed = await sealDek(recipient.publicKey, dek, seal);
    dek.fill(0);

    // The key service.
    const wrapped = await rewrapSealedDek(sealed, recipient.privateKey, seal, kms, 'artifacts/bert', aad);
    expect(wrapped).toMatchObject({ provider: 'local', keyId: 'artifacts/bert', keyVersion: '1' });

    // A reader.
    const released = await kms.unwrap(wrapped, aad);
    await decryptFile(join(dir, 'model.sre'), join(dir, 'model.out'), {
      dek: released,
      context: { ...seal, path: '' },
    });
    expect(readFileSync(join(dir, 'model.out'), 'utf8')).toBe('fine-tuned weights');
  });

  it('refuses a DEK sealed for another version, and wraps nothing', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, 'kms2.json')));
    await kms.createKey('artifacts/bert');
    const recipient = await generateRecipientKeyPair();
    const sealed = await sealDek(recipient.publicKey, newDek(), { ...seal, version: 'v1' });
    const error = await rewrapSealedDek(sealed, recipient.privateKey, seal, kms, 'artifacts/bert', aad).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EnvelopeError);
    expect((error as EnvelopeError).kind).toBe('wrong-key');
  });
});
