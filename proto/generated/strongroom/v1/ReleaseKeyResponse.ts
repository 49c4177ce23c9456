// Original file: proto/strongroom/v1/keybroker.proto

import type {
  Timestamp as _google_protobuf_Timestamp,
  Timestamp__Output as _google_protobuf_Timestamp__Output,
} from '../../google/protobuf/Timestamp.ts';
import type {
  GrantRef as _strongroom_v1_GrantRef,
  GrantRef__Output as _strongroom_v1_GrantRef__Output,
} from '../../strongroom/v1/GrantRef.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * The released key. The DEK is plaintext key material: the client keeps it in memory only, never logs it, and
 * discards it at lease_expires_at or on a matching revocation, whichever comes first.
 */
export interface ReleaseKeyResponse {
  /**
   * The 32-byte AES-256-GCM data-encryption key of the version.
   */
  dek?: Buffer | Uint8Array | string;
  /**
   * The version the key belongs to: the request's version, or what "latest" resolved to.
   */
  version?: string;
  /**
   * When the client must forget the DEK and ask again (the key lease). Never later than the authorizing grant's
   * expiry or the client certificate's notAfter.
   */
  leaseExpiresAt?: _google_protobuf_Timestamp | null;
  /**
   * The AccessGrant that authorized the release.
   */
  grant?: _strongroom_v1_GrantRef | null;
  /**
   * Index of the audit log entry that records this release (see docs/audit.md), for proofs with
   * `strongroom audit prove`.
   */
  auditIndex?: number | string | Long;
  /**
   * The version's plaintext digest from spec.versions[].digest ("sha256:" + 64 hex); the client verifies the
   * decrypted content against it.
   */
  digest?: string;
}

/**
 * The released key. The DEK is plaintext key material: the client keeps it in memory only, never logs it, and
 * discards it at lease_expires_at or on a matching revocation, whichever comes first.
 */
export interface ReleaseKeyResponse__Output {
  /**
   * The 32-byte AES-256-GCM data-encryption key of the version.
   */
  dek: Buffer;
  /**
   * The version the key belongs to: the request's version, or what "latest" resolved to.
   */
  version: string;
  /**
   * When the client must forget the DEK and ask again (the key lease). Never later than the authorizing grant's
   * expiry or the client certificate's notAfter.
   */
  leaseExpiresAt: _google_protobuf_Timestamp__Output | null;
  /**
   * The AccessGrant that authorized the release.
   */
  grant: _strongroom_v1_GrantRef__Output | null;
  /**
   * Index of the audit log entry that records this release (see docs/audit.md), for proofs with
   * `strongroom audit prove`.
   */
  auditIndex: string;
  /**
   * The version's plaintext digest from spec.versions[].digest ("sha256:" + 64 hex); the client verifies the
   * decrypted content against it.
   */
  digest: string;
}
