/**
 * Strongroom's governance rules that the API server itself enforces: ValidatingAdmissionPolicies (CEL over
 * `request.userInfo`, evaluated inside kube-apiserver), so they hold while the operator is down, and no
 * Strongroom code sits in the request path. Pure builders: the end-to-end stack (test/harness/stack.ts, which the
 * demo also runs) and the governance tests create the objects from them. docs/policy.md lists the rules,
 * docs/adr/0010-governance-admission.md says why CEL and not a webhook.
 *
 * Every policy reads the governance ConfigMap (core/policy/classification.ts parses the same keys for the operator)
 * as its parameter. A binding whose ConfigMap is missing denies (parameterNotFoundAction: Deny; one exception, see
 * identityQuarantine): without the table
 * no one can be shown to be an approver, a platform admin or a security officer. A key missing from the ConfigMap
 * falls back to the same default the operator uses; the defaults are compiled into the CEL from
 * {@link GovernanceDefaults} so that one table feeds both.
 *
 * Identity rules (requester, approver, denier, publisher equal the authenticated user) hold for everyone. Group
 * rules (approver, platform admin, security, publisher groups) also accept `system:masters`: a cluster-admin
 * bypasses RBAC and can delete these policies anyway, so refusing them would only make break-glass harder without
 * stopping anyone; the operator still audits what they change.
 */
import type {
  V1ValidatingAdmissionPolicy,
  V1ValidatingAdmissionPolicyBinding,
  V1Validation,
  V1Variable,
} from '@kubernetes/client-node';

import { ENVIRONMENT_LABEL } from '../api/index.ts';
import { AUDIT_CHECKPOINTS_CONFIGMAP } from '../audit/checkpoint.ts';
import { GOVERNANCE_CONFIGMAP } from '../policy/classification.ts';
import { QUARANTINE_ANNOTATION } from '../policy/grant.ts';
import { QUARANTINES_CONFIGMAP } from '../policy/quarantine.ts';

export {
  AUDIT_CHECKPOINTS_CONFIGMAP,
  ENVIRONMENT_LABEL,
  GOVERNANCE_CONFIGMAP,
  QUARANTINE_ANNOTATION,
  QUARANTINES_CONFIGMAP,
};
/** Groups that pass every group rule (see the module comment). */
export const BREAK_GLASS_GROUPS: readonly string[] = ['system:masters'];

const CLASSIFICATIONS = ['public', 'internal', 'confidential', 'restricted'] as const;
type Classification = (typeof CLASSIFICATIONS)[number];

/** The defaults of the keys the policies read; the operator's table must use the same ones. */
export interface GovernanceDefaults {
  readonly platformAdminGroups: string;
  readonly securityGroups: string;
  readonly approverGroups: Readonly<Record<Classification, string>>;
  readonly publisherGroups: Readonly<Record<Classification, string>>;
}

export interface GovernancePolicyOptions {
  /** Namespace of the governance ConfigMap (the operator's). */
  readonly operatorNamespace: string;
  /** The user the operator authenticates as; the only one that may add a version with another publisher (the
   * broker's PublishVersion records the caller's SPIFFE identity). In a cluster: system:serviceaccount:<ns>:<sa>. */
  readonly operatorUser: string;
  readonly configMapName?: string;
  readonly defaults: GovernanceDefaults;
}

export interface GovernancePolicy {
  readonly policy: V1ValidatingAdmissionPolicy;
  readonly binding: V1ValidatingAdmissionPolicyBinding;
}

export const POLICY_NAMES = {
  grantIdentity: 'strongroom-grant-identity',
  grantQuarantine: 'strongroom-grant-quarantine',
  environmentLabel: 'strongroom-environment-label',
  versionPublishing: 'strongroom-version-publishing',
  identityQuarantine: 'strongroom-identity-quarantine',
  auditCheckpoints: 'strongroom-audit-checkpoints',
} as const;

const LABELS = { 'app.kubernetes.io/managed-by': 'strongroom', 'app.kubernetes.io/name': 'strongroom' };

/** A CEL string literal. */
function lit(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/** CEL: the value of ConfigMap key `key` (a CEL string expression), else `fallback` (a CEL string expression). */
function param(key: string, fallback: string): string {
  return `(has(params.data) && ${key} in params.data ? params.data[${key}] : ${fallback})`;
}

/** CEL: the comma-separated group list under a per-classification key, `classification` a CEL expression. */
function classGroups(
  suffix: string,
  defaults: Readonly<Record<Classification, string>>,
  classification: string,
) {
  const table = `{${CLASSIFICATIONS.map((c) => `${lit(c)}: ${lit(defaults[c])}`).join(', ')}}`;
  const key = `${classification} + ${lit(`.${suffix}`)}`;
  const fallback = `(${classification} in ${table} ? ${table}[${classification}] : '')`;
  return `${param(key, fallback)}.split(',')`;
}

/** CEL: true when the requesting user is in one of `groups` (a CEL list expression) or a break-glass group. */
function userIn(groups: string): string {
  const glass = `[${BREAK_GLASS_GROUPS.map(lit).join(', ')}]`;
  return `${USER_GROUPS}.exists(g, g in ${groups} || g in ${glass})`;
}

/** CEL: the requesting user's groups (an empty list when there are none). */
const USER_GROUPS = '(has(request.userInfo.groups) ? request.userInfo.groups : [])';

function policy(
  name: string,
  spec: {
    resources: { group: string; resource: string; subresources?: readonly string[] };
    operations: readonly string[];
    variables: V1Variable[];
    validations: V1Validation[];
    matchConditions?: { name: string; expression: string }[];
  },
  options: GovernancePolicyOptions,
): GovernancePolicy {
  return {
    policy: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name, labels: LABELS },
      spec: {
        failurePolicy: 'Fail',
        paramKind: { apiVersion: 'v1', kind: 'ConfigMap' },
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [spec.resources.group],
              apiVersions: ['*'],
              operations: [...spec.operations],
              // The subresources too where they can carry the same change (a Namespace's labels are kept by
              // updates through namespaces/status and namespaces/finalize).
              resources: [
                spec.resources.resource,
                ...(spec.resources.subresources ?? []).map((sub) => `${spec.resources.resource}/${sub}`),
              ],
            },
          ],
        },
        ...(spec.matchConditions ? { matchConditions: spec.matchConditions } : {}),
        variables: spec.variables,
        validations: spec.validations,
      },
    },
    binding: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name, labels: LABELS },
      spec: {
        policyName: name,
        validationActions: ['Deny'],
        paramRef: {
          name: options.configMapName ?? GOVERNANCE_CONFIGMAP,
          namespace: options.operatorNamespace,
          parameterNotFoundAction: 'Deny',
        },
      },
    },
  };
}

const user = 'request.userInfo.username';
const forbidden = 'Forbidden';

/**
 * AccessGrant: the requester is the creating user; approvals and a denial are added only by an approver in person
 * (not the requester, in an approver group of the artifact's classification, listing only their own groups).
 */
function grantIdentity(options: GovernancePolicyOptions): GovernancePolicy {
  const approverGroups = classGroups(
    'approverGroups',
    options.defaults.approverGroups,
    'variables.classification',
  );
  return policy(
    POLICY_NAMES.grantIdentity,
    {
      resources: { group: 'strongroom.dev', resource: 'accessgrants' },
      operations: ['CREATE', 'UPDATE'],
      variables: [
        { name: 'isCreate', expression: "request.operation == 'CREATE'" },
        {
          name: 'oldApprovers',
          expression:
            'oldObject == null || !has(oldObject.spec.approvals) ? [] : oldObject.spec.approvals.map(a, a.approver)',
        },
        {
          name: 'added',
          expression:
            '!has(object.spec.approvals) ? [] : object.spec.approvals.filter(a, !(a.approver in variables.oldApprovers))',
        },
        {
          name: 'newDenial',
          expression: 'has(object.spec.denial) && (oldObject == null || !has(oldObject.spec.denial))',
        },
        {
          name: 'classification',
          expression:
            "has(object.status) && has(object.status.classification) ? object.status.classification : ''",
        },
        { name: 'approverGroups', expression: approverGroups },
        {
          name: 'requester',
          expression: "has(object.spec.requester) ? object.spec.requester : ''",
        },
      ],
      validations: [
        {
          expression: `!variables.isCreate || variables.requester == ${user}`,
          messageExpression:
            `'spec.requester must be the user creating the grant: set requester: "' + ${user} + '"` +
            ` (it is recorded, never typed by someone else; ' + (variables.requester == '' ? 'it is missing' : ` +
            `'it says "' + variables.requester + '"') + ')'`,
          reason: forbidden,
        },
        {
          expression: '!variables.isCreate || (size(variables.added) == 0 && !variables.newDenial)',
          message:
            'a grant is created without approvals or a denial; approvers add theirs afterwards ' +
            '(kubectl strongroom approve|deny), never the requester',
          reason: forbidden,
        },
        {
          expression: `variables.added.all(a, a.approver == ${user})`,
          messageExpression:
            `'an approval can only be added by the approver in person: you are "' + ${user} + '"` +
            ` but the new approval names "' + variables.added.filter(a, a.approver != ${user})[0].approver + '"'`,
          reason: forbidden,
        },
        {
          expression:
            "variables.added.all(a, variables.requester != '' && a.approver != variables.requester)",
          messageExpression:
            "variables.requester == '' ? 'this grant records no requester (it was created without the Strongroom " +
            "admission policy), so no approval can be checked; create a new grant' : 'the requester (' + " +
            "variables.requester + ') cannot approve their own grant'",
          reason: forbidden,
        },
        {
          expression: `variables.added.all(a, has(a.groups) && size(a.groups) > 0 && a.groups.all(g, g in ${USER_GROUPS}))`,
          messageExpression:
            `'approvals[].groups must list the approver group(s) you belong to, and only those; your groups are ' + ` +
            `${USER_GROUPS}.join(', ')`,
          reason: forbidden,
        },
        {
          expression: "size(variables.added) == 0 && !variables.newDenial || variables.classification != ''",
          message:
            'Strongroom has not evaluated this grant yet (status.classification is empty), so the approver groups ' +
            'are unknown; try again once the grant has a phase',
          reason: forbidden,
        },
        {
          expression: `variables.added.all(a, a.groups.exists(g, g in variables.approverGroups) || ${userIn('[]')})`,
          messageExpression:
            `'approvers of ' + variables.classification + ' grants must be in one of the groups ' + ` +
            `variables.approverGroups.join(', ') + '; the approval lists ' + variables.added[0].groups.join(', ')`,
          reason: forbidden,
        },
        {
          expression:
            `!variables.newDenial || (object.spec.denial.deniedBy == ${user} && variables.requester != '' && ` +
            `object.spec.denial.deniedBy != variables.requester && has(object.spec.denial.groups) && ` +
            `object.spec.denial.groups.all(g, g in ${USER_GROUPS}) && ` +
            `(object.spec.denial.groups.exists(g, g in variables.approverGroups) || ${userIn('[]')}))`,
          messageExpression:
            `'a denial is added by an approver in person: deniedBy must be you ("' + ${user} + '"), not the ` +
            `requester, and denial.groups must list your own approver group (one of ' + ` +
            `variables.approverGroups.join(', ') + ')'`,
          reason: forbidden,
        },
      ],
    },
    options,
  );
}

/**
 * A label or annotation only members of the groups under ConfigMap key `groupsKey` may add, change or remove, on
 * CREATE (set at all) and UPDATE (changed).
 */
function reservedMetadata(
  options: GovernancePolicyOptions,
  spec: {
    name: string;
    resources: { group: string; resource: string; subresources?: readonly string[] };
    field: 'labels' | 'annotations';
    key: string;
    groupsKey: 'platformAdminGroups' | 'securityGroups';
    /** DELETE too, when deleting the object would remove the mark for good (a quarantined grant). */
    deletes?: boolean;
    message: (verb: string) => string;
  },
): GovernancePolicy {
  const key = lit(spec.key);
  const field = spec.field;
  const value = (o: string) =>
    `(${o} != null && has(${o}.metadata.${field}) && ${key} in ${o}.metadata.${field} ? ` +
    `'set:' + ${o}.metadata.${field}[${key}] : 'unset')`;
  return policy(
    spec.name,
    {
      resources: spec.resources,
      operations: spec.deletes === true ? ['CREATE', 'UPDATE', 'DELETE'] : ['CREATE', 'UPDATE'],
      variables: [
        { name: 'before', expression: value('oldObject') },
        { name: 'after', expression: value('object') },
        {
          name: 'groups',
          expression: `${param(lit(spec.groupsKey), lit(options.defaults[spec.groupsKey]))}.split(',')`,
        },
      ],
      validations: [
        {
          expression:
            `variables.before == variables.after || ${userIn('variables.groups')}` +
            // The namespace controller deletes everything in a namespace being deleted.
            (spec.deletes === true
              ? " || (request.operation == 'DELETE' && namespaceObject != null && " +
                'has(namespaceObject.metadata.deletionTimestamp))'
              : ''),
          messageExpression: spec.message(
            "(request.operation == 'DELETE' ? 'delete' : variables.after == 'unset' ? 'remove' : " +
              "variables.before == 'unset' ? 'add' : 'change')",
          ),
          reason: forbidden,
        },
      ],
    },
    options,
  );
}

/** AccessGrant: only the security groups add, change or remove (lift) the quarantine annotation. */
function grantQuarantine(options: GovernancePolicyOptions): GovernancePolicy {
  return reservedMetadata(options, {
    name: POLICY_NAMES.grantQuarantine,
    resources: { group: 'strongroom.dev', resource: 'accessgrants' },
    field: 'annotations',
    key: QUARANTINE_ANNOTATION,
    groupsKey: 'securityGroups',
    // Deleting a quarantined grant and creating it again would lift the quarantine without the security team.
    deletes: true,
    message: (verb) =>
      `'only the security team (groups ' + variables.groups.join(', ') + ') may ' + ` +
      `(${verb} == 'delete' ? 'delete a grant under' : ${verb} == 'remove' ? 'lift' : ${verb}) + ` +
      `' the quarantine annotation ${QUARANTINE_ANNOTATION}'`,
  });
}

/** Namespace: only platform admins add, change or remove the environment label. */
function environmentLabel(options: GovernancePolicyOptions): GovernancePolicy {
  return reservedMetadata(options, {
    name: POLICY_NAMES.environmentLabel,
    resources: { group: '', resource: 'namespaces', subresources: ['status', 'finalize'] },
    field: 'labels',
    key: ENVIRONMENT_LABEL,
    groupsKey: 'platformAdminGroups',
    message: () =>
      `'only platform admins (groups ' + variables.groups.join(', ') + ') may set, change or remove ` +
      `the label ${ENVIRONMENT_LABEL}: it decides which artifacts the namespace can read'`,
  });
}

/**
 * ModelArtifact: a version enters spec.versions only from the broker (the operator's identity, PublishVersion
 * under a publish grant) or from a user the classification table lets publish, whose name is the publisher.
 */
function versionPublishing(options: GovernancePolicyOptions): GovernancePolicy {
  const publisherGroups = classGroups(
    'publisherGroups',
    options.defaults.publisherGroups,
    'object.spec.classification',
  );
  return policy(
    POLICY_NAMES.versionPublishing,
    {
      resources: { group: 'strongroom.dev', resource: 'modelartifacts' },
      operations: ['CREATE', 'UPDATE'],
      matchConditions: [{ name: 'not-the-operator', expression: `${user} != ${lit(options.operatorUser)}` }],
      variables: [
        {
          name: 'oldNames',
          expression:
            'oldObject == null || !has(oldObject.spec.versions) ? [] : oldObject.spec.versions.map(v, v.name)',
        },
        {
          name: 'added',
          expression:
            '!has(object.spec.versions) ? [] : object.spec.versions.filter(v, !(v.name in variables.oldNames))',
        },
        { name: 'publisherGroups', expression: publisherGroups },
      ],
      validations: [
        {
          expression: `variables.added.all(v, v.publisher == ${user})`,
          messageExpression:
            `'spec.versions[].publisher of a new version must be you ("' + ${user} + '"), not "' + ` +
            `variables.added.filter(v, v.publisher != ${user})[0].publisher + '"; jobs publish through the ` +
            `broker (strongroom.dev/publish) under a publish AccessGrant'`,
          reason: forbidden,
        },
        {
          expression: `size(variables.added) == 0 || ${userIn('variables.publisherGroups')}`,
          messageExpression:
            `'you may not add versions to a ' + object.spec.classification + ' artifact directly' + ` +
            `(variables.publisherGroups.filter(g, g != '').size() == 0 ? ' (no group may)' : ` +
            `' (only groups ' + variables.publisherGroups.join(', ') + ' may)') + '; publish through the ` +
            `broker (strongroom.dev/publish) under a publish AccessGrant'`,
          reason: forbidden,
        },
      ],
    },
    options,
  );
}

/**
 * ConfigMap strongroom-quarantines (the quarantined identities, core/policy/quarantine.ts): the security groups may
 * do anything to it; the operator may only create it or add keys (every key it had stays, with its value) and never
 * delete it; everyone else may not write it at all (RBAC should not let them, this holds if it does). So lifting a
 * quarantine (removing its key), rewriting why, or deleting the ConfigMap takes the security team. The namespace
 * controller may delete it with the namespace.
 *
 * The one binding that does not deny without its parameter (parameterNotFoundAction: Allow): the governance
 * ConfigMap lives in the same namespace and sorts first, so when that namespace is deleted it goes first, and a
 * denying binding would then refuse the namespace controller the quarantines ConfigMap for ever (the namespace would
 * never go). Without the governance ConfigMap this rule is off; only those with write access to the operator's
 * namespace can remove that ConfigMap, and they can read its key material anyway (docs/detection.md).
 */
function identityQuarantine(options: GovernancePolicyOptions): GovernancePolicy {
  return operatorLedger(options, {
    policyName: POLICY_NAMES.identityQuarantine,
    configMap: QUARANTINES_CONFIGMAP,
    matchName: 'quarantines-configmap',
    keepName: 'onlyAdds',
    keeps: (before, after) => `${after} == ${before}`,
    operatorMay: `the operator may only add keys to ConfigMap ${QUARANTINES_CONFIGMAP}`,
    securityOnly: 'removing a key (lifting a quarantine), changing one or deleting the ConfigMap',
  });
}

/**
 * The shape the quarantines and the published checkpoints share: a ConfigMap in the operator's namespace that the
 * operator writes as a ledger. The security groups may do anything to it; the operator may create it and add keys,
 * and change an existing key only where `keeps(before, after)` holds (CEL over the old and new values); it may never
 * remove a key nor delete the ConfigMap; everyone else may not write it; the namespace controller may delete it with
 * the namespace. The binding allows when the governance ConfigMap is missing (see identityQuarantine).
 */
function operatorLedger(
  options: GovernancePolicyOptions,
  ledger: {
    readonly policyName: string;
    readonly configMap: string;
    readonly matchName: string;
    readonly keepName: string;
    readonly keeps: (before: string, after: string) => string;
    readonly operatorMay: string;
    readonly securityOnly: string;
  },
): GovernancePolicy {
  const name = lit(ledger.configMap);
  const groups = `${param(lit('securityGroups'), lit(options.defaults.securityGroups))}.split(',')`;
  const built = policy(
    ledger.policyName,
    {
      resources: { group: '', resource: 'configmaps' },
      operations: ['CREATE', 'UPDATE', 'DELETE'],
      matchConditions: [
        { name: 'operator-namespace', expression: `request.namespace == ${lit(options.operatorNamespace)}` },
        {
          name: ledger.matchName,
          expression:
            `(object != null && object.metadata.name == ${name}) || ` +
            `(oldObject != null && oldObject.metadata.name == ${name})`,
        },
      ],
      variables: [
        { name: 'groups', expression: groups },
        { name: 'security', expression: userIn('variables.groups') },
        { name: 'operator', expression: `${user} == ${lit(options.operatorUser)}` },
        {
          name: 'before',
          expression: 'oldObject == null || !has(oldObject.data) ? {} : oldObject.data',
        },
        { name: 'after', expression: 'object == null || !has(object.data) ? {} : object.data' },
        {
          name: ledger.keepName,
          expression:
            "request.operation != 'DELETE' && variables.before.all(k, k in variables.after && " +
            `${ledger.keeps('variables.before[k]', 'variables.after[k]')})`,
        },
        {
          name: 'namespaceDeleted',
          expression:
            "request.operation == 'DELETE' && namespaceObject != null && has(namespaceObject.metadata.deletionTimestamp)",
        },
      ],
      validations: [
        {
          expression: `variables.security || variables.namespaceDeleted || (variables.operator && variables.${ledger.keepName})`,
          messageExpression:
            `(variables.operator ? '${ledger.operatorMay}' : ` +
            `'only the security team and the operator may write ConfigMap ${ledger.configMap}') + ` +
            `'; ${ledger.securityOnly} is for the security ` +
            `team (groups ' + variables.groups.join(', ') + ')'`,
          reason: forbidden,
        },
      ],
    },
    options,
  );
  const paramRef = built.binding.spec.paramRef;
  if (paramRef !== undefined) paramRef.parameterNotFoundAction = 'Allow';
  return built;
}

/** CEL: line `i` of the signed note `note` (a CEL string expression): 0 the origin, 1 the size, 2 the root hash. */
function noteLine(note: string, i: number): string {
  return `${note}.split('\\n')[${String(i)}]`;
}

/** CEL: the tree size of the signed note `note` (a CEL string expression), or -1 when it is not a checkpoint. */
function noteSize(note: string): string {
  return (
    `(${note}.split('\\n').size() > 2 && ${noteLine(note, 1)}.matches('^[0-9]{1,18}$') ? ` +
    `int(${noteLine(note, 1)}) : -1)`
  );
}

/**
 * ConfigMap strongroom-audit-checkpoints (each replica's latest signed audit checkpoint under its writer name,
 * operator/broker/checkpoint-publisher.ts, docs/audit.md#published-checkpoints): the security groups may do anything
 * to it; the operator may create it, add keys, and change a key only to a checkpoint of the same origin that is
 * larger (or of the same size and root: the same tree), never remove a key nor delete the ConfigMap; everyone else
 * may not write it at all. So rewinding a writer's checkpoint (which would let a rolled-back log open), forking it, or
 * removing it (the next open would be unchecked) takes the security team, not only the operator's ServiceAccount.
 * Like identityQuarantine, the namespace controller may delete it with the namespace and the binding allows when the
 * governance ConfigMap is missing (it may be deleted first with the namespace).
 */
function auditCheckpoints(options: GovernancePolicyOptions): GovernancePolicy {
  return operatorLedger(options, {
    policyName: POLICY_NAMES.auditCheckpoints,
    configMap: AUDIT_CHECKPOINTS_CONFIGMAP,
    matchName: 'checkpoints-configmap',
    keepName: 'onlyGrows',
    keeps: (before, after) =>
      `(${after} == ${before} || ` +
      `(${noteSize(before)} >= 0 && ${noteLine(after, 0)} == ${noteLine(before, 0)} && ` +
      `(${noteSize(after)} > ${noteSize(before)} || ` +
      `(${noteSize(after)} == ${noteSize(before)} && ${noteLine(after, 2)} == ${noteLine(before, 2)}))))`,
    operatorMay:
      `the operator may only add keys to ConfigMap ${AUDIT_CHECKPOINTS_CONFIGMAP} ` +
      'and replace a checkpoint by a larger one of the same origin',
    securityOnly: 'removing a key, rewinding or rewriting a checkpoint or deleting the ConfigMap',
  });
}

/** Every governance policy with its binding, in the order they are documented. */
export function governancePolicies(options: GovernancePolicyOptions): readonly GovernancePolicy[] {
  return [
    grantIdentity(options),
    grantQuarantine(options),
    environmentLabel(options),
    versionPublishing(options),
    identityQuarantine(options),
    auditCheckpoints(options),
  ];
}
