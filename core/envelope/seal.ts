/**
 * The write path that needs no secret: a writer seals a fresh DEK to an artifact's published recipient public key
 * with HPKE (RFC 9180, base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM). Only the key service,
 * holding the recipient private key, can unseal it, after which it rewraps the DEK under the KMS KEK.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { EnvelopeError } from './errors.ts';
import { DEK_LENGTH } from './format.ts';

export const SEAL_SUITE = 'HPKE-Base-X25519-SHA256-AES256GCM';

/** What a sealed DEK is for; bound into HPKE's info, so it cannot be replayed for another artifact or version. */
export interface SealContext {
  readonly artifactUid: string;
  readonly artifactName: string;
  readonly version: string;
}

export interface SealedDek {
  readonly suite: typeof SEAL_SUITE;
  /** The encapsulated key, base64. */
  readonly enc: string;
  /** The sealed DEK, base64. */
  readonly ciphertext: string;
}

export interface RecipientKeyPair {
  /** Raw X25519 public key, base64: published in the ModelArtifact's status. */
  readonly publicKey: string;
  /** Raw X25519 private key: keep it wrapped under the KMS KEK; zero it after use. */
  readonly privateKey: Buffer;
}

const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes256Gcm(),
});

function info(context: SealContext): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify(['strongroom/seal/v1', context.artifactUid, context.artifactName, context.version]),
  );
}

function decodeKey(base64: string, what: string): Uint8Array {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length !== 32 || bytes.toString('base64') !== base64)
    throw new EnvelopeError('invalid', `${what} is not a base64 32-byte X25519 key`);
  return bytes;
}

/** A fresh random 32-byte data key. */
export function newDek(): Buffer {
  return randomBytes(DEK_LENGTH);
}

export async function generateRecipientKeyPair(): Promise<RecipientKeyPair> {
  const pair = await suite.kem.generateKeyPair();
  return {
    publicKey: Buffer.from(await suite.kem.serializePublicKey(pair.publicKey)).toString('base64'),
    privateKey: Buffer.from(await suite.kem.serializePrivateKey(pair.privateKey)),
  };
}

export async function sealDek(
  recipientPublicKey: string,
  dek: Uint8Array,
  context: SealContext,
): Promise<SealedDek> {
  if (dek.length !== DEK_LENGTH)
    throw new EnvelopeError('invalid', `a DEK is ${DEK_LENGTH} bytes, got ${dek.length}`);
  const publicKey = await suite.kem.deserializePublicKey(
    decodeKey(recipientPublicKey, 'the recipient public key'),
  );
  const sealed = await suite.seal({ recipientPublicKey: publicKey, info: info(context) }, dek);
  return {
    suite: SEAL_SUITE,
    enc: Buffer.from(sealed.enc).toString('base64'),
    ciphertext: Buffer.from(sealed.ct).toString('base64'),
  };
}

/** Unseals a DEK; fails with kind 'wrong-key' for another recipient, 'wrong-context' cannot be told apart. */
export async function unsealDek(
  privateKey: Uint8Array,
  sealed: SealedDek,
  context: SealContext,
): Promise<Buffer> {
  if ((sealed.suite as string) !== SEAL_SUITE)
    throw new EnvelopeError('invalid', `unsupported seal suite ${sealed.suite}`);
  const recipientKey = await suite.kem.deserializePrivateKey(privateKey);
  let plain: ArrayBuffer;
  try {
    plain = await suite.open(
      { recipientKey, enc: Buffer.from(sealed.enc, 'base64'), info: info(context) },
      Buffer.from(sealed.ciphertext, 'base64'),
    );
  } catch (cause) {
    throw new EnvelopeError(
      'wrong-key',
      'the sealed DEK does not open: another recipient key, another artifact or version, or tampered',
      { cause },
    );
  }
  const dek = Buffer.from(plain);
  if (dek.length !== DEK_LENGTH) {
    dek.fill(0);
    throw new EnvelopeError('invalid', 'the sealed key is not a 32-byte DEK');
  }
  return dek;
}

/** The DER SubjectPublicKeyInfo prefix of an X25519 public key (RFC 8410); the raw 32-byte key follows it. */
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/**
 * The raw X25519 public key (base64, what `sealDek` takes) inside a PEM SubjectPublicKeyInfo, such as a
 * ModelArtifact's `status.recipientPublicKey.publicKeyPem`.
 *
 * @throws EnvelopeError kind 'invalid' when the PEM does not parse or holds another kind of key.
 */
export function recipientKeyFromPem(pem: string): string {
  let der: Buffer;
  try {
    der = createPublicKey(pem).export({ type: 'spki', format: 'der' });
  } catch (cause) {
    throw new EnvelopeError('invalid', 'the recipient key is not a valid PEM public key', { cause });
  }
  if (
    der.length !== X25519_SPKI_PREFIX.length + 32 ||
    !der.subarray(0, X25519_SPKI_PREFIX.length).equals(X25519_SPKI_PREFIX)
  )
    throw new EnvelopeError('invalid', 'the recipient key is not an X25519 key');
  return der.subarray(X25519_SPKI_PREFIX.length).toString('base64');
}
