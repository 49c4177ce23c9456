/**
 * The set-up the integration test files share, so that each file's own set-up is what is specific to it:
 * names unique to a run, the operator installed with its least-privilege identity, namespaces with their
 * environment labels and service accounts, the operator started and waited for, the teardown, the events of the
 * audit log, artifacts with sealed versions, and the injector's webhook configuration.
 *
 * {@link operatorSuite} registers a file's beforeAll and afterAll around one operator process; the functions it is
 * built from serve files that start their operators themselves.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AdmissionregistrationV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { afterAll, beforeAll, expect } from 'vitest';
import {
  ENVIRONMENT_LABEL,
  type AccessGrant,
  type Classification,
  type ModelArtifact,
  type ModelArtifactVersion,
} from '../../core/api/index.ts';
import {
  injectorConfiguration,
  OPT_IN_POLICY_NAME,
  optInPolicy,
  WEBHOOK_CONFIGURATION_NAME,
} from '../../operator/webhook/configuration.ts';
import { kubectl, must, type ClusterInfo } from './kubectl.ts';
import {
  appendVersion,
  artifactBody,
  createArtifact,
  getArtifact,
  getGrant,
  sealedVersion,
} from './objects.ts';
import {
  clients,
  eventually,
  installCrds,
  installOperatorIdentity,
  root,
  startOperator,
  type OperatorProcess,
  type StartOptions,
} from './operator.ts';
import { useOperatorInjection, type BrokerEndpoint } from './workload.ts';

/** The CRDs the operator serves, as `kubectl wait` names them. */
const CRDS = ['crd/modelartifacts.strongroom.dev', 'crd/accessgrants.strongroom.dev'] as const;

/** `kubectl wait` arguments that return once both CRDs are Established (or fail after a minute). */
export const WAIT_CRDS_ESTABLISHED: readonly string[] = [
  'wait',
  '--for=condition=Established',
  '--timeout=60s',
  ...CRDS,
];

/** A random suffix that makes the names of one run unique (six hex digits). */
function randomSuffix(): string {
  return randomBytes(3).toString('hex');
}

/** Each of `names` with one suffix, the same for all (`{ ns: 'ml' }` → `{ ns: 'ml-1a2b3c' }`). */
export function uniqueNames<K extends string>(
  names: Readonly<Record<K, string>>,
  suffix = randomSuffix(),
): Record<K, string> {
  const out = {} as Record<K, string>;
  for (const key of Object.keys(names) as K[]) out[key] = `${names[key]}-${suffix}`;
  return out;
}

/**
 * What the operator needs before it starts: the CRDs (established), its namespace and its least-privilege
 * identity (the chart's RBAC, see installOperatorIdentity). Returns the kubeconfig of that identity.
 */
export async function installOperator(cluster: ClusterInfo, namespace: string): Promise<string> {
  await installCrds(cluster);
  return installOperatorIdentity(cluster, namespace);
}

/** A namespace of a test: its labels and service accounts. */
export interface NamespaceSpec {
  /** Its `strongroom.dev/environment` label; without one the namespace has no environment. */
  readonly environment?: string;
  /** Labels besides the environment, set before it (e.g. Pod Security's). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly serviceAccounts?: readonly string[];
}

/** Creates each namespace with its labels and service accounts; throws if kubectl refuses any of it. */
export async function createNamespaces(
  cluster: ClusterInfo,
  namespaces: Readonly<Record<string, NamespaceSpec>>,
): Promise<void> {
  for (const [namespace, spec] of Object.entries(namespaces)) {
    await must(cluster, ['create', 'namespace', namespace]);
    const labels = Object.entries({
      ...spec.labels,
      ...(spec.environment === undefined ? {} : { [ENVIRONMENT_LABEL]: spec.environment }),
    }).map(([key, value]) => `${key}=${value}`);
    if (labels.length > 0) await must(cluster, ['label', 'namespace', namespace, ...labels]);
    for (const sa of spec.serviceAccounts ?? [])
      await must(cluster, ['-n', namespace, 'create', 'serviceaccount', sa]);
  }
}

/** An event of the operator's audit log (docs/audit.md). */
export type AuditEvent = Record<string, unknown> & { readonly type: string };

/** The events in the audit log files of `dir` (an operator's --audit-log-dir), in each file's order. */
export function readAuditEvents(dir: string): AuditEvent[] {
  const events: AuditEvent[] = [];
  for (const file of readdirSync(dir))
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n'))
      if (line.startsWith('{"event":')) events.push((JSON.parse(line) as { event: AuditEvent }).event);
  return events;
}

/** The key that verifies the audit log of the operator in `operatorNamespace` (Secret strongroom-audit-keys). */
export async function auditVerifierKey(core: CoreV1Api, operatorNamespace: string): Promise<string> {
  const keys = await core.readNamespacedSecret({
    name: 'strongroom-audit-keys',
    namespace: operatorNamespace,
  });
  return Buffer.from(keys.data?.verifier ?? '', 'base64').toString('utf8');
}

/** The one-command check, `strongroom audit verify <log> --public-key <vkey file>`: its exit code and output. */
export async function auditVerifyCli(log: string, vkey: string): Promise<{ code: number; out: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'strongroom-vkey-'));
  writeFileSync(join(dir, 'audit.vkey'), vkey);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(root, 'cli', 'strongroom.ts'), 'audit', 'verify', log, '--public-key', join(dir, 'audit.vkey')],
      (error, stdout, stderr) => {
        resolve({ code: error ? Number(error.code ?? 1) : 0, out: stdout + stderr });
      },
    );
  });
}

/** Polls AccessGrant `namespace/name` until `test` holds, and returns it (fails after `timeoutMs`). */
export function grantWhen(
  custom: CustomObjectsApi,
  namespace: string,
  name: string,
  test: (grant: AccessGrant) => boolean,
  what: string,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<AccessGrant> {
  return eventually(
    what,
    async () => {
      const g = await getGrant(custom, namespace, name);
      return test(g) ? g : undefined;
    },
    timeoutMs,
    intervalMs,
  );
}

/** Creates ModelArtifact `name` and waits for the operator to publish its recipient key. */
export async function keyedArtifact(
  custom: CustomObjectsApi,
  namespace: string,
  name: string,
  classification: Classification = 'internal',
): Promise<ModelArtifact> {
  await createArtifact(custom, namespace, artifactBody(name, classification));
  return eventually(`${name} recipient key`, async () => {
    const a = await getArtifact(custom, namespace, name);
    return a.status?.recipientPublicKey ? a : undefined;
  });
}

/**
 * A ModelArtifact with `versions` published as a writer publishes them (each a fresh DEK sealed to the recipient
 * key, with `version`'s fields), once the operator has sealed every one and made the last the latest; with the
 * DEK of each version.
 */
export async function sealedArtifact(
  custom: CustomObjectsApi,
  namespace: string,
  name: string,
  options: {
    readonly classification?: Classification;
    readonly versions?: readonly string[];
    readonly version?: Partial<ModelArtifactVersion>;
  } = {},
): Promise<{ artifact: ModelArtifact; deks: Map<string, Buffer> }> {
  const versions = options.versions ?? ['v1'];
  const withKey = await keyedArtifact(custom, namespace, name, options.classification);
  const deks = new Map<string, Buffer>();
  for (const v of versions) {
    const { version, dek } = await sealedVersion(withKey, v, options.version);
    deks.set(v, dek);
    await appendVersion(custom, withKey, version);
  }
  const artifact = await eventually(`${name} sealed`, async () => {
    const a = await getArtifact(custom, namespace, name);
    const sealed = (a.status?.keys ?? []).filter((k) => k.state === 'Sealed').length;
    return sealed === versions.length && a.status?.latestVersion === versions.at(-1) ? a : undefined;
  });
  return { artifact, deks };
}

/**
 * Registers the operator's sidecar-injecting webhook (on loopback at `webhookPort`) for pod CREATEs, with the
 * opt-in policy, and waits for the operator to fill in its caBundle.
 */
export async function installInjector(
  admission: AdmissionregistrationV1Api,
  operatorNamespace: string,
  webhookPort: number,
): Promise<void> {
  await admission.createMutatingWebhookConfiguration({
    body: injectorConfiguration({
      operatorNamespace,
      client: { url: `https://127.0.0.1:${String(webhookPort)}` },
    }),
  });
  const { policy, binding } = optInPolicy({ operatorNamespace });
  await admission.createValidatingAdmissionPolicy({ body: policy });
  await admission.createValidatingAdmissionPolicyBinding({ body: binding });
  // The operator fills in caBundle (the configuration carries its label strongroom.dev/ca-bundle=operator).
  await eventually('the caBundle on the webhook configuration', async () => {
    const config = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION_NAME });
    return (config.webhooks?.[0]?.clientConfig.caBundle ?? '') !== '' ? true : undefined;
  });
}

/** Removes what {@link installInjector} registered (what is already gone is no error). */
export async function removeInjector(admission: AdmissionregistrationV1Api): Promise<void> {
  await admission
    .deleteMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION_NAME })
    .catch(() => undefined);
  await admission.deleteValidatingAdmissionPolicyBinding({ name: OPT_IN_POLICY_NAME }).catch(() => undefined);
  await admission.deleteValidatingAdmissionPolicy({ name: OPT_IN_POLICY_NAME }).catch(() => undefined);
}

/** How a suite starts its operator: {@link startOperator}'s options, and what to wait for. */
export type SuiteOperatorOptions = Omit<StartOptions, 'namespace' | 'kubeconfig'> & {
  /**
   * `started` (default): until /readyz answers 200. `broker`: until the key broker listens, then the CA bundle
   * is read ({@link OperatorSuite.endpoint}) and pods are built as this operator injects them
   * (useOperatorInjection). `webhook`: until the admission webhook listens.
   */
  readonly waitFor?: 'started' | 'broker' | 'webhook';
};

export interface OperatorSuiteOptions<N extends string> {
  /** The operator's namespace (made unique like the others). */
  readonly operatorNamespace: string;
  /** The test's namespaces by key: each name (made unique with the run's suffix) and what it holds. */
  readonly namespaces?: Readonly<Record<N, NamespaceSpec & { readonly name: string }>>;
  /** Use the names as they are, without a suffix (a file whose names are fixed). */
  readonly fixedNames?: boolean;
  readonly operator: SuiteOperatorOptions;
  /** Start the operator in beforeAll (default); false: the file calls {@link OperatorSuite.startOperator}. */
  readonly autostart?: boolean;
  /**
   * Namespaces whose AccessGrants and ModelArtifacts the teardown deletes while the operator still runs (it
   * removes its finalizers), waiting up to a minute.
   */
  readonly emptyOnTeardown?: readonly NoInfer<N>[];
  /** The teardown expects the operator to exit 0 when it stops it. */
  readonly expectCleanExit?: boolean;
}

export interface OperatorSuite<N extends string> {
  /** The suffix of this run's names ('' with `fixedNames`). */
  readonly suffix: string;
  readonly operatorNamespace: string;
  readonly namespaces: Readonly<Record<N, string>>;
  /** The kubeconfig of the operator's least-privilege identity (once beforeAll has run). */
  readonly kubeconfig: string;
  /** The operator the suite started last; throws if none has started. */
  readonly operator: OperatorProcess;
  /** Where its key broker serves, with the CA bundle to trust (`waitFor: 'broker'`). */
  readonly endpoint: BrokerEndpoint;
  /**
   * Starts an operator with the suite's options (and `overrides`) and waits for it; it becomes
   * {@link OperatorSuite.operator}, the one the teardown stops. A restart stops the previous one first.
   */
  startOperator(overrides?: Partial<SuiteOperatorOptions>): Promise<OperatorProcess>;
  /** The events of the current operator's audit log. */
  auditEvents(): AuditEvent[];
}

/**
 * The set-up of a file that tests one operator process, registered as beforeAll and afterAll of the file (or of
 * the describe block it is called in).
 *
 * beforeAll: {@link installOperator}, {@link createNamespaces}, then (unless `autostart: false`) the operator
 * started and waited for. afterAll: `emptyOnTeardown` emptied, the operator stopped, every namespace of the suite
 * (the operator's too) deleted without waiting.
 *
 * A file registers its own hooks after calling this. Its beforeAll runs after the suite's, with the operator
 * running; vitest runs afterAll hooks in reverse order (`sequence.hooks: 'stack'`, the default), so the file's
 * afterAll runs first, while the operator still runs.
 */
export function operatorSuite<N extends string = never>(
  cluster: ClusterInfo,
  options: OperatorSuiteOptions<N>,
): OperatorSuite<N> {
  const specs = (options.namespaces ?? {}) as Readonly<Record<N, NamespaceSpec & { readonly name: string }>>;
  const keys = Object.keys(specs) as N[];
  const given = { operatorNamespace: options.operatorNamespace } as Record<N | 'operatorNamespace', string>;
  for (const key of keys) given[key] = specs[key].name;
  const suffix = options.fixedNames ? '' : randomSuffix();
  const names = options.fixedNames ? given : uniqueNames(given, suffix);
  const operatorNamespace = names.operatorNamespace;
  const namespaces = {} as Record<N, string>;
  for (const key of keys) namespaces[key] = names[key];
  let kubeconfig: string | undefined;
  let current: OperatorProcess | undefined;
  let endpoint: BrokerEndpoint | undefined;

  const startSuiteOperator = async (
    overrides: Partial<SuiteOperatorOptions> = {},
  ): Promise<OperatorProcess> => {
    if (kubeconfig === undefined) throw new Error('the suite has not installed the operator');
    const { waitFor = 'started', ...start } = { ...options.operator, ...overrides };
    await current?.stop();
    current = await startOperator({ ...start, namespace: operatorNamespace, kubeconfig });
    if (waitFor === 'started') await current.healthPort();
    if (waitFor === 'webhook') await current.webhookPort();
    if (waitFor === 'broker') {
      const ports = await current.brokerPorts();
      const injection = await useOperatorInjection(clients(cluster.kubeconfig).core, operatorNamespace);
      endpoint = { ...ports, caPem: injection.caBundlePem, serverName: injection.brokerServerName };
    }
    return current;
  };

  beforeAll(async () => {
    kubeconfig = await installOperator(cluster, operatorNamespace);
    const created: Record<string, NamespaceSpec> = {};
    for (const key of keys) created[namespaces[key]] = specs[key];
    await createNamespaces(cluster, created);
    if (options.autostart !== false) await startSuiteOperator();
  });

  afterAll(async () => {
    let exit: Awaited<ReturnType<OperatorProcess['stop']>> | undefined;
    if (current !== undefined) {
      for (const key of options.emptyOnTeardown ?? []) {
        await kubectl(cluster, [
          'delete',
          'accessgrants,modelartifacts',
          '--all',
          '-n',
          namespaces[key],
          '--wait=true',
          '--timeout=60s',
        ]);
      }
      exit = await current.stop();
    }
    await kubectl(cluster, ['delete', 'namespace', ...Object.values(names), '--wait=false']);
    if (options.expectCleanExit && exit !== undefined) expect(exit.code).toBe(0);
  });

  const operator = (): OperatorProcess => {
    if (current === undefined) throw new Error('the operator did not start');
    return current;
  };
  return {
    suffix,
    operatorNamespace,
    namespaces,
    get kubeconfig() {
      if (kubeconfig === undefined) throw new Error('the suite has not installed the operator');
      return kubeconfig;
    },
    get operator() {
      return operator();
    },
    get endpoint() {
      if (endpoint === undefined) throw new Error("the broker's endpoint is not known (waitFor: 'broker')");
      return endpoint;
    },
    startOperator: startSuiteOperator,
    auditEvents: () => readAuditEvents(operator().auditLogDir),
  };
}
