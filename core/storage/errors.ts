/** What went wrong while writing or locating a version's ciphertext on the artifact's storage. */
export type StorageErrorKind =
  /** Bad arguments: a version name, a storage path, a recipient key or an artifact identity that is not valid. */
  | 'invalid'
  /** A path that would leave the storage root, or a source tree with something other than files and directories. */
  | 'unsafe-path'
  /** The version's directory already exists: versions are immutable, so it is never replaced. */
  | 'exists'
  /** The source holds no bytes to publish (a version is at least 1 byte). */
  | 'empty'
  /** Reading the source or writing the storage failed (for example a full volume). */
  | 'io';

/** Every failure of core/storage. Nothing is left at the target when one is thrown by writeVersion. */
export class StorageError extends Error {
  override readonly name = 'StorageError';
  readonly kind: StorageErrorKind;
  constructor(kind: StorageErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}
