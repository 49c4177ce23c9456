import type { TestProject } from 'vitest/node';
import { findLeftovers, startCluster } from './cluster.ts';

const log = (line: string): void => {
  process.stderr.write(`[test-cluster] ${line}\n`);
};

/**
 * vitest globalSetup of the integration project: one real control plane (etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler) for every integration test file. It is started with pods: the pod bridge
 * and the host guard exist from the start and the API server listens on the bridge's address, so files that need
 * pods attach a real node (kubelet, kube-proxy, CoreDNS) with attachNode() and pods reach the API server through
 * the `kubernetes` Service. Teardown stops everything and fails the run if anything was left behind.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = await startCluster({ log, pods: true, binaries: 'test' });
  log(`server version: ${cluster.versions.apiserver}`);
  project.provide('cluster', {
    binDir: cluster.binDir,
    kubeconfig: cluster.kubeconfig,
    server: cluster.server,
    workDir: cluster.workDir,
    nodeName: cluster.nodeName,
  });
  return async () => {
    await cluster.stop();
    const left = await findLeftovers(cluster.workDir);
    const problems = [
      ...left.processes.map((p) => `process ${p}`),
      ...left.mounts.map((m) => `mount ${m}`),
      ...(left.workDirExists ? [`directory ${cluster.workDir}`] : []),
      ...left.hostNetwork.map((h) => `host network: ${h}`),
      ...left.cniNetns.map((n) => `network namespace ${n}`),
      ...left.veths.map((v) => `veth ${v}`),
    ];
    if (problems.length > 0)
      throw new Error(`test cluster teardown left behind:\n  ${problems.join('\n  ')}`);
    log('teardown complete: no process, mount, bridge, route, rule, nft table, namespace or directory left');
  };
}
