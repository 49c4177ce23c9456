import type { V1ConfigMap } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { DetectionEvent } from '../../core/audit/event.ts';
import {
  formatQuarantineRecord,
  parseQuarantines,
  type QuarantineSet,
} from '../../core/policy/quarantine.ts';
import { capturingLogger } from '../../test/harness/logger.ts';
import type { InformerEvent } from '../kube/informer.ts';
import { OperatorMetrics } from '../observability/metrics.ts';
import { QuarantineAuditor } from './auditor.ts';

const auto = formatQuarantineRecord({
  since: '2026-12-07T10:00:00.000Z',
  alertId: 'a-0123456789abcdef',
  rule: 'bulk-access',
  severity: 'high',
  reason: 'bulk',
});
const manual = formatQuarantineRecord({
  since: '2026-12-07T10:00:00.000Z',
  alertId: '',
  rule: '',
  severity: '',
  reason: 'incident 42',
});

function setup(initial: Record<string, string>, failures = 0) {
  let set: QuarantineSet = parseQuarantines(initial);
  const handlers: ((e: InformerEvent<V1ConfigMap>) => void)[] = [];
  const recorded: DetectionEvent[] = [];
  let left = failures;
  const metrics = new OperatorMetrics();
  const { logger, lines } = capturingLogger();
  const auditor = new QuarantineAuditor({
    store: { current: () => set },
    informer: { onEvent: (h) => handlers.push(h) },
    audit: {
      record: (event) => {
        if (left-- > 0) return Promise.reject(new Error('log closed'));
        recorded.push(event);
        return Promise.resolve();
      },
    },
    metrics,
    logger,
    retryMs: 1,
  });
  const change = (data: Record<string, string>) => {
    set = parseQuarantines(data);
    for (const h of handlers) h({ type: 'modified', key: 'sr/strongroom-quarantines', object: { data } });
  };
  return { auditor, recorded, change, metrics, lines };
}

const gauge = async (metrics: OperatorMetrics) =>
  (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith('strongroom_quarantines_active '));

describe('QuarantineAuditor', () => {
  it('audits lifts and manual quarantines while leading, not the operator’s own additions', async () => {
    const s = setup({ 'ml-dev.a': auto, 'ml-dev.b': auto });
    s.auditor.start();
    s.change({ 'ml-dev.b': auto, 'ml-dev.c': auto, 'ml-dev.d': manual });
    await s.auditor.stop();
    expect(s.recorded).toEqual([
      {
        type: 'identity-lifted',
        identity: { namespace: 'ml-dev', serviceAccount: 'a' },
        actor: 'unknown',
        reason: 'QuarantineLifted',
      },
      {
        type: 'identity-quarantined',
        identity: { namespace: 'ml-dev', serviceAccount: 'd' },
        actor: 'unknown',
        reason: 'QuarantinedManually',
        alertId: '',
        severity: 'high',
        detail: 'incident 42',
      },
    ]);
    expect(await gauge(s.metrics)).toBe('strongroom_quarantines_active 3');
  });

  it('keeps the gauge on every replica but audits nothing while not leading', async () => {
    const s = setup({ 'ml-dev.a': auto });
    s.change({});
    expect(s.recorded).toEqual([]);
    expect(await gauge(s.metrics)).toBe('strongroom_quarantines_active 0');
  });

  it('retries a failed append until it lands', async () => {
    const s = setup({ 'ml-dev.a': auto }, 2);
    s.auditor.start();
    s.change({});
    await new Promise((r) => setTimeout(r, 50));
    await s.auditor.stop();
    expect(s.recorded.map((e) => e.type)).toEqual(['identity-lifted']);
    expect(s.lines.filter((l) => l.level === 'error')).toHaveLength(2);
  });
});
