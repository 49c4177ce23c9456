/**
 * The broker's side of the audit log: every decision becomes an entry before the answer is sent. Secrets (bearer
 * tokens) enter only as HMACs under the audit key. A failed append rejects, and the caller then refuses (fail
 * closed); until a log is attached every append fails.
 */
import {
  AuditError,
  brokerAccessEvent,
  keyReleaseEvent,
  type AppendReceipt,
  type AuditKey,
  type AuditLog,
  type BrokerAccessInput,
  type GovernanceEvent,
  type KeyReleaseInput,
} from '../../core/audit/index.ts';

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

  /** A ReleaseKey decision. */
  async release(input: KeyReleaseInput): Promise<AppendReceipt> {
    const { log, key } = this.#sink();
    const receipt = await log.append(keyReleaseEvent(input, key));
    this.#onDecision('release-key', input.decision, input.reason);
    return receipt;
  }

  /** Any other broker decision (connect, attest, watch-revocations, publish-version). */
  async access(input: BrokerAccessInput): Promise<AppendReceipt> {
    const { log, key } = this.#sink();
    const receipt = await log.append(brokerAccessEvent(input, key));
    this.#onDecision(input.operation, input.decision, input.reason);
    return receipt;
  }

  /** A governance event the broker decided (a version it published and sealed). */
  async governance(event: GovernanceEvent): Promise<AppendReceipt> {
    const { log } = this.#sink();
    return log.append(event);
  }

  #sink(): { log: Pick<AuditLog, 'append'>; key: AuditKey } {
    if (this.#log === undefined || this.#key === undefined)
      throw new AuditError('closed', 'the audit log is not open yet');
    return { log: this.#log, key: this.#key };
  }
}
