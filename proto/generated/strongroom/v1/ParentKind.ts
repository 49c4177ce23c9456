// Original file: proto/strongroom/v1/keybroker.proto

/**
 * What kind of thing a lineage parent is.
 */
export const ParentKind = {
  /**
   * Never valid; the server rejects it with INVALID_ARGUMENT.
   */
  PARENT_KIND_UNSPECIFIED: 'PARENT_KIND_UNSPECIFIED',
  /**
   * Another ModelArtifact in the same namespace ("ModelArtifact" in the CRD).
   */
  PARENT_KIND_MODEL_ARTIFACT: 'PARENT_KIND_MODEL_ARTIFACT',
  /**
   * A dataset tracked outside Strongroom ("Dataset" in the CRD).
   */
  PARENT_KIND_DATASET: 'PARENT_KIND_DATASET',
} as const;

/**
 * What kind of thing a lineage parent is.
 */
export type ParentKind =
  /**
   * Never valid; the server rejects it with INVALID_ARGUMENT.
   */
  | 'PARENT_KIND_UNSPECIFIED'
  | 0
  /**
   * Another ModelArtifact in the same namespace ("ModelArtifact" in the CRD).
   */
  | 'PARENT_KIND_MODEL_ARTIFACT'
  | 1
  /**
   * A dataset tracked outside Strongroom ("Dataset" in the CRD).
   */
  | 'PARENT_KIND_DATASET'
  | 2;

/**
 * What kind of thing a lineage parent is.
 */
export type ParentKind__Output = (typeof ParentKind)[keyof typeof ParentKind];
