/**
 * The broker's side of the audit log: every decision becomes an entry before the answer is sent. Secrets (bearer
 * tokens) enter only as HMACs under the audit key. A failed append rejects with {@link AuditUnavailableError}, which
 * the caller lets through as its answer (fail closed: UNAVAILABLE); until a log is attached every append fails.
 */
import {
  AuditError,
  brokerAccessEvent,
  keyReleaseEvent,
  type AppendReceipt,
  type AuditEvent,
  type AuditKey,
  type AuditLog,
  type BrokerAccessInput,
  type GovernanceEvent,
  type KeyReleaseInput,
} from '../../core/audit/index.ts';
import { BrokerError } from './errors.ts';

/** The audit log could not take an entry, so the broker decides nothing: UNAVAILABLE, `audit-unavailable`. */
export class AuditUnavailableError extends BrokerError {
  constructor(options: ErrorOptions) {
    super('UNAVAILABLE', 'audit-unavailable', 'the audit log is unavailable; retry later', options);
  }
}

/** Appends broker decisions to an AuditLog. */
export class BrokerAuditTrail {
  #log: Pick<AuditLog, 'append'> | undefined;
  #key: AuditKey | undefined;
  readonly #onDecision: (operation: string, decision: string, reason: string) => void;

  constructor(onDecision: (operation: string, decision: string, reason: string) => void = () => undefined) {
    this.#onDecision = onDecision;
  }

  /** Starts appending to `log`, with secrets HMAC'd under `key`. */
  attach(log: Pick<AuditLog, 'append'>, key: AuditKey): void {
    this.#log = log;
    this.#key = key;
  }

  /** A ReleaseKey decision. Rejects with AuditUnavailableError when it is not durable. */
  async release(input: KeyReleaseInput): Promise<AppendReceipt> {
    const receipt = await this.#append((key) => keyReleaseEvent(input, key));
    this.#onDecision('release-key', input.decision, input.reason);
    return receipt;
  }

  /**
   * Any other broker decision (connect, attest, watch-revocations, publish-version). Rejects with
   * AuditUnavailableError when it is not durable.
   */
  async access(input: BrokerAccessInput): Promise<AppendReceipt> {
    const receipt = await this.#append((key) => brokerAccessEvent(input, key));
    this.#onDecision(input.operation, input.decision, input.reason);
    return receipt;
  }

  /** A governance event the broker decided. Rejects with AuditUnavailableError when it is not durable. */
  async governance(event: GovernanceEvent): Promise<AppendReceipt> {
    return this.#append(() => event);
  }

  async #append(event: (key: AuditKey) => AuditEvent): Promise<AppendReceipt> {
    try {
      if (this.#log === undefined || this.#key === undefined)
        throw new AuditError('closed', 'the audit log is not open yet');
      return await this.#log.append(event(this.#key));
    } catch (error) {
      throw new AuditUnavailableError({ cause: error });
    }
  }
}
