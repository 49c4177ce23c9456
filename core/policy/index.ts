/**
 * Strongroom's pure policy (docs/policy.md): conditions, durations, KEK rotation, the AccessGrant phase decision,
 * the ModelArtifact conditions, label selectors and the key-release authorization. No I/O and no Kubernetes
 * client: the controllers and the broker gather facts and act on the decisions.
 */
export {
  setCondition,
  findCondition,
  statusEqual,
  kubeTime,
  type Condition,
  type ConditionInput,
  type ConditionStatus,
} from './conditions.ts';
export { PolicyError, policyDuration, type PolicyErrorCode } from './errors.ts';
export {
  parseKekRotationOverrides,
  rotationPeriods,
  rotationStatus,
  type KekVersionAge,
  type RotationOverrides,
  type RotationTable,
} from './rotation.ts';
export {
  CLASSIFICATION_FIELDS,
  ClassificationConfigError,
  DEFAULT_CLASSIFICATION_TABLE,
  DEFAULT_GOVERNANCE_CONFIG,
  GOVERNANCE_CONFIGMAP,
  GOVERNANCE_CONFIG_KEYS,
  GOVERNANCE_KEYS,
  MAX_APPROVALS,
  classificationKey,
  formatClassificationConfig,
  parseClassificationConfig,
  withKekRotation,
  type ClassificationField,
  type ClassificationPolicy,
  type ClassificationTable,
  type ConfigProblem,
} from './classification.ts';
export {
  QUARANTINE_ANNOTATION,
  REVOKED_ANNOTATION,
  evaluateGrant,
  grantStatus,
  endsAccess,
  type GrantDecision,
  type GrantInput,
  type GrantPhase,
  type NamespaceFacts,
} from './grant.ts';
export {
  evaluateArtifact,
  artifactStatus,
  type ArtifactDecision,
  type ArtifactInput,
  type VersionKeyFacts,
} from './artifact.ts';
export { matchesSelector, selectorMismatch } from './labels.ts';
export {
  authorizeRelease,
  type ReleaseDecision,
  type ReleaseDenyReason,
  type ReleaseInput,
  type ReleaseRequest,
  type WorkloadIdentity,
} from './release.ts';
