// Original file: proto/strongroom/v1/keybroker.proto

import type {
  RevocationReason as _strongroom_v1_RevocationReason,
  RevocationReason__Output as _strongroom_v1_RevocationReason__Output,
} from '../../strongroom/v1/RevocationReason.ts';
import type {
  ArtifactRef as _strongroom_v1_ArtifactRef,
  ArtifactRef__Output as _strongroom_v1_ArtifactRef__Output,
} from '../../strongroom/v1/ArtifactRef.ts';
import type {
  GrantRef as _strongroom_v1_GrantRef,
  GrantRef__Output as _strongroom_v1_GrantRef__Output,
} from '../../strongroom/v1/GrantRef.ts';
import type {
  Timestamp as _google_protobuf_Timestamp,
  Timestamp__Output as _google_protobuf_Timestamp__Output,
} from '../../google/protobuf/Timestamp.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * Access of the caller to (some versions of) an artifact ended. The client drops the affected DEKs at once.
 */
export interface Revocation {
  /**
   * Sequence number, strictly increasing within epoch; pass the last one seen as after_seq to resume.
   */
  seq?: number | string | Long;
  /**
   * The broker process's epoch that seq belongs to.
   */
  epoch?: string;
  /**
   * Why access ended.
   */
  reason?: _strongroom_v1_RevocationReason;
  /**
   * The artifact whose access ended.
   */
  artifact?: _strongroom_v1_ArtifactRef | null;
  /**
   * The grant that ended; unset when the artifact itself went away.
   */
  grant?: _strongroom_v1_GrantRef | null;
  /**
   * The versions no longer available; empty means every version of the artifact.
   */
  versions?: string[];
  /**
   * Human-readable detail for logs. Contains no key material.
   */
  message?: string;
  /**
   * When the operator published the revocation.
   */
  timestamp?: _google_protobuf_Timestamp | null;
  /**
   * When access ended: for an expired grant its expiresAt; otherwise when this broker's operator process published
   * the revocation (the leader's decision, or a follower's sight of it). Echoed in ReportWipe; the time-to-revoke
   * histogram counts from it.
   */
  endedAt?: _google_protobuf_Timestamp | null;
}

/**
 * Access of the caller to (some versions of) an artifact ended. The client drops the affected DEKs at once.
 */
export interface Revocation__Output {
  /**
   * Sequence number, strictly increasing within epoch; pass the last one seen as after_seq to resume.
   */
  seq: string;
  /**
   * The broker process's epoch that seq belongs to.
   */
  epoch: string;
  /**
   * Why access ended.
   */
  reason: _strongroom_v1_RevocationReason__Output;
  /**
   * The artifact whose access ended.
   */
  artifact: _strongroom_v1_ArtifactRef__Output | null;
  /**
   * The grant that ended; unset when the artifact itself went away.
   */
  grant: _strongroom_v1_GrantRef__Output | null;
  /**
   * The versions no longer available; empty means every version of the artifact.
   */
  versions: string[];
  /**
   * Human-readable detail for logs. Contains no key material.
   */
  message: string;
  /**
   * When the operator published the revocation.
   */
  timestamp: _google_protobuf_Timestamp__Output | null;
  /**
   * When access ended: for an expired grant its expiresAt; otherwise when this broker's operator process published
   * the revocation (the leader's decision, or a follower's sight of it). Echoed in ReportWipe; the time-to-revoke
   * histogram counts from it.
   */
  endedAt: _google_protobuf_Timestamp__Output | null;
}
