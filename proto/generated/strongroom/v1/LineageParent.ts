// Original file: proto/strongroom/v1/keybroker.proto

import type {
  ParentKind as _strongroom_v1_ParentKind,
  ParentKind__Output as _strongroom_v1_ParentKind__Output,
} from '../../strongroom/v1/ParentKind.ts';

/**
 * One input of a version.
 */
export interface LineageParent {
  /**
   * ModelArtifact or Dataset.
   */
  kind?: _strongroom_v1_ParentKind;
  /**
   * The parent's name: the ModelArtifact's name or the dataset's catalog name.
   */
  name?: string;
  /**
   * The parent's version name or snapshot identifier.
   */
  version?: string;
}

/**
 * One input of a version.
 */
export interface LineageParent__Output {
  /**
   * ModelArtifact or Dataset.
   */
  kind: _strongroom_v1_ParentKind__Output;
  /**
   * The parent's name: the ModelArtifact's name or the dataset's catalog name.
   */
  name: string;
  /**
   * The parent's version name or snapshot identifier.
   */
  version: string;
}
