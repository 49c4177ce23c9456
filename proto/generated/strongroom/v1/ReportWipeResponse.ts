// Original file: proto/strongroom/v1/keybroker.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The report was recorded.
 */
export interface ReportWipeResponse {
  /**
   * True when the broker matched the report to a revocation it sent this caller and observed its time-to-revoke;
   * false when it could not (another replica's or process's revocation, or one already reported).
   */
  recorded?: boolean;
  /**
   * Index of the audit log entry that records the report.
   */
  auditIndex?: number | string | Long;
}

/**
 * The report was recorded.
 */
export interface ReportWipeResponse__Output {
  /**
   * True when the broker matched the report to a revocation it sent this caller and observed its time-to-revoke;
   * false when it could not (another replica's or process's revocation, or one already reported).
   */
  recorded: boolean;
  /**
   * Index of the audit log entry that records the report.
   */
  auditIndex: string;
}
