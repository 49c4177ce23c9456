// Original file: proto/strongroom/v1/keybroker.proto

import type { Long } from '@grpc/proto-loader';

/**
 * Opens (or resumes) the revocation stream of the calling identity.
 */
export interface WatchRevocationsRequest {
  /**
   * Resume after this sequence number: revocations with a higher seq that the server still holds are sent first.
   * Unset: start with events published from now on.
   */
  afterSeq?: number | string | Long;
  /**
   * The epoch that after_seq belongs to (from an earlier Revocation or Heartbeat). Sequence numbers restart in every
   * broker process; if the epoch differs from the server's, or events after after_seq were already dropped, the
   * server sends a Resync first.
   */
  epoch?: string;
  _afterSeq?: 'afterSeq';
}

/**
 * Opens (or resumes) the revocation stream of the calling identity.
 */
export interface WatchRevocationsRequest__Output {
  /**
   * Resume after this sequence number: revocations with a higher seq that the server still holds are sent first.
   * Unset: start with events published from now on.
   */
  afterSeq?: string;
  /**
   * The epoch that after_seq belongs to (from an earlier Revocation or Heartbeat). Sequence numbers restart in every
   * broker process; if the epoch differs from the server's, or events after after_seq were already dropped, the
   * server sends a Resync first.
   */
  epoch: string;
  _afterSeq?: 'afterSeq';
}
