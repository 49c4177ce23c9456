// Strongroom's demo on the embedded default, the whole path on a real local cluster, installed as users install it:
// a node (kubelet, containerd, runc, CNI, kube-proxy, CoreDNS), the Strongroom image built without a daemon, the Helm
// chart (charts/strongroom: two operator replicas, the webhook and key broker behind their Services), a model
// encrypted and published, a grant requested and approved by people, an authorized pod that reads byte-identical
// files, an unauthorized pod that never starts, a revocation that wipes the files from the running pod, and every
// replica's audit log verified offline.
//   npm run demo            keep the cluster until Ctrl-C
//   npm run demo -- --once  tear down right after (used by the tests)
import { createCipheriv, createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import type { ModelArtifact } from '../../core/api/index.ts';
import { attachNode, startCluster, type Cluster, type Node } from '../harness/cluster.ts';
import {
  auditLines,
  auditVerifierKey,
  createAuditVolumes,
  helmDeploy,
  importStrongroomImage,
  lease,
  modelsNamespace,
  replicaAuditLogs,
  waitForReplicas,
} from '../harness/chart.ts';
import { kubectl, run, must } from '../harness/kubectl.ts';
import { clients, eventually, installCrds } from '../harness/operator.ts';
import { artifactBody, grantBody } from '../harness/objects.ts';
import { publisherRbac } from '../harness/publish.ts';
import { injectedPod } from '../harness/stack.ts';
import { meetThePeople, type Person } from '../governance/people.ts';

const repo = join(import.meta.dirname, '..', '..');
const { values } = parseArgs({ options: { once: { type: 'boolean', default: false } } });
const began = performance.timeOrigin;
const NS = 'ml-dev';
/** The chart's release and namespace, as the install guide uses them (docs/install.md). */
const RELEASE = 'strongroom';
const OP_NS = 'strongroom-system';
const ARTIFACT = 'resnet50';
const MOUNT = '/models/resnet50';

const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const fact = (line: string): void => {
  say(`    ${line}`);
};
const step = (line: string): void => {
  say(`\n==> ${line}`);
};
/** The kubectl command that does (or shows) the same thing, for the reader to try later. */
const equivalent = (command: string): void => {
  say(`    $ ${command}`);
};
const indent = (text: string): string => text.trimEnd().replace(/^/gm, '      ');
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** One entry of the audit log file, as far as the demo prints it (docs/audit.md). */
interface AuditLine {
  readonly seq: number;
  readonly event: {
    readonly type: string;
    readonly operation?: string;
    readonly decision?: string;
    readonly reason?: string;
    readonly workload?: {
      readonly namespace: string;
      readonly serviceAccount: string;
      readonly podUid: string;
    };
    readonly artifact?: { readonly namespace: string; readonly name: string; readonly version: string };
  };
}

/** A sample model: a config, a tokenizer vocabulary and 4 MiB of weights, all generated deterministically. */
function sampleModel(): Record<string, Buffer> {
  const key = createHash('sha256').update('strongroom demo weights').digest();
  const weights = createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(4 * 1024 * 1024));
  const vocab = Array.from({ length: 2000 }, (_, i) => `token-${String(i)}`).join('\n');
  return {
    'config.json': Buffer.from(JSON.stringify({ architecture: 'resnet50', classes: 1000, dtype: 'float32' })),
    'tokenizer/vocab.txt': Buffer.from(`${vocab}\n`),
    'weights.bin': weights,
  };
}

function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => statSync(join(dir, f)).isFile())
    .sort();
}

async function mustAs(person: Person, args: string[], input?: string): Promise<string> {
  const r = await person.kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} as ${person.name} failed:\n${r.stderr}`);
  return r.stdout;
}

/** `kubectl strongroom ...` as `person`, through the kubectl plugin (cli/kubectl-strongroom) on PATH. */
function kubectlStrongroom(cluster: Cluster, person: Person, args: string[]) {
  return run(join(cluster.binDir, 'kubectl'), ['strongroom', ...args], {
    env: {
      ...process.env,
      KUBECONFIG: person.kubeconfig,
      PATH: `${join(repo, 'cli')}:${process.env.PATH ?? ''}`,
    },
  });
}

function isReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

/** The app container's state in words, and whether it has ever run. */
function appState(pod: V1Pod): { ran: boolean; words: string } {
  const app = pod.status?.containerStatuses?.find((c) => c.name === 'app');
  if (app === undefined) return { ran: false, words: 'no status yet' };
  const ran =
    app.state?.running !== undefined ||
    app.state?.terminated !== undefined ||
    app.lastState?.terminated !== undefined ||
    app.restartCount > 0;
  const waiting = app.state?.waiting?.reason;
  return { ran, words: waiting === undefined ? (ran ? 'started' : 'unknown') : `waiting (${waiting})` };
}

/** What the demo started, so that a failure at any step still stops it. */
interface Started {
  node?: Node;
}

/** Runs the demo's steps; `started` is filled in as parts start, so a failure later still stops them. */
async function runDemo(cluster: Cluster, asRoot: boolean, started: Started): Promise<boolean> {
  if (!asRoot) {
    step('Installing the Strongroom CRDs (no node: pods cannot run without root, so the demo stops here)');
    equivalent('kubectl apply -f crds/');
    await installCrds(cluster);
    say(indent(await must(cluster, ['get', 'crd', '-o', 'name'])));
    fact('not root: containerd, network namespaces and mounts need root, so there is no node and no pod;');
    fact(
      'run the demo as root to see encryption, injection, denial, revocation and the audit log end to end.',
    );
    return false;
  }

  step('Starting a real node: kubelet, containerd, runc, CNI, kube-proxy and CoreDNS');
  const node = await attachNode(cluster, { log: fact });
  started.node = node;
  const { core, custom } = clients(cluster.kubeconfig);

  step(`Installing Strongroom with its Helm chart into ${OP_NS}`);
  const image = await importStrongroomImage(node, fact);
  fact(`image ${image.ref}, imported into the node's containerd (no registry, no Docker)`);
  const volumes = await createAuditVolumes(cluster, node, 'demo');
  fact(
    `audit log volumes: StorageClass ${volumes.storageClass} with ${String(volumes.names.length)} local PersistentVolumes (this cluster has no provisioner)`,
  );
  // The governance table of this cluster: confidential grants need two approvals (the default is one), so the
  // demo shows the classification table is configuration.
  const values = {
    image: { repository: image.repository, tag: image.tag, pullPolicy: 'Never' },
    auditLog: { persistence: { storageClassName: volumes.storageClass } },
    governance: { classifications: { confidential: { approvals: 2 } } },
  };
  equivalent(
    `helm install ${RELEASE} charts/strongroom -n ${OP_NS} --create-namespace --set image.repository=${image.repository} ` +
      `--set image.tag=${image.tag} --set image.pullPolicy=Never --set auditLog.persistence.storageClassName=${volumes.storageClass} ` +
      `--set governance.classifications.confidential.approvals=2`,
  );
  const installStarted = Date.now();
  const installed = await helmDeploy(cluster, 'install', {
    helm: 3,
    release: RELEASE,
    namespace: OP_NS,
    values: [values],
  });
  if (installed.code !== 0) throw new Error(`helm install failed: ${installed.stderr}`);
  const replicas = await waitForReplicas(cluster, OP_NS, 2);
  fact(
    `${String(replicas.length)} operator replicas Running and Ready ${seconds(Date.now() - installStarted)} after helm install`,
  );
  const leader = await eventually('a leader', async () => (await lease(cluster, OP_NS)).holder);
  fact(
    `leader (Lease ${OP_NS}/strongroom-operator): ${leader}; every replica serves the webhook and the key broker`,
  );
  equivalent(`kubectl -n ${OP_NS} get pods,services`);
  say(indent(await must(cluster, ['-n', OP_NS, 'get', 'pods,services'])));
  await eventually('the operator to fill the webhook caBundle', async () => {
    const got = await must(cluster, [
      'get',
      'mutatingwebhookconfiguration',
      'strongroom-sidecar-injector',
      '-o',
      'jsonpath={.webhooks[0].clientConfig.caBundle}',
    ]);
    return got.trim() === '' ? undefined : true;
  });
  fact(
    'the API server calls the webhook through Service strongroom-webhook; its caBundle is the operator CA',
  );
  equivalent('kubectl get mutatingwebhookconfigurations,validatingadmissionpolicies');
  say(indent(await must(cluster, ['get', 'mutatingwebhookconfigurations,validatingadmissionpolicies'])));

  step(`Encrypting a sample model and publishing it as ${NS}/${ARTIFACT}@v1`);
  const storageDir = await modelsNamespace(cluster, node, NS, ['trainer', 'intern']);
  const people = await meetThePeople(cluster, [NS]);
  fact(
    'the people act with client certificates of their own and ordinary RBAC (test/governance/people.yaml)',
  );
  await mustAs(people.dave, ['label', 'namespace', NS, 'strongroom.dev/environment=dev']);
  fact(`namespace ${NS}: Pod Security "restricted" enforced, service accounts trainer and intern,`);
  fact(
    `environment dev (labelled by dave, a platform admin), claim "models" on a local volume at ${storageDir}`,
  );
  equivalent(`kubectl -n ${NS} create -f modelartifact.yaml   # as alice: resnet50, confidential`);
  await mustAs(
    people.alice,
    ['-n', NS, 'create', '-f', '-'],
    JSON.stringify(artifactBody(ARTIFACT, 'confidential')),
  );
  const files = sampleModel();
  const laptop = join(cluster.workDir, 'laptop', ARTIFACT);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(laptop, path, '..'), { recursive: true });
    writeFileSync(join(laptop, path), content);
  }
  for (const [path, content] of Object.entries(files))
    fact(
      `plaintext ${path.padEnd(20)} ${String(content.length).padStart(8)} bytes  sha256 ${sha256(content)}`,
    );
  // What a team gives its publishers: the short-lived pod that streams ciphertext into the claim, and a look at
  // Strongroom's StatefulSet to run that pod from the same image.
  await must(cluster, ['apply', '-f', '-'], JSON.stringify(publisherRbac(NS, OP_NS, 'frank')));
  equivalent(`kubectl strongroom publish ${ARTIFACT} ./${ARTIFACT} --version v1 -n ${NS}   # as frank`);
  const publishing = await kubectlStrongroom(cluster, people.frank, [
    'publish',
    ARTIFACT,
    laptop,
    '--version',
    'v1',
    '-n',
    NS,
    '--operator-namespace',
    OP_NS,
  ]);
  if (publishing.code !== 0) throw new Error(`strongroom publish as frank failed:\n${publishing.stderr}`);
  for (const line of `${publishing.stderr}${publishing.stdout}`.trim().split('\n')) fact(line);
  const publishedArtifact = (await custom.getNamespacedCustomObject({
    group: 'strongroom.dev',
    version: 'v1alpha1',
    namespace: NS,
    plural: 'modelartifacts',
    name: ARTIFACT,
  })) as ModelArtifact;
  const published = publishedArtifact.spec.versions?.find((v) => v.name === 'v1');
  if (published === undefined) throw new Error('v1 is not on the artifact after strongroom publish');
  fact(
    `frank, a publisher, encrypted it on his machine and added version v1 in his own name (${published.publisher})`,
  );
  fact(`digest ${published.digest}, ${String(published.size)} bytes`);
  fact(`data key sealed to the artifact's recipient key ${published.encryption.keyFingerprint}`);
  fact(`then rewrapped by the operator under its KEK; the key never touches the volume`);
  const cipherDir = join(storageDir, ARTIFACT, 'v1');
  const cipherFiles = filesUnder(cipherDir);
  fact(`on the volume (${cipherDir}):`);
  for (const f of cipherFiles)
    fact(`  ${f.padEnd(22)} ${String(statSync(join(cipherDir, f)).size).padStart(8)} bytes`);
  const secrets = [
    ...Object.keys(files).flatMap((p) => [p, p.split('/').at(-1) ?? p]),
    'resnet50", "classes',
  ];
  const leaked = cipherFiles.filter((f) => {
    const bytes = readFileSync(join(cipherDir, f));
    return secrets.some((s) => f.includes(s) || bytes.includes(Buffer.from(s)));
  });
  if (leaked.length > 0) throw new Error(`plaintext names found in the ciphertext: ${leaked.join(', ')}`);
  fact(
    `ciphertext check: no plaintext name (${Object.keys(files).join(', ')}) in any file name or byte on the volume`,
  );
  equivalent(`kubectl -n ${NS} get modelartifact ${ARTIFACT}`);
  say(indent(await must(cluster, ['-n', NS, 'get', 'modelartifact', ARTIFACT])));

  step(`alice requests read access for ${NS}/trainer; bob and carol, approvers, approve it`);
  const grant = grantBody('trainer-reads', ARTIFACT, {
    requester: 'alice',
    subjects: [{ namespace: NS, serviceAccount: 'trainer' }],
    purpose: 'demo: evaluate resnet50',
  });
  equivalent(
    `kubectl -n ${NS} apply -f accessgrant.yaml   # as alice; requester: alice, subjects: ${NS}/trainer`,
  );
  await mustAs(people.alice, ['-n', NS, 'apply', '-f', '-'], JSON.stringify(grant));
  /** Waits until the grant's status field (jsonpath) reads `value`. */
  const grantStatus = (field: string, value: string) =>
    eventually(`the grant's ${field} to be ${value}`, async () => {
      const jsonpath = `jsonpath={.status.${field}}`;
      const out = await must(cluster, ['-n', NS, 'get', 'accessgrant', 'trainer-reads', '-o', jsonpath]);
      return out === value ? out : undefined;
    });
  const awaiting = await grantStatus('reason', 'AwaitingApproval');
  fact(`phase Pending, reason ${awaiting}: a confidential grant needs two approvals here`);
  const forged = await people.alice.kubectl([
    '-n',
    NS,
    'patch',
    'accessgrant',
    'trainer-reads',
    '--type=json',
    '-p',
    JSON.stringify([
      {
        op: 'add',
        path: '/spec/approvals',
        value: [{ approver: 'me', groups: ['strongroom:approvers'], approvedAt: '2026-12-06T00:00:00Z' }],
      },
    ]),
  ]);
  if (forged.code === 0)
    throw new Error("the API server accepted an approval alice wrote in someone else's name");
  fact(
    `alice writing an approval herself is refused by the API server: ${forged.stderr.trim().replace(/^.*denied request: /, '')}`,
  );
  for (const approver of [people.bob, people.carol]) {
    equivalent(`kubectl strongroom approve trainer-reads -n ${NS}   # as ${approver.name}`);
    const r = await kubectlStrongroom(cluster, approver, ['approve', 'trainer-reads', '-n', NS]);
    if (r.code !== 0) throw new Error(`${approver.name} could not approve: ${r.stderr}`);
    fact(r.stdout.trim());
  }
  await grantStatus('phase', 'Active');
  say(indent(await must(cluster, ['-n', NS, 'get', 'accessgrant', 'trainer-reads'])));
  step(`An authorized pod (service account trainer) reads the model at ${MOUNT}`);
  const script = `cd ${MOUNT} && find . -type f | sort | while read -r f; do sha256sum "$f"; done; echo END-OF-LIST; sleep 3600`;
  const trainer = injectedPod({
    name: 'trainer',
    serviceAccount: 'trainer',
    artifacts: `${ARTIFACT}@v1:${MOUNT}`,
    script,
  });
  fact(`label strongroom.dev/inject=true, annotation strongroom.dev/artifacts: "${ARTIFACT}@v1:${MOUNT}"`);
  fact(`the app container (busybox, uid 1000) prints the SHA-256 of every file it finds there`);
  equivalent(`kubectl -n ${NS} apply -f trainer-pod.yaml`);
  const podStarted = Date.now();
  await must(cluster, ['-n', NS, 'apply', '-f', '-'], JSON.stringify(trainer));
  const readyPod = await eventually(
    'pod trainer to be Ready',
    async () => {
      const p = await core.readNamespacedPod({ namespace: NS, name: 'trainer' });
      return isReady(p) ? p : undefined;
    },
    90_000,
    200,
  );
  const injected = (readyPod.spec?.initContainers ?? []).map((c) => c.name).join(', ');
  fact(`Ready ${seconds(Date.now() - podStarted)} after kubectl apply; the webhook injected: ${injected}`);
  fact(`the sidecar attested, released the key and decrypted into memory before the app container started`);
  const listing = await eventually('the app to list the files', async () => {
    const r = await kubectl(cluster, ['-n', NS, 'logs', 'trainer', '-c', 'app']);
    return r.stdout.includes('END-OF-LIST') ? r.stdout : undefined;
  });
  equivalent(`kubectl -n ${NS} logs trainer -c app`);
  say(indent(listing.replace('END-OF-LIST\n', '')));
  const seen = new Map(
    listing
      .split('\n')
      .map((l) => /^([0-9a-f]{64}) {2}\.\/(.+)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => [m[2] ?? '', m[1] ?? '']),
  );
  const mismatched = Object.entries(files).filter(([path, content]) => seen.get(path) !== sha256(content));
  if (mismatched.length > 0 || seen.size !== Object.keys(files).length)
    throw new Error(
      `the pod's files differ from the originals: ${mismatched.map(([p]) => p).join(', ')} (pod saw ${String(seen.size)} files)`,
    );
  fact(`byte-identical: all ${String(seen.size)} files match the SHA-256 of the originals`);

  step('An unauthorized pod (service account intern, no grant) asks for the same model');
  const intern = injectedPod({
    name: 'intern',
    serviceAccount: 'intern',
    artifacts: `${ARTIFACT}@v1:${MOUNT}`,
    script,
  });
  equivalent(`kubectl -n ${NS} apply -f intern-pod.yaml`);
  await must(cluster, ['-n', NS, 'apply', '-f', '-'], JSON.stringify(intern));
  const denied = await eventually(
    'the KeyReleaseDenied event',
    async () => {
      const events = await core.listNamespacedEvent({
        namespace: NS,
        fieldSelector: 'involvedObject.name=intern,reason=KeyReleaseDenied',
      });
      return events.items[0];
    },
    60_000,
    250,
  );
  equivalent(
    `kubectl -n ${NS} get events --field-selector involvedObject.name=intern,reason=KeyReleaseDenied`,
  );
  fact(`${denied.type ?? ''} ${denied.reason ?? ''}: ${denied.message ?? ''}`);
  // The broker records the Event before its answer reaches the sidecar, so the sidecar's log line can trail it.
  const deniedLine = await eventually(
    "the sidecar's denial log line",
    async () => {
      const log = await kubectl(cluster, ['-n', NS, 'logs', 'intern', '-c', 'strongroom-sidecar']);
      return log.stdout.split('\n').find((l) => l.includes('"key release denied"'));
    },
    30_000,
    250,
  );
  const l = JSON.parse(deniedLine) as Record<string, unknown>;
  equivalent(`kubectl -n ${NS} logs intern -c strongroom-sidecar`);
  fact(
    `sidecar: ${String(l.message)} for ${String(l.artifact)}@${String(l.version)}: ${String(l.code)} (${String(l.reason)}); it retries, the app waits`,
  );
  const internPod = await core.readNamespacedPod({ namespace: NS, name: 'intern' });
  const internApp = appState(internPod);
  if (internApp.ran) throw new Error('the unauthorized pod started its app container');
  fact(`app container: ${internApp.words}, never started; pod Ready=${String(isReady(internPod))}`);
  equivalent(`kubectl -n ${NS} logs intern -c app`);
  const appLogs = await kubectl(cluster, ['-n', NS, 'logs', 'intern', '-c', 'app']);
  fact((appLogs.stderr.trim() || appLogs.stdout.trim()).replace(/^error: /, ''));

  step(`Revoking the grant: the sidecar wipes the files from the running pod`);
  equivalent(`kubectl -n ${NS} exec trainer -c app -- ls -l ${MOUNT}`);
  const before = await must(cluster, ['-n', NS, 'exec', 'trainer', '-c', 'app', '--', 'ls', '-l', MOUNT]);
  say(indent(before));
  equivalent(`kubectl -n ${NS} delete accessgrant trainer-reads`);
  const revoked = Date.now();
  await must(cluster, ['-n', NS, 'delete', 'accessgrant', 'trainer-reads', '--wait=false']);
  const wipedAfter = await eventually(
    'the files to vanish',
    async () => {
      const r = await kubectl(cluster, [
        '-n',
        NS,
        'exec',
        'trainer',
        '-c',
        'app',
        '--',
        '/bin/sh',
        '-c',
        `ls -A ${MOUNT} | wc -l`,
      ]);
      return r.code === 0 && r.stdout.trim() === '0' ? Date.now() - revoked : undefined;
    },
    10_000,
    20,
  );
  equivalent(`kubectl -n ${NS} exec trainer -c app -- ls -l ${MOUNT}`);
  const after = await must(cluster, ['-n', NS, 'exec', 'trainer', '-c', 'app', '--', 'ls', '-l', MOUNT]);
  say(indent(after));
  // The sidecar's own record of the wipe (its log line's timestamp; the pod shares this machine's clock), and the
  // time until kubectl exec saw an empty directory, which adds the exec round trips.
  const wipedLine = await eventually("the sidecar's wipe log line", async () => {
    const r = await kubectl(cluster, ['-n', NS, 'logs', 'trainer', '-c', 'strongroom-sidecar']);
    return r.stdout.split('\n').find((l) => l.includes('"message":"wiped"'));
  });
  const wiped = JSON.parse(wipedLine) as { timestamp: string; why?: string };
  const wipedMs = new Date(wiped.timestamp).getTime() - revoked;
  equivalent(`kubectl -n ${NS} logs trainer -c strongroom-sidecar | grep wiped`);
  fact(
    `wiped ${String(wipedMs)} ms after kubectl delete (the sidecar's log: ${wiped.why ?? '?'}); kubectl exec saw it empty after ${String(wipedAfter)} ms`,
  );
  const notReady = await eventually(
    'pod trainer to turn not-ready',
    async () => {
      const p = await core.readNamespacedPod({ namespace: NS, name: 'trainer' });
      return isReady(p) ? undefined : Date.now() - revoked;
    },
    10_000,
    100,
  );
  equivalent(`kubectl -n ${NS} get pod trainer`);
  say(indent(await must(cluster, ['-n', NS, 'get', 'pod', 'trainer'])));
  fact(`pod trainer not ready ${String(notReady)} ms after the delete: its sidecar's readiness probe fails`);

  step("Verifying every replica's audit log offline (strongroom audit verify)");
  await sleep(1_200); // the next signed checkpoint covers the last entries
  const replicaLogs = await replicaAuditLogs(cluster, OP_NS);
  const logs = replicaLogs.flatMap((r) => r.logs);
  for (const r of replicaLogs)
    fact(`${r.pod}: ${r.logs.map((l) => l.slice(r.dir.length + 1)).join(', ')} on its own volume (${r.dir})`);
  const vkeyFile = await auditVerifierKey(cluster, OP_NS);
  const podNames = new Map<string, string>();
  for (const name of ['trainer', 'intern']) {
    const p = await core.readNamespacedPod({ namespace: NS, name });
    podNames.set(p.metadata?.uid ?? '', name);
  }
  const others = new Map<string, number>();
  for (const log of logs) {
    const origin = replicaLogs.find((r) => r.logs.includes(log))?.pod ?? '?';
    for (const line of auditLines([log])) {
      if (!('event' in line)) continue;
      const { event, seq } = line as unknown as AuditLine;
      const { workload: w, artifact: a } = event;
      if (event.type !== 'key-release' || w === undefined || a === undefined) {
        const what = [event.operation ?? event.type, event.decision ?? ''].join(' ').trim();
        others.set(what, (others.get(what) ?? 0) + 1);
        continue;
      }
      const pod = podNames.get(w.podUid) ?? w.podUid;
      fact(
        `${origin} entry #${String(seq)}: key release of ${a.namespace}/${a.name}@${a.version} to pod ${w.namespace}/${pod} (sa ${w.serviceAccount}): ${event.decision ?? '?'} (${event.reason ?? '?'})`,
      );
    }
  }
  const rest = [...others].map(([what, n]) => `${what} ×${String(n)}`).join(', ');
  fact(`other entries: ${rest}`);
  equivalent(
    `kubectl -n ${OP_NS} get secret strongroom-audit-keys -o jsonpath='{.data.verifier}' | base64 -d > audit.vkey`,
  );
  equivalent(
    `node cli/strongroom.ts audit verify <each replica's log> --public-key audit.vkey   # docs/audit.md`,
  );
  say(
    indent(
      execFileSync(
        process.execPath,
        [join(repo, 'cli', 'strongroom.ts'), 'audit', 'verify', ...logs, '--public-key', vkeyFile],
        { encoding: 'utf8' },
      ),
    ),
  );
  const stillIntern = appState(await core.readNamespacedPod({ namespace: NS, name: 'intern' }));
  if (stillIntern.ran) throw new Error('the unauthorized pod started its app container later');
  fact(`(the unauthorized pod's app container still has not run: ${stillIntern.words})`);

  step('What is in the cluster now');
  equivalent('kubectl get strongroom -A');
  say(indent(await must(cluster, ['get', 'strongroom', '-A'])));
  equivalent(`kubectl -n ${NS} get pods`);
  say(indent(await must(cluster, ['-n', NS, 'get', 'pods'])));
  return true;
}

step('Starting a local Kubernetes 1.35 cluster (etcd, API server, controller manager, scheduler)');
const asRoot = process.getuid?.() === 0;
const cluster = await startCluster({ log: fact });
const started: Started = {};
try {
  const full = await runDemo(cluster, asRoot, started);

  step('Use it');
  fact(`export KUBECONFIG=${cluster.kubeconfig}`);
  fact(`export PATH=${cluster.binDir}:$PATH      # kubectl and helm v1.35-matched`);
  fact('kubectl get strongroom -A');
  if (full) {
    fact(
      `helm -n ${OP_NS} status ${RELEASE}                  # the release, and what to do next (NOTES.txt)`,
    );
    fact(`kubectl -n ${NS} describe pod intern                 # the denial, in the pod's events`);
    fact(`kubectl -n ${NS} get pod trainer -o yaml             # what the webhook injected`);
  }
  fact('kubectl explain modelartifact.spec.versions');
  if (full)
    fact(`kubectl -n ${NS} get modelartifact ${ARTIFACT} -o yaml      # versions, wrapped keys, conditions`);
  else fact('kubectl apply -f docs/examples/          # try editing one to see the CEL rules reject it');
  if (values.once) {
    step('--once: tearing down');
    await started.node?.stop();
    await cluster.stop();
    say(`\nTotal time: ${seconds(Date.now() - began)}`);
    // Everything is stopped and removed; exit now rather than wait for any handle a library left open.
    process.exit(0);
  } else {
    say(`\nTotal time: ${seconds(Date.now() - began)}`);
    say(
      '\nThe cluster and Strongroom run until you press Ctrl-C; then everything they started is stopped and removed.',
    );
    process.once('SIGINT', () => {
      void (async () => {
        await started.node?.stop();
        await cluster.stop();
        process.exit(0);
      })();
    });
    setInterval(() => undefined, 3_600_000);
  }
} catch (error) {
  await started.node?.stop();
  await cluster.stop();
  throw error;
}
