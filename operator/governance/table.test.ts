import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import winston from 'winston';
import Transport from 'winston-transport';
import { DEFAULT_CLASSIFICATION_TABLE } from '../../core/policy/classification.ts';
import { PolicyError } from '../../core/policy/errors.ts';
import { GovernanceConfigError, GovernanceTable, tableHash } from './table.ts';

const D = 86_400_000;

class Capture extends Transport {
  readonly lines: { level: string; message: string; [k: string]: unknown }[] = [];
  override log(info: { level: string; message: string }, next: () => void): void {
    this.lines.push(info);
    next();
  }
}

function configMap(data: Record<string, string>): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { namespace: 'ops', name: 'gov', uid: 'u1' },
    data,
  };
}

function fakeCore(answer: V1ConfigMap | number): CoreV1Api {
  return {
    readNamespacedConfigMap: ({ namespace, name }: { namespace: string; name: string }) => {
      expect({ namespace, name }).toEqual({ namespace: 'ops', name: 'gov' });
      return typeof answer === 'number'
        ? Promise.reject(Object.assign(new Error(`HTTP ${String(answer)}`), { code: answer }))
        : Promise.resolve(answer);
    },
  } as unknown as CoreV1Api;
}

function setup(overrides: Record<string, number> = {}) {
  const capture = new Capture();
  const registry = new Registry();
  const warnings: { reason: string; message: string }[] = [];
  const table = new GovernanceTable({
    namespace: 'ops',
    name: 'gov',
    logger: winston.createLogger({ transports: [capture] }),
    registry,
    rotationOverrides: overrides,
    warn: (_cm, reason, message) => warnings.push({ reason, message }),
  });
  return { table, capture, registry, warnings };
}

async function info(registry: Registry): Promise<string> {
  return (await registry.getSingleMetricAsString('strongroom_governance_config_info')).trim();
}

describe('GovernanceTable at start-up', () => {
  it('uses the built-in table when the ConfigMap does not exist, and says so once at info', async () => {
    const { table, capture, registry } = setup();
    await table.load(fakeCore(404));
    expect(table.current).toEqual(DEFAULT_CLASSIFICATION_TABLE);
    expect(table.source).toBe('default');
    const logged = capture.lines.filter((l) => l.message.includes('not found'));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 'info', configMap: 'ops/gov' });
    expect(await info(registry)).toContain(
      `strongroom_governance_config_info{hash="${tableHash(DEFAULT_CLASSIFICATION_TABLE)}",source="default"} 1`,
    );
  });

  it('loads a valid ConfigMap', async () => {
    const { table, registry } = setup();
    await table.load(fakeCore(configMap({ 'confidential.approvals': '2' })));
    expect(table.current.classifications.confidential.approvals).toBe(2);
    expect(table.source).toBe('configmap');
    expect(await info(registry)).toContain(`hash="${table.hash}",source="configmap"} 1`);
    expect(table.hash).not.toBe(tableHash(DEFAULT_CLASSIFICATION_TABLE));
  });

  it('refuses an invalid ConfigMap with every problem, naming it', async () => {
    const { table } = setup();
    const error = await table
      .load(fakeCore(configMap({ 'public.approvals': 'x', 'public.aprovals': '1' })))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(GovernanceConfigError);
    expect(error).toBeInstanceOf(PolicyError);
    const message = (error as Error).message;
    expect(message).toMatch(/^ConfigMap ops\/gov: the classification table has 2 problems:\n/u);
    expect(message).toContain('public.approvals="x" is invalid');
    expect(message).toContain('public.aprovals="1": unknown key');
  });

  it('passes on API errors other than 404', async () => {
    const { table } = setup();
    await expect(table.load(fakeCore(403))).rejects.toThrow('HTTP 403');
  });

  it('applies --kek-rotation overrides on top of whatever is loaded', async () => {
    const { table } = setup({ confidential: 8000 });
    expect(table.current.classifications.confidential.kekRotationMs).toBe(8000);
    await table.load(fakeCore(configMap({ 'confidential.kekRotation': '10d', 'public.kekRotation': '10d' })));
    expect(table.current.classifications.confidential.kekRotationMs).toBe(8000);
    expect(table.current.classifications.public.kekRotationMs).toBe(10 * D);
  });
});

describe('GovernanceTable on a change', () => {
  it('replaces the table on a valid change and reports it, and ignores an unchanged one', async () => {
    const { table, registry } = setup();
    await table.load(fakeCore(404));
    expect(table.update(configMap({ 'internal.keyLease': '2h' }))).toBe(true);
    expect(table.current.classifications.internal.keyLeaseMs).toBe(2 * 3_600_000);
    expect(table.update(configMap({ 'internal.keyLease': '2h' }))).toBe(false);
    const text = await info(registry);
    expect(text).toContain(`hash="${table.hash}",source="configmap"} 1`);
    expect(text).not.toContain('source="default"');
  });

  it('keeps the previous table on an invalid change: error log and a Warning event', async () => {
    const { table, capture, warnings } = setup();
    await table.load(fakeCore(configMap({ 'internal.keyLease': '2h' })));
    const before = table.current;
    expect(table.update(configMap({ 'internal.keyLease': '2 hours', 'restricted.approvals': '-1' }))).toBe(
      false,
    );
    expect(table.current).toBe(before);
    const error = capture.lines.find((l) => l.level === 'error');
    expect(error?.message).toContain('previous classification table stays in force');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.reason).toBe('InvalidGovernanceConfig');
    expect(warnings[0]?.message).toContain('internal.keyLease="2 hours" is invalid');
    expect(warnings[0]?.message).toContain('restricted.approvals="-1" is invalid');
    expect(warnings[0]?.message).toContain(
      `The previous classification table (${table.hash}) stays in force.`,
    );
  });

  it('goes back to the built-in table when the ConfigMap is deleted', async () => {
    const { table } = setup();
    await table.load(fakeCore(configMap({ 'internal.keyLease': '2h' })));
    expect(table.update(undefined)).toBe(true);
    expect(table.current).toEqual(DEFAULT_CLASSIFICATION_TABLE);
    expect(table.source).toBe('default');
  });

  it('offers live views of rotation periods and KEK scopes that follow every change', async () => {
    const { table } = setup();
    await table.load(fakeCore(404));
    const { rotation, kekScopes } = table;
    expect({ ...kekScopes }).toEqual({
      public: 'shared',
      internal: 'shared',
      confidential: 'artifact',
      restricted: 'artifact',
    });
    expect(rotation.restricted).toBe(30 * D);
    table.update(configMap({ 'confidential.dedicatedKek': 'false', 'restricted.kekRotation': '7d' }));
    expect(kekScopes.confidential).toBe('shared');
    expect(rotation.restricted).toBe(7 * D);
    expect(Object.isFrozen(rotation)).toBe(true);
  });
});
