/**
 * The informer against a real kube-apiserver: the shared cluster for list/watch, stalls, 410 and periodic relists;
 * a dedicated etcd + kube-apiserver for the restart test, since it stops the API server.
 */
import { etcdUrl, etcdWrite } from '../../test/cluster/etcd.ts';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import winston from 'winston';
import { findLeftovers, startCluster, type Cluster } from '../../test/cluster/cluster.ts';
import { processesMatching } from '../../test/cluster/host.ts';
import { userKubeconfig } from '../../test/cluster/kubeconfig.ts';
import {
  Informer,
  dropWatchEventsForTest,
  resumeWatchFromForTest,
  type InformerEvent,
  type InformerOptions,
  type WatchObserver,
} from './informer.ts';

const shared = inject('cluster');
const quiet = winston.createLogger({ silent: true });

function kubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

/** Everything an informer told its handlers and its observer, in order. */
class Recorder {
  readonly events: InformerEvent<V1ConfigMap>[] = [];
  readonly calls: string[] = [];
  readonly observer: WatchObserver = {
    connected: () => this.calls.push('connected'),
    error: (_r, reason) => this.calls.push(`error:${reason}`),
    relist: (_r, cause) => this.calls.push(`relist:${cause}`),
    healthChanged: (_r, healthy) => this.calls.push(`health:${healthy}`),
  };
  handler = (event: InformerEvent<V1ConfigMap>): void => {
    this.events.push(event);
    this.calls.push(`${event.type}:${event.key}`);
  };
  count(call: string): number {
    return this.calls.filter((c) => c === call).length;
  }
  summary(): string[] {
    return this.events.map((e) => `${e.type}:${e.key}`);
  }
}

/** Polls until `probe` holds; fails with `what` and the recorder's trace after `timeoutMs`. */
async function waitFor(
  what: string,
  probe: () => boolean,
  rec?: Recorder,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; trace: ${rec?.calls.join(', ') ?? ''}`);
    await sleep(50);
  }
}

function configMapInformer(
  kc: KubeConfig,
  namespace: string,
  rec: Recorder,
  extra: Partial<InformerOptions> = {},
): Informer<V1ConfigMap> {
  const informer = new Informer<V1ConfigMap>({
    kubeConfig: kc,
    resource: {
      group: '',
      version: 'v1',
      plural: 'configmaps',
      namespace,
      labelSelector: 'app=informer-test',
    },
    logger: quiet,
    observer: rec.observer,
    ...extra,
  });
  informer.onEvent(rec.handler);
  return informer;
}

describe('Informer on a real API server', () => {
  const kc = kubeConfig(shared.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const namespaces: string[] = [];
  const informers: Informer<V1ConfigMap>[] = [];

  async function freshNamespace(): Promise<string> {
    const name = `informer-${randomUUID().slice(0, 8)}`;
    await core.createNamespace({ body: { metadata: { name } } });
    namespaces.push(name);
    return name;
  }
  // Labelled, and informers here select on the label: the controller manager puts kube-root-ca.crt in every namespace.
  const body = (name: string, data: Record<string, string>): V1ConfigMap => ({
    metadata: { name, labels: { app: 'informer-test' } },
    data,
  });
  const cm = (namespace: string, name: string, data: Record<string, string>) =>
    core.createNamespacedConfigMap({ namespace, body: body(name, data) });
  const replace = (namespace: string, name: string, data: Record<string, string>) =>
    core.replaceNamespacedConfigMap({ namespace, name, body: body(name, data) });
  const track = (informer: Informer<V1ConfigMap>): Informer<V1ConfigMap> => {
    informers.push(informer);
    return informer;
  };

  afterAll(async () => {
    for (const informer of informers) await informer.stop();
    for (const name of namespaces) await core.deleteNamespace({ name });
  });

  it('lists existing objects into the cache, then follows adds, modifications and deletes in order', async () => {
    const ns = await freshNamespace();
    await cm(ns, 'alpha', { lr: '0.01' });
    await cm(ns, 'beta', { lr: '0.02' });
    const rec = new Recorder();
    const informer = track(configMapInformer(kc, ns, rec));
    expect(informer.resourceName).toBe('v1/configmaps');
    expect(informer.hasSynced()).toBe(false);
    await informer.start();
    expect(informer.hasSynced()).toBe(true);
    expect(
      informer
        .list()
        .map((o) => o.metadata?.name)
        .sort(),
    ).toEqual(['alpha', 'beta']);
    expect(informer.get(`${ns}/alpha`)?.data).toEqual({ lr: '0.01' });
    expect(informer.get(`${ns}/alpha`)?.kind).toBe('ConfigMap'); // list items get their kind back
    expect(rec.summary().sort()).toEqual([`added:${ns}/alpha`, `added:${ns}/beta`]);
    expect(rec.calls[0]).toBe('relist:initial');
    await waitFor('the watch to connect', () => informer.healthy() && rec.count('connected') === 1, rec);

    await cm(ns, 'gamma', { lr: '0.03' });
    await replace(ns, 'alpha', { lr: '0.5' });
    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'beta' });
    await waitFor('three watch events', () => rec.events.length === 5, rec);
    expect(rec.summary().slice(2)).toEqual([
      `added:${ns}/gamma`,
      `modified:${ns}/alpha`,
      `deleted:${ns}/beta`,
    ]);
    // Handlers run after the cache is updated; 'deleted' carries the last known object.
    expect(rec.events[4]?.object.data).toEqual({ lr: '0.02' });
    expect(informer.get(`${ns}/beta`)).toBeUndefined();
    expect(informer.get(`${ns}/alpha`)?.data).toEqual({ lr: '0.5' });
    expect(informer.list().length).toBe(2);

    await informer.stop();
    await informer.stop(); // idempotent
    expect(informer.healthy()).toBe(false);
    await cm(ns, 'after-stop', {});
    await sleep(500);
    expect(rec.events.length).toBe(5);
  });

  it('a stalled stream (nothing, not even a bookmark, for stallTimeoutMs) is aborted, relisted and rewatched', async () => {
    const ns = await freshNamespace();
    const rec = new Recorder();
    // An idle namespace: the API server sends a bookmark about once a minute, so 1.5 s of silence is a stall.
    const informer = track(configMapInformer(kc, ns, rec, { stallTimeoutMs: 1500 }));
    await informer.start();
    await waitFor('a stall and a second connection', () => rec.count('connected') >= 2, rec);
    const firstStall = rec.calls.indexOf('error:stalled');
    expect(firstStall).toBeGreaterThan(rec.calls.indexOf('connected'));
    expect(rec.calls.slice(firstStall, firstStall + 3)).toEqual([
      'error:stalled',
      'relist:stalled',
      'connected',
    ]);
    expect(informer.healthy()).toBe(true);
    // and it still works after the reconnect
    await cm(ns, 'late', { a: '1' });
    await waitFor('the late object', () => informer.get(`${ns}/late`) !== undefined, rec);
    await informer.stop();
  });

  it('resuming from a compacted resourceVersion emits no duplicate events', async () => {
    // kube-apiserver 1.35 answers a watch from a resourceVersion older than its watch cache (whose window has not yet
    // dropped an event) by replaying the current objects as ADDED: the informer must not report them again.
    // (A 410 on a watch is not reproducible on demand here; informer.test.ts covers it on the wire.)
    const ns = await freshNamespace();
    await cm(ns, 'one', { v: '1' });
    const rec = new Recorder();
    const informer = track(configMapInformer(kc, ns, rec));
    await informer.start();
    await waitFor('the watch', () => rec.count('connected') === 1, rec);
    await cm(ns, 'two', { v: '1' });
    await waitFor('the second object', () => rec.events.length === 2, rec);
    // Compact etcd's history (kube-apiserver does so every 5 minutes), then resume from before the compaction.
    await compactEtcd(etcdUrl(shared.workDir));
    resumeWatchFromForTest(informer, '1');
    // The API server either replays the current objects (its watch cache still covers the window) or, when other
    // writes have pushed the window past the resume point, answers 410 Gone and the informer relists: either way
    // it must report nothing twice.
    await waitFor('the resumed watch', () => rec.count('connected') >= 2, rec);
    await replace(ns, 'one', { v: '2' });
    await waitFor('the change after the resume', () => informer.get(`${ns}/one`)?.data?.['v'] === '2', rec);
    expect(rec.summary()).toEqual([`added:${ns}/one`, `added:${ns}/two`, `modified:${ns}/one`]);
    const recoveries = rec.calls.filter((c) => c.startsWith('error:') || c.startsWith('relist:'));
    expect([['relist:initial'], ['relist:initial', 'error:gone', 'relist:gone']]).toContainEqual(recoveries);
    await informer.stop();
  });

  it('the periodic relist synthesizes what the watch lost, and emits nothing for unchanged objects', async () => {
    const ns = await freshNamespace();
    await cm(ns, 'kept', { v: '1' });
    await cm(ns, 'changed', { v: '1' });
    await cm(ns, 'removed', { v: '1' });
    const rec = new Recorder();
    const informer = track(configMapInformer(kc, ns, rec, { relistIntervalMs: 1500 }));
    await informer.start();
    await waitFor('two quiet periodic relists', () => rec.count('relist:periodic') >= 2, rec);
    expect(rec.events.length).toBe(3); // the initial adds only: quiet relists changed nothing

    dropWatchEventsForTest(informer, true);
    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'removed' });
    await replace(ns, 'changed', { v: '2' });
    await cm(ns, 'added', { v: '1' });
    const relistsBefore = rec.count('relist:periodic');
    await waitFor('the repair', () => rec.events.length === 6, rec);
    expect(rec.count('relist:periodic')).toBeGreaterThan(relistsBefore);
    expect(rec.summary().slice(3).sort()).toEqual([
      `added:${ns}/added`,
      `deleted:${ns}/removed`,
      `modified:${ns}/changed`,
    ]);
    const deleted = rec.events.find((e) => e.type === 'deleted');
    expect(deleted?.object.data).toEqual({ v: '1' });
    expect(informer.get(`${ns}/changed`)?.data).toEqual({ v: '2' });
    expect(informer.get(`${ns}/removed`)).toBeUndefined();
    dropWatchEventsForTest(informer, false);
    await informer.stop();
  });

  it('stop() before the first list rejects start() and leaves nothing running', async () => {
    const ns = await freshNamespace();
    const rec = new Recorder();
    const informer = configMapInformer(kc, ns, rec);
    const started = informer.start();
    await informer.stop();
    await expect(started).rejects.toThrow(/stopped/);
    await expect(informer.start()).rejects.toThrow(/stopped/);
  });

  it('keeps retrying with backoff when it may not list, and recovers once allowed', async () => {
    // A user without RBAC: real 403s from the real API server, then a RoleBinding makes it work.
    const ns = await freshNamespace();
    const user = `informer-${randomUUID().slice(0, 6)}`;
    const rec = new Recorder();
    const informer = track(
      configMapInformer(kubeConfig(userKubeconfig(shared, user, [])), ns, rec, {
        backoffInitialMs: 100,
        backoffMaxMs: 400,
      }),
    );
    const started = informer.start();
    await waitFor('three refused lists', () => rec.count('error:http-403') >= 3, rec);
    expect(informer.hasSynced()).toBe(false);
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: {
        metadata: { name: 'read-cm' },
        rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['list', 'watch'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'read-cm' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-cm' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
      },
    });
    await started;
    expect(informer.hasSynced()).toBe(true);
    await cm(ns, 'visible', {});
    await waitFor('an event for the user', () => informer.get(`${ns}/visible`) !== undefined, rec);
    await informer.stop();
  });
});

async function etcd(url: string, op: 'put' | 'deleterange', key: string, value?: object): Promise<void> {
  await etcdWrite(url, op, key, value);
}

/** Compacts etcd at its current revision, so that every older resourceVersion is gone for good. */
async function compactEtcd(url: string): Promise<void> {
  const range = await fetch(`${url}/v3/kv/range`, {
    method: 'POST',
    body: JSON.stringify({ key: Buffer.from('/registry/').toString('base64') }),
  });
  const revision = ((await range.json()) as { header: { revision: string } }).header.revision;
  const res = await fetch(`${url}/v3/kv/compaction`, {
    method: 'POST',
    body: JSON.stringify({ revision, physical: true }),
  });
  expect(res.status, await res.text()).toBe(200);
}

describe('Informer across a kube-apiserver restart (dedicated etcd + kube-apiserver)', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ apiserverBinary: join(shared.binDir, 'kube-apiserver') });
  });
  afterAll(async () => {
    await cluster.stop();
    // The restarted kube-apiserver was found and stopped by the cluster's own teardown.
    const left = await findLeftovers(cluster.workDir);
    expect(left.processes).toEqual([]);
    expect(left.workDirExists).toBe(false);
  });

  it('goes unhealthy while the API server is down, then relists what changed meanwhile and is healthy again', async () => {
    const kc = kubeConfig(cluster.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const ns = 'restart';
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'kept' }, data: { v: '1' } },
    });
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'doomed' }, data: { v: '1' } },
    });
    const rec = new Recorder();
    const informer = configMapInformer(kc, ns, rec, {
      resource: { group: '', version: 'v1', plural: 'configmaps', namespace: ns },
      backoffInitialMs: 200,
      backoffMaxMs: 1000,
      unhealthyAfterMs: 2000,
    });
    try {
      await informer.start();
      await waitFor('healthy', () => informer.healthy() && rec.count('connected') === 1, rec);
      const store = etcdUrl(cluster.workDir);
      const apiserverLog = readFileSync(join(cluster.workDir, 'logs', 'kube-apiserver.log'), 'utf8').length;

      const stopping = Date.now();
      // SIGTERM, and SIGKILL 3 s later: with a watch open kube-apiserver stops listening but does not exit by itself.
      const restart = await cluster.stopApiserver({ graceMs: 3000 });
      const stoppedMs = Date.now() - stopping;
      expect(processesMatching(cluster.workDir).map((p) => p.program)).not.toContain('kube-apiserver');
      // While it is down, another replica (here: a direct etcd write) adds one object and deletes another.
      await etcd(store, 'put', `/registry/configmaps/${ns}/born-while-down`, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: 'born-while-down',
          namespace: ns,
          uid: randomUUID(),
          creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        },
        data: { v: 'offline' },
      });
      await etcd(store, 'deleterange', `/registry/configmaps/${ns}/doomed`);
      await waitFor('unhealthy after 2 s down', () => rec.calls.includes('health:false'), rec, 10_000);
      expect(informer.healthy()).toBe(false);
      expect(rec.calls.filter((c) => c.startsWith('error:')).length).toBeGreaterThan(0);
      expect(informer.get(`${ns}/doomed`)).toBeDefined(); // the cache keeps serving the last known state

      const restarting = Date.now();
      await restart();
      const restartMs = Date.now() - restarting;
      expect(
        readFileSync(join(cluster.workDir, 'logs', 'kube-apiserver.log'), 'utf8').length,
      ).toBeGreaterThan(apiserverLog);
      await waitFor('the offline changes', () => informer.get(`${ns}/born-while-down`) !== undefined, rec);
      await waitFor('the offline delete', () => informer.get(`${ns}/doomed`) === undefined, rec);
      await waitFor('healthy again', () => informer.healthy(), rec);
      expect(rec.summary().slice(2).sort()).toEqual([`added:${ns}/born-while-down`, `deleted:${ns}/doomed`]);
      expect(informer.get(`${ns}/born-while-down`)?.data).toEqual({ v: 'offline' });
      const health = rec.calls.filter((c) => c.startsWith('health:'));
      expect(health).toEqual(['health:true', 'health:false', 'health:true']);
      process.stderr.write(
        `[informer restart] stop ${stoppedMs} ms, restart to /readyz ${restartMs} ms; ${rec.calls.join(', ')}\n`,
      );

      // and the restarted server's watch works
      await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'after' } } });
      await waitFor('a watch event after the restart', () => informer.get(`${ns}/after`) !== undefined, rec);
    } finally {
      await informer.stop();
    }
  });
});
