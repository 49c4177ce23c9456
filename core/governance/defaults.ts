/**
 * The defaults the admission policies fall back to for keys missing from the governance ConfigMap: the operator's
 * own defaults (core/policy/classification.ts), so both read one table.
 */
import type { Classification } from '../api/index.ts';
import { DEFAULT_GOVERNANCE_CONFIG, GOVERNANCE_KEYS, classificationKey } from '../policy/classification.ts';
import type { GovernanceDefaults } from './admission-policies.ts';

const CLASSIFICATIONS: readonly Classification[] = ['public', 'internal', 'confidential', 'restricted'];

function value(key: string): string {
  const found = DEFAULT_GOVERNANCE_CONFIG[key];
  if (found === undefined) throw new Error(`the default governance table has no key ${key}`);
  return found;
}

function perClassification(field: 'approverGroups' | 'publisherGroups'): Record<Classification, string> {
  return Object.fromEntries(CLASSIFICATIONS.map((c) => [c, value(classificationKey(c, field))])) as Record<
    Classification,
    string
  >;
}

export function governanceDefaults(): GovernanceDefaults {
  return {
    platformAdminGroups: value(GOVERNANCE_KEYS.platformAdminGroups),
    securityGroups: value(GOVERNANCE_KEYS.securityGroups),
    approverGroups: perClassification('approverGroups'),
    publisherGroups: perClassification('publisherGroups'),
  };
}
