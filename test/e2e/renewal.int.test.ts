/**
 * Long-running pods on the real node. A pod outlives its sidecar's certificates: the operator issues pod
 * certificates of one minute (`--pod-certificate-validity=1m`), so the key lease (which never outlasts the
 * certificate) must be renewed over each renewed certificate's channel. And a pod outlives an operator restart (an
 * upgrade, a crash): its files stay while the broker is down, and afterwards a revocation still reaches it.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachNode, type Node } from '../cluster/cluster.ts';
import { kubectl, type ClusterInfo } from '../cluster/kubectl.ts';
import { eventually } from '../harness/operator.ts';
import { createGrant, deleteGrant, grantBody } from '../harness/objects.ts';
import {
  appNamespace,
  execInApp,
  injectedPod,
  publishSample,
  startStack,
  type Stack,
} from '../harness/stack.ts';

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

async function sidecarLog(pod = 'long'): Promise<LogLine[]> {
  const r = await kubectl(cluster, ['-n', NS, 'logs', pod, '-c', 'strongroom-sidecar']);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

async function ready(name = 'long'): Promise<boolean> {
  const pod = await stack.core.readNamespacedPod({ namespace: NS, name });
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
  await appNamespace(stack, NS, 'dev', ['trainer', 'survivor']);
  await publishSample(stack, NS, 'long', 'v1', {
    'weights.bin': Buffer.alloc(64 * 1024, 7),
    'config.json': '{}',
  });
  await createGrant(
    stack.custom,
    NS,
    grantBody('trainer-reads', 'long', { subjects: [{ namespace: NS, serviceAccount: 'trainer' }] }),
  );
  await createGrant(
    stack.custom,
    NS,
    grantBody('restart-reads', 'long', { subjects: [{ namespace: NS, serviceAccount: 'survivor' }] }),
  );
}, 400_000);

async function filesIn(pod: string): Promise<string[]> {
  return (await execInApp(cluster, NS, pod, `ls ${MOUNT}`)).out.split('\n').filter(Boolean).sort();
}

afterAll(async () => {
  await stack.stop();
  await node.stop();
});

describe('long-running pods', () => {
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
    await deleteGrant(stack.custom, NS, 'trainer-reads');
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

  it('keeps its files while the operator restarts, and a revocation after the restart still wipes them', async () => {
    await stack.core.createNamespacedPod({
      namespace: NS,
      body: injectedPod({
        name: 'survivor',
        serviceAccount: 'survivor',
        artifacts: `long@v1:${MOUNT}`,
        script: 'sleep 3600',
      }),
    });
    await eventually(
      'the pod to be Ready',
      async () => ((await ready('survivor')) ? true : undefined),
      90_000,
      200,
    );
    const before = stack.operator.pid;
    let whileDown: string[] = [];
    await stack.restartOperator(async () => {
      // The broker is gone: the files stay (the key lease has not ended), nothing is wiped.
      whileDown = await filesIn('survivor');
    });
    expect(stack.operator.pid).not.toBe(before);
    expect(whileDown).toEqual(['config.json', 'weights.bin']);
    expect(await filesIn('survivor')).toEqual(['config.json', 'weights.bin']);
    expect((await sidecarLog('survivor')).some((l) => l.message === 'wiped')).toBe(false);

    // The sidecar's revocation watch reconnects to the new process, which then revokes the deleted grant.
    const deleted = Date.now();
    await deleteGrant(stack.custom, NS, 'restart-reads');
    await eventually(
      'the files to be wiped after the restart',
      async () =>
        (await execInApp(cluster, NS, 'survivor', `ls -A ${MOUNT} | wc -l`)).out.trim() === '0'
          ? true
          : undefined,
      30_000,
      200,
    );
    expect(Date.now() - deleted).toBeLessThan(30_000);
    expect((await sidecarLog('survivor')).some((l) => l.message === 'wiped')).toBe(true);
  }, 300_000);
});
