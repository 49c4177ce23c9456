// Strongroom's demo on the embedded default: a real local cluster (control plane and, as root, a node), the CRDs,
// and the examples from docs/examples, then instructions for using kubectl against it. Ctrl-C tears it all down.
//   npm run demo            keep the cluster until Ctrl-C
//   npm run demo -- --once  tear down right after (used by the tests)
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startCluster } from '../cluster/cluster.ts';
import { kubectl } from '../cluster/kubectl.ts';
import { clients, eventually, startOperator, type OperatorProcess } from '../operator/harness.ts';
import {
  appendVersion,
  artifactBody,
  createArtifact,
  createGrant,
  getArtifact,
  getGrant,
  grantBody,
  sealedVersion,
} from '../operator/objects.ts';
import { attestedWorkload, release } from '../broker/workload.ts';

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
let operator: OperatorProcess | undefined;
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

  step('Starting the Strongroom operator (node operator/main.ts --namespace strongroom-system)');
  await must(cluster, ['create', 'namespace', 'strongroom-system']);
  operator = startOperator({
    namespace: 'strongroom-system',
    kubeconfig: cluster.kubeconfig,
    identity: 'demo',
  });
  const healthPort = await operator.healthPort();
  await operator.waitForLog((l) => l.message === 'leading: starting controllers');
  say(`    leading; /healthz /readyz /metrics on http://127.0.0.1:${healthPort}`);

  step('Creating ModelArtifact demo/resnet-demo: the operator makes its keys and publishes a recipient key');
  await must(cluster, ['create', 'namespace', 'demo']);
  await must(cluster, ['label', 'namespace', 'demo', 'strongroom.dev/environment=dev']);
  const { custom } = clients(cluster.kubeconfig);
  await createArtifact(custom, 'demo', artifactBody('resnet-demo', 'confidential'));
  const keyed = await eventually('recipient key', async () => {
    const a = await getArtifact(custom, 'demo', 'resnet-demo');
    return a.status?.recipientPublicKey ? a : undefined;
  });
  say(`    recipient key ${keyed.status?.recipientPublicKey?.fingerprint ?? ''}`);

  step(
    'Publishing version v1: a writer seals a fresh DEK to that key; the operator rewraps it under the KEK',
  );
  const { version, dek } = await sealedVersion(keyed, 'v1');
  const sealedFingerprint = createHash('sha256').update(dek).digest('hex').slice(0, 16);
  dek.fill(0);
  await appendVersion(custom, keyed, version);
  await eventually('v1 sealed', async () => {
    const a = await getArtifact(custom, 'demo', 'resnet-demo');
    return a.status?.latestVersion === 'v1' ? a : undefined;
  });

  step('Granting demo/trainer read access for 2 minutes');
  await createGrant(
    custom,
    'demo',
    grantBody('trainer', 'resnet-demo', {
      subjects: [{ namespace: 'demo', serviceAccount: 'trainer' }],
      expiresAt: new Date(Date.now() + 120_000).toISOString(),
    }),
  );
  await eventually('grant Active', async () => {
    const g = await getGrant(custom, 'demo', 'trainer');
    return g.status?.phase === 'Active' ? g : undefined;
  });

  step('A trainer pod asks the key broker: Attest with its pod-bound token, then ReleaseKey over mutual TLS');
  const { core } = clients(cluster.kubeconfig);
  for (const sa of ['trainer', 'intern']) await must(cluster, ['-n', 'demo', 'create', 'serviceaccount', sa]);
  const ports = await operator.brokerPorts();
  const caSecret = await core.readNamespacedSecret({ name: 'strongroom-ca', namespace: 'strongroom-system' });
  const endpoint = {
    ...ports,
    caPem: Buffer.from(caSecret.data?.['ca.crt'] ?? '', 'base64').toString('utf8'),
    serverName: 'strongroom-broker.strongroom-system.svc',
  };
  const trainer = await attestedWorkload(core, endpoint, 'demo', 'trainer-0', 'trainer');
  say(
    `    pod demo/trainer-0 attested: ${trainer.spiffeId}, certificate until ${trainer.notAfter.toISOString()}`,
  );
  const released = await eventually('release', async () => {
    const r = await release(trainer.client, 'demo', 'resnet-demo');
    return 'ok' in r ? r.ok : undefined;
  });
  const releasedFingerprint = createHash('sha256').update(released.dek).digest('hex').slice(0, 16);
  say(
    `    released the DEK of ${released.version} (sha256 ${releasedFingerprint}…, the writer sealed ${sealedFingerprint}…), audit entry #${released.auditIndex}, lease until ${new Date(Number(released.leaseExpiresAt?.seconds ?? 0) * 1000).toISOString()}`,
  );
  trainer.client.close();
  const intern = await attestedWorkload(core, endpoint, 'demo', 'intern-0', 'intern');
  const refused = await release(intern.client, 'demo', 'resnet-demo');
  intern.client.close();
  say(
    `    pod demo/intern-0 (no grant): ${'error' in refused ? refused.error.details.slice(0, 160) : 'released?!'}`,
  );

  step("Verifying the broker's audit log with one command (strongroom audit verify)");
  const vkey = await core.readNamespacedSecret({
    name: 'strongroom-audit-keys',
    namespace: 'strongroom-system',
  });
  const log = join(operator.auditLogDir, readdirSync(operator.auditLogDir)[0] ?? '');
  const vkeyFile = join(operator.auditLogDir, 'audit.vkey');
  writeFileSync(vkeyFile, Buffer.from(vkey.data?.verifier ?? '', 'base64'));
  await new Promise((resolve) => setTimeout(resolve, 1_200)); // the next signed checkpoint
  say(`    npm run strongroom -- audit verify ${log} --public-key ${vkeyFile}`);
  say(
    execFileSync(
      process.execPath,
      [join(repo, 'operator', 'cli', 'strongroom.ts'), 'audit', 'verify', log, '--public-key', vkeyFile],
      {
        encoding: 'utf8',
      },
    )
      .trim()
      .replace(/^/gm, '    '),
  );

  step(
    'Applying the examples from docs/examples (their versions carry no sealed key, so they stay KeysReady=False)',
  );
  const examples = join(repo, 'docs', 'examples');
  for (const file of readdirSync(examples)
    .filter((f) => f.endsWith('.yaml'))
    .sort()) {
    say(await must(cluster, ['apply', '--server-side', '-f', join(examples, file)]));
  }
  await new Promise((resolve) => setTimeout(resolve, 1_500));

  step('What is in the cluster now (kubectl get strongroom -A)');
  say(await must(cluster, ['get', 'strongroom', '-A']));
  say(
    await must(cluster, [
      'get',
      'modelartifact',
      '-n',
      'demo',
      'resnet-demo',
      '-o',
      'jsonpath={range .status.conditions[*]}{.type}={.status} ({.reason}){"\\n"}{end}',
    ]),
  );
  if (cluster.nodeName) say(await must(cluster, ['get', 'nodes', '-o', 'wide']));

  step('Use it');
  say(`    export KUBECONFIG=${cluster.kubeconfig}`);
  say(`    export PATH=${cluster.binDir}:$PATH      # kubectl and helm v1.35-matched`);
  say('    kubectl get modelartifacts,accessgrants -A');
  say('    kubectl explain modelartifact.spec.versions');
  say('    kubectl apply -f docs/examples/          # try editing one to see the CEL rules reject it');
  if (values.once) {
    step('--once: tearing down');
    await operator.stop();
    await cluster.stop();
  } else {
    say(
      '\nThe cluster and the operator run until you press Ctrl-C; then everything they started is stopped and removed.',
    );
    const running = operator;
    process.once('SIGINT', () => {
      void running.stop();
    });
    setInterval(() => undefined, 3_600_000);
  }
} catch (error) {
  await operator?.stop();
  await cluster.stop();
  throw error;
}
