import type { CoreV1Api, V1ConfigMap, V1Namespace } from '@kubernetes/client-node';
import winston from 'winston';
import { describe, expect, it } from 'vitest';
import { AuditError, type EnvironmentEvent, type GovernanceEvent } from '../../core/audit/index.ts';
import type { Informer } from '../kube/informer.ts';
import { ENVIRONMENTS_CONFIGMAP, EnvironmentAuditor } from './environment-audit.ts';
import { GovernanceAuditTrail, type GovernanceAudit } from './governance-audit.ts';

const event: GovernanceEvent = {
  type: 'environment-changed',
  namespace: 'ml-dev',
  old: null,
  new: 'dev',
  reason: 'label-added',
};

describe('GovernanceAuditTrail', () => {
  it('fails closed while no log is attached (not leading, or not started yet)', async () => {
    const trail = new GovernanceAuditTrail({ waitMs: 10 });
    await expect(trail.record(event)).rejects.toBeInstanceOf(AuditError);
  });

  it('waits for the log to be attached, then appends', async () => {
    const trail = new GovernanceAuditTrail({ waitMs: 5_000 });
    const appended: unknown[] = [];
    const pending = trail.record(event);
    trail.attach({
      append: (e) => {
        appended.push(e);
        return Promise.resolve({ seq: 1, time: '', leafHash: '' });
      },
    });
    await pending;
    expect(appended).toEqual([event]);
  });

  it('rejects waiting and later records once detached, and passes an append failure on', async () => {
    const trail = new GovernanceAuditTrail({ waitMs: 5_000 });
    const pending = trail.record(event);
    trail.detach();
    await expect(pending).rejects.toThrow(/closed/);
    trail.attach({ append: () => Promise.reject(new AuditError('failed', 'disk full')) });
    await expect(trail.record(event)).rejects.toThrow('disk full');
  });
});

/** A fake CoreV1Api holding one ConfigMap, and a fake namespace cache. */
function fixture(labels: Record<string, string | undefined>, stored?: Record<string, string>) {
  let configMap: V1ConfigMap | undefined =
    stored === undefined
      ? undefined
      : { metadata: { name: ENVIRONMENTS_CONFIGMAP, resourceVersion: '1' }, data: stored };
  const writes: string[] = [];
  const core = {
    readNamespacedConfigMap: () =>
      configMap === undefined
        ? Promise.reject(Object.assign(new Error('not found'), { code: 404 }))
        : Promise.resolve(configMap),
    createNamespacedConfigMap: ({ body }: { body: V1ConfigMap }) => {
      writes.push('create');
      configMap = { data: body.data ?? {}, metadata: { name: ENVIRONMENTS_CONFIGMAP, resourceVersion: '1' } };
      return Promise.resolve(configMap);
    },
    replaceNamespacedConfigMap: ({ body }: { body: V1ConfigMap }) => {
      writes.push('replace');
      configMap = body;
      return Promise.resolve(body);
    },
  } as unknown as CoreV1Api;
  const namespaces = {
    hasSynced: () => true,
    list: () =>
      Object.entries(labels).map(([name, env]): V1Namespace => ({
        metadata: { name, labels: env === undefined ? {} : { 'strongroom.dev/environment': env } },
      })),
  } as unknown as Informer<V1Namespace>;
  const recorded: EnvironmentEvent[] = [];
  let failing = false;
  const audit: GovernanceAudit = {
    record: (e) => {
      if (failing) return Promise.reject(new AuditError('closed', 'not open'));
      recorded.push(e as EnvironmentEvent);
      return Promise.resolve();
    },
  };
  const auditor = new EnvironmentAuditor({
    core,
    namespace: 'strongroom-system',
    namespaces,
    audit,
    logger: winston.createLogger({ silent: true }),
  });
  return {
    auditor,
    recorded,
    writes,
    stored: () => configMap?.data,
    fail: (f: boolean) => {
      failing = f;
    },
    labels,
  };
}

describe('EnvironmentAuditor', () => {
  it('audits every labelled namespace on the first run, then records them in the ConfigMap', async () => {
    const f = fixture({ 'ml-dev': 'dev', 'ml-prod': 'prod', plain: undefined });
    await f.auditor.reconcile();
    expect(f.recorded.map((e) => [e.namespace, e.old, e.new])).toEqual([
      ['ml-dev', null, 'dev'],
      ['ml-prod', null, 'prod'],
    ]);
    expect(f.writes).toEqual(['create']);
    expect(f.stored()).toEqual({ 'ml-dev': 'dev', 'ml-prod': 'prod' });
  });

  it('does not audit again what the ConfigMap records (a restart), but audits a change made meanwhile', async () => {
    const f = fixture({ 'ml-dev': 'dev', 'ml-prod': 'staging' }, { 'ml-dev': 'dev', 'ml-prod': 'prod' });
    await f.auditor.reconcile();
    expect(f.recorded).toEqual([
      {
        type: 'environment-changed',
        namespace: 'ml-prod',
        old: 'prod',
        new: 'staging',
        reason: 'label-changed',
      },
    ]);
    await f.auditor.reconcile();
    expect(f.recorded).toHaveLength(1);
    expect(f.writes).toEqual(['replace']);
  });

  it('writes nothing when the audit log refuses (fail closed: the change is audited on the retry)', async () => {
    const f = fixture({ 'ml-dev': 'prod' }, { 'ml-dev': 'dev' });
    f.fail(true);
    await expect(f.auditor.reconcile()).rejects.toBeInstanceOf(AuditError);
    expect(f.writes).toEqual([]);
    expect(f.stored()).toEqual({ 'ml-dev': 'dev' });
    f.fail(false);
    await f.auditor.reconcile();
    expect(f.recorded.map((e) => [e.old, e.new])).toEqual([['dev', 'prod']]);
    expect(f.stored()).toEqual({ 'ml-dev': 'prod' });
  });
});
