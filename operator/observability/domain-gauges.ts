/**
 * The domain gauges `strongroom_artifacts{namespace,classification,ready}`, `strongroom_grants{namespace,phase}` and
 * `strongroom_approvals_pending{classification}`, counted from the caches every 5 s on every replica (a follower's
 * numbers come from its own warm caches, so sum nothing across replicas: take the max).
 */
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import { Periodic } from '../manager/runnable.ts';
import type { OperatorMetrics } from './metrics.ts';

const PERIOD_MS = 5_000;

/** The gauges this module sets; approvalsPending is optional for callers that predate it. */
type DomainGauges = Pick<OperatorMetrics, 'artifacts' | 'grants'> &
  Partial<Pick<OperatorMetrics, 'approvalsPending'>>;

/**
 * Whether a grant waits for approvals: phase Pending with reason AwaitingApproval (core/policy/grant.ts), the state
 * in which it stays until enough approvers sign off or the pending-approval timeout expires it.
 */
export function awaitsApproval(grant: AccessGrant): boolean {
  return grant.status?.phase === 'Pending' && grant.status.reason === 'AwaitingApproval';
}

/** Sets the gauges from the objects given (every series not counted now is removed). */
export function updateDomainGauges(
  metrics: DomainGauges,
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
  const pending = metrics.approvalsPending;
  if (pending === undefined) return;
  // A grant's classification is in its status once evaluated; else its artifact's, else "unknown".
  const classOf = new Map(
    artifacts.map((x) => [`${x.metadata.namespace ?? ''}/${x.metadata.name ?? ''}`, x.spec.classification]),
  );
  const p = new Map<string, number>();
  for (const item of grants.filter(awaitsApproval)) {
    const classification =
      item.status?.classification ??
      classOf.get(`${item.metadata.namespace ?? ''}/${item.spec.artifactRef.name}`) ??
      'unknown';
    p.set(classification, (p.get(classification) ?? 0) + 1);
  }
  pending.reset();
  for (const [classification, n] of p) pending.set({ classification }, n);
}

/** The runnable that refreshes the gauges from the two caches. */
export function domainGauges(
  metrics: DomainGauges,
  caches: {
    readonly artifacts: { list(): readonly ModelArtifact[] };
    readonly grants: { list(): readonly AccessGrant[] };
  },
): Periodic {
  return new Periodic('domain-gauges', PERIOD_MS, () => {
    updateDomainGauges(metrics, caches.artifacts.list(), caches.grants.list());
  });
}
