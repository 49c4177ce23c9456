/** What went wrong while writing, reading or locating a version's ciphertext on the artifact's storage (a volume or S3). */
export type StorageErrorKind =
  /** Bad arguments: a version name, a storage path, a recipient key or an artifact identity that is not valid. */
  | 'invalid'
  /** A path that would leave the storage root, or a source tree with something other than files and directories. */
  | 'unsafe-path'
  /** The version's directory already exists: versions are immutable, so it is never replaced. */
  | 'exists'
  /** The source holds no bytes to publish (a version is at least 1 byte). */
  | 'empty'
  /** Reading the source or writing the storage failed (for example a full volume, a connection reset). */
  | 'io'
  /** The bucket, a version's manifest or one of its objects does not exist in object storage. */
  | 'not-found'
  /** Object storage refused the credentials or the request (HTTP 403). */
  | 'denied'
  /**
   * Object storage answered with something other than what was asked for: a short or long body, a wrong
   * Content-Range or length, an object that changed while it was read, a size that does not match what was written.
   */
  | 'corrupt'
  /** The caller's AbortSignal stopped the transfer. */
  | 'aborted';

/** Every failure of core/storage. Nothing is left at the target when one is thrown by writeVersion. */
export class StorageError extends Error {
  override readonly name = 'StorageError';
  readonly kind: StorageErrorKind;
  constructor(kind: StorageErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}
