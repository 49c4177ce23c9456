/**
 * Alert severities, lowest first: info < low < medium < high < critical (docs/detection.md#severities).
 */
import { SEVERITIES, type Severity } from '../audit/event.ts';

export { SEVERITIES, type Severity };

/** The rank of a severity (info 0 … critical 4). */
export function severityRank(severity: Severity): number {
  return SEVERITIES.indexOf(severity);
}

/** True when `severity` is `minimum` or above it. */
export function severityAtLeast(severity: Severity, minimum: Severity): boolean {
  return severityRank(severity) >= severityRank(minimum);
}

export function isSeverity(value: unknown): value is Severity {
  return (SEVERITIES as readonly unknown[]).includes(value);
}
