/**
 * Strongroom's tamper-evident audit log (docs/audit.md): an RFC 6962 Merkle log of canonical JSON events with
 * C2SP signed checkpoints, a durable group-committing writer, and an offline verifier.
 */
export { AuditError, type AuditErrorKind } from './errors.ts';
export { canonicalize, CanonicalJsonError, type JsonValue } from './canonical-json.ts';
export {
  AuditKey,
  keyReleaseEvent,
  GRANT_EVENT_TYPES,
  VERSION_EVENT_TYPES,
  brokerAccessEvent,
  type BrokerAccessEvent,
  type BrokerAccessInput,
  type BrokerOperation,
  type AuditEvent,
  type KeyReleaseEvent,
  type KeyReleaseInput,
  type GrantEvent,
  type GrantEventType,
  type VersionEvent,
  type VersionEventType,
  type EnvironmentEvent,
  type GovernanceEvent,
  type HeartbeatEvent,
  type WriterStartedEvent,
} from './event.ts';
export {
  MerkleTree,
  leafHash,
  nodeHash,
  rootOf,
  verifyInclusion,
  verifyConsistency,
  EMPTY_ROOT,
} from './merkle.ts';
export {
  generateNoteKey,
  parseSignerKey,
  parseVerifierKey,
  signNote,
  signNoteAsync,
  noteVerifierFromPublicKey,
  openNote,
  NoteError,
  type AnyNoteSigner,
  type AsyncNoteSigner,
  type NoteSigner,
  type NoteVerifier,
} from './note.ts';
export {
  formatCheckpoint,
  parseCheckpoint,
  openCheckpoint,
  peekCheckpoint,
  signCheckpoint,
  signCheckpointAsync,
  originFor,
  writerOf,
  AUDIT_CHECKPOINTS_CONFIGMAP,
  type Checkpoint,
} from './checkpoint.ts';
export {
  AuditLog,
  withAuditedRelease,
  type AuditLogOptions,
  type AuditExporter,
  type AuditMetrics,
  type AuditObservers,
  type AppendedEntry,
  type AppendReceipt,
} from './log.ts';
export {
  verifyLog,
  formatFindings,
  type Finding,
  type FindingKind,
  type VerifyOptions,
  type VerifyReport,
} from './verify.ts';
export { tailLog, type TailRecord } from './tail.ts';
export {
  grantTransitions,
  versionEvents,
  environmentChanges,
  boundedDetail,
  OPERATOR_ACTOR,
  UNKNOWN_ACTOR,
  DENIED_BY_APPROVER,
} from './governance.ts';
