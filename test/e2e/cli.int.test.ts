/**
 * Issue 17 end to end: from a model directory on a laptop to a pod reading it, using only kubectl and the
 * `strongroom` CLI (run as a separate process, as the people, with their own kubeconfigs), with the ciphertext on a
 * PersistentVolumeClaim and in an S3 bucket served by a real S3 server (versitygw) on the pod bridge. frank, a
 * publisher, publishes; alice, a requester, asks; bob approves; injected pods read the files byte for byte.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import { attachNode, startCluster, type Cluster, type Node } from '../cluster/cluster.ts';
import { farewell, meetThePeople, type Name, type Person } from '../governance/people.ts';
import { must, type ClusterInfo } from '../harness/kubectl.ts';
import { grantBody } from '../harness/objects.ts';
import { publisherRbac } from '../harness/publish.ts';
import { eventually, root } from '../harness/operator.ts';
import { startS3Server, type S3Server } from '../harness/s3.ts';
import {
  appNamespace,
  execInApp,
  injectedPod,
  MODELS_CLAIM,
  OPERATOR_NAMESPACE,
  startStack,
  type Stack,
} from '../harness/stack.ts';

const NS = 'cli-dev';
const BUCKET = 'models';
const FILES: Record<string, Buffer> = {
  'config.json': Buffer.from(JSON.stringify({ arch: 'resnet50', classes: 1000 })),
  'weights/layer1.bin': Buffer.from(Array.from({ length: 3_000_000 }, (_, i) => (i * 7) % 251)),
  'weights/empty.bin': Buffer.alloc(0),
  'tokenizer with space.txt': Buffer.from('a sample model\n'),
};
const expectedSums = Object.entries(FILES)
  .map(([path, content]) => `${createHash('sha256').update(content).digest('hex')}  ./${path}`)
  .sort();
const SHOW_AND_WAIT =
  'cd /models/m && find . -type f | sort | while read -r f; do sha256sum "$f"; done; echo END-OF-LIST; sleep 3600';

let cluster: ClusterInfo;
let own: Cluster | undefined;
let node: Node;
let stack: Stack;
let s3: S3Server;
let people: Record<Name, Person>;
let modelDir: string;

/** `strongroom <args>` as `person`, a separate process with their kubeconfig. */
function strongroom(
  person: Person,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(root, 'cli', 'strongroom.ts'), '--kubeconfig', person.kubeconfig, '-n', NS, ...args],
      { env: { ...process.env, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', ...env }, timeout: 300_000 },
      (error, stdout, stderr) => {
        resolve({ code: error ? Number(error.code ?? 1) : 0, out: stdout, err: stderr });
      },
    );
  });
}

/** `strongroom publish on-claim <model dir> --version v1 --image <the stack's image>` as `person`. */
function publishOnClaim(person: Person): ReturnType<typeof strongroom> {
  return strongroom(person, ['publish', 'on-claim', modelDir, '--version', 'v1', '--image', stack.image]);
}

async function apply(person: Person, object: object): Promise<void> {
  const r = await person.kubectl(['apply', '-f', '-'], JSON.stringify(object));
  if (r.code !== 0) throw new Error(`${person.name}: kubectl apply: ${r.stderr}`);
}

function artifact(name: string, storage: ModelArtifact['spec']['storage']): object {
  return {
    apiVersion: 'strongroom.dev/v1alpha1',
    kind: 'ModelArtifact',
    metadata: { name, namespace: NS },
    spec: { classification: 'internal', owner: { team: 'vision' }, storage },
  };
}

beforeAll(async () => {
  // A control plane of its own, not the shared one: this file installs Strongroom's governance policies (parameterized
  // ValidatingAdmissionPolicies) with their params ConfigMap in its own operator namespace, and on Kubernetes 1.35.4 the
  // API server kept answering "no params found" when files sharing it did so one after another (docs/install.md,
  // Troubleshooting). Registered first, so that it is stopped last.
  own = await startCluster({ log: (l) => process.stderr.write(`[cli] ${l}\n`), binaries: 'test' });
  cluster = own;
  node = await attachNode(cluster, { log: (l) => process.stderr.write(`[node] ${l}\n`) });
  stack = await startStack({
    cluster,
    node,
    governance: {},
    log: (l) => process.stderr.write(`[cli] ${l}\n`),
  });
  await appNamespace(stack, NS, 'dev', ['trainer']);
  people = await meetThePeople(cluster, [NS]);
  // What a team gives its publishers: the short-lived pod that writes into a claim, and the bucket's Secret.
  await must(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify(publisherRbac(NS, OPERATOR_NAMESPACE, 'frank', ['bucket-credentials'])),
  );
  s3 = await startS3Server({ host: node.network.gateway, binDir: cluster.binDir });
  await s3.createBucket(BUCKET);
  await must(cluster, [
    '-n',
    NS,
    'create',
    'secret',
    'generic',
    'bucket-credentials',
    `--from-literal=AWS_ACCESS_KEY_ID=${s3.accessKeyId}`,
    `--from-literal=AWS_SECRET_ACCESS_KEY=${s3.secretAccessKey}`,
  ]);
  modelDir = join(cluster.workDir, 'laptop', 'model');
  for (const [path, content] of Object.entries(FILES)) {
    mkdirSync(join(modelDir, path, '..'), { recursive: true });
    writeFileSync(join(modelDir, path), content);
  }
  // alice creates both artifacts; the operator gives each a recipient key.
  await apply(
    people.alice,
    artifact('on-claim', { persistentVolumeClaim: { claimName: MODELS_CLAIM }, path: 'on-claim' }),
  );
  await apply(
    people.alice,
    artifact('in-bucket', {
      s3: {
        bucket: BUCKET,
        prefix: 'teams/ml',
        endpoint: s3.endpoint,
        credentialsSecretRef: { name: 'bucket-credentials' },
      },
      path: 'in-bucket',
    }),
  );
  for (const name of ['on-claim', 'in-bucket'])
    await eventually(`${name}'s recipient key`, async () => {
      const a = (await stack.custom.getNamespacedCustomObject({
        group: 'strongroom.dev',
        version: 'v1alpha1',
        namespace: NS,
        plural: 'modelartifacts',
        name,
      })) as ModelArtifact;
      return a.status?.recipientPublicKey ? a : undefined;
    });
}, 600_000);

afterAll(async () => {
  await must(cluster, ['delete', 'namespace', NS, '--wait=true', '--timeout=120s']).catch(() => undefined);
  await farewell(cluster).catch(() => undefined);
  await s3.stop();
  await stack.stop();
  await node.stop();
  await own?.stop();
}, 300_000);

async function readByPod(name: string, model: string): Promise<string[]> {
  const pod = injectedPod({
    name,
    artifacts: `${model}@v1:/models/m`,
    script: SHOW_AND_WAIT,
    restartPolicy: 'Never',
  });
  await stack.core.createNamespacedPod({ namespace: NS, body: pod });
  const out = await eventually(
    `${name} lists its files`,
    async () => {
      const r = await execInApp(
        cluster,
        NS,
        name,
        'cat /dev/null; cd /models/m && find . -type f | sort | while read -r f; do sha256sum "$f"; done',
      );
      return r.code === 0 && r.out.trim() !== '' ? r.out : undefined;
    },
    120_000,
    500,
  );
  return out.trim().split('\n').sort();
}

async function grantTrainer(name: string, model: string): Promise<void> {
  const grant = grantBody(name, model, {
    subjects: [{ namespace: NS, serviceAccount: 'trainer' }],
    requester: 'alice',
  });
  await apply(people.alice, { ...grant, metadata: { name, namespace: NS } });
  const approved = await strongroom(people.bob, ['approve', name]);
  expect(approved.err).toBe('');
  expect(approved.code).toBe(0);
  await eventually(`${name} Active`, async () => {
    const g = (await stack.custom.getNamespacedCustomObject({
      group: 'strongroom.dev',
      version: 'v1alpha1',
      namespace: NS,
      plural: 'accessgrants',
      name,
    })) as AccessGrant;
    return g.status?.phase === 'Active' ? g : undefined;
  });
}

describe('strongroom publish, then a pod reads the model', () => {
  it("refuses a user who may not publish before writing anything, with the API server's reason", async () => {
    const r = await publishOnClaim(people.alice);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(
      /you may not publish to ModelArtifact cli-dev\/on-claim \(checked before writing anything\)/,
    );
    expect(readdirSync(stack.storageDir(NS))).not.toContain('on-claim');
  });

  it('publishes to a PersistentVolumeClaim through a restricted pod: only ciphertext lands on the claim', async () => {
    const r = await publishOnClaim(people.frank);
    expect(r.err).toMatch(/encrypt on-claim@v1: .* MiB\/s\)/);
    expect(r.err).toMatch(/stream into pvc models: .* MiB\/s\)/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/published cli-dev\/on-claim@v1 as frank/);
    expect(r.out).toMatch(/key: sealed by the operator/);
    const dir = join(stack.storageDir(NS), 'on-claim', 'v1');
    const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(files.map((f) => f.name).sort()).toEqual([
      '000000.sre',
      '000001.sre',
      '000002.sre',
      '000003.sre',
      'manifest.sre',
    ]);
    for (const f of files)
      expect(readFileSync(join(f.parentPath, f.name)).subarray(0, 8).toString('latin1')).toBe('SRENVLP\0');
    // The receiving pod is gone.
    const pods = await stack.core.listNamespacedPod({
      namespace: NS,
      labelSelector: 'app.kubernetes.io/name=strongroom-publish',
    });
    expect(pods.items.filter((p) => p.metadata?.deletionTimestamp === undefined)).toEqual([]);
  }, 300_000);

  it('refuses to publish the same version twice', async () => {
    const r = await publishOnClaim(people.frank);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/already has a version v1/);
  });

  it("publishes to S3 with the bucket credentials from the artifact's Secret", async () => {
    const r = await strongroom(people.frank, [
      'publish',
      'in-bucket',
      modelDir,
      '--version',
      'v1',
      '-o',
      'json',
    ]);
    expect(r.err).toMatch(/upload s3:\/\/models\/teams\/ml\/in-bucket\/v1\/: .* MiB\/s\)/);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { sealed: boolean; storage: string; version: { publisher: string } };
    expect(doc).toMatchObject({ sealed: true, storage: 's3://models/teams/ml/in-bucket/v1/' });
    expect(doc.version.publisher).toBe('frank');
    const listed = await s3
      .client()
      .send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'teams/ml/in-bucket/v1/' }));
    expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual([
      'teams/ml/in-bucket/v1/manifest.sre',
      'teams/ml/in-bucket/v1/objects/000000.sre',
      'teams/ml/in-bucket/v1/objects/000001.sre',
      'teams/ml/in-bucket/v1/objects/000002.sre',
      'teams/ml/in-bucket/v1/objects/000003.sre',
    ]);
  }, 300_000);

  it('an injected pod reads the version from the claim byte for byte', async () => {
    await grantTrainer('read-on-claim', 'on-claim');
    expect(await readByPod('reader-claim', 'on-claim')).toEqual(expectedSums);
  }, 300_000);

  it('an injected pod reads the version from the bucket through the cluster network, byte for byte', async () => {
    await grantTrainer('read-in-bucket', 'in-bucket');
    expect(await readByPod('reader-bucket', 'in-bucket')).toEqual(expectedSums);
  }, 300_000);
});
