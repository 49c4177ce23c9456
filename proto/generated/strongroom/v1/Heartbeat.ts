// Original file: proto/strongroom/v1/keybroker.proto

import type {
  Timestamp as _google_protobuf_Timestamp,
  Timestamp__Output as _google_protobuf_Timestamp__Output,
} from '../../google/protobuf/Timestamp.ts';
import type {
  Duration as _google_protobuf_Duration,
  Duration__Output as _google_protobuf_Duration__Output,
} from '../../google/protobuf/Duration.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * Sent at least every `interval`. A client that receives nothing for two intervals treats the stream as dead,
 * drops its DEKs (fail closed) and reconnects.
 */
export interface Heartbeat {
  /**
   * Server time when the heartbeat was sent.
   */
  timestamp?: _google_protobuf_Timestamp | null;
  /**
   * The broker process's epoch.
   */
  epoch?: string;
  /**
   * The highest seq published in this epoch so far (0 if none), whether or not it concerned the caller.
   */
  lastSeq?: number | string | Long;
  /**
   * The heartbeat period the server promises.
   */
  interval?: _google_protobuf_Duration | null;
}

/**
 * Sent at least every `interval`. A client that receives nothing for two intervals treats the stream as dead,
 * drops its DEKs (fail closed) and reconnects.
 */
export interface Heartbeat__Output {
  /**
   * Server time when the heartbeat was sent.
   */
  timestamp: _google_protobuf_Timestamp__Output | null;
  /**
   * The broker process's epoch.
   */
  epoch: string;
  /**
   * The highest seq published in this epoch so far (0 if none), whether or not it concerned the caller.
   */
  lastSeq: string;
  /**
   * The heartbeat period the server promises.
   */
  interval: _google_protobuf_Duration__Output | null;
}
