import { describe, expect, it } from 'vitest';
import { POLICY_NAMES, governancePolicies } from './admission-policies.ts';
import { governanceDefaults } from './defaults.ts';

const policies = governancePolicies({
  operatorNamespace: 'strongroom-system',
  operatorUser: 'system:serviceaccount:strongroom-system:strongroom',
  defaults: governanceDefaults(),
});

describe('governancePolicies', () => {
  it('builds the four documented policies, each with its binding', () => {
    expect(policies.map((p) => p.policy.metadata?.name)).toEqual(Object.values(POLICY_NAMES));
    for (const { policy, binding } of policies) {
      expect(binding.spec.policyName).toBe(policy.metadata?.name);
      expect(binding.spec.validationActions).toEqual(['Deny']);
    }
  });

  it('fails closed: failurePolicy Fail, and a missing governance ConfigMap denies', () => {
    for (const { policy, binding } of policies) {
      expect(policy.spec?.failurePolicy).toBe('Fail');
      expect(policy.spec?.paramKind).toEqual({ apiVersion: 'v1', kind: 'ConfigMap' });
      expect(binding.spec.paramRef).toEqual({
        name: 'strongroom-governance',
        namespace: 'strongroom-system',
        parameterNotFoundAction: 'Deny',
      });
    }
  });

  it('exempts only the operator, and only from the version-publishing rule', () => {
    for (const { policy } of policies) {
      const conditions = JSON.stringify(policy.spec?.matchConditions ?? []);
      if (policy.metadata?.name === POLICY_NAMES.versionPublishing)
        expect(conditions).toContain("'system:serviceaccount:strongroom-system:strongroom'");
      else expect(conditions).toBe('[]');
    }
  });

  it('compiles the operator table’s defaults into the CEL for keys the ConfigMap lacks', () => {
    const cel = JSON.stringify(policies.map((p) => p.policy.spec));
    expect(cel).toContain("'confidential': 'strongroom:approvers'");
    expect(cel).toContain("'restricted': ''");
    expect(cel).toContain("'strongroom:platform-admins'");
    expect(cel).toContain("'strongroom:security'");
  });

  it('guards the environment label through namespaces/status and namespaces/finalize too (they keep labels)', () => {
    const env = policies.find((p) => p.policy.metadata?.name === POLICY_NAMES.environmentLabel);
    expect(env?.policy.spec?.matchConstraints?.resourceRules?.[0]?.resources).toEqual([
      'namespaces',
      'namespaces/status',
      'namespaces/finalize',
    ]);
  });
});
