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
export { parseDuration, formatDuration, PolicyError, type PolicyErrorCode } from './duration.ts';
export {
  DEFAULT_ROTATION_TABLE,
  parseRotationTable,
  rotationStatus,
  type KekVersionAge,
  type RotationTable,
} from './rotation.ts';
export {
  DEFAULT_GRANT_POLICY,
  REVOKED_ANNOTATION,
  evaluateGrant,
  grantStatus,
  endsAccess,
  type GrantDecision,
  type GrantInput,
  type GrantPhase,
  type GrantPolicy,
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
