// Original file: proto/strongroom/v1/keybroker.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The server cannot guarantee that the client saw every revocation (a new epoch, or events dropped from the
 * server's buffer). The client drops every DEK and re-requests what it still needs.
 */
export interface Resync {
  /**
   * The server's current epoch; resume from it.
   */
  epoch?: string;
  /**
   * The highest seq published in this epoch so far; resume with after_seq = last_seq.
   */
  lastSeq?: number | string | Long;
  /**
   * Why the resync happened, for logs.
   */
  message?: string;
}

/**
 * The server cannot guarantee that the client saw every revocation (a new epoch, or events dropped from the
 * server's buffer). The client drops every DEK and re-requests what it still needs.
 */
export interface Resync__Output {
  /**
   * The server's current epoch; resume from it.
   */
  epoch: string;
  /**
   * The highest seq published in this epoch so far; resume with after_seq = last_seq.
   */
  lastSeq: string;
  /**
   * Why the resync happened, for logs.
   */
  message: string;
}
