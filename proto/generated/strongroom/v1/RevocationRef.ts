// Original file: proto/strongroom/v1/keybroker.proto

import type {
  Timestamp as _google_protobuf_Timestamp,
  Timestamp__Output as _google_protobuf_Timestamp__Output,
} from '../../google/protobuf/Timestamp.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * Names a revocation as the sidecar received it on its WatchRevocations stream.
 */
export interface RevocationRef {
  /**
   * The revocation's seq.
   */
  seq?: number | string | Long;
  /**
   * The epoch the seq belongs to.
   */
  epoch?: string;
  /**
   * The revocation's ended_at, as received. Informational: the broker measures from its own record of the
   * revocation it sent, never from this field.
   */
  endedAt?: _google_protobuf_Timestamp | null;
}

/**
 * Names a revocation as the sidecar received it on its WatchRevocations stream.
 */
export interface RevocationRef__Output {
  /**
   * The revocation's seq.
   */
  seq: string;
  /**
   * The epoch the seq belongs to.
   */
  epoch: string;
  /**
   * The revocation's ended_at, as received. Informational: the broker measures from its own record of the
   * revocation it sent, never from this field.
   */
  endedAt: _google_protobuf_Timestamp__Output | null;
}
