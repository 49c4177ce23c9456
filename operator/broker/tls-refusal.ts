/**
 * Refused TLS handshakes (no client certificate, one from another CA, an expired one, a protocol error): the reason
 * code the audit log records, classified from the OpenSSL/Node error code, and the `connect` denial entry itself.
 * Nobody waits for an answer to a refused handshake, so an audit failure is logged rather than thrown.
 */
import type { BrokerAuditTrail } from './audit-trail.ts';
import type { RefusedHandshake } from './tls-listener.ts';

/** Where a refused handshake, and a failure to audit it, are logged. */
export interface RefusalLog {
  info(message: string, meta: Record<string, unknown>): void;
  error(message: string, meta: Record<string, unknown>): void;
}

/** The audit reason of a refused handshake. */
export type RefusalReason =
  'no-client-certificate' | 'certificate-expired' | 'untrusted-certificate' | 'tls-handshake-failed';

/** Codes of a client certificate that does not chain to the trusted CAs or whose signature does not verify. */
const UNTRUSTED = /UNABLE_TO_GET_ISSUER|SELF_SIGNED|UNKNOWN_CA|CERT_SIGNATURE_FAILURE|UNABLE_TO_VERIFY/i;

/** The audit reason for an OpenSSL/Node error code, e.g. CERT_HAS_EXPIRED → certificate-expired. */
export function refusalReason(code: string): RefusalReason {
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return 'no-client-certificate';
  if (code === 'CERT_HAS_EXPIRED' || code.includes('CERTIFICATE_EXPIRED')) return 'certificate-expired';
  if (UNTRUSTED.test(code)) return 'untrusted-certificate';
  return 'tls-handshake-failed';
}

/** Logs and audits a refused handshake on `listener` as a `connect` denial, with what the client claimed to be. */
export function auditRefusedHandshake(
  deps: { readonly audit: Pick<BrokerAuditTrail, 'access'>; readonly log: RefusalLog },
  listener: 'attest' | 'broker',
  refused: RefusedHandshake,
): void {
  const reason = refusalReason(refused.code);
  deps.log.info('refused a TLS connection', { listener, peer: refused.peer, code: refused.code, reason });
  deps.audit
    .access({
      operation: 'connect',
      decision: 'deny',
      reason,
      peer: refused.peer,
      verified: false,
      workload: {
        ...(refused.claimed.subjectAltName === undefined
          ? {}
          : { claimedSubjectAltName: refused.claimed.subjectAltName.slice(0, 1024) }),
        ...(refused.claimed.serial === undefined ? {} : { claimedSerial: refused.claimed.serial }),
      },
      artifact: null,
      detail: `${listener} listener: ${refused.code}: ${refused.message}`,
    })
    .catch((error: unknown) => {
      deps.log.error('could not audit a refused TLS connection', {
        error: error instanceof Error ? error.message : String(error),
      });
    });
}
