/**
 * Strongroom installed as users install it: the Helm chart (charts/strongroom) on the harness's real node, with
 * Helm 3 (`helm`) or Helm 4 (`helm4`) from the cluster's bin directory and the cluster's kubeconfig.
 *
 * What the chart needs from a cluster and the test cluster does not have, this file provides: the Strongroom image
 * in the node's containerd (built without a daemon, never pulled), and PersistentVolumes for the StatefulSet's audit
 * log claims (the test cluster has no dynamic provisioner: a StorageClass with `kubernetes.io/no-provisioner` and
 * `local` volumes on directories of the node, which is this machine, so a test reads each replica's audit log from
 * the host). It also waits for the replicas, finds the leader from the Lease and verifies audit logs with the
 * `strongroom audit verify` CLI.
 */
import {
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { buildAppImage } from '../cluster/app-image.ts';
import type { Node } from '../cluster/cluster.ts';
import { importImage } from '../cluster/node.ts';
import { kubectl, must, run, type ClusterInfo, type CommandResult } from './kubectl.ts';
import { clients, eventually, root } from './operator.ts';

export { publishVersion } from './publish.ts';

export const CHART_DIR = join(root, 'charts', 'strongroom');
/** The StatefulSet the chart installs (and the prefix of its pods' names). */
export const STATEFULSET = 'strongroom';
/** The uid the Strongroom image runs as (test/cluster/app-image.ts IMAGE_UID). */
export const IMAGE_UID = 65532;
/** The StorageClass the audit volumes of the tests belong to. */
export const AUDIT_STORAGE_CLASS = 'strongroom-chart-audit';

export type HelmMajor = 3 | 4;

/** The Helm binary of `major` in the cluster's bin directory (`helm` is Helm 3, `helm4` Helm 4), if built. */
export function helmBinary(cluster: Pick<ClusterInfo, 'binDir'>, major: HelmMajor): string | undefined {
  const path = join(cluster.binDir, major === 3 ? 'helm' : 'helm4');
  return existsSync(path) ? path : undefined;
}

/**
 * Runs Helm `major` against the cluster with its admin kubeconfig; Helm's cache, configuration and data live in the
 * cluster's work directory (never the user's). Never throws on a non-zero exit.
 */
export async function helm(
  cluster: Pick<ClusterInfo, 'binDir' | 'kubeconfig' | 'workDir'>,
  major: HelmMajor,
  args: readonly string[],
  timeoutMs = 300_000,
): Promise<CommandResult> {
  const binary = helmBinary(cluster, major);
  if (binary === undefined)
    throw new Error(`Helm ${String(major)} is not in ${cluster.binDir} (test/cluster/go/build.sh builds it)`);
  const home = join(cluster.workDir, `helm${String(major)}-home`);
  for (const d of ['cache', 'config', 'data']) mkdirSync(join(home, d), { recursive: true });
  return run(binary, ['--kubeconfig', cluster.kubeconfig, ...args], {
    timeoutMs,
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(home, 'cache'),
      HELM_CONFIG_HOME: join(home, 'config'),
      HELM_DATA_HOME: join(home, 'data'),
      KUBECONFIG: cluster.kubeconfig,
    },
  });
}

/** Like {@link helm}, but throws with Helm's standard error when it fails. */
export async function mustHelm(
  cluster: Pick<ClusterInfo, 'binDir' | 'kubeconfig' | 'workDir'>,
  major: HelmMajor,
  args: readonly string[],
): Promise<string> {
  const r = await helm(cluster, major, args);
  if (r.code !== 0) throw new Error(`helm${String(major)} ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The Strongroom image imported into the node's containerd: `repository:tag` for the chart's values. */
export interface ImportedImage {
  readonly ref: string;
  readonly repository: string;
  readonly tag: string;
  readonly archive: string;
}

/** Builds (or takes from the cache) the Strongroom image and imports it into the node's containerd. */
export async function importStrongroomImage(
  node: Node,
  log: (line: string) => void = () => undefined,
): Promise<ImportedImage> {
  const image = await buildAppImage({ log });
  const started = Date.now();
  await importImage(node.containerdSocket, image.archive);
  log(`image ${image.ref} imported in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const at = image.ref.lastIndexOf(':');
  return {
    ref: image.ref,
    repository: image.ref.slice(0, at),
    tag: image.ref.slice(at + 1),
    archive: image.archive,
  };
}

/** Local PersistentVolumes for the audit claims of one install, on directories of the node. */
export interface AuditVolumes {
  readonly storageClass: string;
  /** The PersistentVolume names. */
  readonly names: readonly string[];
  /** Deletes the PersistentVolumes (and the claims bound to them, when `claims`) and the directories. */
  remove(options?: { readonly claims?: boolean }): Promise<void>;
}

/**
 * `count` local PersistentVolumes of {@link AUDIT_STORAGE_CLASS} (created too, with provisioner
 * `kubernetes.io/no-provisioner` and WaitForFirstConsumer, if missing), each on a fresh directory under the cluster's
 * work directory owned by the image's user, with node affinity to the node. Claims of that class bind to them as the
 * StatefulSet's pods are scheduled.
 */
export async function createAuditVolumes(
  cluster: ClusterInfo,
  node: Node,
  prefix: string,
  count = 2,
): Promise<AuditVolumes> {
  await must(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: AUDIT_STORAGE_CLASS },
      provisioner: 'kubernetes.io/no-provisioner',
      volumeBindingMode: 'WaitForFirstConsumer',
      reclaimPolicy: 'Retain',
    }),
  );
  const names: string[] = [];
  const dirs: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-audit-${String(i)}`;
    const dir = join(cluster.workDir, 'audit-volumes', name);
    mkdirSync(dir, { recursive: true });
    // The operator runs as the image's user; the kubelet does not change the owner of a local volume's directory
    // without an fsGroup, so give it the directory.
    chownSync(dir, IMAGE_UID, IMAGE_UID);
    names.push(name);
    dirs.push(dir);
    await must(
      cluster,
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name, labels: { 'strongroom.dev/test': 'chart-audit' } },
        spec: {
          capacity: { storage: '1Gi' },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: AUDIT_STORAGE_CLASS,
          volumeMode: 'Filesystem',
          local: { path: dir },
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                {
                  matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [node.name] }],
                },
              ],
            },
          },
        },
      }),
    );
  }
  return {
    storageClass: AUDIT_STORAGE_CLASS,
    names,
    remove: async (options = {}) => {
      for (const name of names) {
        if (options.claims === true) {
          const ref = await kubectl(cluster, [
            'get',
            'pv',
            name,
            '-o',
            'jsonpath={.spec.claimRef.namespace}/{.spec.claimRef.name}',
          ]);
          const [ns, claim] = ref.stdout.split('/');
          if (ref.code === 0 && ns && claim)
            await kubectl(cluster, ['-n', ns, 'delete', 'pvc', claim, '--ignore-not-found', '--wait=false']);
        }
        await kubectl(cluster, ['delete', 'pv', name, '--ignore-not-found', '--wait=false']);
      }
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface InstallOptions {
  readonly helm: HelmMajor;
  readonly release: string;
  readonly namespace: string;
  /** Values files' content (JSON), in order; later ones win. */
  readonly values: readonly Record<string, unknown>[];
  /** Extra Helm flags. */
  readonly flags?: readonly string[];
}

/** `helm install` (creating the namespace) or `helm upgrade` with the chart in the repository. */
export async function helmDeploy(
  cluster: ClusterInfo,
  verb: 'install' | 'upgrade',
  options: InstallOptions,
): Promise<CommandResult> {
  const dir = join(cluster.workDir, 'helm-values');
  mkdirSync(dir, { recursive: true });
  const files = options.values.map((v, i) => {
    const file = join(dir, `${options.release}-${verb}-${String(Date.now())}-${String(i)}.json`);
    writeFileSync(file, JSON.stringify(v));
    return file;
  });
  return helm(cluster, options.helm, [
    verb,
    options.release,
    CHART_DIR,
    '--namespace',
    options.namespace,
    ...(verb === 'install' ? ['--create-namespace'] : []),
    ...files.flatMap((f) => ['-f', f]),
    ...(options.flags ?? []),
  ]);
}

export function isReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

/** The StatefulSet's pods, by name. */
export async function replicaPods(cluster: ClusterInfo, namespace: string): Promise<V1Pod[]> {
  const { core } = clients(cluster.kubeconfig);
  const list = await core.listNamespacedPod({ namespace });
  return list.items
    .filter((p) =>
      p.metadata?.ownerReferences?.some((o) => o.kind === 'StatefulSet' && o.name === STATEFULSET),
    )
    .sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
}

/**
 * Waits until the StatefulSet has rolled out: `replicas` pods of its update revision, every one Running and Ready
 * and not being deleted. Fails with the pods' states when it does not happen in time.
 */
export async function waitForReplicas(
  cluster: ClusterInfo,
  namespace: string,
  replicas = 2,
  timeoutMs = 180_000,
): Promise<V1Pod[]> {
  let last = '';
  try {
    return await eventually(
      `${String(replicas)} replicas of ${namespace}/${STATEFULSET} Running and Ready`,
      async () => {
        const sts = JSON.parse(
          await must(cluster, ['-n', namespace, 'get', 'statefulset', STATEFULSET, '-o', 'json']),
        ) as { status?: { updateRevision?: string } };
        const pods = await replicaPods(cluster, namespace);
        last = pods
          .map(
            (p) =>
              `${p.metadata?.name ?? ''} ${p.status?.phase ?? ''} ready=${String(isReady(p))} rev=${p.metadata?.labels?.['controller-revision-hash'] ?? ''}${p.metadata?.deletionTimestamp ? ' deleting' : ''}`,
          )
          .join('; ');
        const good = pods.filter(
          (p) =>
            p.status?.phase === 'Running' &&
            isReady(p) &&
            p.metadata?.deletionTimestamp === undefined &&
            p.metadata?.labels?.['controller-revision-hash'] === sts.status?.updateRevision,
        );
        return good.length === replicas && pods.length === replicas ? good : undefined;
      },
      timeoutMs,
      250,
    );
  } catch (error) {
    const describe = await kubectl(cluster, ['-n', namespace, 'describe', 'pods']);
    throw new Error(
      `${(error as Error).message}; pods: ${last}\n${describe.stdout.slice(-6000)}\n${await replicaLogs(cluster, namespace)}`,
      { cause: error },
    );
  }
}

/** The last lines of every replica's logs (and of its previous container), for failure messages. */
export async function replicaLogs(cluster: ClusterInfo, namespace: string, tail = 40): Promise<string> {
  const out: string[] = [];
  for (const pod of await replicaPods(cluster, namespace).catch(() => [])) {
    const name = pod.metadata?.name ?? '';
    for (const previous of [false, true]) {
      const r = await kubectl(cluster, [
        '-n',
        namespace,
        'logs',
        name,
        '--all-containers',
        `--tail=${String(tail)}`,
        ...(previous ? ['--previous'] : []),
      ]);
      if (r.code === 0 && r.stdout.trim() !== '')
        out.push(`--- ${name}${previous ? ' (previous)' : ''}\n${r.stdout.trimEnd()}`);
    }
  }
  return out.join('\n');
}

/** Seconds from each pod's creation to its Ready condition (the API's timestamps: whole seconds). */
export function startupSeconds(pods: readonly V1Pod[]): number[] {
  return pods.map((p) => {
    const ready = p.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True');
    const created = p.metadata?.creationTimestamp;
    if (!ready?.lastTransitionTime || !created) throw new Error(`${p.metadata?.name ?? ''} is not Ready`);
    return (new Date(ready.lastTransitionTime).getTime() - new Date(created).getTime()) / 1000;
  });
}

/** The leader-election Lease in `namespace`: its holder and durations. */
export interface LeaseState {
  readonly name: string;
  readonly holder: string | undefined;
  readonly leaseDurationSeconds: number;
  readonly transitions: number;
}

export async function lease(
  cluster: ClusterInfo,
  namespace: string,
  name = 'strongroom-operator',
): Promise<LeaseState> {
  const l = JSON.parse(await must(cluster, ['-n', namespace, 'get', 'lease', name, '-o', 'json'])) as {
    spec?: { holderIdentity?: string; leaseDurationSeconds?: number; leaseTransitions?: number };
  };
  return {
    name,
    holder: l.spec?.holderIdentity === '' ? undefined : l.spec?.holderIdentity,
    leaseDurationSeconds: l.spec?.leaseDurationSeconds ?? 0,
    transitions: l.spec?.leaseTransitions ?? 0,
  };
}

/** The host directory behind a pod's claim (the claim's local PersistentVolume). */
export async function claimDirectory(
  cluster: ClusterInfo,
  namespace: string,
  claim: string,
): Promise<string> {
  const volume = (
    await must(cluster, ['-n', namespace, 'get', 'pvc', claim, '-o', 'jsonpath={.spec.volumeName}'])
  ).trim();
  if (volume === '') throw new Error(`claim ${namespace}/${claim} is not bound`);
  const path = (
    await must(cluster, ['get', 'pv', volume, '-o', 'jsonpath={.spec.local.path}{.spec.hostPath.path}'])
  ).trim();
  if (path === '') throw new Error(`PersistentVolume ${volume} is neither local nor hostPath`);
  return path;
}

/** Each replica's audit log files: the directories of the claims its pod mounts, and the `.log` files in them. */
export async function replicaAuditLogs(
  cluster: ClusterInfo,
  namespace: string,
): Promise<{ pod: string; dir: string; logs: string[] }[]> {
  const out: { pod: string; dir: string; logs: string[] }[] = [];
  for (const pod of await replicaPods(cluster, namespace)) {
    const claims = (pod.spec?.volumes ?? []).flatMap((v) =>
      v.persistentVolumeClaim ? [v.persistentVolumeClaim.claimName] : [],
    );
    if (claims.length !== 1)
      throw new Error(`${pod.metadata?.name ?? ''} mounts ${String(claims.length)} claims, expected one`);
    const dir = await claimDirectory(cluster, namespace, claims[0] ?? '');
    const logs = readdirSync(dir)
      .filter((f) => f.endsWith('.log') && statSync(join(dir, f)).isFile())
      .sort()
      .map((f) => join(dir, f));
    out.push({ pod: pod.metadata?.name ?? '', dir, logs });
  }
  return out;
}

/** The JSON lines of audit log files (entries and checkpoints alike). */
export function auditLines(files: readonly string[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const file of files)
    for (const line of readFileSync(file, 'utf8').split('\n'))
      if (line.startsWith('{')) out.push(JSON.parse(line) as Record<string, unknown>);
  return out;
}

/** The audit verifier key the replicas sign with, from Secret `strongroom-audit-keys`, written to a file. */
export async function auditVerifierKey(cluster: ClusterInfo, namespace: string): Promise<string> {
  const b64 = await must(cluster, [
    '-n',
    namespace,
    'get',
    'secret',
    'strongroom-audit-keys',
    '-o',
    'jsonpath={.data.verifier}',
  ]);
  const key = Buffer.from(b64, 'base64').toString('utf8').trim();
  if (key === '') throw new Error(`no verifier key in ${namespace}/strongroom-audit-keys`);
  const file = join(cluster.workDir, `audit-verifier-${namespace}.key`);
  writeFileSync(file, `${key}\n`);
  return file;
}

/** `strongroom audit verify <logs…> --public-key <file>` with the project's CLI. */
export function auditVerify(logs: readonly string[], publicKeyFile: string): Promise<CommandResult> {
  return run(
    process.execPath,
    [join(root, 'cli', 'strongroom.ts'), 'audit', 'verify', ...logs, '--public-key', publicKeyFile],
    { timeoutMs: 60_000 },
  );
}

/**
 * An application namespace as a platform team prepares it: Pod Security "restricted" enforced, the service accounts,
 * and the `models` claim bound to a local PersistentVolume on a directory of the node (returned), where writers put
 * ciphertext. The environment label is left to whoever may set it.
 */
export async function modelsNamespace(
  cluster: ClusterInfo,
  node: Node,
  namespace: string,
  serviceAccounts: readonly string[],
): Promise<string> {
  await must(cluster, ['create', 'namespace', namespace]);
  await must(cluster, ['label', 'namespace', namespace, 'pod-security.kubernetes.io/enforce=restricted']);
  for (const sa of serviceAccounts) await must(cluster, ['-n', namespace, 'create', 'serviceaccount', sa]);
  const dir = join(cluster.workDir, 'models', namespace);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const pv = `strongroom-chart-models-${namespace}`;
  await must(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        {
          apiVersion: 'v1',
          kind: 'PersistentVolume',
          metadata: { name: pv, labels: { 'strongroom.dev/test': 'chart-models' } },
          spec: {
            capacity: { storage: '1Gi' },
            accessModes: ['ReadWriteOnce'],
            persistentVolumeReclaimPolicy: 'Retain',
            storageClassName: 'strongroom-chart-models',
            claimRef: { namespace, name: 'models' },
            local: { path: dir },
            nodeAffinity: {
              required: {
                nodeSelectorTerms: [
                  {
                    matchExpressions: [
                      { key: 'kubernetes.io/hostname', operator: 'In', values: [node.name] },
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
          metadata: { name: 'models', namespace },
          spec: {
            accessModes: ['ReadWriteOnce'],
            storageClassName: 'strongroom-chart-models',
            volumeName: pv,
            resources: { requests: { storage: '1Gi' } },
          },
        },
      ],
    }),
  );
  return dir;
}
