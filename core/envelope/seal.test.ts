import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EnvelopeError } from './errors.ts';
import { generateRecipientKeyPair, newDek, recipientKeyFromPem, sealDek, unsealDek } from './seal.ts';

const context = { artifactUid: 'uid-1', artifactName: 'resnet50', version: 'v4' };

describe('sealing a DEK to a recipient public key (HPKE X25519 / HKDF-SHA256 / AES-256-GCM)', () => {
  it('a writer without any secret seals; only the recipient private key unseals, for the same artifact version', async () => {
    const recipient = await generateRecipientKeyPair();
    expect(Buffer.from(recipient.publicKey, 'base64')).toHaveLength(32);
    const dek = newDek();
    const sealed = await sealDek(recipient.publicKey, dek, context);
    expect(Buffer.from(sealed.ciphertext, 'base64').includes(dek)).toBe(false);
    expect((await unsealDek(recipient.privateKey, sealed, context)).equals(dek)).toBe(true);
  });

  it('fails closed for another recipient, another version or artifact, or a tampered seal', async () => {
    const recipient = await generateRecipientKeyPair();
    const other = await generateRecipientKeyPair();
    const sealed = await sealDek(recipient.publicKey, newDek(), context);
    const stranger = (await generateRecipientKeyPair()).publicKey;
    const attempts = [
      () => unsealDek(other.privateKey, sealed, context),
      () => unsealDek(recipient.privateKey, sealed, { ...context, version: 'v5' }),
      () => unsealDek(recipient.privateKey, sealed, { ...context, artifactUid: 'uid-2' }),
      () =>
        unsealDek(
          recipient.privateKey,
          { ...sealed, ciphertext: Buffer.from(randomBytes(48)).toString('base64') },
          context,
        ),
      () => unsealDek(recipient.privateKey, { ...sealed, enc: stranger }, context),
    ];
    for (const attempt of attempts) {
      const error = await attempt().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EnvelopeError);
      expect((error as EnvelopeError).kind).toBe('wrong-key');
    }
  });

  it('rejects malformed input clearly', async () => {
    await expect(sealDek('not-a-key', newDek(), context)).rejects.toThrow(/not a base64 32-byte X25519 key/);
    const recipient = await generateRecipientKeyPair();
    await expect(sealDek(recipient.publicKey, randomBytes(16), context)).rejects.toThrow(/a DEK is 32 bytes/);
  });
});

describe('recipientKeyFromPem', () => {
  it('returns the raw key inside an X25519 SubjectPublicKeyInfo, and refuses anything else', async () => {
    const { createPublicKey, generateKeyPairSync } = await import('node:crypto');
    const { publicKey } = await generateRecipientKeyPair();
    const pem = createPublicKey({
      key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(publicKey, 'base64').toString('base64url') },
      format: 'jwk',
    })
      .export({ type: 'spki', format: 'pem' })
      .toString();
    expect(recipientKeyFromPem(pem)).toBe(publicKey);
    const ed25519 = generateKeyPairSync('ed25519')
      .publicKey.export({ type: 'spki', format: 'pem' })
      .toString();
    expect(() => recipientKeyFromPem(ed25519)).toThrow(/not an X25519 key/);
    expect(() => recipientKeyFromPem('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')).toThrow(
      /not a valid PEM public key/,
    );
  });
});
