// Original file: proto/strongroom/v1/keybroker.proto

/**
 * Why access ended. Matches the operator's revocation bus (operator/revocation/bus.ts) one to one.
 */
export const RevocationReason = {
  /**
   * Never sent. A receiver treats it as "every key revoked"; a value it does not know fails the stream (see
   * proto/keybroker.ts), with the same effect.
   */
  REVOCATION_REASON_UNSPECIFIED: 'REVOCATION_REASON_UNSPECIFIED',
  /**
   * The grant's validity window ended (bus: grant-expired).
   */
  REVOCATION_REASON_GRANT_EXPIRED: 'REVOCATION_REASON_GRANT_EXPIRED',
  /**
   * The grant was deleted (bus: grant-deleted).
   */
  REVOCATION_REASON_GRANT_DELETED: 'REVOCATION_REASON_GRANT_DELETED',
  /**
   * The grant was revoked by an administrator (bus: grant-revoked).
   */
  REVOCATION_REASON_GRANT_REVOKED: 'REVOCATION_REASON_GRANT_REVOKED',
  /**
   * The grant's approval was denied or withdrawn (bus: grant-denied).
   */
  REVOCATION_REASON_GRANT_DENIED: 'REVOCATION_REASON_GRANT_DENIED',
  /**
   * The grant was suspended or quarantined (bus: grant-suspended).
   */
  REVOCATION_REASON_GRANT_SUSPENDED: 'REVOCATION_REASON_GRANT_SUSPENDED',
  /**
   * Versions were removed from the grant's scope (bus: versions-removed).
   */
  REVOCATION_REASON_VERSIONS_REMOVED: 'REVOCATION_REASON_VERSIONS_REMOVED',
  /**
   * The artifact was deleted (bus: artifact-deleted).
   */
  REVOCATION_REASON_ARTIFACT_DELETED: 'REVOCATION_REASON_ARTIFACT_DELETED',
  /**
   * A version was withdrawn through spec.withdrawnVersions (bus: version-withdrawn).
   */
  REVOCATION_REASON_VERSION_WITHDRAWN: 'REVOCATION_REASON_VERSION_WITHDRAWN',
} as const;

/**
 * Why access ended. Matches the operator's revocation bus (operator/revocation/bus.ts) one to one.
 */
export type RevocationReason =
  /**
   * Never sent. A receiver treats it as "every key revoked"; a value it does not know fails the stream (see
   * proto/keybroker.ts), with the same effect.
   */
  | 'REVOCATION_REASON_UNSPECIFIED'
  | 0
  /**
   * The grant's validity window ended (bus: grant-expired).
   */
  | 'REVOCATION_REASON_GRANT_EXPIRED'
  | 1
  /**
   * The grant was deleted (bus: grant-deleted).
   */
  | 'REVOCATION_REASON_GRANT_DELETED'
  | 2
  /**
   * The grant was revoked by an administrator (bus: grant-revoked).
   */
  | 'REVOCATION_REASON_GRANT_REVOKED'
  | 3
  /**
   * The grant's approval was denied or withdrawn (bus: grant-denied).
   */
  | 'REVOCATION_REASON_GRANT_DENIED'
  | 4
  /**
   * The grant was suspended or quarantined (bus: grant-suspended).
   */
  | 'REVOCATION_REASON_GRANT_SUSPENDED'
  | 5
  /**
   * Versions were removed from the grant's scope (bus: versions-removed).
   */
  | 'REVOCATION_REASON_VERSIONS_REMOVED'
  | 6
  /**
   * The artifact was deleted (bus: artifact-deleted).
   */
  | 'REVOCATION_REASON_ARTIFACT_DELETED'
  | 7
  /**
   * A version was withdrawn through spec.withdrawnVersions (bus: version-withdrawn).
   */
  | 'REVOCATION_REASON_VERSION_WITHDRAWN'
  | 8;

/**
 * Why access ended. Matches the operator's revocation bus (operator/revocation/bus.ts) one to one.
 */
export type RevocationReason__Output = (typeof RevocationReason)[keyof typeof RevocationReason];
