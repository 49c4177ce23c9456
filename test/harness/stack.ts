/**
 * The whole Strongroom path on the harness's real node, shared by the end-to-end tests and the demo:
 * the Strongroom image built without a daemon and imported into the node's containerd, the operator as a host
 * process (webhook on loopback for the API server, broker and Attest on the pod bridge's gateway for sidecars),
 * the injector's MutatingWebhookConfiguration, application namespaces that enforce Pod Security "restricted", a
 * `local` PersistentVolume per namespace for ciphertext, and sample artifacts encrypted and published to it.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  type CoreV1Api,
  type CustomObjectsApi,
  type V1Pod,
} from '@kubernetes/client-node';
import { AUDIT_CHECKPOINTS_CONFIGMAP } from '../../core/audit/checkpoint.ts';
import type { ModelArtifact, ModelArtifactVersion } from '../../core/api/index.ts';
import { LABEL_INJECT, ANNOTATION_ARTIFACTS, ANNOTATION_PUBLISH } from '../../core/injection/contract.ts';
import { GOVERNANCE_CONFIGMAP, governancePolicies } from '../../core/governance/admission-policies.ts';
import { governanceDefaults } from '../../core/governance/defaults.ts';
import {
  injectorConfiguration,
  OPT_IN_POLICY_NAME,
  optInPolicy,
  WEBHOOK_CONFIGURATION_NAME,
} from '../../operator/webhook/configuration.ts';
import { buildAppImage } from '../cluster/app-image.ts';
import type { Node } from '../cluster/cluster.ts';
import { kubectl, type ClusterInfo, must } from './kubectl.ts';
import { freePort } from '../cluster/net.ts';
import { importImage } from '../cluster/node.ts';
import {
  clients,
  eventually,
  installCrds,
  installOperatorIdentity,
  startOperator,
  type OperatorProcess,
} from './operator.ts';
import { artifactBody, createArtifact, getArtifact } from './objects.ts';
import { publishVersion } from './publish.ts';

export const OPERATOR_NAMESPACE = 'strongroom-system';
/** The claim every application namespace gets, bound to its own local PersistentVolume. */
export const MODELS_CLAIM = 'models';

export interface Stack {
  readonly cluster: ClusterInfo;
  readonly node: Node;
  /** The running operator (a new process after {@link Stack.restartOperator}). */
  readonly operator: OperatorProcess;
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  /** The image every injected sidecar runs. */
  readonly image: string;
  /** The host directory behind a namespace's `models` claim. */
  storageDir(namespace: string): string;
  /**
   * Stops the operator and starts it again with the same flags, broker and Attest addresses and audit log
   * directory (an upgrade or a crash-restart), and points the webhook configuration at the new webhook port.
   * `whileDown` runs after the old process has exited and before the new one starts.
   */
  restartOperator(whileDown?: () => Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the operator against `cluster` (whose node must be attached) and wires the injector. */
export async function startStack(options: {
  readonly cluster: ClusterInfo;
  readonly node: Node;
  readonly log?: (line: string) => void;
  readonly operatorArgs?: readonly string[];
  /**
   * Install Strongroom's governance admission policies (core/governance) with this governance ConfigMap data
   * (docs/policy.md); without it neither is installed and the operator runs on the default table.
   */
  readonly governance?: Readonly<Record<string, string>>;
}): Promise<Stack> {
  const { cluster, node } = options;
  const log = options.log ?? (() => undefined);
  const image = await buildAppImage({ log });
  log(`image ${image.ref} (${image.cached ? 'cached' : 'built'}): importing into the node's containerd`);
  await importImage(node.containerdSocket, image.archive);
  await installCrds(cluster);
  const kubeconfig = await installOperatorIdentity(cluster, OPERATOR_NAMESPACE);
  const governance = options.governance
    ? governancePolicies({
        operatorNamespace: OPERATOR_NAMESPACE,
        operatorUser: `strongroom-operator-${OPERATOR_NAMESPACE}`,
        defaults: governanceDefaults(),
      })
    : [];
  if (options.governance) {
    await must(
      cluster,
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: GOVERNANCE_CONFIGMAP, namespace: OPERATOR_NAMESPACE },
        data: options.governance,
      }),
    );
  }
  const gateway = node.network.gateway;
  // The broker listens on the node's bridge, where pods reach it; the same ports across restarts.
  const [brokerPort, attestPort] = [await freePort(gateway), await freePort(gateway)];
  const broker = `${gateway}:${String(brokerPort)}`;
  const attest = `${gateway}:${String(attestPort)}`;
  // The stack owns the audit log directory (the operator harness deletes a directory it created when the process
  // stops), so a restarted operator reopens the same log, as a replica on its claim does; a fresh one would rightly be
  // refused as rolled back below its published checkpoint.
  const auditLogDir = mkdtempSync(join(tmpdir(), 'strongroom-audit-e2e-'));
  const operatorOptions = {
    namespace: OPERATOR_NAMESPACE,
    kubeconfig,
    identity: 'e2e',
    auditLogDir,
    brokerHost: gateway,
    ports: { broker: brokerPort, attest: attestPort },
    args: [
      `--sidecar-image=${image.ref}`,
      '--sidecar-image-pull-policy=Never',
      `--sidecar-broker-address=${broker}`,
      `--sidecar-attest-address=${attest}`,
      ...(options.operatorArgs ?? []),
    ],
  };
  // Each stack's operator starts on a fresh audit log directory, so the checkpoint an earlier stack's operator
  // published under the same writer ('e2e') in this namespace would rightly be refused as a rollback: forget it.
  await kubectl(cluster, [
    '-n',
    OPERATOR_NAMESPACE,
    'delete',
    'configmap',
    AUDIT_CHECKPOINTS_CONFIGMAP,
    '--ignore-not-found',
  ]);
  let operator = await startOperator(operatorOptions);
  const { core, custom, kc } = clients(cluster.kubeconfig);
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  try {
    const webhookPort = await operator.webhookPort();
    await operator.brokerPorts();
    await admission.createMutatingWebhookConfiguration({
      body: injectorConfiguration({
        operatorNamespace: OPERATOR_NAMESPACE,
        client: { url: `https://127.0.0.1:${String(webhookPort)}` },
      }),
    });
    const { policy, binding } = optInPolicy({ operatorNamespace: OPERATOR_NAMESPACE });
    await admission.createValidatingAdmissionPolicy({ body: policy });
    await admission.createValidatingAdmissionPolicyBinding({ body: binding });
    for (const g of governance) {
      await admission.createValidatingAdmissionPolicy({ body: g.policy });
      await admission.createValidatingAdmissionPolicyBinding({ body: g.binding });
    }
    await eventually('the operator to set the webhook caBundle', async () => {
      const c = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION_NAME });
      return (c.webhooks?.[0]?.clientConfig.caBundle ?? '') !== '' ? true : undefined;
    });
  } catch (error) {
    await operator.stop();
    rmSync(auditLogDir, { recursive: true, force: true });
    throw error;
  }
  const storageRoot = join(cluster.workDir, 'storage');
  return {
    cluster,
    node,
    get operator() {
      return operator;
    },
    core,
    custom,
    image: image.ref,
    storageDir: (namespace) => join(storageRoot, namespace),
    restartOperator: async (whileDown) => {
      await operator.stop();
      await whileDown?.();
      operator = await startOperator(operatorOptions);
      const webhookPort = await operator.webhookPort();
      await operator.brokerPorts();
      // The operator keeps caBundle current; only the URL moves with the new port.
      const current = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION_NAME });
      for (const webhook of current.webhooks ?? [])
        webhook.clientConfig.url = `https://127.0.0.1:${String(webhookPort)}${new URL(webhook.clientConfig.url ?? 'https://x/').pathname}`;
      await admission.replaceMutatingWebhookConfiguration({
        name: WEBHOOK_CONFIGURATION_NAME,
        body: current,
      });
    },
    stop: async () => {
      await admission
        .deleteMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION_NAME })
        .catch(() => undefined);
      await admission
        .deleteValidatingAdmissionPolicyBinding({ name: OPT_IN_POLICY_NAME })
        .catch(() => undefined);
      await admission.deleteValidatingAdmissionPolicy({ name: OPT_IN_POLICY_NAME }).catch(() => undefined);
      for (const g of governance) {
        const name = g.policy.metadata?.name ?? '';
        await admission.deleteValidatingAdmissionPolicyBinding({ name }).catch(() => undefined);
        await admission.deleteValidatingAdmissionPolicy({ name }).catch(() => undefined);
      }
      await operator.stop();
      rmSync(auditLogDir, { recursive: true, force: true });
    },
  };
}

/**
 * An application namespace: Pod Security "restricted" enforced, the `strongroom.dev/environment` label, service
 * accounts, and the `models` claim bound to a local PersistentVolume on the node.
 */
export async function appNamespace(
  stack: Stack,
  namespace: string,
  environment: string,
  serviceAccounts: readonly string[] = ['trainer'],
): Promise<void> {
  const { cluster } = stack;
  await must(cluster, ['create', 'namespace', namespace]);
  await must(cluster, [
    'label',
    'namespace',
    namespace,
    'pod-security.kubernetes.io/enforce=restricted',
    `strongroom.dev/environment=${environment}`,
  ]);
  for (const sa of serviceAccounts) await must(cluster, ['-n', namespace, 'create', 'serviceaccount', sa]);
  const dir = stack.storageDir(namespace);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const pv = `strongroom-e2e-${namespace}`;
  const manifest = {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: pv },
        spec: {
          capacity: { storage: '10Gi' },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: 'strongroom-local',
          claimRef: { namespace, name: MODELS_CLAIM },
          local: { path: dir },
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                {
                  matchExpressions: [
                    { key: 'kubernetes.io/hostname', operator: 'In', values: [stack.node.name] },
                  ],
                },
              ],
            },
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: MODELS_CLAIM, namespace },
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: 'strongroom-local',
          volumeName: pv,
          resources: { requests: { storage: '1Gi' } },
        },
      },
    ],
  };
  await must(cluster, ['apply', '-f', '-'], JSON.stringify(manifest));
}

/** Creates (or reuses) a ModelArtifact on the `models` claim, encrypts `files` as `version` and publishes it. */
export async function publishSample(
  stack: Stack,
  namespace: string,
  name: string,
  version: string,
  files: Readonly<Record<string, string | Buffer>>,
  classification: ModelArtifact['spec']['classification'] = 'internal',
): Promise<{ artifact: ModelArtifact; version: ModelArtifactVersion; source: string }> {
  const { custom } = stack;
  const existing = await getArtifact(custom, namespace, name).catch(() => undefined);
  if (existing === undefined) {
    const body = artifactBody(name, classification);
    body.spec.storage = { persistentVolumeClaim: { claimName: MODELS_CLAIM }, path: name };
    await createArtifact(custom, namespace, body);
  }
  // The harness's cluster-admin adds the version, and with the governance policies the publisher must be the user
  // who adds it.
  const source = join(stack.cluster.workDir, 'plaintext', namespace, name, version);
  const entry = await publishVersion({
    admin: custom,
    as: { name: 'strongroom-test-admin', custom },
    namespace,
    artifact: name,
    version,
    storageDir: stack.storageDir(namespace),
    plaintextDir: join(stack.cluster.workDir, 'plaintext'),
    files,
  });
  const sealed = await getArtifact(custom, namespace, name);
  return { artifact: sealed, version: entry, source };
}

/** A pod (restricted-compliant) that opts in to injection and runs `script` in busybox as uid 1000. */
export function injectedPod(options: {
  readonly name: string;
  readonly serviceAccount?: string;
  readonly artifacts?: string;
  readonly publish?: string;
  readonly script: string;
  readonly restartPolicy?: 'Always' | 'Never';
  readonly labels?: Readonly<Record<string, string>>;
}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: options.name,
      labels: { [LABEL_INJECT]: 'true', ...(options.labels ?? {}) },
      annotations: {
        ...(options.artifacts === undefined ? {} : { [ANNOTATION_ARTIFACTS]: options.artifacts }),
        ...(options.publish === undefined ? {} : { [ANNOTATION_PUBLISH]: options.publish }),
      },
    },
    spec: {
      serviceAccountName: options.serviceAccount ?? 'trainer',
      automountServiceAccountToken: false,
      restartPolicy: options.restartPolicy ?? 'Always',
      terminationGracePeriodSeconds: 10,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 1000,
        runAsGroup: 1000,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: 'app',
          image: 'localhost/busybox:test',
          imagePullPolicy: 'Never',
          command: ['/bin/sh', '-c', options.script],
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          },
        },
      ],
    },
  };
}

/** Runs `command` with `/bin/sh -c` in the app container (`app`) of a running pod; stdout and stderr together. */
export async function execInApp(
  cluster: ClusterInfo,
  namespace: string,
  pod: string,
  command: string,
): Promise<{ code: number; out: string }> {
  const r = await kubectl(cluster, [
    '-n',
    namespace,
    'exec',
    pod,
    '-c',
    'app',
    '--',
    '/bin/sh',
    '-c',
    command,
  ]);
  return { code: r.code, out: r.stdout + r.stderr };
}
