import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CoordinationV1Api, KubeConfig, V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import winston from 'winston';
import { userKubeconfig } from '../../test/cluster/kubeconfig.ts';
import { kubectl } from '../../test/cluster/kubectl.ts';
import { LeaderElector, leaseRecordOf, type LeaderElectionOptions } from './leader.ts';

const cluster = inject('cluster');
const leaseName = 'strongroom-operator';
const nodeBin = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const leaderProcess = fileURLToPath(new URL('./testdata/leader-process.ts', import.meta.url));

const adminConfig = (): KubeConfig => {
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  return kc;
};
const admin = adminConfig().makeApiClient(CoordinationV1Api);

/** What an elector's callbacks reported, with local monotonic timestamps. */
interface Recorded {
  readonly elector: LeaderElector;
  readonly identity: string;
  readonly started: number[];
  readonly stopped: number[];
  readonly leaders: (string | undefined)[];
}

const electors: LeaderElector[] = [];
const children: ChildProcess[] = [];
const namespaces: string[] = [];

afterEach(async () => {
  await Promise.all(electors.splice(0).map((e) => e.stop()));
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  for (const ns of namespaces.splice(0)) await kubectl(cluster, ['delete', 'namespace', ns, '--wait=false']);
});

async function freshNamespace(): Promise<string> {
  const ns = `leader-${randomUUID().slice(0, 8)}`;
  const created = await kubectl(cluster, ['create', 'namespace', ns]);
  expect(created.code, created.stderr).toBe(0);
  namespaces.push(ns);
  return ns;
}

function elector(
  namespace: string,
  timing: Pick<LeaderElectionOptions, 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'>,
  kubeConfig: KubeConfig = adminConfig(),
): Recorded {
  const identity = `test_${randomUUID()}`;
  const started: number[] = [];
  const stopped: number[] = [];
  const leaders: (string | undefined)[] = [];
  const e = new LeaderElector({
    kubeConfig,
    namespace,
    name: leaseName,
    identity,
    ...timing,
    logger: winston.createLogger({ silent: true }),
    onStartedLeading: () => started.push(performance.now()),
    onStoppedLeading: () => stopped.push(performance.now()),
    onNewLeader: (id) => leaders.push(id),
  });
  electors.push(e);
  return { elector: e, identity, started, stopped, leaders };
}

async function waitFor(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(10);
  }
}

const readLease = (namespace: string): Promise<V1Lease> =>
  admin.readNamespacedLease({ name: leaseName, namespace });

const fast = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 } as const;

describe('LeaderElector on a real API server', () => {
  it('elects exactly one of two electors, names it in the Lease, and keeps renewing', async () => {
    const ns = await freshNamespace();
    const a = elector(ns, fast);
    const b = elector(ns, fast);
    a.elector.start();
    b.elector.start();
    await waitFor('one elector leads', () => a.elector.isLeader() || b.elector.isLeader(), 10_000);
    const [leader, follower] = a.elector.isLeader() ? [a, b] : [b, a];
    const firstRenew = leaseRecordOf(await readLease(ns)).renewTime;
    await sleep(3 * fast.retryPeriodMs);

    expect([a.elector.isLeader(), b.elector.isLeader()].filter(Boolean)).toHaveLength(1);
    expect(leader.started).toHaveLength(1);
    expect(follower.started).toHaveLength(0);
    expect(a.stopped.length + b.stopped.length).toBe(0);
    const record = leaseRecordOf(await readLease(ns));
    expect(record.holderIdentity).toBe(leader.identity);
    expect(record.leaseDurationSeconds).toBe(4);
    expect(record.leaseTransitions).toBe(0);
    expect(record.renewTime).not.toBe(firstRenew);
    expect(follower.elector.leader()).toBe(leader.identity);
    expect(follower.leaders).toEqual([leader.identity]);
    expect(leader.elector.leader()).toBe(leader.identity);

    // A follower's stop() leaves the leader's Lease alone.
    await follower.elector.stop();
    expect(follower.stopped).toHaveLength(0);
    expect(leader.elector.isLeader()).toBe(true);
    expect(leaseRecordOf(await readLease(ns)).holderIdentity).toBe(leader.identity);
  });

  it('on stop() the leader releases the Lease and the follower takes over at once', async () => {
    const ns = await freshNamespace();
    const a = elector(ns, fast);
    a.elector.start();
    await waitFor('a leads', () => a.elector.isLeader(), 10_000);
    const b = elector(ns, fast);
    b.elector.start();
    await waitFor('b sees a', () => b.elector.leader() === a.identity, 5_000);

    const stopAt = performance.now();
    await a.elector.stop();
    expect(a.stopped).toHaveLength(1);
    expect(a.elector.isLeader()).toBe(false);
    // stop() resolves only after the release; b cannot have re-acquired within the same instant.
    const released = (await readLease(ns)).spec;
    expect([undefined, '']).toContain(released?.holderIdentity);
    expect(released?.leaseDurationSeconds).toBe(1);

    await waitFor('b leads', () => b.elector.isLeader(), 5_000);
    expect((b.started[0] ?? Infinity) - stopAt).toBeLessThan(5_000);
    const record = leaseRecordOf(await readLease(ns));
    expect(record.holderIdentity).toBe(b.identity);
    expect(record.leaseTransitions).toBe(1);
    expect(b.leaders).toEqual([a.identity, undefined, b.identity]);
    await a.elector.stop(); // idempotent
    expect(a.stopped).toHaveLength(1);
  });

  it('takes over from a SIGKILLed leader process only after its Lease expires, within lease + 2 retry periods', async () => {
    const ns = await freshNamespace();
    const timing = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 } as const;
    const childId = `child_${randomUUID()}`;
    const child = spawn(
      nodeBin,
      [
        leaderProcess,
        cluster.kubeconfig,
        ns,
        leaseName,
        childId,
        String(timing.leaseDurationMs),
        String(timing.renewDeadlineMs),
        String(timing.retryPeriodMs),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await waitFor('the child leads', () => stdout.includes('LEADING') || child.exitCode !== null, 30_000);
    expect(stdout, stderr).toContain('LEADING');

    const b = elector(ns, timing);
    b.elector.start();
    await waitFor('b sees the child', () => b.elector.leader() === childId, 5_000);
    const seenRenew = leaseRecordOf(await readLease(ns)).renewTime;
    await sleep(3 * timing.retryPeriodMs); // the child keeps renewing; b keeps following
    expect(b.elector.isLeader()).toBe(false);
    const renewed = leaseRecordOf(await readLease(ns));
    expect(renewed.holderIdentity).toBe(childId);
    expect(renewed.renewTime).not.toBe(seenRenew);

    const exited = once(child, 'exit');
    const killedAt = performance.now();
    child.kill('SIGKILL');
    await exited;
    const lastRenew = Date.parse(leaseRecordOf(await readLease(ns)).renewTime ?? 'missing');
    expect(Number.isNaN(lastRenew)).toBe(false);

    await waitFor('b leads', () => b.elector.isLeader(), 10_000);
    const tookOverAfter = (b.started[0] ?? Infinity) - killedAt;
    const tookOverWall = Date.now() - (performance.now() - (b.started[0] ?? 0));
    expect(tookOverAfter).toBeLessThanOrEqual(timing.leaseDurationMs + 2 * timing.retryPeriodMs);
    // Not before the Lease expired: the last renewal plus the lease duration (same machine, same wall clock).
    expect(tookOverWall).toBeGreaterThanOrEqual(lastRenew + timing.leaseDurationMs - 20);
    const record = leaseRecordOf(await readLease(ns));
    expect(record.holderIdentity).toBe(b.identity);
    expect(record.leaseTransitions).toBe(1);
    expect(stdout).not.toContain('STOPPED');
  });

  it('steps down when another actor overwrites the holder, and neither fights back nor clobbers it on stop', async () => {
    const ns = await freshNamespace();
    const a = elector(ns, fast);
    a.elector.start();
    await waitFor('a leads', () => a.elector.isLeader(), 10_000);

    const lease = await readLease(ns);
    if (lease.spec === undefined) throw new Error('the Lease has no spec');
    lease.spec.holderIdentity = 'intruder';
    lease.spec.renewTime = new V1MicroTime(Date.now());
    await admin.replaceNamespacedLease({ name: leaseName, namespace: ns, body: lease });
    const overwrittenAt = performance.now();

    await waitFor('a steps down', () => a.stopped.length > 0, 10_000);
    expect((a.stopped[0] ?? Infinity) - overwrittenAt).toBeLessThanOrEqual(
      fast.renewDeadlineMs + fast.retryPeriodMs,
    );
    expect(a.elector.isLeader()).toBe(false);
    expect(a.elector.leader()).toBe('intruder');

    await sleep(3 * fast.retryPeriodMs);
    expect(leaseRecordOf(await readLease(ns)).holderIdentity).toBe('intruder');
    await a.elector.stop();
    expect(a.stopped).toHaveLength(1);
    expect(a.started).toHaveLength(1);
    expect(leaseRecordOf(await readLease(ns)).holderIdentity).toBe('intruder');
  });

  it('works with only get, create and update on leases in its namespace (the minimum RBAC)', async () => {
    const ns = await freshNamespace();
    const user = `elector-${ns}`;
    for (const args of [
      [
        'create',
        'role',
        'leader-election',
        '--verb=get,create,update',
        '--resource=leases.coordination.k8s.io',
      ],
      ['create', 'rolebinding', 'leader-election', '--role=leader-election', `--user=${user}`],
    ]) {
      const r = await kubectl(cluster, ['-n', ns, ...args]);
      expect(r.code, r.stderr).toBe(0);
    }
    const restricted = (): KubeConfig => {
      const kc = new KubeConfig();
      kc.loadFromFile(userKubeconfig(cluster, user));
      return kc;
    };
    const a = elector(ns, fast, restricted());
    const b = elector(ns, fast, restricted());
    a.elector.start();
    await waitFor('a leads', () => a.elector.isLeader(), 10_000);
    const firstRenew = leaseRecordOf(await readLease(ns)).renewTime;
    b.elector.start();
    await waitFor('b sees a', () => b.elector.leader() === a.identity, 5_000);
    await sleep(2 * fast.retryPeriodMs);
    expect(leaseRecordOf(await readLease(ns)).renewTime).not.toBe(firstRenew); // renewed
    expect(a.stopped).toHaveLength(0);

    await a.elector.stop(); // releases
    await waitFor('b leads', () => b.elector.isLeader(), 5_000);
    expect(leaseRecordOf(await readLease(ns)).holderIdentity).toBe(b.identity);

    // The same user without those rights is refused by the real API server.
    const denied = await kubectl(cluster, ['-n', ns, 'delete', 'lease', leaseName], {
      kubeconfig: userKubeconfig(cluster, user),
    });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain(`User "${user}" cannot delete resource "leases"`);
  });

  it('without update rights it creates the Lease, cannot renew it, and steps down within the renew deadline', async () => {
    const ns = await freshNamespace();
    const user = `no-update-${ns}`;
    for (const args of [
      ['create', 'role', 'no-update', '--verb=get,create', '--resource=leases.coordination.k8s.io'],
      ['create', 'rolebinding', 'no-update', '--role=no-update', `--user=${user}`],
    ]) {
      const r = await kubectl(cluster, ['-n', ns, ...args]);
      expect(r.code, r.stderr).toBe(0);
    }
    const kc = new KubeConfig();
    kc.loadFromFile(userKubeconfig(cluster, user));
    const a = elector(ns, fast, kc);
    a.elector.start();
    await waitFor('a leads', () => a.elector.isLeader(), 10_000);
    await waitFor('a steps down', () => a.stopped.length > 0, 10_000);
    expect((a.stopped[0] ?? Infinity) - (a.started[0] ?? 0)).toBeLessThanOrEqual(
      fast.renewDeadlineMs + fast.retryPeriodMs,
    );
    expect(a.elector.isLeader()).toBe(false);
    await a.elector.stop(); // its release is refused too; stop() still resolves
    expect(a.stopped).toHaveLength(1);
    expect(leaseRecordOf(await readLease(ns)).holderIdentity).toBe(a.identity);
  });
});
