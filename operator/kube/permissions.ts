/**
 * Every Kubernetes API permission the operator uses, one entry per RBAC rule, with the module and the call that
 * needs it. The Helm chart's ClusterRole and Role are generated from this table (charts/generate.ts), and
 * test/chart/rbac.test.ts checks both directions: a static scan of operator/ and core/ finds exactly the calls listed
 * here (a new API call without an entry fails, and so does an entry whose call is gone), each entry's verbs are
 * exactly those its calls need, and the rendered chart grants exactly these rules. The CLI (cli/) runs as
 * the person using it and is not part of this table.
 *
 * `namespaced: true` means the rule is granted by a Role in the operator's own namespace only; otherwise by the
 * ClusterRole. `resourceNames` narrows a rule to the objects of those names where the name is known in advance
 * (RBAC cannot narrow `create`, and narrows `list`/`watch` only for requests with a `metadata.name` field selector).
 */
import { AUDIT_KEYS_SECRET } from '../broker/audit-keys.ts';
import { AUDIT_CHECKPOINTS_CONFIGMAP } from '../broker/checkpoint-publisher.ts';
import { ENVIRONMENTS_CONFIGMAP } from '../controllers/environment-audit.ts';
import { KEYSET_SECRET } from '../keys/open-kms.ts';
import { WEBHOOK_CONFIGURATION_NAME } from '../webhook/configuration.ts';
import { GOVERNANCE_CONFIGMAP } from '../../core/policy/classification.ts';
import { DETECTION_CONFIGMAP } from '../../core/detection/config.ts';
import { QUARANTINES_CONFIGMAP } from '../../core/policy/quarantine.ts';

/** Where a permission is used: a module (path from the repository root) and the client method it calls there. */
export interface PermissionUse {
  readonly module: string;
  /**
   * A method of a `@kubernetes/client-node` API class (`readNamespacedSecret`), or `informer` for an informer the
   * composition root asks the InformerFactory for (list + watch of the entry's resource).
   */
  readonly call: string;
}

export interface Permission {
  /** API group; '' for the core group. */
  readonly group: string;
  /** Resource (plural), with `/<subresource>` for a subresource. */
  readonly resource: string;
  readonly verbs: readonly string[];
  readonly resourceNames?: readonly string[];
  /** Granted in the operator's namespace only (a Role); otherwise cluster-wide (the ClusterRole). */
  readonly namespaced: boolean;
  /**
   * False for a call the code has but that never runs against what Strongroom installs: listed so the source scan
   * accounts for it, not granted.
   */
  readonly granted?: false;
  readonly why: string;
  readonly uses: readonly PermissionUse[];
}

/** The Lease the chart's replicas elect a leader with (`--lease-name`, its default). */
export const LEASE_NAME = 'strongroom-operator';

const OPERATOR = 'operator/operator.ts';
const STATUS_WRITER = 'operator/controllers/status-writer.ts';
const informer = { module: OPERATOR, call: 'informer' };

export const PERMISSIONS: readonly Permission[] = [
  // ------------------------------------------------------------------------------------------------ cluster-wide
  {
    group: 'strongroom.dev',
    resource: 'modelartifacts',
    verbs: ['list', 'watch', 'patch'],
    namespaced: false,
    why:
      'the artifact informer; the ModelArtifact controller sets metadata.finalizers (writeFinalizers) and the key ' +
      "broker's PublishVersion appends to spec.versions, both by merge patch",
    uses: [
      informer,
      { module: STATUS_WRITER, call: 'patchNamespacedCustomObject' },
      { module: 'operator/broker/publish.ts', call: 'patchNamespacedCustomObject' },
    ],
  },
  {
    group: 'strongroom.dev',
    resource: 'modelartifacts/status',
    verbs: ['patch'],
    namespaced: false,
    why: 'the ModelArtifact controller writes status (writeStatus)',
    uses: [{ module: STATUS_WRITER, call: 'patchNamespacedCustomObjectStatus' }],
  },
  {
    group: 'strongroom.dev',
    resource: 'accessgrants',
    verbs: ['list', 'watch'],
    namespaced: false,
    why: 'the grant informer; the operator never writes a grant, only its status',
    uses: [informer],
  },
  {
    group: 'strongroom.dev',
    resource: 'accessgrants/status',
    verbs: ['patch'],
    namespaced: false,
    why: 'the AccessGrant controller writes status (writeStatus)',
    uses: [{ module: STATUS_WRITER, call: 'patchNamespacedCustomObjectStatus' }],
  },
  {
    group: '',
    resource: 'pods',
    verbs: ['get', 'list', 'watch'],
    namespaced: false,
    why: "the pod informer (the broker's view); Attest reads the pod a token names when the cache lacks it",
    uses: [informer, { module: 'operator/broker/attest.ts', call: 'readNamespacedPod' }],
  },
  {
    group: '',
    resource: 'namespaces',
    verbs: ['list', 'watch'],
    namespaced: false,
    why: 'the namespace informer (environment labels)',
    uses: [informer],
  },
  {
    group: '',
    resource: 'events',
    verbs: ['create'],
    namespaced: false,
    why:
      'Events on artifacts and grants in every namespace, on the service accounts of anomaly alerts and ' +
      'quarantines, and on the governance and detection ConfigMaps',
    uses: [{ module: 'operator/kube/events.ts', call: 'createNamespacedEvent' }],
  },
  {
    group: 'authentication.k8s.io',
    resource: 'tokenreviews',
    verbs: ['create'],
    namespaced: false,
    why: "Attest verifies a pod's service-account token",
    uses: [{ module: 'operator/broker/attest.ts', call: 'createTokenReview' }],
  },
  {
    group: 'admissionregistration.k8s.io',
    resource: 'mutatingwebhookconfigurations',
    verbs: ['list', 'watch'],
    namespaced: false,
    why: 'the PKI controller watches and lists the configurations labelled strongroom.dev/ca-bundle=operator',
    uses: [informer, { module: 'operator/pki/webhook-bundles.ts', call: 'listMutatingWebhookConfiguration' }],
  },
  {
    group: 'admissionregistration.k8s.io',
    resource: 'mutatingwebhookconfigurations',
    verbs: ['get', 'update'],
    resourceNames: [WEBHOOK_CONFIGURATION_NAME],
    namespaced: false,
    why: "the PKI controller writes the injector configuration's caBundle",
    uses: [
      { module: 'operator/pki/webhook-bundles.ts', call: 'readMutatingWebhookConfiguration' },
      { module: 'operator/pki/webhook-bundles.ts', call: 'replaceMutatingWebhookConfiguration' },
    ],
  },
  {
    group: 'admissionregistration.k8s.io',
    resource: 'validatingwebhookconfigurations',
    verbs: ['list', 'watch'],
    namespaced: false,
    why: 'the PKI controller watches and lists the configurations labelled strongroom.dev/ca-bundle=operator',
    uses: [
      informer,
      { module: 'operator/pki/webhook-bundles.ts', call: 'listValidatingWebhookConfiguration' },
    ],
  },
  {
    group: 'admissionregistration.k8s.io',
    resource: 'validatingwebhookconfigurations',
    verbs: ['get', 'update'],
    namespaced: false,
    granted: false,
    why:
      'not granted: Strongroom installs no ValidatingWebhookConfiguration, so the PKI controller lists none and never ' +
      "reads or replaces one; granting update on every validating webhook would let the operator switch off others' " +
      'admission',
    uses: [
      { module: 'operator/pki/webhook-bundles.ts', call: 'readValidatingWebhookConfiguration' },
      { module: 'operator/pki/webhook-bundles.ts', call: 'replaceValidatingWebhookConfiguration' },
    ],
  },
  // ------------------------------------------------------------------------------------ the operator's namespace
  {
    group: '',
    resource: 'secrets',
    verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'],
    namespaced: true,
    why:
      `the key material, all in the operator's namespace: the local KMS key set (${KEYSET_SECRET}), recipient keys ` +
      '(per artifact, named by its uid, hence no resourceNames; deleted by crypto-shredding), the internal CA and ' +
      `serving certificates, the audit keys (${AUDIT_KEYS_SECRET}); the recipient-key informer lists by label`,
    uses: [
      informer,
      { module: 'operator/keys/secret-keyset-store.ts', call: 'readNamespacedSecret' },
      { module: 'operator/keys/secret-keyset-store.ts', call: 'createNamespacedSecret' },
      { module: 'operator/keys/secret-keyset-store.ts', call: 'replaceNamespacedSecret' },
      { module: 'operator/keys/artifact-keys.ts', call: 'readNamespacedSecret' },
      { module: 'operator/keys/artifact-keys.ts', call: 'createNamespacedSecret' },
      { module: 'operator/keys/artifact-keys.ts', call: 'replaceNamespacedSecret' },
      { module: 'operator/keys/artifact-keys.ts', call: 'deleteNamespacedSecret' },
      { module: 'operator/pki/internal-ca.ts', call: 'readNamespacedSecret' },
      { module: 'operator/pki/internal-ca.ts', call: 'createNamespacedSecret' },
      { module: 'operator/pki/internal-ca.ts', call: 'replaceNamespacedSecret' },
      { module: 'operator/pki/serving-secret.ts', call: 'readNamespacedSecret' },
      { module: 'operator/broker/audit-keys.ts', call: 'readNamespacedSecret' },
      { module: 'operator/broker/audit-keys.ts', call: 'createNamespacedSecret' },
      { module: 'operator/broker/audit-keys.ts', call: 'replaceNamespacedSecret' },
    ],
  },
  {
    group: '',
    resource: 'configmaps',
    verbs: ['get', 'list', 'watch'],
    resourceNames: [GOVERNANCE_CONFIGMAP, DETECTION_CONFIGMAP, QUARANTINES_CONFIGMAP],
    namespaced: true,
    why:
      'the classification table (read at start-up), the detection configuration and the quarantined identities, ' +
      'each watched with a metadata.name field selector; the quarantine store reads its ConfigMap before adding a key',
    uses: [
      informer,
      { module: 'operator/governance/table.ts', call: 'readNamespacedConfigMap' },
      { module: 'operator/quarantine/store.ts', call: 'readNamespacedConfigMap' },
    ],
  },
  {
    group: '',
    resource: 'configmaps',
    verbs: ['update'],
    resourceNames: [QUARANTINES_CONFIGMAP],
    namespaced: true,
    why:
      'automatic quarantine adds a key to the quarantined identities (optimistic concurrency); the admission policy ' +
      'strongroom-quarantines refuses the operator any other change',
    uses: [{ module: 'operator/quarantine/store.ts', call: 'replaceNamespacedConfigMap' }],
  },
  {
    group: '',
    resource: 'configmaps',
    verbs: ['get', 'update'],
    resourceNames: [ENVIRONMENTS_CONFIGMAP],
    namespaced: true,
    why: "the environment-label auditor's record of what it last audited",
    uses: [
      { module: 'operator/controllers/environment-audit.ts', call: 'readNamespacedConfigMap' },
      { module: 'operator/controllers/environment-audit.ts', call: 'replaceNamespacedConfigMap' },
    ],
  },
  {
    group: '',
    resource: 'configmaps',
    verbs: ['create'],
    namespaced: true,
    why:
      `creates ${ENVIRONMENTS_CONFIGMAP}, ${QUARANTINES_CONFIGMAP} and ${AUDIT_CHECKPOINTS_CONFIGMAP} the first time ` +
      '(RBAC cannot narrow create by name)',
    uses: [
      { module: 'operator/controllers/environment-audit.ts', call: 'createNamespacedConfigMap' },
      { module: 'operator/quarantine/store.ts', call: 'createNamespacedConfigMap' },
      { module: 'operator/broker/checkpoint-publisher.ts', call: 'createNamespacedConfigMap' },
    ],
  },
  {
    group: '',
    resource: 'configmaps',
    verbs: ['get', 'update'],
    resourceNames: [AUDIT_CHECKPOINTS_CONFIGMAP],
    namespaced: true,
    why:
      'every replica publishes its latest audit checkpoint under its writer name (optimistic concurrency) and reads ' +
      'the published one before opening its log (--audit-checkpoint-configmap)',
    uses: [
      { module: 'operator/broker/checkpoint-publisher.ts', call: 'readNamespacedConfigMap' },
      { module: 'operator/broker/checkpoint-publisher.ts', call: 'replaceNamespacedConfigMap' },
    ],
  },
  {
    group: 'coordination.k8s.io',
    resource: 'leases',
    verbs: ['get', 'update'],
    resourceNames: [LEASE_NAME],
    namespaced: true,
    why: 'leader election: read, renew and release the Lease',
    uses: [
      { module: 'operator/kube/leader.ts', call: 'readNamespacedLease' },
      { module: 'operator/kube/leader.ts', call: 'replaceNamespacedLease' },
    ],
  },
  {
    group: 'coordination.k8s.io',
    resource: 'leases',
    verbs: ['create'],
    namespaced: true,
    why: 'leader election: the first replica creates the Lease (RBAC cannot narrow create by name)',
    uses: [{ module: 'operator/kube/leader.ts', call: 'createNamespacedLease' }],
  },
];
