/**
 * The defaults the admission policies fall back to for keys missing from the governance ConfigMap: taken from the
 * operator's classification table, so both read one table.
 */
import type { GovernanceDefaults } from './admission-policies.ts';

// PROVISIONAL until core/policy/classification.ts lands: the same values as its defaults.
export function governanceDefaults(): GovernanceDefaults {
  const approvers = 'strongroom:approvers';
  const publishers = 'strongroom:publishers';
  return {
    platformAdminGroups: 'strongroom:platform-admins',
    securityGroups: 'strongroom:security',
    approverGroups: {
      public: approvers,
      internal: approvers,
      confidential: approvers,
      restricted: approvers,
    },
    publisherGroups: { public: publishers, internal: publishers, confidential: publishers, restricted: '' },
  };
}
