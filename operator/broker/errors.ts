/**
 * The broker's typed refusal: the gRPC status to answer with, a stable reason code for the audit log and metrics,
 * and a message that is safe to send to the caller (never key material, tokens or CSRs).
 */

/** The gRPC status names the broker answers with. */
export type BrokerStatus =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

/** A refused or failed broker call. */
export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  readonly status: BrokerStatus;
  /** kebab-case reason code recorded in the audit log, e.g. `no-grant`, `pod-deleted`. */
  readonly reason: string;
  constructor(status: BrokerStatus, reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.reason = reason;
  }
}

/** `NoGrant` → `no-grant`. */
export function reasonCode(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}
