/**
 * The domain gauges `strongroom_artifacts{namespace,classification,ready}` and `strongroom_grants{namespace,phase}`,
 * counted from the caches every 5 s on every replica (a follower's numbers come from its own warm caches).
 */
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import { Periodic } from '../manager/runnable.ts';
import type { OperatorMetrics } from './metrics.ts';

const PERIOD_MS = 5_000;

/** Sets both gauges from the objects given (every series not counted now is removed). */
export function updateDomainGauges(
  metrics: Pick<OperatorMetrics, 'artifacts' | 'grants'>,
  artifacts: readonly ModelArtifact[],
  grants: readonly AccessGrant[],
): void {
  const a = new Map<string, { namespace: string; classification: string; ready: string; n: number }>();
  for (const item of artifacts) {
    const ready = item.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown';
    const labels = {
      namespace: item.metadata.namespace ?? '',
      classification: item.spec.classification,
      ready,
    };
    const k = JSON.stringify(labels);
    a.set(k, { ...labels, n: (a.get(k)?.n ?? 0) + 1 });
  }
  metrics.artifacts.reset();
  for (const { n, ...labels } of a.values()) metrics.artifacts.set(labels, n);
  const g = new Map<string, { namespace: string; phase: string; n: number }>();
  for (const item of grants) {
    const labels = { namespace: item.metadata.namespace ?? '', phase: item.status?.phase ?? 'Unknown' };
    const k = JSON.stringify(labels);
    g.set(k, { ...labels, n: (g.get(k)?.n ?? 0) + 1 });
  }
  metrics.grants.reset();
  for (const { n, ...labels } of g.values()) metrics.grants.set(labels, n);
}

/** The runnable that refreshes the gauges from the two caches. */
export function domainGauges(
  metrics: Pick<OperatorMetrics, 'artifacts' | 'grants'>,
  caches: {
    readonly artifacts: { list(): readonly ModelArtifact[] };
    readonly grants: { list(): readonly AccessGrant[] };
  },
): Periodic {
  return new Periodic('domain-gauges', PERIOD_MS, () => {
    updateDomainGauges(metrics, caches.artifacts.list(), caches.grants.list());
  });
}
