/**
 * The attest listener's service (server-authenticated TLS): `Attest` exchanges a pod's service account token and CSR
 * for a workload certificate (attest.ts), auditing the decision before it answers; every other method needs mutual
 * TLS and is refused with UNAUTHENTICATED, pointing at the broker port.
 */
import * as grpc from '@grpc/grpc-js';
import type { AttestResponse } from '../../proto/generated/strongroom/v1/AttestResponse.ts';
import type { KeyBrokerHandlers } from '../../proto/keybroker.ts';
import { attest, AttestError, type AttestDeps, type AttestResult } from './attest.ts';
import type { BrokerAuditTrail } from './audit-trail.ts';
import type { CallReporter } from './call-report.ts';
import { BrokerError } from './errors.ts';
import { attestResponse } from './proto-mapping.ts';

/** What the attest listener's service needs. */
export interface AttestHandlerDeps {
  readonly attest: AttestDeps;
  readonly audit: Pick<BrokerAuditTrail, 'access'>;
  readonly report: CallReporter;
}

/** The handlers of the attest listener's grpc-js server. */
export function attestPortHandlers(deps: AttestHandlerDeps): KeyBrokerHandlers {
  const onlyOnBroker = (method: string) => (_call: unknown, callback: grpc.sendUnaryData<never>) => {
    callback({
      code: grpc.status.UNAUTHENTICATED,
      details: `${method} needs mutual TLS: call the broker port with a certificate from Attest`,
    });
  };
  return {
    Attest: (call, callback) => {
      const token = call.request.serviceAccountToken;
      /** Rejects with AuditUnavailableError, which is then the answer. */
      const audited = async (
        decision: 'allow' | 'deny',
        reason: string,
        detail: string,
        workload: Record<string, string>,
      ): Promise<void> => {
        await deps.audit.access({
          operation: 'attest',
          decision,
          reason,
          peer: call.getPeer(),
          verified: decision === 'allow',
          workload,
          artifact: null,
          detail,
          ...(token === '' ? {} : { secrets: { token } }),
        });
      };
      deps.report.answer('Attest', callback, async (): Promise<AttestResponse> => {
        let result: AttestResult;
        try {
          result = await attest({ token, csrPem: call.request.csrPem }, deps.attest);
        } catch (error) {
          if (!(error instanceof AttestError)) throw error;
          const reason = attestReason(error);
          await audited('deny', reason, error.message, {});
          throw new BrokerError(error.status, reason, error.message, {
            cause: error,
            ...(error.publicMessage === undefined ? {} : { publicMessage: error.publicMessage }),
          });
        }
        await audited('allow', 'attested', `certificate until ${result.notAfter.toISOString()}`, {
          spiffeId: result.spiffeId,
          podUid: result.podUid,
        });
        return attestResponse(result);
      });
    },
    ReleaseKey: onlyOnBroker('ReleaseKey'),
    PublishVersion: onlyOnBroker('PublishVersion'),
    ReportWipe: onlyOnBroker('ReportWipe'),
    WatchRevocations: (call) => {
      call.emit('error', {
        code: grpc.status.UNAUTHENTICATED,
        details: 'WatchRevocations needs mutual TLS: call the broker port with a certificate from Attest',
      });
    },
  };
}

/** The audit reason of a refused attestation: its own, else one per status. */
function attestReason(error: AttestError): string {
  if (error.reason !== undefined) return error.reason;
  const statusReason: Record<string, string> = {
    INVALID_ARGUMENT: 'invalid-csr',
    UNAUTHENTICATED: 'token-rejected',
    PERMISSION_DENIED: 'pod-mismatch',
    UNAVAILABLE: 'api-unavailable',
    INTERNAL: 'internal',
  };
  return statusReason[error.status] ?? 'refused';
}
