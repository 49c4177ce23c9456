// Original file: proto/strongroom/v1/keybroker.proto

/**
 * Names an AccessGrant, pinned to one incarnation by its UID.
 */
export interface GrantRef {
  /**
   * Namespace of the AccessGrant.
   */
  namespace?: string;
  /**
   * Name of the AccessGrant.
   */
  name?: string;
  /**
   * metadata.uid of the AccessGrant, so that a grant deleted and recreated under the same name is distinguishable.
   */
  uid?: string;
}

/**
 * Names an AccessGrant, pinned to one incarnation by its UID.
 */
export interface GrantRef__Output {
  /**
   * Namespace of the AccessGrant.
   */
  namespace: string;
  /**
   * Name of the AccessGrant.
   */
  name: string;
  /**
   * metadata.uid of the AccessGrant, so that a grant deleted and recreated under the same name is distinguishable.
   */
  uid: string;
}
