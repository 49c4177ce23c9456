/**
 * The key service's half of the write path that needs no secret: a writer sealed a fresh DEK to the artifact's
 * recipient public key (core/envelope/seal.ts); the key service unseals it with the recipient private key and wraps
 * it under the KMS KEK, so from then on it is like any other version's DEK. The plaintext DEK is zeroed either way.
 */
import { unsealDek, type SealContext, type SealedDek } from '../envelope/index.ts';
import type { KmsProvider, WrappedKey } from './provider.ts';

/**
 * Unseals the DEK, hands it to `use` and zeroes it when `use` settles. Throws EnvelopeError when the sealed key
 * does not open (`use` is not called).
 */
export async function withUnsealedDek<T>(
  sealed: SealedDek,
  recipientPrivateKey: Uint8Array,
  context: SealContext,
  use: (dek: Uint8Array) => Promise<T>,
): Promise<T> {
  const dek = await unsealDek(recipientPrivateKey, sealed, context);
  try {
    return await use(dek);
  } finally {
    dek.fill(0);
  }
}

/** Unseals the DEK and wraps it under the KMS KEK `keyId`. */
export function rewrapSealedDek(
  sealed: SealedDek,
  recipientPrivateKey: Uint8Array,
  context: SealContext,
  kms: KmsProvider,
  keyId: string,
  aad: Uint8Array,
): Promise<WrappedKey> {
  return withUnsealedDek(sealed, recipientPrivateKey, context, (dek) => kms.wrap(keyId, dek, aad));
}
