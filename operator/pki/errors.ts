/** What went wrong, precisely enough for the caller to decide between retrying and alerting. */
export type PkiErrorCode =
  /** The CA Secret does not exist (yet): a follower started before the leader created it. Retry later. */
  | 'missing'
  /** A Secret exists but cannot be trusted as it is (unparsable PEM, key not matching its certificate, not a CA,
   * wrong type). Never overwritten automatically: a human must look. */
  | 'malformed'
  /** Another writer kept changing the same object, or an object of the expected name exists with a shape Strongroom
   * must not overwrite (for example a Secret of another type). */
  | 'conflict'
  /** The caller asked for something invalid (bad names, lifetimes, key type). */
  | 'invalid';

/** Every failure of the internal CA. The message never contains key material. */
export class PkiError extends Error {
  override readonly name = 'PkiError';
  readonly code: PkiErrorCode;
  constructor(code: PkiErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
