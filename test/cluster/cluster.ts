import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinaries, type BinarySet } from './binaries.ts';
import { startControlPlane } from './controlplane.ts';
import {
  cniNetworkNamespaces,
  linkExists,
  mountsUnder,
  processesMatching,
  removeKubeletCgroups,
  removeKubeletChains,
  stopProcesses,
  unmountAll,
  vethInterfaces,
} from './host.ts';
import { kubectl, run, type ClusterInfo } from './kubectl.ts';
import {
  acquireHostNetwork,
  DEFAULT_POD_NETWORK,
  heldByOthers,
  hostNetworkParts,
  kubeProxyTables,
  releaseHostNetwork,
  type PodNetwork,
} from './hostnet.ts';
import { NODE_NAME, nodePaths, startNode } from './node.ts';
import { pkiPath } from './kubeconfig.ts';
import { httpsGet } from './net.ts';
import { startComponent, waitUntil, type Component } from './process.ts';

export type { ClusterInfo } from './kubectl.ts';

const WORKDIR_PREFIX = 'strongroom-cluster-';

/** What teardown needs, written to `<workDir>/cluster.json` so a cluster whose owner died can still be cleaned up. */
interface ClusterState {
  readonly ownerPid: number;
  readonly workDir: string;
  readonly binDir: string;
  readonly kubeconfig: string | null;
  /** The pod network the cluster holds (see hostnet.ts), or null for a control plane on loopback only. */
  readonly podNetwork: PodNetwork | null;
}

/** Written to `<workDir>/node.json` while a node runs, so whoever tears down the cluster also stops the node. */
interface NodeState {
  readonly network: PodNetwork;
}

/** A node could not be attached, or the cluster cannot have one. */
export class NodeError extends Error {
  override readonly name = 'NodeError';
}

export interface StartOptions {
  /** Also start a real node (containerd + runc + CNI + kubelet + kube-proxy + CoreDNS). Needs root. */
  readonly node?: boolean;
  /**
   * Make the cluster able to run pods: set up (or share) the pod bridge and the host guard first and run the API
   * server on the bridge's address, so that a node can be attached now or later. Default: with `node`, or as root
   * without `apiserverBinary`. Needs root.
   */
  readonly pods?: boolean;
  readonly network?: PodNetwork;
  /** Which binaries to build if they are not cached (test/cluster/go/build.sh --for); default 'demo'. */
  readonly binaries?: BinarySet;
  /** Run this kube-apiserver binary instead, with etcd only (no controller manager, scheduler or node). */
  readonly apiserverBinary?: string;
  /** Progress lines; default: none. */
  readonly log?: (line: string) => void;
}

export interface Cluster extends ClusterInfo {
  readonly versions: { readonly apiserver: string; readonly kubelet: string | null };
  /** Stops everything started, in order, and removes the work directory. Safe to call twice. */
  stop(): Promise<void>;
  /**
   * Stops kube-apiserver (SIGTERM, then SIGKILL after `graceMs`, default 20 s) and resolves once it is gone, with a
   * function that starts it again with the same binary, arguments and log file (so on the same port, with the same
   * PKI and etcd) and resolves once /readyz answers 200. The restarted process names the work directory on its
   * command line, so `stop()` and the sweep of stale clusters find it exactly as they find the original.
   *
   * Note: after SIGTERM kube-apiserver stops listening at once, but while a client holds a watch open it does not
   * exit until killed (the watch stays open and silent), so with watchers the stop takes the whole `graceMs`.
   */
  stopApiserver(options?: { readonly graceMs?: number }): Promise<() => Promise<void>>;
}

/** Something was left behind by a cluster that should be gone. */
export interface Leftovers {
  readonly processes: readonly string[];
  readonly mounts: readonly string[];
  readonly workDirExists: boolean;
  /** The pod bridge exists and no other live cluster holds it. */
  readonly bridgeExists: boolean;
  /**
   * Parts of the host network (bridge, blackhole routes, table 1010, rules 1010/1011, nft table inet srguard) and
   * kube-proxy's nft tables that exist although no other live cluster holds the host network.
   */
  readonly hostNetwork: readonly string[];
  readonly cniNetns: readonly string[];
  readonly veths: readonly string[];
}

function writeState(state: ClusterState): void {
  writeFileSync(join(state.workDir, 'cluster.json'), JSON.stringify(state, null, 2));
}

function ownerAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops the node recorded in `<workDir>/node.json`, if any: pods first (the kubelet removes them, so CNI removes their
 * veths and network namespaces), then kube-proxy and its rules, then kubelet and containerd. The bridge and the
 * guard stay: they belong to the cluster (see releaseHostNetwork).
 */
async function stopNodeIn(workDir: string, binDir: string, kubeconfig: string | null): Promise<void> {
  const nodeFile = join(workDir, 'node.json');
  if (!existsSync(nodeFile)) return;
  const running = (program: string) => processesMatching(workDir).filter((p) => p.program === program);
  const paths = nodePaths(workDir);
  const apiUp = running('kube-apiserver').length > 0 && kubeconfig !== null;
  if (apiUp && running('kubelet').length > 0 && kubeconfig) {
    const cluster = { binDir, kubeconfig };
    await kubectl(cluster, [
      'delete',
      'deploy,job,daemonset,statefulset,replicaset',
      '-A',
      '--all',
      '--cascade=orphan',
      '--wait=true',
      '--timeout=30s',
    ]);
    await kubectl(
      cluster,
      ['delete', 'pod', '-A', '--all', '--grace-period=1', '--wait=true', '--timeout=60s'],
      { timeoutMs: 90_000 },
    );
  }
  if (running('containerd').length > 0) {
    const ctr = ['-a', paths.socket, '-n', 'k8s.io', 'tasks'];
    const tasks = (await run('ctr', [...ctr, 'ls', '-q'])).stdout.split('\n').filter(Boolean);
    for (const t of tasks) await run('ctr', [...ctr, 'kill', '-s', 'SIGKILL', t]);
    for (const t of tasks) await run('ctr', [...ctr, 'delete', '-f', t]);
  }
  // kube-proxy, then its rules: `--cleanup` deletes its nft tables (ip and ip6 kube-proxy).
  const proxies = running('kube-proxy');
  await stopProcesses(proxies, 10_000);
  if (proxies.length > 0 || (await kubeProxyTables()).length > 0) {
    const cleanup = await run(join(binDir, 'kube-proxy'), ['--cleanup']);
    if (cleanup.code !== 0 && (await kubeProxyTables()).length > 0)
      throw new NodeError(
        `kube-proxy --cleanup failed (exit ${String(cleanup.code)}): ${cleanup.stderr.slice(-2000)}`,
      );
  }
  await stopProcesses(running('kubelet'), 15_000);
  await stopProcesses(running('containerd'), 10_000);
  // containerd-shim processes outlive containerd; their command line names the socket under workDir.
  await stopProcesses(
    processesMatching(workDir).filter((p) => p.program.startsWith('containerd-shim')),
    5_000,
  );
  await unmountAll(workDir);
  await removeKubeletChains();
  await removeKubeletCgroups();
  // The node's state (containerd's root, the kubelet's directory, the base images) goes too, so that another node
  // can be attached to the same cluster later (test files attach and stop their own, one after another).
  rmSync(paths.dir, { recursive: true, force: true });
  rmSync(nodeFile);
}

/**
 * Stops a cluster from its recorded state alone. The order matters (see docs/testing.md): the kubelet removes the
 * pods itself (so CNI DEL removes their veths and network namespaces), containerd kills what is left, then
 * kube-proxy (and its rules), kubelet and containerd, then the control plane (scheduler, controller manager, API
 * server, etcd), and only then the bridge, routes, rules and guard (the API server listens on the bridge's address:
 * once it is gone, a connection to that address would follow the default route), then the directory.
 */
async function teardown(state: ClusterState, log: (line: string) => void): Promise<void> {
  const { workDir } = state;
  await stopNodeIn(workDir, state.binDir, state.kubeconfig);
  const running = (program: string) => processesMatching(workDir).filter((p) => p.program === program);
  for (const name of ['kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd']) {
    await stopProcesses(running(name), name === 'kube-apiserver' ? 20_000 : 10_000);
  }
  await stopProcesses(processesMatching(workDir), 5_000);
  await unmountAll(workDir);
  if (state.podNetwork) await releaseHostNetwork(workDir);
  rmSync(workDir, { recursive: true, force: true });
  log(`cluster: stopped and removed ${workDir}`);
}

/** Cleans up clusters left by a process that died without tearing down (SIGKILL, crash, power cut of a session). */
export async function sweepStaleClusters(log: (line: string) => void = () => undefined): Promise<number> {
  let swept = 0;
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(WORKDIR_PREFIX)) continue;
    const workDir = join(tmpdir(), entry);
    let state: ClusterState;
    try {
      state = JSON.parse(readFileSync(join(workDir, 'cluster.json'), 'utf8')) as ClusterState;
    } catch {
      // No state yet: either just being created by a live owner, or broken. Leave it unless nothing runs there.
      if (processesMatching(workDir).length > 0) continue;
      rmSync(workDir, { recursive: true, force: true });
      continue;
    }
    if (ownerAlive(state.ownerPid) && state.ownerPid !== process.pid) continue;
    log(`cluster: cleaning up a stale cluster of dead process ${state.ownerPid} in ${workDir}`);
    await teardown(state, log);
    swept++;
  }
  return swept;
}

/** What is still on the host from a cluster in `workDir`; every list empty and both flags false means clean. */
export async function findLeftovers(
  workDir: string,
  network: PodNetwork = DEFAULT_POD_NETWORK,
): Promise<Leftovers> {
  // Another live cluster (the shared test cluster while the demo runs, say) may hold the host network.
  const others = heldByOthers(workDir);
  const parts = others
    ? []
    : Object.entries(await hostNetworkParts(network)).filter(([, present]) => present);
  return {
    processes: processesMatching(workDir).map((p) => `${p.pid} ${p.command.slice(0, 120)}`),
    mounts: mountsUnder(workDir),
    workDirExists: existsSync(workDir),
    bridgeExists: !others && (await linkExists(network.bridge)),
    hostNetwork: [
      ...parts.map(([part]) => part),
      ...(others ? [] : (await kubeProxyTables()).map((t) => `nft ${t}`)),
    ],
    cniNetns: cniNetworkNamespaces(),
    veths: await vethInterfaces(),
  };
}

/**
 * Stops the cluster's running kube-apiserver and returns a restart function (see `Cluster.stopApiserver`). The
 * command line is read back from /proc, so the restart is exactly the process that ran, whoever started it.
 */
async function stopApiserverIn(
  workDir: string,
  server: string,
  isStopping: () => boolean,
  graceMs = 20_000,
): Promise<() => Promise<void>> {
  const running = processesMatching(workDir).filter((p) => p.program === 'kube-apiserver');
  const [apiserver] = running;
  if (!apiserver || running.length > 1)
    throw new Error(`expected one running kube-apiserver in ${workDir}, found ${running.length}`);
  const argv = readFileSync(`/proc/${apiserver.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  const [file, ...args] = argv;
  if (!file) throw new Error(`cannot read the command line of kube-apiserver (pid ${apiserver.pid})`);
  await stopProcesses([apiserver], graceMs);
  let restarting: Promise<void> | null = null;
  return () =>
    (restarting ??= (async () => {
      if (isStopping()) throw new Error('the cluster is being stopped: not restarting kube-apiserver');
      const component = startComponent(
        'kube-apiserver',
        file,
        args,
        join(workDir, 'logs', 'kube-apiserver.log'),
      );
      const caPem = readFileSync(pkiPath(workDir, 'ca.crt'), 'utf8');
      await waitUntil(
        'kube-apiserver /readyz after a restart',
        async () => (await httpsGet(`${server}/readyz`, caPem)).status === 200,
        { timeoutMs: 180_000, component },
      );
    })());
}

async function versionOf(binary: string, args: readonly string[]): Promise<string> {
  const r = await run(binary, args);
  return (r.stdout + r.stderr).trim().split('\n')[0] ?? '';
}

/** A node started on an existing cluster, by whichever process needs pods. */
export interface Node {
  readonly name: string;
  readonly network: PodNetwork;
  readonly containerdSocket: string;
  readonly kubeletVersion: string;
  /**
   * Deletes every pod, stops kube-proxy (removing its rules), kubelet and containerd, and unmounts. The bridge and
   * the guard stay with the cluster. Safe to call twice.
   */
  stop(): Promise<void>;
}

function readState(workDir: string): ClusterState {
  try {
    return JSON.parse(readFileSync(join(workDir, 'cluster.json'), 'utf8')) as ClusterState;
  } catch (error) {
    throw new NodeError(`no cluster state in ${workDir}`, { cause: error });
  }
}

/**
 * Starts a real node on a running cluster that was started with pods: containerd + runc + CNI bridge + kubelet +
 * kube-proxy + CoreDNS. It is recorded in the cluster's work directory, so the cluster's teardown stops it too if
 * its owner never does. One node per machine: kube-proxy's rules and the bridge's addresses are host-wide.
 */
export async function attachNode(
  cluster: ClusterInfo,
  options: { readonly network?: PodNetwork; readonly log?: (line: string) => void } = {},
): Promise<Node> {
  const log = options.log ?? (() => undefined);
  if (process.getuid?.() !== 0)
    throw new NodeError('a test node needs root (containerd, network namespaces, mounts)');
  const network = readState(cluster.workDir).podNetwork;
  if (network === null)
    throw new NodeError(
      `the cluster in ${cluster.workDir} has no pod network (started without pods, or with apiserverBinary)`,
    );
  if (options.network && JSON.stringify(options.network) !== JSON.stringify(network))
    throw new NodeError(
      `the cluster's pod network is ${JSON.stringify(network)}, not ${JSON.stringify(options.network)}`,
    );
  if (existsSync(join(cluster.workDir, 'node.json')))
    throw new NodeError(`a node already runs on the cluster in ${cluster.workDir}`);
  const tables = await kubeProxyTables();
  if (tables.length > 0)
    throw new NodeError(`${tables.join(', ')} exist: another test node (kube-proxy) runs on this machine`);
  const state: NodeState = { network };
  writeFileSync(join(cluster.workDir, 'node.json'), JSON.stringify(state, null, 2));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopping ??= stopNodeIn(cluster.workDir, cluster.binDir, cluster.kubeconfig));
  try {
    const started = Date.now();
    const node = await startNode({
      ...cluster,
      network,
      onStarted: (c: Component) => {
        log(`cluster: started ${c.name} (pid ${c.pid})`);
      },
    });
    const kubeletVersion = await versionOf(join(cluster.binDir, 'kubelet'), ['--version']);
    log(
      `cluster: node ${NODE_NAME} Ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${kubeletVersion}), kube-proxy and CoreDNS answering`,
    );
    return { name: NODE_NAME, network, containerdSocket: node.containerdSocket, kubeletVersion, stop };
  } catch (error) {
    log(`cluster: node start failed, stopping what was started: ${String(error)}`);
    await stop();
    throw error;
  }
}

/**
 * Starts a real cluster: control plane always, a node on request. A cluster with pods (see StartOptions.pods) first
 * sets up or joins the host network (bridge and guard) and runs its API server on the bridge's address. On any
 * failure everything already started is stopped before the error propagates. SIGINT, SIGTERM and SIGHUP stop the
 * cluster before the process exits.
 */
export async function startCluster(options: StartOptions = {}): Promise<Cluster> {
  const log = options.log ?? (() => undefined);
  if (options.apiserverBinary && (options.node || options.pods))
    throw new NodeError('a node needs the matching control plane; drop apiserverBinary');
  const pods =
    options.pods ?? (options.node === true || (!options.apiserverBinary && process.getuid?.() === 0));
  if (options.node && !pods) throw new NodeError('a node needs a cluster with pods');
  const podNetwork = pods ? (options.network ?? DEFAULT_POD_NETWORK) : null;
  await sweepStaleClusters(log);
  const binDir = await ensureBinaries(log, options.binaries ?? 'demo');
  const workDir = mkdtempSync(join(tmpdir(), WORKDIR_PREFIX));
  let state: ClusterState = { ownerPid: process.pid, workDir, binDir, kubeconfig: null, podNetwork };
  writeState(state);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const sig of signals) process.off(sig, onSignal);
      const began = Date.now();
      await teardown(state, log);
      log(`cluster: teardown took ${((Date.now() - began) / 1000).toFixed(1)} s`);
    })();
    return stopping;
  };
  function onSignal(sig: NodeJS.Signals): void {
    log(`cluster: ${sig}: stopping the cluster`);
    stop().then(
      () => process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1)),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  }
  for (const sig of signals) process.on(sig, onSignal);

  try {
    const started = Date.now();
    if (podNetwork) {
      await acquireHostNetwork(workDir, podNetwork);
      log(`cluster: pod bridge ${podNetwork.bridge} (${podNetwork.gateway}) and host guard in place`);
    }
    const cp = await startControlPlane({
      binDir,
      workDir,
      ...(podNetwork ? { bindAddress: podNetwork.gateway } : {}),
      ...(options.apiserverBinary ? { apiserverBinary: options.apiserverBinary } : {}),
      onStarted: (c: Component) => {
        log(`cluster: started ${c.name} (pid ${c.pid})`);
      },
    });
    state = { ...state, kubeconfig: cp.kubeconfig };
    writeState(state);
    log(`cluster: control plane up at ${cp.server} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const version = JSON.parse(
      (await kubectl({ binDir, kubeconfig: cp.kubeconfig }, ['version', '-o', 'json'])).stdout,
    ) as {
      serverVersion?: { gitVersion?: string };
    };
    const info: ClusterInfo = {
      binDir,
      kubeconfig: cp.kubeconfig,
      server: cp.server,
      workDir,
      nodeName: null,
    };
    const node = options.node ? await attachNode(info, { log }) : null;
    return {
      ...info,
      nodeName: node?.name ?? null,
      versions: {
        apiserver: `kube-apiserver ${version.serverVersion?.gitVersion ?? 'unknown'}`,
        kubelet: node?.kubeletVersion ?? null,
      },
      stop,
      stopApiserver: (stopOptions) =>
        stopApiserverIn(workDir, cp.server, () => stopping !== null, stopOptions?.graceMs),
    };
  } catch (error) {
    log(`cluster: start failed, stopping what was started: ${String(error)}`);
    await stop();
    throw error;
  }
}
