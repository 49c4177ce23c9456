// Original file: proto/strongroom/v1/keybroker.proto

/**
 * Optional, caller-supplied context recorded with an audit entry. Informational only: it is never trusted for
 * authorization.
 */
export interface AuditContext {
  /**
   * Digest of the file the key is wanted for, "sha256:" followed by 64 lowercase hex digits, or empty.
   */
  fileDigest?: string;
}

/**
 * Optional, caller-supplied context recorded with an audit entry. Informational only: it is never trusted for
 * authorization.
 */
export interface AuditContext__Output {
  /**
   * Digest of the file the key is wanted for, "sha256:" followed by 64 lowercase hex digits, or empty.
   */
  fileDigest: string;
}
