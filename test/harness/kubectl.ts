/**
 * The cluster's kubectl for tests, the demo and benchmarks: `kubectl` and `run` never throw (the caller asserts on
 * the result); `must` is for setup steps that have to succeed.
 */
import { kubectl, type ClusterInfo } from '../cluster/kubectl.ts';

export {
  kubectl,
  run,
  type ClusterInfo,
  type CommandResult,
  type KubectlOptions,
} from '../cluster/kubectl.ts';

/** Runs kubectl and returns its standard output; throws with its standard error when it exits non-zero. */
export async function must(
  cluster: Pick<ClusterInfo, 'binDir' | 'kubeconfig'>,
  args: readonly string[],
  input?: string,
): Promise<string> {
  const r = await kubectl(cluster, args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}
