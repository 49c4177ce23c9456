import type { V1ConfigMap } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { formatQuarantineRecord, type QuarantineRecord } from '../../core/policy/quarantine.ts';
import type { InformerEvent } from '../kube/informer.ts';
import { QuarantineStore, QuarantineWriteError } from './store.ts';

const RECORD: QuarantineRecord = {
  since: '2026-12-07T10:00:00.000Z',
  alertId: 'a-0123456789abcdef',
  rule: 'bulk-access',
  severity: 'high',
  reason: 'sa ml-dev/trainer was released 3 artifacts in 60 s',
};
const TRAINER = { namespace: 'ml-dev', serviceAccount: 'trainer' };

function apiError(code: number): Error {
  return Object.assign(new Error(`HTTP ${String(code)}`), { code });
}

/** An API server of one ConfigMap with resourceVersions; `conflicts` replaces answer 409 first. */
function fakeCore(initial: V1ConfigMap | undefined, conflicts = 0) {
  let stored = initial === undefined ? undefined : structuredClone(initial);
  let version = 1;
  let left = conflicts;
  const writes: string[] = [];
  const core = {
    readNamespacedConfigMap: () =>
      stored === undefined ? Promise.reject(apiError(404)) : Promise.resolve(structuredClone(stored)),
    createNamespacedConfigMap: ({ body }: { body: V1ConfigMap }) => {
      writes.push('create');
      if (stored !== undefined) return Promise.reject(apiError(409));
      stored = structuredClone(body);
      stored.metadata = Object.assign(structuredClone(body.metadata) ?? {}, {
        resourceVersion: String(++version),
      });
      return Promise.resolve(stored);
    },
    replaceNamespacedConfigMap: ({ body }: { body: V1ConfigMap }) => {
      writes.push('replace');
      if (left-- > 0 || body.metadata?.resourceVersion !== stored?.metadata?.resourceVersion) {
        // Someone else wrote in between.
        if (stored?.metadata) stored.metadata.resourceVersion = String(++version);
        return Promise.reject(apiError(409));
      }
      stored = structuredClone(body);
      stored.metadata = Object.assign(structuredClone(body.metadata) ?? {}, {
        resourceVersion: String(++version),
      });
      return Promise.resolve(stored);
    },
  };
  return { core, writes, stored: () => stored };
}

const informer = (configMap: V1ConfigMap | undefined, synced = true) => ({
  get: () => configMap,
  hasSynced: () => synced,
});

describe('QuarantineStore.add', () => {
  it('creates the ConfigMap with the first key', async () => {
    const api = fakeCore(undefined);
    const store = new QuarantineStore({ core: api.core, namespace: 'sr', informer: informer(undefined) });
    await expect(store.add(TRAINER, RECORD)).resolves.toBe('added');
    expect(api.stored()?.data).toEqual({ 'ml-dev.trainer': formatQuarantineRecord(RECORD) });
    expect(api.stored()?.metadata?.name).toBe('strongroom-quarantines');
  });

  it('adds a key beside the others, keeping them, and survives conflicts by reading again', async () => {
    const other = formatQuarantineRecord({ ...RECORD, alertId: '' });
    const api = fakeCore(
      {
        metadata: { name: 'strongroom-quarantines', namespace: 'sr', resourceVersion: '1' },
        data: { 'ml-prod.x': other },
      },
      2,
    );
    const store = new QuarantineStore({ core: api.core, namespace: 'sr', informer: informer(undefined) });
    await expect(store.add(TRAINER, RECORD)).resolves.toBe('added');
    expect(api.writes).toEqual(['replace', 'replace', 'replace']);
    expect(api.stored()?.data).toEqual({
      'ml-prod.x': other,
      'ml-dev.trainer': formatQuarantineRecord(RECORD),
    });
  });

  it('never changes a key that is there already', async () => {
    const manual = formatQuarantineRecord({ ...RECORD, alertId: '', reason: 'by hand' });
    const api = fakeCore({
      metadata: { name: 'strongroom-quarantines', resourceVersion: '1' },
      data: { 'ml-dev.trainer': manual },
    });
    const store = new QuarantineStore({ core: api.core, namespace: 'sr', informer: informer(undefined) });
    await expect(store.add(TRAINER, RECORD)).resolves.toBe('present');
    expect(api.writes).toEqual([]);
    expect(api.stored()?.data?.['ml-dev.trainer']).toBe(manual);
  });

  it('gives up with a typed error when conflicts persist, or the API server refuses', async () => {
    const busy = fakeCore(
      { metadata: { name: 'strongroom-quarantines', resourceVersion: '1' }, data: {} },
      99,
    );
    const store = new QuarantineStore({
      core: busy.core,
      namespace: 'sr',
      informer: informer(undefined),
      maxAttempts: 3,
    });
    await expect(store.add(TRAINER, RECORD)).rejects.toThrow(
      new QuarantineWriteError('writing sr/strongroom-quarantines: still conflicting after 3 attempts'),
    );
    const refused = {
      ...busy.core,
      replaceNamespacedConfigMap: () => Promise.reject(apiError(422)),
    };
    const strict = new QuarantineStore({ core: refused, namespace: 'sr', informer: informer(undefined) });
    const error = await strict.add(TRAINER, RECORD).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QuarantineWriteError);
    expect((error as Error).cause).toMatchObject({ code: 422 });
  });
});

describe('QuarantineStore.lookup', () => {
  const cm = (data: Record<string, string>, resourceVersion = '5'): V1ConfigMap => ({
    metadata: { name: 'strongroom-quarantines', namespace: 'sr', resourceVersion },
    data,
  });

  it('answers from the cache: quarantined, free, and unknown before it synced (callers fail closed)', () => {
    const core = fakeCore(undefined).core;
    const store = new QuarantineStore({
      core,
      namespace: 'sr',
      informer: informer(cm({ 'ml-dev.trainer': formatQuarantineRecord(RECORD) })),
    });
    expect(store.lookup(TRAINER)).toMatchObject({ state: 'quarantined', quarantine: { record: RECORD } });
    expect(store.lookup({ namespace: 'ml-dev', serviceAccount: 'other' })).toEqual({ state: 'free' });
    expect(
      new QuarantineStore({ core, namespace: 'sr', informer: informer(undefined, false) }).lookup(TRAINER),
    ).toEqual({
      state: 'unknown',
    });
    expect(
      new QuarantineStore({ core, namespace: 'sr', informer: informer(undefined) }).lookup(TRAINER),
    ).toEqual({
      state: 'free',
    });
  });

  it('quarantines on an unreadable value (fail closed)', () => {
    const store = new QuarantineStore({
      core: fakeCore(undefined).core,
      namespace: 'sr',
      informer: informer(cm({ 'ml-dev.trainer': 'oops' })),
    });
    expect(store.lookup(TRAINER)).toMatchObject({
      state: 'quarantined',
      quarantine: { problem: 'the value is not JSON' },
    });
  });
});

describe('QuarantineStore.lookup on a stale cache', () => {
  const cm = (data: Record<string, string>, resourceVersion: string): V1ConfigMap => ({
    metadata: { name: 'strongroom-quarantines', namespace: 'sr', resourceVersion },
    data,
  });

  /** An informer whose cache, health and events the test drives. */
  function drivenInformer(initial: V1ConfigMap | undefined) {
    let cached = initial;
    let healthy = true;
    const handlers: ((event: InformerEvent<V1ConfigMap>) => void)[] = [];
    return {
      informer: {
        get: () => cached,
        hasSynced: () => true,
        healthy: () => healthy,
        onEvent: (handler: (event: InformerEvent<V1ConfigMap>) => void) => {
          handlers.push(handler);
        },
      },
      setHealthy: (h: boolean) => {
        healthy = h;
      },
      deliver: (object: V1ConfigMap) => {
        const type = cached === undefined ? 'added' : 'modified';
        cached = object;
        for (const h of handlers) h({ type, key: 'sr/strongroom-quarantines', object });
      },
    };
  }

  it('answers unknown while the watch is not healthy, even with the identity free in the last list', () => {
    const driven = drivenInformer(cm({}, '5'));
    const store = new QuarantineStore({
      core: fakeCore(undefined).core,
      namespace: 'sr',
      informer: driven.informer,
    });
    expect(store.lookup(TRAINER)).toEqual({ state: 'free' });
    driven.setHealthy(false);
    expect(store.lookup(TRAINER)).toEqual({ state: 'unknown' });
    driven.setHealthy(true);
    expect(store.lookup(TRAINER)).toEqual({ state: 'free' });
  });

  it('counts a key it added before its watch delivers it, then follows the cache (a lift is not undone)', async () => {
    const api = fakeCore(cm({}, '1'));
    const driven = drivenInformer(cm({}, '1'));
    const store = new QuarantineStore({ core: api.core, namespace: 'sr', informer: driven.informer });
    await expect(store.add(TRAINER, RECORD)).resolves.toBe('added');
    // The watch has not delivered the write: this replica refuses all the same.
    expect(store.lookup(TRAINER)).toMatchObject({ state: 'quarantined', quarantine: { record: RECORD } });
    expect(store.lookup({ namespace: 'ml-dev', serviceAccount: 'other' })).toEqual({ state: 'free' });
    const written = api.stored();
    if (written === undefined) throw new Error('nothing written');
    driven.deliver(written);
    expect(store.lookup(TRAINER)).toMatchObject({ state: 'quarantined' });
    // The security team lifts it: the cache says free and the local copy is gone.
    driven.deliver(cm({}, '9'));
    expect(store.lookup(TRAINER)).toEqual({ state: 'free' });
  });

  it('forgets a local key once the cache moved past the write, even if the event skipped it', async () => {
    const api = fakeCore(cm({}, '1'));
    const driven = drivenInformer(cm({}, '1'));
    const store = new QuarantineStore({ core: api.core, namespace: 'sr', informer: driven.informer });
    await store.add(TRAINER, RECORD);
    // A relist after the write and a lift: the key is not there and the version is past the write's.
    driven.deliver(cm({}, '50'));
    expect(store.lookup(TRAINER)).toEqual({ state: 'free' });
  });

  it('forgets a local key the cache never shows after localTtlMs', async () => {
    let now = 0;
    const api = fakeCore(cm({}, '1'));
    const store = new QuarantineStore({
      core: api.core,
      namespace: 'sr',
      informer: { get: () => cm({}, '1'), hasSynced: () => true },
      localTtlMs: 1000,
      now: () => now,
    });
    await store.add(TRAINER, RECORD);
    now = 1000;
    expect(store.lookup(TRAINER)).toMatchObject({ state: 'quarantined' });
    now = 1001;
    expect(store.lookup(TRAINER)).toEqual({ state: 'free' });
  });

  it('counts a key found present on the server (another replica wrote it) before the cache has it', async () => {
    const api = fakeCore(
      cm({ 'ml-dev.trainer': formatQuarantineRecord({ ...RECORD, alertId: 'other' }) }, '3'),
    );
    const driven = drivenInformer(cm({}, '1'));
    const store = new QuarantineStore({ core: api.core, namespace: 'sr', informer: driven.informer });
    await expect(store.add(TRAINER, RECORD)).resolves.toBe('present');
    expect(store.lookup(TRAINER)).toMatchObject({
      state: 'quarantined',
      quarantine: { record: { alertId: 'other' } },
    });
  });
});
