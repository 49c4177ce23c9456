/**
 * `npm run bench:injection`: sidecar injection and the sidecar against the targets of issue 8, on the harness's real
 * node with the real operator (test/harness/stack.ts: the Strongroom image imported into the node's containerd, the
 * operator as a host process with the webhook on loopback and the broker on the pod bridge, namespaces enforcing Pod
 * Security "restricted", ciphertext on a `local` PersistentVolume). Three measurements in one run, with the floors
 * under the first two (./floor.ts) measured in the same loops:
 *
 *   1. Admission (./admission.ts): rounds of sequential pod CREATEs, opted in, plain, and sent to the two floor
 *      webhooks instead; the webhook's latency from the operator's and the API server's histograms.
 *   2. Start-up (./startup.ts): a large artifact's sidecar from process start to the startup probe passing, against
 *      the bare decryptDirectory in this process, and the null sidecar (the floor).
 *   3. Revocation (./revocation.ts): grant → pod Ready → grant deleted → files wiped, from the sidecar's log and
 *      confirmed by `kubectl exec ls`.
 *
 *   node bench/injection/main.ts [--quick] [--creates 500] [--warmup 20] [--size 2GiB] [--files 4] [--runs 3]
 *                                [--rounds 20] [--json out.json] [--operator-cpu-prof DIR]
 *
 * `--quick` is a smoke run (50 creates, 256 MiB, 1 run, 3 rounds; ./args.ts). The report is ./report.ts. Exit code 1
 * when a run is invalid (a pod not injected, a decrypt that failed, files still there after revocation); a missed
 * target is reported as FAIL in the table and does not change the exit code. Run it under
 * `flock /tmp/strongroom-node.lock` (one node per machine).
 */
import { attachNode, startCluster, type Node } from '../../test/harness/cluster.ts';
import { eventually } from '../../test/harness/operator.ts';
import {
  appNamespace,
  OPERATOR_NAMESPACE,
  publishSample,
  startStack,
  type Stack,
} from '../../test/harness/stack.ts';
import { machine as thisMachine, publish } from '../report.ts';
import { admissionPod, measureAdmission, type AdmissionResult } from './admission.ts';
import { parseInjectionArgs, type InjectionOptions } from './args.ts';
import { captureInjectionPatch, sidecarOfPatch, startFloorWebhooks } from './floor.ts';
import { injectionReport, type InjectionResults } from './report.ts';
import { measureRevocation, type RevocationResult } from './revocation.ts';
import { APP_NS, log, REVOKE_NS, SA, SMALL, SMALL_FILES } from './shared.ts';
import { measureStartup, type StartupResult } from './startup.ts';

/** Runs the three measurements on a cluster of its own; every failure is in `failures`, never thrown. */
export async function runInjectionBench(options: InjectionOptions): Promise<InjectionResults> {
  const began = Date.now();
  const machine = thisMachine();
  const failures: string[] = [];
  let admission: AdmissionResult | undefined;
  let startup: StartupResult | undefined;
  let revocation: RevocationResult | undefined;
  const cluster = await startCluster({ log });
  let node: Node | undefined;
  let stack: Stack | undefined;
  try {
    node = await attachNode(cluster, { log });
    const profileDir = options.operatorCpuProfile;
    const nodeOptions = process.env.NODE_OPTIONS;
    if (profileDir !== undefined) process.env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${profileDir}`;
    try {
      stack = await startStack({ cluster, node, log });
    } finally {
      if (nodeOptions === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = nodeOptions;
    }
    await appNamespace(stack, APP_NS, 'dev', [SA]);
    await appNamespace(stack, REVOKE_NS, 'dev', [SA]);
    await publishSample(stack, APP_NS, SMALL, 'v1', SMALL_FILES);
    await publishSample(stack, REVOKE_NS, SMALL, 'v1', SMALL_FILES);
    // One real answer of the operator's webhook for the admission pod: the same-patch webhook's answer, and the
    // container the null sidecar copies.
    const webhookPort = await stack.operator.webhookPort();
    const captured = await eventually('the operator to inject the sample pod', () =>
      captureInjectionPatch({
        kubeconfig: cluster.kubeconfig,
        port: webhookPort,
        namespace: APP_NS,
        pod: admissionPod('capture', 'injected'),
      }),
    );
    const realSidecar = sidecarOfPatch(captured.operations);
    const patchBytes = Buffer.from(captured.patch, 'base64').length;
    log(`captured the operator's patch for the admission pod: ${String(patchBytes)} bytes of JSON patch`);
    const floor = await startFloorWebhooks({
      kubeconfig: cluster.kubeconfig,
      core: stack.core,
      operatorNamespace: OPERATOR_NAMESPACE,
      patch: captured.patch,
    });
    try {
      admission = await measureAdmission(stack, cluster, failures, floor, patchBytes, options);
    } finally {
      await floor.stop();
    }
    revocation = await measureRevocation(stack, cluster, failures, options.rounds);
    startup = await measureStartup(stack, node, cluster, failures, realSidecar, options);
  } catch (error) {
    failures.push(`the benchmark did not complete: ${String(error)}`);
    log(String((error as Error).stack ?? error));
    const { cause } = error as Error;
    if (cause instanceof Error) log(`caused by: ${cause.stack ?? cause.message}`);
    if (stack) log(`operator output (tail):\n${stack.operator.output().slice(-3000)}`);
  } finally {
    await stack?.stop();
    await node?.stop();
    await cluster.stop();
  }
  const { quick, creates, warmupCreates, size, shardCount, runs, rounds } = options;
  return {
    date: new Date().toISOString(),
    machine,
    options: { quick, creates, warmupCreates, sizeBytes: size, files: shardCount, runs, rounds },
    admission,
    startup,
    revocation,
    failures,
    totalSec: Math.round((Date.now() - began) / 1000),
  };
}

if (import.meta.main) {
  const options = parseInjectionArgs(process.argv.slice(2));
  const results = await runInjectionBench(options);
  publish(results, injectionReport(results), options.json);
}
