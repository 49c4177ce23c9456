import { describe, expect, it } from 'vitest';
import { POLICY_NAMES, governancePolicies } from './admission-policies.ts';
import { governanceDefaults } from './defaults.ts';

const policies = governancePolicies({
  operatorNamespace: 'strongroom-system',
  operatorUser: 'system:serviceaccount:strongroom-system:strongroom',
  defaults: governanceDefaults(),
});

describe('governancePolicies', () => {
  it('builds the six documented policies, each with its binding', () => {
    expect(policies.map((p) => p.policy.metadata?.name)).toEqual(Object.values(POLICY_NAMES));
    for (const { policy, binding } of policies) {
      expect(binding.spec.policyName).toBe(policy.metadata?.name);
      expect(binding.spec.validationActions).toEqual(['Deny']);
    }
  });

  it('fails closed: failurePolicy Fail, and a missing governance ConfigMap denies (but for the quarantines and checkpoints)', () => {
    for (const { policy, binding } of policies) {
      expect(policy.spec?.failurePolicy).toBe('Fail');
      expect(policy.spec?.paramKind).toEqual({ apiVersion: 'v1', kind: 'ConfigMap' });
      expect(binding.spec.paramRef).toEqual({
        name: 'strongroom-governance',
        namespace: 'strongroom-system',
        // The exception: the quarantines ConfigMap shares its namespace with the governance ConfigMap, which a
        // namespace deletion removes first; denying then would keep the namespace from ever going.
        // The same holds for the audit checkpoints ConfigMap.
        parameterNotFoundAction: [POLICY_NAMES.identityQuarantine, POLICY_NAMES.auditCheckpoints].includes(
          policy.metadata?.name as never,
        )
          ? 'Allow'
          : 'Deny',
      });
    }
  });

  it('exempts only the operator, and only from the version-publishing rule', () => {
    for (const { policy } of policies) {
      const conditions = JSON.stringify(policy.spec?.matchConditions ?? []);
      if (policy.metadata?.name === POLICY_NAMES.versionPublishing)
        expect(conditions).toContain("'system:serviceaccount:strongroom-system:strongroom'");
      else if (
        policy.metadata?.name === POLICY_NAMES.identityQuarantine ||
        policy.metadata?.name === POLICY_NAMES.auditCheckpoints
      )
        expect(conditions).not.toContain('system:serviceaccount');
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

  it('guards only the quarantines ConfigMap in the operator namespace, on create, update and delete', () => {
    const q = policies.find((p) => p.policy.metadata?.name === POLICY_NAMES.identityQuarantine);
    expect(q?.policy.spec?.matchConstraints?.resourceRules).toEqual([
      {
        apiGroups: [''],
        apiVersions: ['*'],
        operations: ['CREATE', 'UPDATE', 'DELETE'],
        resources: ['configmaps'],
      },
    ]);
    expect(q?.policy.spec?.matchConditions).toEqual([
      { name: 'operator-namespace', expression: "request.namespace == 'strongroom-system'" },
      {
        name: 'quarantines-configmap',
        expression:
          "(object != null && object.metadata.name == 'strongroom-quarantines') || " +
          "(oldObject != null && oldObject.metadata.name == 'strongroom-quarantines')",
      },
    ]);
    // The operator is named in the rule (it may only add), never exempted from it.
    const variables = JSON.stringify(q?.policy.spec?.variables);
    expect(variables).toContain(
      "request.userInfo.username == 'system:serviceaccount:strongroom-system:strongroom'",
    );
    expect(q?.policy.spec?.validations?.[0]?.expression).toBe(
      'variables.security || variables.namespaceDeleted || (variables.operator && variables.onlyAdds)',
    );
  });

  it('guards only the audit checkpoints ConfigMap in the operator namespace; the operator may only add or grow keys', () => {
    const c = policies.find((p) => p.policy.metadata?.name === POLICY_NAMES.auditCheckpoints);
    expect(c?.policy.spec?.matchConstraints?.resourceRules?.[0]?.operations).toEqual([
      'CREATE',
      'UPDATE',
      'DELETE',
    ]);
    expect(c?.policy.spec?.matchConditions?.[1]?.expression).toBe(
      "(object != null && object.metadata.name == 'strongroom-audit-checkpoints') || " +
        "(oldObject != null && oldObject.metadata.name == 'strongroom-audit-checkpoints')",
    );
    const grows = c?.policy.spec?.variables?.find((v) => v.name === 'onlyGrows')?.expression ?? '';
    // Every key stays, and a changed one keeps its origin (line 0) and grows (line 1), or keeps size and root.
    expect(grows).toMatch(
      /^request.operation != 'DELETE' && variables.before.all\(k, k in variables.after && /,
    );
    expect(grows).toContain("variables.after[k].split('\\n')[0] == variables.before[k].split('\\n')[0]");
    expect(grows).toContain("int(variables.after[k].split('\\n')[1])");
    expect(c?.policy.spec?.validations?.[0]?.expression).toBe(
      'variables.security || variables.namespaceDeleted || (variables.operator && variables.onlyGrows)',
    );
  });
});
