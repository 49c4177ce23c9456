/**
 * Anomaly detection over the audit log (docs/detection.md): six rules, each alert explainable (rule, subject,
 * observed value against baseline and threshold, window, evidence entries). Pure: no Kubernetes, no clock.
 */
export { AnomalyDetector } from './detector.ts';
export {
  alertEvent,
  alertId,
  formatIdentity,
  MAX_EVIDENCE,
  type Alert,
  type EvidenceRef,
  type IdentityRef,
} from './alert.ts';
export {
  parseDetectionConfig,
  DEFAULT_DETECTION_CONFIG,
  DEFAULT_DETECTION_DATA,
  DETECTION_CONFIG_KEYS,
  DETECTION_CONFIGMAP,
  DetectionConfigError,
  RULE_NAMES,
  type DetectionConfig,
  type DetectionConfigProblem,
  type RuleName,
  type RuleConfig,
} from './config.ts';
export { severityAtLeast, severityRank, isSeverity, SEVERITIES, type Severity } from './severity.ts';
export { type DetectorEntry } from './observation.ts';
export { logEntries, logOrigin } from './replay.ts';
