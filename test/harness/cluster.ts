/**
 * The entry to the cluster harness of test/cluster/ for benchmarks and the demo: a real control plane (and, when
 * attached, a node) started from cached binaries, torn down with everything it started.
 */
export {
  attachNode,
  findLeftovers,
  startCluster,
  type Cluster,
  type ClusterInfo,
  type Node,
  type StartOptions,
} from '../cluster/cluster.ts';
export { userKubeconfig } from '../cluster/kubeconfig.ts';
