// Original file: proto/strongroom/v1/keybroker.proto

/**
 * Names a ModelArtifact.
 */
export interface ArtifactRef {
  /**
   * Namespace of the ModelArtifact.
   */
  namespace?: string;
  /**
   * Name of the ModelArtifact.
   */
  name?: string;
}

/**
 * Names a ModelArtifact.
 */
export interface ArtifactRef__Output {
  /**
   * Namespace of the ModelArtifact.
   */
  namespace: string;
  /**
   * Name of the ModelArtifact.
   */
  name: string;
}
