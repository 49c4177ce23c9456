/** What failed in the audit log, precisely enough for an operator to act on. */
export type AuditErrorKind =
  /** Bad arguments: a malformed origin, key, event or option. */
  | 'invalid'
  /** Reading, writing or syncing the log file failed. */
  | 'io'
  /** The log on disk does not verify; the writer refuses to extend it. */
  | 'corrupt'
  /**
   * The log on disk is shorter than, or inconsistent with, a checkpoint published earlier (`trustedCheckpoint`): it
   * was rolled back or rewritten; the writer refuses to extend it.
   */
  | 'rollback'
  /** An earlier write failed, so the log refuses every further append until it is reopened. */
  | 'failed'
  /** The log was closed. */
  | 'closed';

/** Every failure of the audit writer. An append that rejects with one of these was not acknowledged. */
export class AuditError extends Error {
  override readonly name = 'AuditError';
  readonly kind: AuditErrorKind;
  constructor(kind: AuditErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}
