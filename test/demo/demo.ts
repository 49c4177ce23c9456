// Strongroom's demo on the embedded default: a real local cluster (control plane and, as root, a node), the CRDs,
// and the examples from docs/examples, then instructions for using kubectl against it. Ctrl-C tears it all down.
//   npm run demo            keep the cluster until Ctrl-C
//   npm run demo -- --once  tear down right after (used by the tests)
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startCluster } from '../cluster/cluster.ts';
import { kubectl } from '../cluster/kubectl.ts';

const repo = join(import.meta.dirname, '..', '..');
const { values } = parseArgs({ options: { once: { type: 'boolean', default: false } } });
const say = (line: string) => {
  process.stdout.write(`${line}\n`);
};
const step = (line: string) => {
  say(`\n==> ${line}`);
};

async function must(cluster: { binDir: string; kubeconfig: string }, args: string[]): Promise<string> {
  const r = await kubectl(cluster, args);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}

step('Starting a local Kubernetes 1.35 cluster (etcd, API server, controller manager, scheduler, kubelet)');
const asRoot = process.getuid?.() === 0;
const cluster = await startCluster({
  node: asRoot,
  log: (l) => {
    say(`    ${l}`);
  },
});
if (!asRoot) say('    (not root: no node, so pods will not run; CRDs and policy objects still work)');
try {
  step('Installing the Strongroom CRDs');
  say(await must(cluster, ['apply', '--server-side', '-f', join(repo, 'crds')]));
  say(
    await must(cluster, [
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/modelartifacts.strongroom.dev',
      'crd/accessgrants.strongroom.dev',
    ]),
  );

  step('Applying the examples from docs/examples');
  const examples = join(repo, 'docs', 'examples');
  for (const file of readdirSync(examples)
    .filter((f) => f.endsWith('.yaml'))
    .sort()) {
    say(await must(cluster, ['apply', '--server-side', '-f', join(examples, file)]));
  }

  step('What is in the cluster now (kubectl get strongroom -A)');
  say(await must(cluster, ['get', 'strongroom', '-A']));
  if (cluster.nodeName) say(await must(cluster, ['get', 'nodes', '-o', 'wide']));

  step('Use it');
  say(`    export KUBECONFIG=${cluster.kubeconfig}`);
  say(`    export PATH=${cluster.binDir}:$PATH      # kubectl and helm v1.35-matched`);
  say('    kubectl get modelartifacts,accessgrants -A');
  say('    kubectl explain modelartifact.spec.versions');
  say('    kubectl apply -f docs/examples/          # try editing one to see the CEL rules reject it');
  if (values.once) {
    step('--once: tearing down');
    await cluster.stop();
  } else {
    say('\nThe cluster runs until you press Ctrl-C; then everything it started is stopped and removed.');
    setInterval(() => undefined, 3_600_000);
  }
} catch (error) {
  await cluster.stop();
  throw error;
}
