/**
 * Builders of audit entries for the detector's unit tests.
 */
import type { AuditEvent, BrokerAccessEvent, KeyReleaseEvent } from '../../audit/event.ts';
import type { DetectorEntry } from '../observation.ts';

export const ORIGIN = 'strongroom.audit/op-0';
/** Monday 2026-12-07 10:00:00 UTC. */
export const T0 = Date.UTC(2026, 11, 7, 10, 0, 0);

export interface ReleaseSpec {
  readonly sa?: string;
  readonly ns?: string;
  readonly artifact?: string;
  readonly artifactNs?: string;
  readonly version?: string;
  readonly classification?: string;
  readonly environment?: string;
  readonly workloadEnvironment?: string;
  readonly decision?: 'allow' | 'deny';
  readonly reason?: string;
}

export function releaseEvent(spec: ReleaseSpec = {}): KeyReleaseEvent {
  const decision = spec.decision ?? 'allow';
  return {
    type: 'key-release',
    decision,
    reason: spec.reason ?? (decision === 'allow' ? 'granted' : 'no-grant'),
    workload: {
      namespace: spec.ns ?? 'ml-prod',
      serviceAccount: spec.sa ?? 'trainer',
      podUid: 'uid-1',
      certificateSerial: '0a',
      ...(spec.workloadEnvironment === undefined ? {} : { environment: spec.workloadEnvironment }),
    },
    artifact: {
      namespace: spec.artifactNs ?? 'ml-prod',
      name: spec.artifact ?? 'resnet',
      version: spec.version ?? 'v1',
      classification: spec.classification ?? 'internal',
      environment: spec.environment ?? 'prod',
    },
    key: decision === 'allow' ? { id: 'kek', version: '1' } : { id: 'none', version: 'none' },
    grant:
      decision === 'allow'
        ? { namespace: 'ml-prod', name: 'g', uid: 'u', resourceVersion: '1', approvals: [] }
        : null,
    secrets: {},
  };
}

export function brokerDenial(spec: {
  verified: boolean;
  sa?: string;
  ns?: string;
  artifact?: { namespace: string; name: string } | null;
  reason?: string;
}): BrokerAccessEvent {
  return {
    type: 'broker-access',
    operation: 'attest',
    decision: 'deny',
    reason: spec.reason ?? 'pod-not-found',
    peer: '10.0.0.1:4000',
    verified: spec.verified,
    workload: { namespace: spec.ns ?? 'ml-prod', serviceAccount: spec.sa ?? 'trainer' },
    artifact: spec.artifact ?? null,
    detail: '-',
    secrets: {},
  };
}

/** A log in the making: entries with consecutive seqs at the times given. */
export class LogBuilder {
  readonly entries: DetectorEntry[] = [];
  #seq = 0;
  add(time: number, event: AuditEvent): DetectorEntry {
    const entry = { origin: ORIGIN, seq: this.#seq++, time, event };
    this.entries.push(entry);
    return entry;
  }
}
