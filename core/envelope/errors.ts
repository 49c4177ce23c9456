/** What failed, precisely enough for an operator to act on. */
export type EnvelopeErrorKind =
  /** The header is malformed, of an unknown version or algorithm, or corrupted. */
  | 'header'
  /** The header does not verify under this DEK: the wrong key (or a header forged for another key). */
  | 'wrong-key'
  /** The key is right but the context (artifact uid, name, version, path) is not the one the file was sealed for. */
  | 'wrong-context'
  /** The file is shorter than its authenticated length says. */
  | 'truncated'
  /** The file is longer than its authenticated length says. */
  | 'extended'
  /** A segment failed authentication: altered, reordered, duplicated or transplanted. `segment` names it. */
  | 'segment'
  /** A directory manifest or file set does not match. */
  | 'manifest'
  /** A decrypted file's SHA-256 is not the one its manifest records (the encryptor recorded a false digest). */
  | 'digest'
  /** Bad arguments from the caller. */
  | 'invalid'
  /** Reading or writing failed. */
  | 'io';

/** Every envelope failure. No plaintext output exists when one is thrown. */
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
  readonly kind: EnvelopeErrorKind;
  /** The failing segment's index, for kind 'segment'. */
  readonly segment: number | undefined;
  constructor(kind: EnvelopeErrorKind, message: string, options?: ErrorOptions & { segment?: number }) {
    super(message, options);
    this.kind = kind;
    this.segment = options?.segment;
  }
}
