/**
 * Issue 18, item 4, end to end on real pods (the harness's real node, the Strongroom image, the operator as a host
 * process, as test/e2e/pods.int.test.ts): a workload reads one artifact normally; then a pod of the same identity
 * starts bulk-reading (mounts several artifacts), the operator's anomaly detector raises `bulk-access` (its threshold
 * lowered by ConfigMap strongroom-detection), and the identity is quarantined automatically: the key in ConfigMap
 * strongroom-quarantines, every grant naming it Denied/Quarantined, Events on its ServiceAccount, the audit entries,
 * and the plaintext gone from the running pods' memory volumes. Then the quarantine is lifted (its key removed) and
 * access comes back. Who may lift it is the admission policy's business, proven by distinct users in
 * test/governance/quarantine.int.test.ts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AccessGrant } from '../../core/api/index.ts';
import { parseQuarantines } from '../../core/policy/quarantine.ts';
import { attachNode, type Node } from '../cluster/cluster.ts';
import { kubectl, must, type ClusterInfo } from '../harness/kubectl.ts';
import { eventually } from '../harness/operator.ts';
import { createGrant, getGrant, grantBody } from '../harness/objects.ts';
import {
  appNamespace,
  execInApp,
  injectedPod,
  OPERATOR_NAMESPACE,
  publishSample,
  startStack,
  type Stack,
} from '../harness/stack.ts';

const NS = 'e2e-quarantine';
const SA = 'reader';
const MODELS = ['m1', 'm2', 'm3'] as const;
const KEY = `${NS}.${SA}`;

let cluster: ClusterInfo;
let node: Node;
let stack: Stack;

function ready(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

async function waitReady(name: string, timeoutMs = 90_000): Promise<void> {
  await eventually(
    `${NS}/${name} Ready`,
    async () => (ready(await stack.core.readNamespacedPod({ namespace: NS, name })) ? true : undefined),
    timeoutMs,
    200,
  );
}

/** How many entries the mount holds, as the app container sees it. */
async function entries(pod: string, model: string): Promise<string> {
  return (await execInApp(cluster, NS, pod, `ls -A /models/${model} | wc -l`)).out.trim();
}

async function quarantines(): Promise<Record<string, string>> {
  const cm = await stack.core
    .readNamespacedConfigMap({ namespace: OPERATOR_NAMESPACE, name: 'strongroom-quarantines' })
    .catch(() => undefined);
  return cm?.data ?? {};
}

function auditEvents(): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const file of readdirSync(stack.operator.auditLogDir))
    for (const line of readFileSync(join(stack.operator.auditLogDir, file), 'utf8').split('\n'))
      if (line.startsWith('{')) {
        const entry = JSON.parse(line) as { event?: Record<string, unknown> };
        if (entry.event !== undefined) out.push(entry.event);
      }
  return out;
}

async function serviceAccountEvents(): Promise<CoreV1Event[]> {
  const list = await stack.core.listNamespacedEvent({
    namespace: NS,
    fieldSelector: `involvedObject.kind=ServiceAccount,involvedObject.name=${SA}`,
  });
  return list.items;
}

const grantName = (model: string) => `${SA}-${model}`;

beforeAll(async () => {
  cluster = inject('cluster');
  node = await attachNode(cluster, { log: (l) => process.stderr.write(`[node] ${l}\n`) });
  // The detection configuration before the operator starts: three distinct artifacts in 10 minutes is bulk access
  // (severity high, the default quarantine.minSeverity).
  await kubectl(cluster, ['create', 'namespace', OPERATOR_NAMESPACE]);
  await must(
    cluster,
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'strongroom-detection', namespace: OPERATOR_NAMESPACE },
      data: { 'bulk-access.distinctArtifacts': '3', 'bulk-access.window': '10m' },
    }),
  );
  stack = await startStack({ cluster, node, log: (l) => process.stderr.write(`[quarantine] ${l}\n`) });
  await appNamespace(stack, NS, 'dev', [SA]);
  for (const model of MODELS) {
    await publishSample(stack, NS, model, 'v1', { 'weights.bin': `the weights of ${model}\n` });
    await createGrant(
      stack.custom,
      NS,
      grantBody(grantName(model), model, { subjects: [{ namespace: NS, serviceAccount: SA }] }),
    );
  }
  for (const model of MODELS)
    await eventually(`grant ${grantName(model)} Active`, async () => {
      const g = await getGrant(stack.custom, NS, grantName(model));
      return g.status?.phase === 'Active' ? g : undefined;
    });
}, 400_000);

afterAll(async () => {
  // Undefined when beforeAll failed half-way: still stop what did start, the node above all (one per machine).
  await (stack as Stack | undefined)?.stop();
  await kubectl(cluster, ['delete', 'namespace', NS, '--wait=false']);
  await kubectl(cluster, [
    '-n',
    OPERATOR_NAMESPACE,
    'delete',
    'configmap',
    'strongroom-detection',
    'strongroom-quarantines',
    '--ignore-not-found',
  ]);
  await (node as Node | undefined)?.stop();
}, 120_000);

describe('automatic quarantine', () => {
  it('reads one artifact normally: no alert, no quarantine', async () => {
    await stack.core.createNamespacedPod({
      namespace: NS,
      body: injectedPod({
        name: 'normal',
        serviceAccount: SA,
        artifacts: 'm1@v1:/models/m1',
        script: 'sleep 3600',
      }),
    });
    await waitReady('normal');
    expect((await execInApp(cluster, NS, 'normal', 'cat /models/m1/weights.bin')).out).toBe(
      'the weights of m1\n',
    );
    expect(auditEvents().filter((e) => e.type === 'anomaly-alert')).toEqual([]);
    expect(await quarantines()).toEqual({});
  });

  it('quarantines the identity when a pod of it starts bulk-reading, and the running pod’s files vanish', async () => {
    const started = Date.now();
    await stack.core.createNamespacedPod({
      namespace: NS,
      body: injectedPod({
        name: 'bulk',
        serviceAccount: SA,
        artifacts: 'm1@v1:/models/m1,m2@v1:/models/m2,m3@v1:/models/m3',
        script: 'sleep 3600',
      }),
    });

    // The key in ConfigMap strongroom-quarantines, naming the alert.
    const data = await eventually(
      'the identity quarantined',
      async () => {
        const d = await quarantines();
        return d[KEY] === undefined ? undefined : d;
      },
      90_000,
      200,
    );
    const q = parseQuarantines(data).byKey.get(KEY);
    expect(q?.problem).toBeUndefined();
    expect(q?.record).toMatchObject({ rule: 'bulk-access', severity: 'high' });
    const alertId = q?.record.alertId ?? '';
    expect(alertId).toMatch(/^a-[0-9a-f]{16}$/);

    // The running pod's plaintext is wiped (the memory volume empty as its app container sees it).
    await eventually(
      'm1 to vanish from the normal pod',
      async () => ((await entries('normal', 'm1')) === '0' ? true : undefined),
      30_000,
      100,
    );
    await eventually(
      'the normal pod not ready',
      async () =>
        ready(await stack.core.readNamespacedPod({ namespace: NS, name: 'normal' })) ? undefined : true,
      30_000,
    );
    process.stderr.write(`[quarantine] bulk pod created → files gone: ${String(Date.now() - started)} ms\n`);

    // Every grant naming the identity is Denied/Quarantined, its message naming the alert and how to lift it.
    for (const model of MODELS) {
      const g: AccessGrant = await eventually(`grant ${grantName(model)} quarantined`, async () => {
        const x = await getGrant(stack.custom, NS, grantName(model));
        return x.status?.phase === 'Denied' && x.status.reason === 'Quarantined' ? x : undefined;
      });
      expect(g.status?.message).toContain(`anomaly alert ${alertId} (rule bulk-access, severity high)`);
      expect(g.status?.message).toContain(`removing key ${KEY} from ConfigMap strongroom-quarantines`);
    }

    // Events on the ServiceAccount.
    const events = await eventually('the Events on the ServiceAccount', async () => {
      const list = await serviceAccountEvents();
      const reasons = list.map((e) => e.reason);
      return reasons.includes('AnomalyDetected') && reasons.includes('Quarantined') ? list : undefined;
    });
    expect(events.find((e) => e.reason === 'Quarantined')?.type).toBe('Warning');
    expect(events.find((e) => e.reason === 'AnomalyDetected')?.message).toContain(alertId);

    // The audit trail: the releases that were the evidence, the alert, the quarantine, the grants quarantined.
    const audit = await eventually('the audit entries', () => {
      const all = auditEvents();
      return all.some((e) => e.type === 'identity-quarantined') &&
        all.filter((e) => e.type === 'grant-quarantined').length === MODELS.length
        ? all
        : undefined;
    });
    const alert = audit.find((e) => e.type === 'anomaly-alert') as
      { alert: Record<string, unknown>; evidence: { seq: number }[] } | undefined;
    expect(alert?.alert).toMatchObject({
      id: alertId,
      rule: 'bulk-access',
      severity: 'high',
      identity: { namespace: NS, serviceAccount: SA },
      threshold: 3,
    });
    expect(alert?.evidence.length).toBeGreaterThanOrEqual(3);
    expect(audit.find((e) => e.type === 'identity-quarantined')).toMatchObject({
      identity: { namespace: NS, serviceAccount: SA },
      actor: 'strongroom-operator',
      alertId,
      severity: 'high',
    });

    // The broker refuses the identity from now on: a new pod of it gets nothing.
    const refusedPod = await stack.core.createNamespacedPod({
      namespace: NS,
      body: injectedPod({
        name: 'refused',
        serviceAccount: SA,
        artifacts: 'm2@v1:/models/m2',
        script: 'sleep 3600',
      }),
    });
    const refusedUid = refusedPod.metadata?.uid ?? '';
    const refusal = await eventually(
      'the broker refusing the quarantined identity',
      () =>
        auditEvents().find(
          (e) =>
            e.type === 'key-release' &&
            e.decision === 'deny' &&
            (e.workload as { podUid?: string } | undefined)?.podUid === refusedUid,
        ),
      60_000,
    );
    expect(refusal.reason).toBe('quarantined');
    expect(ready(await stack.core.readNamespacedPod({ namespace: NS, name: 'refused' }))).toBe(false);
  }, 240_000);

  it('gives access back once the quarantine is lifted', async () => {
    // The bulk reader goes first (its sidecar would read three artifacts again once the keys come back).
    await must(cluster, ['-n', NS, 'delete', 'pod', 'bulk', '--wait=true', '--timeout=60s']);
    await must(cluster, [
      '-n',
      OPERATOR_NAMESPACE,
      'patch',
      'configmap',
      'strongroom-quarantines',
      '--type=json',
      '-p',
      JSON.stringify([{ op: 'remove', path: `/data/${KEY}` }]),
    ]);
    for (const model of MODELS)
      await eventually(`grant ${grantName(model)} Active again`, async () => {
        const g = await getGrant(stack.custom, NS, grantName(model));
        return g.status?.phase === 'Active' ? g : undefined;
      });
    await eventually('identity-lifted audited', () =>
      auditEvents().some((e) => e.type === 'identity-lifted') ? true : undefined,
    );
    // The running pods' sidecars try again every 10 s (sidecar/supervisor.ts) and get their files back.
    await eventually(
      'm1 back in the normal pod',
      async () =>
        (await execInApp(cluster, NS, 'normal', 'cat /models/m1/weights.bin')).out === 'the weights of m1\n'
          ? true
          : undefined,
      60_000,
      500,
    );
    await waitReady('refused', 60_000);
    await stack.core.createNamespacedPod({
      namespace: NS,
      body: injectedPod({
        name: 'after',
        serviceAccount: SA,
        artifacts: 'm2@v1:/models/m2',
        script: 'sleep 3600',
      }),
    });
    await waitReady('after');
    expect((await execInApp(cluster, NS, 'after', 'cat /models/m2/weights.bin')).out).toBe(
      'the weights of m2\n',
    );
  }, 180_000);
});
