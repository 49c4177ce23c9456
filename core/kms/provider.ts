/**
 * The one small interface every key-encryption-key (KEK) provider implements: local (the default), gcp and pkcs11.
 *
 * A KEK is named by a provider-specific key id and has numbered versions. Exactly one version is primary: wrap()
 * always uses it, unwrap() uses whichever version a wrapped key records. Rotation adds a new primary version and
 * leaves the old ones able to unwrap, so existing DEKs can be rewrapped without touching any ciphertext.
 * Destroying a version (or the whole key) makes every DEK wrapped under it permanently unrecoverable.
 */

/** A data key wrapped under one KEK version. Serializable: it lives in the artifact's metadata. */
export interface WrappedKey {
  /** The provider that wrapped it: 'local' | 'gcp' | 'pkcs11'. */
  readonly provider: string;
  /** The KEK's id within the provider (a local key name, a GCP CryptoKey resource name, a PKCS#11 key label). */
  readonly keyId: string;
  /** The KEK version that wrapped it (decimal string: "1", "2", ...). */
  readonly keyVersion: string;
  /** Provider-specific ciphertext, base64. */
  readonly ciphertext: string;
}

export type KeyVersionState = 'enabled' | 'destroyed';

export interface KeyVersionInfo {
  readonly version: string;
  readonly state: KeyVersionState;
  readonly primary: boolean;
  /** RFC 3339 creation time. */
  readonly createdAt: string;
}

export type KmsErrorCode =
  /** The key or the version does not exist. */
  | 'not-found'
  /** The version (or the key) was destroyed: what it wrapped is gone for good. */
  | 'destroyed'
  /** The wrapped key does not verify: tampered, wrong associated data, or another key. */
  | 'unwrap-failed'
  /** Bad input: empty plaintext, wrong provider, malformed wrapped key. */
  | 'invalid'
  /** The KMS could not be reached or answered with an error. */
  | 'unavailable';

/** Every provider failure. Security decisions treat any KmsError as "deny". */
export class KmsError extends Error {
  override readonly name = 'KmsError';
  readonly code: KmsErrorCode;
  constructor(code: KmsErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

export interface KmsProvider {
  /** 'local' | 'gcp' | 'pkcs11' */
  readonly name: string;
  /** Creates the key with version 1 as primary. Fails with 'invalid' if it exists. */
  createKey(keyId: string): Promise<void>;
  /**
   * Encrypts `plaintext` (a DEK, at most 64 bytes) under the key's primary version, bound to `aad`: unwrap must be
   * given the same bytes.
   */
  wrap(keyId: string, plaintext: Uint8Array, aad: Uint8Array): Promise<WrappedKey>;
  /** Decrypts with the version recorded in `wrapped`. The caller must zero the result when done. */
  unwrap(wrapped: WrappedKey, aad: Uint8Array): Promise<Buffer>;
  /** All versions of the key, oldest first. */
  versions(keyId: string): Promise<readonly KeyVersionInfo[]>;
  /** Adds a new version and makes it primary; returns its version. Old versions still unwrap. */
  rotate(keyId: string): Promise<string>;
  /** Destroys one version: key material is erased and cannot be restored. The primary cannot be destroyed. */
  destroyVersion(keyId: string, version: string): Promise<void>;
  /** Destroys every version of the key (crypto-shredding of everything it wrapped). */
  destroyKey(keyId: string): Promise<void>;
  /** Releases connections and sessions. */
  close(): Promise<void>;
}

/**
 * Rewraps `wrapped` under the key's current primary version if it is not already there. Only the wrapped DEK
 * changes: ciphertext that the DEK encrypts is never touched. The plaintext DEK is zeroed before returning.
 */
export async function rewrapToPrimary(
  provider: KmsProvider,
  wrapped: WrappedKey,
  aad: Uint8Array,
): Promise<WrappedKey> {
  const primary = (await provider.versions(wrapped.keyId)).find((v) => v.primary);
  if (!primary) throw new KmsError('not-found', `key ${wrapped.keyId} has no primary version`);
  if (primary.version === wrapped.keyVersion) return wrapped;
  const dek = await provider.unwrap(wrapped, aad);
  try {
    return await provider.wrap(wrapped.keyId, dek, aad);
  } finally {
    dek.fill(0);
  }
}
