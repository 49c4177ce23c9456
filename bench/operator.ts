/**
 * `npm run bench:operator`: how fast the operator brings many objects to Ready on this machine, with the operator,
 * etcd and kube-apiserver all sharing its cores. It starts its own control plane (no node), the operator as a real
 * process with its least-privilege RBAC, and measures:
 *   1. N artifacts created at once → all Ready (finalizer, recipient key, status);
 *   2. a sealed version appended to each and N read grants created at once → all grants Active;
 *   3. a restart: the operator is stopped and started again with M artifacts and M grants present → every object
 *      reconciled once (a full resync), with the operator's peak RSS.
 *
 *   node bench/operator.ts [--count 1000] [--resync-count 10000] [--json out.json]
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startCluster } from '../test/harness/cluster.ts';
import { must } from '../test/harness/kubectl.ts';
import {
  clients,
  installCrds,
  installOperatorIdentity,
  startOperator,
  type OperatorProcess,
} from '../test/harness/operator.ts';
import { artifactBody, grantBody, sealedVersion } from '../test/harness/objects.ts';
import type { AccessGrant, ModelArtifact } from '../core/api/index.ts';
import { statusKiB } from './proc.ts';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    'resync-count': { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '24' },
    // Each entry is one resync measurement with these node flags ("" = none), on the same objects.
    'resync-node-args': { type: 'string', multiple: true, default: [''] },
    json: { type: 'string' },
  },
});
const count = Number(values.count);
const resyncCount = Number(values['resync-count']);
const concurrency = Number(values.concurrency);
const log = (line: string): void => {
  process.stderr.write(`[bench:operator] ${line}\n`);
};

async function pool<T>(items: readonly T[], fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const item = items[next++] as T;
        await fn(item);
      }
    }),
  );
}

const cluster = await startCluster({ log });
const results: Record<string, number> = { count, resyncCount };
let operator: OperatorProcess | undefined;
try {
  await installCrds(cluster);
  const kubeconfig = await installOperatorIdentity(cluster, 'strongroom-system');
  await must(cluster, ['create', 'namespace', 'bench']);
  // Grants are judged by their namespace's environment: without one they are Denied (NoEnvironment).
  await must(cluster, ['label', 'namespace', 'bench', 'strongroom.dev/environment=dev']);
  const { custom } = clients(cluster.kubeconfig);
  const group = { group: 'strongroom.dev', version: 'v1alpha1', namespace: 'bench' };
  const listArtifacts = async (): Promise<ModelArtifact[]> =>
    (
      (await custom.listNamespacedCustomObject({
        ...group,
        plural: 'modelartifacts',
        resourceVersion: '0',
      })) as {
        items: ModelArtifact[];
      }
    ).items;
  const listGrants = async (): Promise<AccessGrant[]> =>
    (
      (await custom.listNamespacedCustomObject({
        ...group,
        plural: 'accessgrants',
        resourceVersion: '0',
      })) as {
        items: AccessGrant[];
      }
    ).items;
  const until = async (what: string, done: () => Promise<boolean>, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      // Polling is part of the load: once a second, served from the API server's watch cache (resourceVersion 0).
      await new Promise((r) => setTimeout(r, 1_000));
    }
  };
  const readyArtifacts = async (): Promise<number> =>
    (await listArtifacts()).filter((a) =>
      a.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    ).length;
  const activeGrants = async (): Promise<number> =>
    (await listGrants()).filter((g) => g.status?.phase === 'Active').length;

  operator = await startOperator({
    namespace: 'strongroom-system',
    kubeconfig,
    identity: 'bench',
    args: ['--workers=8', '--log-level=info'],
  });
  await operator.healthPort();

  const names = Array.from({ length: resyncCount }, (_, i) => `m${String(i).padStart(5, '0')}`);
  const first = names.slice(0, count);
  let t0 = performance.now();
  await pool(first, (name) =>
    custom.createNamespacedCustomObject({ ...group, plural: 'modelartifacts', body: artifactBody(name) }),
  );
  const created = performance.now() - t0;
  await until('artifacts Ready', async () => (await readyArtifacts()) >= count, 600_000);
  results.artifactsReadyMs = Math.round(performance.now() - t0);
  results.artifactsCreateMs = Math.round(created);
  log(
    `${count} artifacts Ready in ${results.artifactsReadyMs} ms (creating them took ${Math.round(created)} ms)`,
  );

  const byName = new Map((await listArtifacts()).map((a) => [a.metadata.name ?? '', a]));
  t0 = performance.now();
  await pool(first, async (name) => {
    const a = byName.get(name) as ModelArtifact;
    const { version } = await sealedVersion(a, 'v1');
    await custom.patchNamespacedCustomObject({
      ...group,
      plural: 'modelartifacts',
      name,
      body: [{ op: 'add', path: '/spec/versions', value: [version] }],
    });
    await custom.createNamespacedCustomObject({
      ...group,
      plural: 'accessgrants',
      body: grantBody(`g-${name}`, name, { subjects: [{ namespace: 'bench', serviceAccount: 'trainer' }] }),
    });
  });
  await until('grants Active', async () => (await activeGrants()) >= count, 600_000);
  results.versionsAndGrantsActiveMs = Math.round(performance.now() - t0);
  log(`${count} versions sealed and ${count} grants Active in ${results.versionsAndGrantsActiveMs} ms`);

  if (resyncCount > count) {
    const rest = names.slice(count);
    log(`creating ${rest.length} more artifacts and grants for the resync measurement`);
    await pool(rest, async (name) => {
      await custom.createNamespacedCustomObject({
        ...group,
        plural: 'modelartifacts',
        body: artifactBody(name),
      });
      await custom.createNamespacedCustomObject({
        ...group,
        plural: 'accessgrants',
        body: grantBody(`g-${name}`, name, {
          subjects: [{ namespace: 'bench', serviceAccount: 'trainer' }],
          mode: 'publish',
          versions: { match: 'all' },
        }),
      });
    });
    await until('all artifacts Ready', async () => (await readyArtifacts()) >= resyncCount, 1_800_000);
    await until('all grants Active', async () => (await activeGrants()) >= resyncCount, 1_800_000);
  }
  await operator.stop();

  const reconciledTotals = async (op: OperatorProcess): Promise<{ artifacts: number; grants: number }> => {
    const m = (await op.get('/metrics')).body;
    const total = (queue: string): number =>
      [
        ...m.matchAll(
          new RegExp(`strongroom_reconcile_total\\{queue="${queue}",outcome="[a-z]+"\\} (\\d+)`, 'g'),
        ),
      ].reduce((s, x) => s + Number(x[1]), 0);
    return { artifacts: total('modelartifact'), grants: total('accessgrant') };
  };
  const statusField = (pid: number, field: 'VmHWM' | 'VmRSS'): number =>
    Math.round((statusKiB(field, pid) ?? 0) / 1024);
  for (const [n, variant] of values['resync-node-args'].entries()) {
    const nodeArgs = variant.split(' ').filter((a) => a !== '');
    const op = await startOperator({
      namespace: 'strongroom-system',
      kubeconfig,
      identity: `bench-resync-${n}`,
      args: ['--workers=8', '--log-level=info'],
      nodeArgs,
    });
    operator = op;
    t0 = performance.now();
    await until(
      'full resync',
      async () => {
        const t = await reconciledTotals(op);
        return t.artifacts >= resyncCount && t.grants >= resyncCount;
      },
      600_000,
    );
    const label = variant === '' ? 'default' : variant;
    results[`resyncMs[${label}]`] = Math.round(performance.now() - t0);
    results[`peakRssMiB[${label}]`] = statusField(op.pid, 'VmHWM');
    // Settled: 20 s later, with only periodic work.
    await new Promise((r) => setTimeout(r, 20_000));
    results[`settledRssMiB[${label}]`] = statusField(op.pid, 'VmRSS');
    const heap = /strongroom_operator_nodejs_heap_size_used_bytes (\d+)/.exec(
      (await op.get('/metrics')).body,
    )?.[1];
    results[`settledHeapUsedMiB[${label}]`] = Math.round(Number(heap ?? 0) / 1048576);
    log(
      `[${label}] full resync of ${resyncCount} artifacts and ${resyncCount} grants in ${results[`resyncMs[${label}]`]} ms ` +
        `(from process start); peak RSS ${results[`peakRssMiB[${label}]`]} MiB; 20 s later RSS ` +
        `${results[`settledRssMiB[${label}]`]} MiB, heap used ${results[`settledHeapUsedMiB[${label}]`]} MiB`,
    );
    await op.stop();
    operator = undefined;
  }
} finally {
  await operator?.stop();
  await cluster.stop();
}
console.log(JSON.stringify(results, null, 2));
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
