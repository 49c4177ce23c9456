// Original file: proto/strongroom/v1/keybroker.proto

import type {
  RevocationRef as _strongroom_v1_RevocationRef,
  RevocationRef__Output as _strongroom_v1_RevocationRef__Output,
} from '../../strongroom/v1/RevocationRef.ts';
import type {
  ArtifactRef as _strongroom_v1_ArtifactRef,
  ArtifactRef__Output as _strongroom_v1_ArtifactRef__Output,
} from '../../strongroom/v1/ArtifactRef.ts';
import type {
  Duration as _google_protobuf_Duration,
  Duration__Output as _google_protobuf_Duration__Output,
} from '../../google/protobuf/Duration.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * The sidecar wiped one planned artifact's plaintext directory in answer to a revocation. The caller is identified
 * by its mTLS certificate only.
 */
export interface ReportWipeRequest {
  /**
   * The revocation answered.
   */
  revocation?: _strongroom_v1_RevocationRef | null;
  /**
   * The artifact whose plaintext is gone.
   */
  artifact?: _strongroom_v1_ArtifactRef | null;
  /**
   * The version that was wiped (the planned version; a DNS-1123 label).
   */
  version?: string;
  /**
   * Regular files the wipe removed (unlinked, overwritten with zeros, fsync'd).
   */
  filesRemoved?: number | string | Long;
  /**
   * How long the wipe took in the sidecar.
   */
  wipeDuration?: _google_protobuf_Duration | null;
  /**
   * What made the sidecar wipe: "revocation" (this revocation), or "lease-expired" / "renewal-denied" when the
   * files were already gone for that reason when the revocation arrived.
   */
  trigger?: string;
}

/**
 * The sidecar wiped one planned artifact's plaintext directory in answer to a revocation. The caller is identified
 * by its mTLS certificate only.
 */
export interface ReportWipeRequest__Output {
  /**
   * The revocation answered.
   */
  revocation: _strongroom_v1_RevocationRef__Output | null;
  /**
   * The artifact whose plaintext is gone.
   */
  artifact: _strongroom_v1_ArtifactRef__Output | null;
  /**
   * The version that was wiped (the planned version; a DNS-1123 label).
   */
  version: string;
  /**
   * Regular files the wipe removed (unlinked, overwritten with zeros, fsync'd).
   */
  filesRemoved: string;
  /**
   * How long the wipe took in the sidecar.
   */
  wipeDuration: _google_protobuf_Duration__Output | null;
  /**
   * What made the sidecar wipe: "revocation" (this revocation), or "lease-expired" / "renewal-denied" when the
   * files were already gone for that reason when the revocation arrived.
   */
  trigger: string;
}
