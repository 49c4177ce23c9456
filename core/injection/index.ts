/**
 * Sidecar injection, the pure part (docs/injection.md): parse a pod's Strongroom annotations, resolve them against
 * the ModelArtifacts into the sidecar's plan, build the JSON patch, and decide an AdmissionReview. No I/O: the
 * webhook server (operator/webhook) feeds it requests and an artifact lookup over its cache.
 */
export * from './contract.ts';
export { InjectionError, type InjectionErrorKind } from './errors.ts';
export {
  LATEST,
  parseArtifactsAnnotation,
  parseCiphertextClaim,
  parseInjectionRequest,
  parseOutputSize,
  parsePublishAnnotation,
  type ArtifactEntry,
  type InjectionRequest,
} from './annotation.ts';
export {
  planInjection,
  plaintextSizeLimit,
  resolveVersion,
  type ArtifactLookup,
  type CiphertextVolume,
  type CrossNamespaceAccess,
  type GrantLookup,
  type InjectionPlan,
  type MemoryVolume,
  type S3CredentialsSecret,
} from './plan.ts';
export {
  buildPatch,
  escapePointer,
  restrictedSecurityContext,
  DEFAULT_STARTUP_FAILURE_THRESHOLD,
  SIDECAR_UID,
  type InjectionSettings,
  type JsonPatchOperation,
} from './patch.ts';
export {
  admit,
  ADMISSION_API_VERSION,
  DENIAL_PREFIX,
  type AdmissionRequest,
  type AdmissionResponse,
  type AdmissionReview,
  type AdmissionStatus,
} from './review.ts';
export {
  admissionProblem,
  isStrongroomTokenVolume,
  verificationView,
  verifyInjectedPod,
  RESERVED_VOLUME_PREFIX,
  type ExpectedSidecar,
} from './verify.ts';
