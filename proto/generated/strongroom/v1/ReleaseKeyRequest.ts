// Original file: proto/strongroom/v1/keybroker.proto

import type {
  ArtifactRef as _strongroom_v1_ArtifactRef,
  ArtifactRef__Output as _strongroom_v1_ArtifactRef__Output,
} from '../../strongroom/v1/ArtifactRef.ts';
import type {
  AuditContext as _strongroom_v1_AuditContext,
  AuditContext__Output as _strongroom_v1_AuditContext__Output,
} from '../../strongroom/v1/AuditContext.ts';

/**
 * A pod asks for the DEK of one artifact version. The caller is identified by its mTLS certificate only.
 */
export interface ReleaseKeyRequest {
  /**
   * The artifact to read.
   */
  artifact?: _strongroom_v1_ArtifactRef | null;
  /**
   * A version name from the artifact's spec.versions, or "latest" for the newest version that is not withdrawn.
   */
  version?: string;
  /**
   * Optional context recorded in the audit entry; it never influences the decision.
   */
  auditContext?: _strongroom_v1_AuditContext | null;
}

/**
 * A pod asks for the DEK of one artifact version. The caller is identified by its mTLS certificate only.
 */
export interface ReleaseKeyRequest__Output {
  /**
   * The artifact to read.
   */
  artifact: _strongroom_v1_ArtifactRef__Output | null;
  /**
   * A version name from the artifact's spec.versions, or "latest" for the newest version that is not withdrawn.
   */
  version: string;
  /**
   * Optional context recorded in the audit entry; it never influences the decision.
   */
  auditContext: _strongroom_v1_AuditContext__Output | null;
}
