/**
 * The operator under real-life failures, all real processes: SIGKILL in the middle of reconciling, kube-apiserver
 * stopped and restarted, and leader failover between two operator processes (crash and clean hand-over).
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CoordinationV1Api, KubeConfig } from '@kubernetes/client-node';
import type { ModelArtifact } from '../../core/api/index.ts';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { etcdRead, etcdUrl, etcdWrite } from '../cluster/etcd.ts';
import { kubectl, type ClusterInfo } from '../cluster/kubectl.ts';
import { clients, eventually, startOperator, type OperatorProcess } from '../harness/operator.ts';
import {
  appendVersion,
  artifactBody,
  condition,
  createArtifact,
  getArtifact,
  sealedVersion,
} from '../harness/objects.ts';
import { installOperator, uniqueNames } from '../harness/suite.ts';

const shared = inject('cluster');

async function allReady(
  info: ClusterInfo,
  ns: string,
  count: number,
  timeoutMs = 60_000,
): Promise<ModelArtifact[]> {
  const { custom } = clients(info.kubeconfig);
  return eventually(
    `${count} artifacts Ready in ${ns}`,
    async () => {
      const list = (await custom.listNamespacedCustomObject({
        group: 'strongroom.dev',
        version: 'v1alpha1',
        namespace: ns,
        plural: 'modelartifacts',
      })) as { items: ModelArtifact[] };
      const ready = list.items.filter((a) => condition(a, 'Ready')?.status === 'True');
      return ready.length === count ? list.items : undefined;
    },
    timeoutMs,
    250,
  );
}

describe('SIGKILL mid-reconcile', () => {
  const { opNs, ns } = uniqueNames({ opNs: 'strongroom-op', ns: 'ml-kill' });
  const admin = clients(shared.kubeconfig);

  afterAll(async () => {
    await kubectl(shared, ['delete', 'namespace', ns, opNs, '--wait=false']);
  });

  it('converges after a kill -9 with one recipient key per artifact, one key per version and no duplicate KEK', async () => {
    const kubeconfig = await installOperator(shared, opNs);
    await kubectl(shared, ['create', 'namespace', ns]);
    const count = 30;
    const created = (p: OperatorProcess): number =>
      p.lines().filter((l) => l.message === 'created recipient key').length;
    const sealed = (p: OperatorProcess): number =>
      p.lines().filter((l) => l.message === 'sealed version').length;
    // Kill 1: while recipient keys are being created.
    const first = await startOperator({ namespace: opNs, kubeconfig, identity: 'op-kill-1' });
    await first.healthPort();
    await Promise.all(
      Array.from({ length: count }, (_, i) => createArtifact(admin.custom, ns, artifactBody(`m${i}`))),
    );
    await eventually('a few keys created', () => (created(first) >= 3 ? true : undefined), 30_000, 5);
    first.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const keysAtKill1 = created(first);

    // Kill 2: while versions are being sealed.
    const middle = await startOperator({ namespace: opNs, kubeconfig, identity: 'op-kill-2' });
    const keyed = await eventually(
      'every artifact has a recipient key',
      async () => {
        const items = await Promise.all(
          Array.from({ length: count }, (_, i) => getArtifact(admin.custom, ns, `m${i}`)),
        );
        return items.every((a) => a.status?.recipientPublicKey) ? items : undefined;
      },
      60_000,
    );
    middle.kill('SIGSTOP');
    for (const a of keyed) {
      const v1 = await sealedVersion(a, 'v1');
      const v2 = await sealedVersion(a, 'v2');
      await appendVersion(admin.custom, a, v1.version);
      await appendVersion(admin.custom, a, v2.version);
    }
    middle.kill('SIGCONT');
    await eventually('a few versions sealed', () => (sealed(middle) >= 4 ? true : undefined), 30_000, 5);
    middle.kill('SIGKILL');
    expect((await middle.exited).signal).toBe('SIGKILL');
    const sealedAtKill2 = sealed(middle);
    console.log(
      `[sigkill] killed after ${keysAtKill1}/${count} recipient keys, then after ${sealedAtKill2}/${2 * count} version keys`,
    );
    expect(keysAtKill1).toBeLessThan(count);
    expect(sealedAtKill2).toBeLessThan(2 * count);

    const second = await startOperator({ namespace: opNs, kubeconfig, identity: 'op-kill-3' });
    try {
      const items = await eventually(
        'all sealed',
        async () => {
          const list = await allReady(shared, ns, count);
          return list.every((a) => a.status?.keys?.length === 2 && a.status.latestVersion === 'v2')
            ? list
            : undefined;
        },
        90_000,
      );
      for (const a of items) {
        expect(a.metadata.finalizers).toEqual(['strongroom.dev/crypto-shred']);
        expect(a.status?.keys?.map((k) => k.version)).toEqual(['v1', 'v2']);
      }
      const secrets = await admin.core.listNamespacedSecret({
        namespace: opNs,
        // The operator serves the whole cluster: artifacts other test files left behind get keys too.
        labelSelector: `strongroom.dev/role=recipient-key,strongroom.dev/artifact-namespace=${ns}`,
      });
      expect(secrets.items).toHaveLength(count);
      expect(new Set(secrets.items.map((s) => s.metadata?.labels?.['strongroom.dev/artifact-uid']))).toEqual(
        new Set(items.map((a) => a.metadata.uid)),
      );
      expect(
        new Set(secrets.items.map((s) => s.metadata?.labels?.['strongroom.dev/artifact-uid'])).size,
      ).toBe(count);
      const keyset = await admin.core.readNamespacedSecret({ namespace: opNs, name: 'strongroom-kms-local' });
      const stored = JSON.parse(Buffer.from(keyset.data?.['keyset.json'] ?? '', 'base64').toString()) as {
        keys: Record<string, { versions: unknown[] }>;
      };
      // One KEK per shared classification, each with exactly one version: nothing was created twice. (Any other
      // key is the own KEK of a confidential or restricted artifact some other test file left in the cluster.)
      const sharedKeks = Object.keys(stored.keys).filter((k) => !k.startsWith('strongroom-artifact-'));
      expect(sharedKeks.sort()).toEqual(['strongroom-internal', 'strongroom-public']);
      for (const k of sharedKeks) expect(stored.keys[k]?.versions).toHaveLength(1);
      await kubectl(shared, ['delete', 'modelartifacts', '--all', '-n', ns, '--timeout=60s']);
    } finally {
      expect((await second.stop()).code).toBe(0);
    }
  });
});

describe('kube-apiserver stopped and restarted', () => {
  let cluster: Cluster;
  let operator: OperatorProcess;
  const opNs = 'strongroom-system';
  const ns = 'ml';

  beforeAll(async () => {
    cluster = await startCluster({ apiserverBinary: join(shared.binDir, 'kube-apiserver') });
    const kubeconfig = await installOperator(cluster, opNs);
    await kubectl(cluster, ['create', 'namespace', ns]);
    operator = await startOperator({
      namespace: opNs,
      kubeconfig,
      identity: 'op-restart',
      args: ['--watch-stall-timeout=20s'],
    });
    await operator.healthPort();
  });

  afterAll(async () => {
    const exit = await operator.stop();
    if (exit.code !== 0)
      console.log(`[restart] operator exit ${JSON.stringify(exit)}:\n${operator.output().slice(-6000)}`);
    await cluster.stop();
  });

  it('goes unready while the API server is down, then processes the changes made meanwhile', async () => {
    const admin = clients(cluster.kubeconfig);
    await createArtifact(admin.custom, ns, artifactBody('before'));
    const [before] = await allReady(cluster, ns, 1);
    if (!before) throw new Error('unreachable');
    // Fully ready first (the webhook listens once the leader has issued its certificate), so that the 503 below
    // is the API server's absence and nothing else.
    await eventually('readyz 200', async () =>
      (await operator.get('/readyz')).status === 200 ? true : undefined,
    );
    const { version } = await sealedVersion(before, 'v1');
    const store = etcdUrl(cluster.workDir);
    const restart = await cluster.stopApiserver({ graceMs: 3_000 });
    // While it is down, another API server replica (here: a direct etcd write) publishes a version of "before" and
    // creates a new artifact. Custom resources are stored as JSON.
    const key = `/registry/strongroom.dev/modelartifacts/${ns}/before`;
    const stored = await etcdRead<ModelArtifact>(store, key);
    if (!stored) throw new Error(`${key} not in etcd`);
    stored.spec.versions = [version];
    stored.metadata.generation = (stored.metadata.generation ?? 1) + 1;
    await etcdWrite(store, 'put', key, stored);
    const born = artifactBody('born-offline');
    born.metadata = {
      name: 'born-offline',
      namespace: ns,
      uid: randomUUID(),
      generation: 1,
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z') as unknown as Date,
    };
    await etcdWrite(store, 'put', `/registry/strongroom.dev/modelartifacts/${ns}/born-offline`, born);

    const unready = await eventually(
      'readyz 503',
      async () => {
        const r = await operator.get('/readyz');
        return r.status === 503 ? r.body : undefined;
      },
      60_000,
      500,
    );
    expect(unready).toMatch(/watch/);
    expect((await operator.get('/metrics')).body).toMatch(/strongroom_watch_errors_total\{[^}]*\} [1-9]/);
    await restart();
    const items = await eventually(
      'both sealed',
      async () => {
        const list = await allReady(cluster, ns, 2, 60_000);
        return list.find((a) => a.metadata.name === 'before')?.status?.latestVersion === 'v1'
          ? list
          : undefined;
      },
      90_000,
    );
    expect(items.map((a) => a.metadata.name).sort()).toEqual(['before', 'born-offline']);
    await eventually(
      'readyz 200',
      async () => ((await operator.get('/readyz')).status === 200 ? true : undefined),
      60_000,
      500,
    );
    expect((await operator.get('/metrics')).body).toMatch(
      /strongroom_watch_connected\{resource="[^"]*modelartifacts"\} 1/,
    );
    // It kept running throughout: it stepped down while the API server was away and leads again now.
    expect(
      operator
        .lines()
        .some((l) => l.message === 'lost the Lease: stopping controllers and campaigning again'),
    ).toBe(true);
    expect(
      operator.lines().filter((l) => l.message === 'leading: starting controllers').length,
    ).toBeGreaterThanOrEqual(2);
    await kubectl(cluster, ['delete', 'modelartifacts', '--all', '-n', ns, '--timeout=60s']);
  });
});

describe('leader election between two operator processes', () => {
  const { opNs, ns } = uniqueNames({ opNs: 'strongroom-op', ns: 'ml-lead' });
  const admin = clients(shared.kubeconfig);
  const kc = new KubeConfig();
  kc.loadFromFile(shared.kubeconfig);
  const leases = kc.makeApiClient(CoordinationV1Api);
  const holder = async (): Promise<string | undefined> =>
    (await leases.readNamespacedLease({ namespace: opNs, name: 'strongroom-operator' })).spec
      ?.holderIdentity ?? undefined;

  afterAll(async () => {
    await kubectl(shared, ['delete', 'modelartifacts', '--all', '-n', ns, '--timeout=60s']);
    await kubectl(shared, ['delete', 'namespace', ns, opNs, '--wait=false']);
  });

  it('only the leader reconciles; a SIGKILLed leader is replaced within the lease; a clean stop hands over at once', async () => {
    const kubeconfig = await installOperator(shared, opNs);
    await kubectl(shared, ['create', 'namespace', ns]);
    const a = await startOperator({ namespace: opNs, kubeconfig, identity: 'op-a' });
    await a.waitForLog((l) => l.message === 'leading: starting controllers');
    const b = await startOperator({ namespace: opNs, kubeconfig, identity: 'op-b' });
    try {
      await b.healthPort();
      expect(await holder()).toBe('op-a');
      await createArtifact(admin.custom, ns, artifactBody('one'));
      await allReady(shared, ns, 1);
      const bMetrics = (await b.get('/metrics')).body;
      expect(bMetrics).toMatch(/strongroom_leader 0/);
      expect(bMetrics).not.toMatch(/strongroom_reconcile_total\{queue="modelartifact"/);
      expect((await a.get('/metrics')).body).toMatch(/strongroom_leader 1/);

      const killedAt = Date.now();
      a.kill('SIGKILL');
      await b.waitForLog((l) => l.message === 'leading: starting controllers', 15_000);
      const takeover = Date.now() - killedAt;
      expect(takeover).toBeLessThan(4_000 + 2_000);
      expect(await holder()).toBe('op-b');
      await createArtifact(admin.custom, ns, artifactBody('two'));
      await allReady(shared, ns, 2);

      // A third process waits; the leader's clean stop releases the Lease and the waiter takes over at once.
      const c = await startOperator({ namespace: opNs, kubeconfig, identity: 'op-c' });
      try {
        await c.healthPort();
        const stoppedAt = Date.now();
        expect((await b.stop()).code).toBe(0);
        await c.waitForLog((l) => l.message === 'leading: starting controllers', 10_000);
        expect(Date.now() - stoppedAt).toBeLessThan(4_000);
        expect(await holder()).toBe('op-c');
      } finally {
        expect((await c.stop()).code).toBe(0);
      }
      expect(await holder()).toBeFalsy();
    } finally {
      a.kill('SIGKILL');
      await b.stop();
    }
  });
});
