/**
 * What the rules see of an audit entry: its time in ms, its reference, and — for the two kinds of events the rules
 * look at (key-release and broker-access) — the decision, the verified identity and the artifact. Every other
 * event (grants, heartbeats, and the detector's own anomaly-alert / identity-* events) is not an observation.
 */
import type { AuditEvent, EvidenceRef, IdentityRef } from '../audit/event.ts';

/** An audit entry as the log's observers see it (`AppendedEntry`) or as read back from the file. */
export interface DetectorEntry {
  readonly origin: string;
  readonly seq: number;
  /** Milliseconds since the epoch, or the entry's RFC 3339 time as written in the log. */
  readonly time: number | string;
  readonly event: AuditEvent;
}

export interface ArtifactFacts {
  readonly namespace: string;
  readonly name: string;
  /** Absent when the event does not say (a broker-access event may name only some fields). */
  readonly version: string | undefined;
  readonly classification: string | undefined;
  readonly environment: string | undefined;
}

export interface Observation {
  readonly ref: EvidenceRef;
  /** The entry's time, never earlier than any entry observed before it (see AnomalyDetector). */
  readonly time: number;
  /** `release`: a key-release event; `broker`: a broker-access event (attest, publish-version, ...). */
  readonly source: 'release' | 'broker';
  readonly decision: 'allow' | 'deny';
  readonly reason: string;
  /** The verified caller; null when the event only has what an unverified caller claimed. */
  readonly identity: IdentityRef | null;
  /** The workload's environment, when the event records it. */
  readonly workloadEnvironment: string | undefined;
  readonly artifact: ArtifactFacts | null;
}

/** `namespace/serviceAccount`: the key of an identity in the rules' maps. */
export function identityKey(identity: IdentityRef): string {
  return `${identity.namespace}/${identity.serviceAccount}`;
}

export function artifactKey(artifact: { readonly namespace: string; readonly name: string }): string {
  return `${artifact.namespace}/${artifact.name}`;
}

/** Milliseconds of an entry's time; undefined when it is not a time. */
export function entryTime(time: number | string): number | undefined {
  const ms = typeof time === 'number' ? time : Date.parse(time);
  return Number.isSafeInteger(ms) && ms >= 0 ? ms : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The observation of an event at `time`, or undefined for an event the rules do not look at. */
export function observationOf(ref: EvidenceRef, time: number, event: AuditEvent): Observation | undefined {
  if (event.type === 'key-release') {
    return {
      ref,
      time,
      source: 'release',
      decision: event.decision,
      reason: event.reason,
      identity: { namespace: event.workload.namespace, serviceAccount: event.workload.serviceAccount },
      workloadEnvironment: text(event.workload.environment),
      artifact: {
        namespace: event.artifact.namespace,
        name: event.artifact.name,
        version: event.artifact.version,
        classification: event.artifact.classification,
        environment: event.artifact.environment,
      },
    };
  }
  if (event.type === 'broker-access') {
    const ns = text(event.workload.namespace);
    const sa = text(event.workload.serviceAccount);
    const artifactNs = text(event.artifact?.namespace);
    const artifactName = text(event.artifact?.name);
    return {
      ref,
      time,
      source: 'broker',
      decision: event.decision,
      reason: event.reason,
      // What an unverified caller claims must never make an identity a suspect (it could frame another one).
      identity:
        event.verified && ns !== undefined && sa !== undefined ? { namespace: ns, serviceAccount: sa } : null,
      workloadEnvironment: event.verified ? text(event.workload.environment) : undefined,
      artifact:
        artifactNs !== undefined && artifactName !== undefined
          ? {
              namespace: artifactNs,
              name: artifactName,
              version: text(event.artifact?.version),
              classification: text(event.artifact?.classification),
              environment: text(event.artifact?.environment),
            }
          : null,
    };
  }
  return undefined;
}
