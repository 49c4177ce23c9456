/**
 * Audit events: what the log records. Secrets (tokens, key material) never appear in an event: the only way
 * to put one in is `redact`, which stores HMAC-SHA256(audit key, secret) so a known value can still be
 * searched for (like Vault's /sys/audit-hash) while the log itself reveals nothing, and shredding stays possible.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { AuditError } from './errors.ts';

export type Decision = 'allow' | 'deny';

/** The workload a key was (or was not) released to, from its verified token and client certificate. */
export interface WorkloadIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podUid: string;
  readonly certificateSerial: string;
  /**
   * The strongroom.dev/environment label of the workload's namespace when the decision was made, when the writer
   * records it (optional: entries written before it existed lack it). The anomaly detector's cross-environment rule
   * compares it with `artifact.environment`.
   */
  readonly environment?: string;
}

export interface ArtifactRef {
  readonly namespace: string;
  readonly name: string;
  readonly version: string;
  readonly classification: string;
  readonly environment: string;
}

export interface KeyRef {
  readonly id: string;
  readonly version: string;
}

export interface ApprovalRef {
  readonly uid: string;
  readonly resourceVersion: string;
  readonly approver: string;
}

export interface GrantRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly resourceVersion: string;
}

/** A key-release decision. `grant` is null when no grant matched (a deny). */
export interface KeyReleaseEvent {
  readonly type: 'key-release';
  readonly decision: Decision;
  /** A stable machine-readable reason code, e.g. `granted`, `no-grant`, `expired`, `quarantined`. */
  readonly reason: string;
  readonly workload: WorkloadIdentity;
  readonly artifact: ArtifactRef;
  readonly key: KeyRef;
  readonly grant: (GrantRef & { readonly approvals: readonly ApprovalRef[] }) | null;
  /** Secrets seen by the decision, by name, each only as `hmac-sha256:<base64>` (see redact). */
  readonly secrets: Readonly<Record<string, string>>;
}

export type GrantEventType =
  | 'grant-created'
  | 'grant-approved'
  | 'grant-denied'
  | 'grant-activated'
  | 'grant-expired'
  | 'grant-revoked'
  | 'grant-quarantined'
  | 'grant-lifted';
export const GRANT_EVENT_TYPES: readonly GrantEventType[] = [
  'grant-created',
  'grant-approved',
  'grant-denied',
  'grant-activated',
  'grant-expired',
  'grant-revoked',
  'grant-quarantined',
  'grant-lifted',
];

/**
 * A governance decision about a grant (docs/audit.md#governance-events). `actor` is the Kubernetes username that
 * caused it when it is known (the requester for grant-created, the approver for grant-approved, the denier for a
 * denial by an approver), `strongroom-operator` for the operator's own decisions (activation, expiry, a policy
 * denial or revocation) and `unknown` for an annotation someone set (quarantine, its lifting, an administrator's
 * revocation): Kubernetes does not tell the operator who changed an object.
 */
export interface GrantEvent {
  readonly type: GrantEventType;
  readonly grant: GrantRef;
  readonly actor: string;
  /** The policy's CamelCase reason code (status.reason), or `Created`, `Approved`, `QuarantineLifted`. */
  readonly reason: string;
  /** Legacy: an approval object. Inline approvals are recorded with `groups` and `detail` instead. */
  readonly approval?: ApprovalRef;
  /** The actor's qualifying groups (approvals[].groups, denial.groups), when they were recorded. */
  readonly groups?: readonly string[];
  /** The phase before and after, for phase changes (absent before a first evaluation). */
  readonly previousPhase?: string;
  readonly phase?: string;
  /** Free text the actor gave (the annotation's value, an approval's comment, a denial's reason), ≤ 1024. */
  readonly detail?: string;
}

export type VersionEventType = 'version-published' | 'version-sealed';
export const VERSION_EVENT_TYPES: readonly VersionEventType[] = ['version-published', 'version-sealed'];

/**
 * A model version published (first seen by the operator in spec.versions, whoever added it) or sealed (its DEK
 * unsealed once and wrapped under the KMS key-encryption key in status.keys). `publisher` is
 * spec.versions[].publisher: the authenticated user for a direct publish, the caller's SPIFFE ID for the broker's
 * PublishVersion (both enforced at admission). `actor` is the publisher for version-published and
 * `strongroom-operator` for version-sealed.
 */
export interface VersionEvent {
  readonly type: VersionEventType;
  readonly artifact: { readonly namespace: string; readonly name: string; readonly uid: string };
  readonly version: string;
  readonly digest: string;
  readonly publisher: string;
  readonly publishedAt: string;
  readonly actor: string;
  /** `published-directly` / `published-via-broker` (a SPIFFE publisher), or `sealed`. */
  readonly reason: string;
  /** version-sealed: the KEK the DEK was wrapped under. */
  readonly key?: KeyRef;
}

/**
 * The environment label (strongroom.dev/environment) of a namespace changed: added (`old` null), changed, or
 * removed (`new` null, also when the namespace was deleted). Who changed it is not known to the operator.
 */
export interface EnvironmentEvent {
  readonly type: 'environment-changed';
  readonly namespace: string;
  readonly old: string | null;
  readonly new: string | null;
  /** `label-added`, `label-changed`, `label-removed` or `namespace-deleted`. */
  readonly reason: string;
}

/** The events a governance decision produces (grants, versions, environments). */
export type GovernanceEvent = GrantEvent | VersionEvent | EnvironmentEvent;

/** Written every `intervalMs` by a live writer, so that a silent gap in the record is visible. */
export interface HeartbeatEvent {
  readonly type: 'heartbeat';
  readonly intervalMs: number;
}

/** Written when a writer opens its log: the size it found and how many torn bytes it cut off. */
export interface WriterStartedEvent {
  readonly type: 'writer-started';
  readonly previousSize: number;
  readonly repairedBytes: number;
}

/** What a {@link BrokerAccessEvent} records. */
export type BrokerOperation = 'connect' | 'attest' | 'watch-revocations' | 'publish-version' | 'report-wipe';
export const BROKER_OPERATIONS: readonly BrokerOperation[] = [
  'connect',
  'attest',
  'watch-revocations',
  'publish-version',
  'report-wipe',
];

/**
 * A key-broker decision other than a key release: a refused TLS handshake (`connect`), an attestation, a revocation
 * stream opened or refused, a version published or refused. `workload` holds what is known of the caller; when
 * `verified` is false it is only what the caller claimed (for example the SANs of a certificate that failed
 * verification) and must not be trusted.
 */
export interface BrokerAccessEvent {
  readonly type: 'broker-access';
  readonly operation: BrokerOperation;
  readonly decision: Decision;
  /** A stable machine-readable reason code, e.g. `granted`, `no-client-certificate`, `pod-not-found`. */
  readonly reason: string;
  /** The remote address of the connection, `ip:port`. */
  readonly peer: string;
  readonly verified: boolean;
  /** Known facts about the caller: namespace, serviceAccount, podUid, certificateSerial (any subset). */
  readonly workload: Readonly<Record<string, string>>;
  /** The artifact concerned, when there is one: namespace, name, version (any subset). */
  readonly artifact: Readonly<Record<string, string>> | null;
  /** Human-readable detail, at most 1024 characters; never key material. */
  readonly detail: string;
  /** Secrets seen by the decision (the bearer token), each only as `hmac-sha256:<base64>`. */
  readonly secrets: Readonly<Record<string, string>>;
}

/** Alert severities, lowest first (docs/detection.md). */
export type Severity = 'info' | 'low' | 'medium' | 'high' | 'critical';
export const SEVERITIES: readonly Severity[] = ['info', 'low', 'medium', 'high', 'critical'];

/** A workload identity as the detector and quarantine know it: a namespace and a service account. */
export interface IdentityRef {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** An audit entry cited as evidence: the writer's origin and the entry's seq in that writer's log. */
export interface EvidenceRef {
  readonly origin: string;
  readonly seq: number;
}

/** The most evidence an alert cites (the first entries of its window; the count is in `observed`). */
export const MAX_EVIDENCE = 32;

/**
 * What an anomaly alert says (docs/detection.md#alerts). Every number is a safe integer: counts are per window,
 * times are ms since the epoch, `baseline` is rounded to the nearest integer (the message carries one decimal).
 */
export interface AlertRecord {
  /** Deterministic from the rule, the subject and the entry that triggered it: `a-<16 hex>`. */
  readonly id: string;
  readonly rule: string;
  readonly severity: Severity;
  readonly identity: IdentityRef | null;
  readonly artifact: { readonly namespace: string; readonly name: string } | null;
  readonly observed: number;
  readonly baseline: number;
  readonly threshold: number;
  readonly windowMs: number;
  readonly from: number;
  readonly to: number;
  /** One human sentence, ≤ 1024 characters. */
  readonly message: string;
}

/** An alert of the anomaly detector, with the audit entries that were its evidence (≤ {@link MAX_EVIDENCE}). */
export interface AnomalyAlertEvent {
  readonly type: 'anomaly-alert';
  readonly alert: AlertRecord;
  readonly evidence: readonly EvidenceRef[];
}

/**
 * An identity put in quarantine, automatically by an alert (`alertId` names it, `actor` is `strongroom-operator`)
 * or manually (`alertId` is the empty string).
 */
export interface IdentityQuarantinedEvent {
  readonly type: 'identity-quarantined';
  readonly identity: IdentityRef;
  readonly actor: string;
  readonly reason: string;
  readonly alertId: string;
  readonly severity: Severity;
  /** Free text (≤ 1024 characters, may be empty). */
  readonly detail: string;
}

/** An identity's quarantine lifted (its key removed from the quarantine ConfigMap; who did it is not known). */
export interface IdentityLiftedEvent {
  readonly type: 'identity-lifted';
  readonly identity: IdentityRef;
  readonly actor: string;
  readonly reason: string;
}

/** The events of anomaly detection and identity quarantine (the detector ignores them). */
export type DetectionEvent = AnomalyAlertEvent | IdentityQuarantinedEvent | IdentityLiftedEvent;

export type AuditEvent =
  | KeyReleaseEvent
  | GrantEvent
  | VersionEvent
  | EnvironmentEvent
  | HeartbeatEvent
  | WriterStartedEvent
  | BrokerAccessEvent
  | AnomalyAlertEvent
  | IdentityQuarantinedEvent
  | IdentityLiftedEvent;

const HMAC_PREFIX = 'hmac-sha256:';

/** The key under which secrets are HMAC'd. It never serializes or inspects to its value. */
export class AuditKey {
  readonly #key: KeyObject;
  constructor(bytes: Uint8Array) {
    if (bytes.length < 32) throw new AuditError('invalid', 'an audit key is at least 32 bytes');
    this.#key = createSecretKey(Buffer.from(bytes));
  }
  /** `hmac-sha256:<base64>` of a secret. */
  redact(secret: string | Uint8Array): string {
    return HMAC_PREFIX + createHmac('sha256', this.#key).update(secret).digest('base64');
  }
  toJSON(): string {
    return '[audit key]';
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return 'AuditKey [redacted]';
  }
}

export interface KeyReleaseInput extends Omit<KeyReleaseEvent, 'type' | 'secrets'> {
  /** Secrets the decision saw (the bearer token, the wrapped key, ...). Only their HMACs are recorded. */
  readonly secrets?: Readonly<Record<string, string | Uint8Array>>;
}

export interface BrokerAccessInput extends Omit<BrokerAccessEvent, 'type' | 'secrets' | 'detail'> {
  /** Truncated to 1024 characters. */
  readonly detail: string;
  readonly secrets?: Readonly<Record<string, string | Uint8Array>>;
}

/** A broker-access event with every secret replaced by its HMAC under `key` and the detail bounded. */
export function brokerAccessEvent(input: BrokerAccessInput, key: AuditKey): BrokerAccessEvent {
  const secrets: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.secrets ?? {})) secrets[name] = key.redact(value);
  const detail = input.detail === '' ? '-' : input.detail;
  return {
    type: 'broker-access',
    operation: input.operation,
    decision: input.decision,
    reason: input.reason,
    peer: input.peer === '' ? 'unknown' : input.peer,
    verified: input.verified,
    workload: { ...input.workload },
    artifact: input.artifact === null ? null : { ...input.artifact },
    detail: detail.length > 1024 ? `${detail.slice(0, 1021)}...` : detail,
    secrets,
  };
}

/** A key-release event with every secret replaced by its HMAC under `key`. */
export function keyReleaseEvent(input: KeyReleaseInput, key: AuditKey): KeyReleaseEvent {
  const secrets: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.secrets ?? {})) secrets[name] = key.redact(value);
  return {
    type: 'key-release',
    decision: input.decision,
    reason: input.reason,
    workload: input.workload,
    artifact: input.artifact,
    key: input.key,
    grant: input.grant,
    secrets,
  };
}

function isString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= 1024;
}

function requireStrings(obj: unknown, fields: readonly string[], where: string): void {
  if (typeof obj !== 'object' || obj === null) throw new AuditError('invalid', `${where} is missing`);
  for (const f of fields) {
    if (!isString((obj as Record<string, unknown>)[f])) {
      throw new AuditError('invalid', `${where}.${f} must be a non-empty string`);
    }
  }
}

function requireHmacs(secrets: unknown): void {
  if (typeof secrets !== 'object' || secrets === null) {
    throw new AuditError('invalid', 'secrets must be an object of HMACs');
  }
  for (const [name, value] of Object.entries(secrets as Record<string, unknown>)) {
    if (typeof value !== 'string' || !value.startsWith(HMAC_PREFIX)) {
      throw new AuditError(
        'invalid',
        `secret ${name} is not an HMAC: use keyReleaseEvent or AuditKey.redact`,
      );
    }
  }
}

function requireStringMap(obj: unknown, where: string): void {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new AuditError('invalid', `${where} must be an object of strings`);
  }
  requireStrings(obj, Object.keys(obj), where);
}

interface Loose {
  type?: unknown;
  decision?: unknown;
  workload?: unknown;
  artifact?: unknown;
  key?: unknown;
  grant?: { approvals?: unknown } | null;
  secrets?: unknown;
  intervalMs?: unknown;
  approval?: unknown;
}

const GRANT_FIELDS = ['namespace', 'name', 'uid', 'resourceVersion'] as const;

const RULE_NAME = /^[a-z][a-z0-9-]{0,62}$/;

function requireCount(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new AuditError('invalid', `${where} must be a non-negative safe integer`);
  }
  return value;
}

function requireSeverity(value: unknown, where: string): void {
  if (!(SEVERITIES as readonly unknown[]).includes(value)) {
    throw new AuditError('invalid', `${where} must be one of ${SEVERITIES.join(', ')}`);
  }
}

function requireText(value: unknown, where: string): void {
  if (typeof value !== 'string' || value.length > 1024) {
    throw new AuditError('invalid', `${where} must be a string of at most 1024 characters`);
  }
}

function validateAlert(a: Partial<AnomalyAlertEvent>): void {
  const alert = a.alert as Partial<Record<keyof AlertRecord, unknown>> | undefined;
  requireStrings(alert, ['id', 'rule', 'message'], 'alert');
  const checked = alert as Record<string, unknown>;
  if (!RULE_NAME.test(checked.rule as string)) {
    throw new AuditError('invalid', 'alert.rule must be a lowercase kebab-case name');
  }
  requireSeverity(checked.severity, 'alert.severity');
  for (const field of ['observed', 'baseline', 'threshold', 'windowMs'] as const) {
    requireCount(checked[field], `alert.${field}`);
  }
  const from = requireCount(checked.from, 'alert.from');
  const to = requireCount(checked.to, 'alert.to');
  if (from > to) throw new AuditError('invalid', 'alert.from is after alert.to');
  if (checked.identity !== null) {
    requireStrings(checked.identity, ['namespace', 'serviceAccount'], 'alert.identity');
  }
  if (checked.artifact !== null) requireStrings(checked.artifact, ['namespace', 'name'], 'alert.artifact');
  if (checked.identity === null && checked.artifact === null) {
    throw new AuditError('invalid', 'an alert names an identity, an artifact or both');
  }
  const evidence = a.evidence as unknown;
  if (!Array.isArray(evidence) || evidence.length === 0 || evidence.length > MAX_EVIDENCE) {
    throw new AuditError('invalid', `evidence must be a list of 1 to ${MAX_EVIDENCE} entries`);
  }
  evidence.forEach((ref: unknown, i) => {
    requireStrings(ref, ['origin'], `evidence[${i}]`);
    requireCount((ref as Record<string, unknown>).seq, `evidence[${i}].seq`);
  });
}
const APPROVAL_FIELDS = ['uid', 'resourceVersion', 'approver'] as const;

/** Throws AuditError('invalid') unless `event` is a well-formed AuditEvent. Fail closed on caller bugs. */
export function validateEvent(input: AuditEvent): void {
  // Typed callers can still pass anything at run time (JSON, casts); check it as unknown data.
  const event = input as unknown as Loose;
  const e = input as unknown as Record<string, unknown>;
  switch (event.type) {
    case 'key-release': {
      if (event.decision !== 'allow' && event.decision !== 'deny') {
        throw new AuditError('invalid', 'decision must be allow or deny');
      }
      requireStrings(e, ['reason'], 'event');
      requireStrings(
        event.workload,
        ['namespace', 'serviceAccount', 'podUid', 'certificateSerial'],
        'workload',
      );
      if (
        (event.workload as { environment?: unknown }).environment !== undefined &&
        !isString((event.workload as { environment?: unknown }).environment)
      ) {
        throw new AuditError('invalid', 'workload.environment must be a non-empty string when present');
      }
      requireStrings(
        event.artifact,
        ['namespace', 'name', 'version', 'classification', 'environment'],
        'artifact',
      );
      requireStrings(event.key, ['id', 'version'], 'key');
      if (event.grant !== null && event.grant !== undefined) {
        requireStrings(event.grant, GRANT_FIELDS, 'grant');
        const approvals = event.grant.approvals;
        if (!Array.isArray(approvals)) throw new AuditError('invalid', 'grant.approvals must be a list');
        approvals.forEach((a: unknown, i) => {
          requireStrings(a, APPROVAL_FIELDS, `grant.approvals[${i}]`);
        });
      } else if (event.decision === 'allow' || event.grant === undefined) {
        throw new AuditError('invalid', 'an allow decision names the grant that allowed it');
      }
      requireHmacs(event.secrets);
      return;
    }
    case 'heartbeat':
      if (
        typeof event.intervalMs !== 'number' ||
        !Number.isSafeInteger(event.intervalMs) ||
        event.intervalMs <= 0
      ) {
        throw new AuditError('invalid', 'heartbeat intervalMs must be a positive integer');
      }
      return;
    case 'writer-started':
      return;
    case 'anomaly-alert':
      validateAlert(input as Partial<AnomalyAlertEvent>);
      return;
    case 'identity-quarantined': {
      const q = input as Partial<IdentityQuarantinedEvent>;
      requireStrings(q.identity, ['namespace', 'serviceAccount'], 'identity');
      requireStrings(e, ['actor', 'reason'], 'event');
      requireText(q.alertId, 'event.alertId');
      requireSeverity(q.severity, 'event.severity');
      requireText(q.detail, 'event.detail');
      return;
    }
    case 'identity-lifted': {
      const l = input as Partial<IdentityLiftedEvent>;
      requireStrings(l.identity, ['namespace', 'serviceAccount'], 'identity');
      requireStrings(e, ['actor', 'reason'], 'event');
      return;
    }
    case 'broker-access': {
      const b = input as Partial<BrokerAccessEvent>;
      if (!(BROKER_OPERATIONS as readonly unknown[]).includes(b.operation)) {
        throw new AuditError('invalid', `unknown broker operation ${JSON.stringify(b.operation)}`);
      }
      if (b.decision !== 'allow' && b.decision !== 'deny') {
        throw new AuditError('invalid', 'decision must be allow or deny');
      }
      requireStrings(e, ['reason', 'peer', 'detail'], 'event');
      if (typeof b.verified !== 'boolean') throw new AuditError('invalid', 'verified must be a boolean');
      requireStringMap(b.workload, 'workload');
      if (b.artifact !== null) requireStringMap(b.artifact, 'artifact');
      requireHmacs(b.secrets);
      return;
    }
    case 'version-published':
    case 'version-sealed': {
      const v = input as Partial<VersionEvent>;
      requireStrings(v.artifact, ['namespace', 'name', 'uid'], 'artifact');
      requireStrings(e, ['version', 'digest', 'publisher', 'publishedAt', 'actor', 'reason'], 'event');
      if (v.key !== undefined) requireStrings(v.key, ['id', 'version'], 'key');
      else if (v.type === 'version-sealed') throw new AuditError('invalid', 'version-sealed names its key');
      return;
    }
    case 'environment-changed': {
      const n = input as Partial<EnvironmentEvent>;
      requireStrings(e, ['namespace', 'reason'], 'event');
      for (const field of ['old', 'new'] as const) {
        const value = n[field];
        if (value !== null && !isString(value)) {
          throw new AuditError('invalid', `event.${field} must be null or a non-empty string`);
        }
      }
      if (n.old === n.new) throw new AuditError('invalid', 'environment-changed with old equal to new');
      return;
    }
    default: {
      if (!(GRANT_EVENT_TYPES as readonly unknown[]).includes(event.type)) {
        throw new AuditError('invalid', `unknown event type ${JSON.stringify(event.type)}`);
      }
      const g = input as Partial<GrantEvent>;
      requireStrings(event.grant, GRANT_FIELDS, 'grant');
      requireStrings(e, ['actor', 'reason'], 'event');
      if (event.approval !== undefined) requireStrings(event.approval, APPROVAL_FIELDS, 'approval');
      if (g.groups !== undefined) {
        if (!Array.isArray(g.groups)) throw new AuditError('invalid', 'groups must be a list');
        requireStrings(g.groups, Object.keys(g.groups), 'groups');
      }
      for (const field of ['previousPhase', 'phase', 'detail'] as const) {
        if (g[field] !== undefined && !isString(g[field])) {
          throw new AuditError('invalid', `event.${field} must be a non-empty string when present`);
        }
      }
    }
  }
}
