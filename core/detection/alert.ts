/**
 * Alerts: what the detector raises (docs/detection.md § Alerts). An alert is explainable on its own: the rule, the
 * severity, the subject (identity and/or artifact), the observed value against the baseline and the threshold, the
 * window, one human sentence, and the audit entries that were its evidence.
 */
import { createHash } from 'node:crypto';
import {
  MAX_EVIDENCE,
  type AlertRecord,
  type AnomalyAlertEvent,
  type EvidenceRef,
  type IdentityRef,
} from '../audit/event.ts';

export { MAX_EVIDENCE, type EvidenceRef, type IdentityRef };

/** An alert: the fields of the `anomaly-alert` audit event's `alert`, plus its evidence (≤ 32 entries). */
export interface Alert extends AlertRecord {
  readonly evidence: readonly EvidenceRef[];
}

/** The `anomaly-alert` audit event that records an alert. */
export function alertEvent(alert: Alert): AnomalyAlertEvent {
  const { evidence, ...record } = alert;
  return {
    type: 'anomaly-alert',
    alert: {
      ...record,
      identity: record.identity === null ? null : { ...record.identity },
      artifact: record.artifact === null ? null : { ...record.artifact },
    },
    evidence: evidence.map((e) => ({ origin: e.origin, seq: e.seq })),
  };
}

/**
 * The alert's id: `a-` and 16 hex digits of SHA-256 over the rule, the subject and the entry that triggered it, so
 * replaying the same log gives the same ids and two replicas (different origins) never share one.
 */
export function alertId(rule: string, subject: string, trigger: EvidenceRef): string {
  const digest = createHash('sha256')
    .update(`${rule}\n${subject}\n${trigger.origin}\n${String(trigger.seq)}`)
    .digest('hex');
  return `a-${digest.slice(0, 16)}`;
}

/** At most {@link MAX_EVIDENCE} references: all of them, or the first 31 and the last (the trigger). */
export function boundedEvidence(refs: readonly EvidenceRef[]): EvidenceRef[] {
  if (refs.length <= MAX_EVIDENCE) return [...refs];
  return [...refs.slice(0, MAX_EVIDENCE - 1), refs[refs.length - 1] as EvidenceRef];
}

/** `sa <namespace>/<serviceAccount>`. */
export function formatIdentity(identity: IdentityRef): string {
  return `sa ${identity.namespace}/${identity.serviceAccount}`;
}

/** A window length for a sentence: `60 s`, `10 min`, `1 h`, or ms. */
export function formatWindow(ms: number): string {
  if (ms % 3_600_000 === 0) return `${String(ms / 3_600_000)} h`;
  if (ms % 60_000 === 0 && ms > 60_000) return `${String(ms / 60_000)} min`;
  if (ms % 1000 === 0) return `${String(ms / 1000)} s`;
  return `${String(ms)} ms`;
}

/** Bounded like every free text of the audit log (1024 characters). */
export function boundedMessage(message: string): string {
  return message.length > 1024 ? `${message.slice(0, 1021)}...` : message;
}
