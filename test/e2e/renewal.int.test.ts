/**
 * A long-running pod outlives its sidecar's certificates, on the real node: the operator issues pod certificates of
 * one minute (`--pod-certificate-validity=1m`), so the key lease (which never outlasts the certificate) must be
 * renewed over each renewed certificate's channel. The files stay, the pod stays Ready, and a revocation still
 * wipes them afterwards (the revocation watch follows the renewed channel).
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachNode, type Node } from '../cluster/cluster.ts';
import { kubectl, type ClusterInfo } from '../cluster/kubectl.ts';
import { eventually } from '../operator/harness.ts';
import { createGrant, grantBody } from '../operator/objects.ts';
import { appNamespace, execInApp, injectedPod, publishSample, startStack, type Stack } from './stack.ts';

const NS = 'e2e-renewal';
const MOUNT = '/models/long';

let cluster: ClusterInfo;
let node: Node;
let stack: Stack;

interface LogLine {
  readonly message?: string;
  readonly timestamp?: string;
  readonly notAfter?: string;
}

async function sidecarLog(): Promise<LogLine[]> {
  const r = await kubectl(cluster, ['-n', NS, 'logs', 'long', '-c', 'strongroom-sidecar']);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

async function ready(): Promise<boolean> {
  const pod = await stack.core.readNamespacedPod({ namespace: NS, name: 'long' });
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

beforeAll(async () => {
  cluster = inject('cluster');
  node = await attachNode(cluster, { log: (l) => process.stderr.write(`[node] ${l}\n`) });
  stack = await startStack({
    cluster,
    node,
    log: (l) => process.stderr.write(`[renewal] ${l}\n`),
    operatorArgs: ['--pod-certificate-validity=1m'],
  });
  await appNamespace(stack, NS, 'dev', ['trainer']);
  await publishSample(stack, NS, 'long', 'v1', {
    'weights.bin': Buffer.alloc(64 * 1024, 7),
    'config.json': '{}',
  });
  await createGrant(
    stack.custom,
    NS,
    grantBody('trainer-reads', 'long', { subjects: [{ namespace: NS, serviceAccount: 'trainer' }] }),
  );
}, 400_000);

afterAll(async () => {
  await stack.stop();
  await node.stop();
});

describe('a pod that outlives its certificates', () => {
  it('renews its certificate and its key lease, keeps its files past the first certificate, and still wipes on revocation', async () => {
    await stack.core.createNamespacedPod({
      namespace: NS,
      body: injectedPod({ name: 'long', artifacts: `long@v1:${MOUNT}`, script: 'sleep 3600' }),
    });
    await eventually('the pod to be Ready', async () => ((await ready()) ? true : undefined), 90_000, 200);
    const first = (await sidecarLog()).find((l) => l.message === 'attested');
    expect(first?.notAfter).toBeDefined();
    const firstExpiry = Date.parse(first?.notAfter ?? '');
    // The certificate lives a minute (the flag), far less than the token's ten.
    expect(firstExpiry - Date.parse(first?.timestamp ?? '')).toBeLessThanOrEqual(61_000);

    // Past the first certificate's expiry: renewed at least once, the files still there, the pod still Ready.
    await eventually(
      'a renewed certificate and the first one expired',
      async () => {
        const attested = (await sidecarLog()).filter((l) => l.message === 'attested');
        return attested.length >= 2 && Date.now() > firstExpiry + 5_000 ? attested : undefined;
      },
      150_000,
      1_000,
    );
    const listing = await execInApp(cluster, NS, 'long', `ls ${MOUNT}`);
    expect(listing.out.split('\n').filter(Boolean).sort()).toEqual(['config.json', 'weights.bin']);
    expect(await ready()).toBe(true);
    expect((await sidecarLog()).some((l) => l.message?.includes('wiped') === true)).toBe(false);

    // The revocation watch runs on the renewed channel: deleting the grant still wipes within a second or so.
    const deleted = Date.now();
    await stack.custom.deleteNamespacedCustomObject({
      group: 'strongroom.dev',
      version: 'v1alpha1',
      namespace: NS,
      plural: 'accessgrants',
      name: 'trainer-reads',
    });
    await eventually(
      'the files to be wiped',
      async () =>
        (await execInApp(cluster, NS, 'long', `ls -A ${MOUNT} | wc -l`)).out.trim() === '0'
          ? true
          : undefined,
      10_000,
      100,
    );
    expect(Date.now() - deleted).toBeLessThan(5_000);
  }, 300_000);
});
