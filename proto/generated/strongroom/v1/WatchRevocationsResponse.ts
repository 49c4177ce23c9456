// Original file: proto/strongroom/v1/keybroker.proto

import type {
  Revocation as _strongroom_v1_Revocation,
  Revocation__Output as _strongroom_v1_Revocation__Output,
} from '../../strongroom/v1/Revocation.ts';
import type {
  Heartbeat as _strongroom_v1_Heartbeat,
  Heartbeat__Output as _strongroom_v1_Heartbeat__Output,
} from '../../strongroom/v1/Heartbeat.ts';
import type {
  Resync as _strongroom_v1_Resync,
  Resync__Output as _strongroom_v1_Resync__Output,
} from '../../strongroom/v1/Resync.ts';

/**
 * One message of the revocation stream.
 */
export interface WatchRevocationsResponse {
  /**
   * Access of the caller ended.
   */
  revocation?: _strongroom_v1_Revocation | null;
  /**
   * The stream is alive; nothing to revoke.
   */
  heartbeat?: _strongroom_v1_Heartbeat | null;
  /**
   * Events may have been missed: the client must drop every DEK it holds and ask again (ReleaseKey re-checks
   * authorization).
   */
  resync?: _strongroom_v1_Resync | null;
  /**
   * Exactly one is set.
   */
  event?: 'revocation' | 'heartbeat' | 'resync';
}

/**
 * One message of the revocation stream.
 */
export interface WatchRevocationsResponse__Output {
  /**
   * Access of the caller ended.
   */
  revocation?: _strongroom_v1_Revocation__Output | null;
  /**
   * The stream is alive; nothing to revoke.
   */
  heartbeat?: _strongroom_v1_Heartbeat__Output | null;
  /**
   * Events may have been missed: the client must drop every DEK it holds and ask again (ReleaseKey re-checks
   * authorization).
   */
  resync?: _strongroom_v1_Resync__Output | null;
  /**
   * Exactly one is set.
   */
  event?: 'revocation' | 'heartbeat' | 'resync';
}
