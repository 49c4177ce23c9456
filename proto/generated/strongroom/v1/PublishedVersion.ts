// Original file: proto/strongroom/v1/keybroker.proto

import type {
  Timestamp as _google_protobuf_Timestamp,
  Timestamp__Output as _google_protobuf_Timestamp__Output,
} from '../../google/protobuf/Timestamp.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * A version as recorded in spec.versions.
 */
export interface PublishedVersion {
  /**
   * Version name.
   */
  name?: string;
  /**
   * Plaintext digest, "sha256:" + 64 hex.
   */
  digest?: string;
  /**
   * Plaintext size in bytes.
   */
  size?: number | string | Long;
  /**
   * Fingerprint of the recipient key the DEK was sealed to.
   */
  keyFingerprint?: string;
  /**
   * The publisher recorded for audit: the caller's SPIFFE ID.
   */
  publisher?: string;
  /**
   * When the version was recorded.
   */
  publishedAt?: _google_protobuf_Timestamp | null;
}

/**
 * A version as recorded in spec.versions.
 */
export interface PublishedVersion__Output {
  /**
   * Version name.
   */
  name: string;
  /**
   * Plaintext digest, "sha256:" + 64 hex.
   */
  digest: string;
  /**
   * Plaintext size in bytes.
   */
  size: string;
  /**
   * Fingerprint of the recipient key the DEK was sealed to.
   */
  keyFingerprint: string;
  /**
   * The publisher recorded for audit: the caller's SPIFFE ID.
   */
  publisher: string;
  /**
   * When the version was recorded.
   */
  publishedAt: _google_protobuf_Timestamp__Output | null;
}
