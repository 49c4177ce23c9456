// Original file: proto/strongroom/v1/keybroker.proto

import type {
  PublishedVersion as _strongroom_v1_PublishedVersion,
  PublishedVersion__Output as _strongroom_v1_PublishedVersion__Output,
} from '../../strongroom/v1/PublishedVersion.ts';

/**
 * The recorded version.
 */
export interface PublishVersionResponse {
  /**
   * The version as written to the ModelArtifact's spec.versions.
   */
  version?: _strongroom_v1_PublishedVersion | null;
  /**
   * metadata.resourceVersion of the ModelArtifact after the update.
   */
  resourceVersion?: string;
}

/**
 * The recorded version.
 */
export interface PublishVersionResponse__Output {
  /**
   * The version as written to the ModelArtifact's spec.versions.
   */
  version: _strongroom_v1_PublishedVersion__Output | null;
  /**
   * metadata.resourceVersion of the ModelArtifact after the update.
   */
  resourceVersion: string;
}
