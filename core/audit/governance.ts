/**
 * Governance events from state transitions (docs/audit.md#governance-events). Pure: the controllers compare what an
 * object's status recorded before with what they are about to write, and append these events before the write, so a
 * crash in between repeats them on the next reconcile (at-least-once) instead of losing them.
 */
import type { AccessGrant, AccessGrantStatus, ModelArtifact, ModelArtifactVersion } from '../api/index.ts';
import { QUARANTINE_ANNOTATION, REVOKED_ANNOTATION } from '../policy/grant.ts';
import type { EnvironmentEvent, GrantEvent, KeyRef, VersionEvent } from './event.ts';

/** The actor of the operator's own decisions. */
export const OPERATOR_ACTOR = 'strongroom-operator';
/** The actor of a change whose author Kubernetes does not tell the operator (an annotation someone set). */
export const UNKNOWN_ACTOR = 'unknown';
/** The policy reason of a denial recorded by an approver (spec.denial). */
export const DENIED_BY_APPROVER = 'DeniedByApprover';
const QUARANTINED = 'Quarantined';

/** Free text bounded to what an event may carry; undefined when empty. */
export function boundedDetail(text: string | undefined): string | undefined {
  const trimmed = text?.trim() ?? '';
  if (trimmed === '') return undefined;
  return trimmed.length > 1024 ? `${trimmed.slice(0, 1021)}...` : trimmed;
}

function quarantined(status: AccessGrantStatus | undefined): boolean {
  return status?.phase === 'Denied' && status.reason === QUARANTINED;
}

/**
 * The governance events between the status a grant recorded (`previous`, undefined before its first evaluation) and
 * the status about to be written (`next`), in the order they happened:
 * - no previous phase → grant-created (actor spec.requester);
 * - each name new in status.approvedBy → grant-approved (actor the approver, with its groups and comment);
 * - leaving Denied/Quarantined → grant-lifted;
 * - entering Active, Expired, Revoked → grant-activated, grant-expired (reason Expired or ApprovalTimedOut),
 *   grant-revoked;
 * - entering Denied/Quarantined → grant-quarantined; entering Denied, or Denied for a new reason → grant-denied
 *   (actor spec.denial.deniedBy for DeniedByApprover, else strongroom-operator).
 * Nothing when neither the phase, the reason of a denial, nor approvedBy changed. Pending is not a decision.
 */
export function grantTransitions(
  grant: AccessGrant,
  previous: AccessGrantStatus | undefined,
  next: AccessGrantStatus,
): GrantEvent[] {
  const ref = {
    namespace: grant.metadata.namespace ?? '',
    name: grant.metadata.name ?? '',
    uid: grant.metadata.uid ?? '',
    resourceVersion: grant.metadata.resourceVersion ?? '',
  };
  const before = previous?.phase;
  const after = next.phase;
  const reason = next.reason ?? after ?? 'Unknown';
  const phases = {
    ...(before === undefined ? {} : { previousPhase: before }),
    ...(after === undefined ? {} : { phase: after }),
  };
  const event = (
    type: GrantEvent['type'],
    actor: string,
    why: string,
    extra: { groups?: readonly string[] | undefined; detail?: string | undefined } = {},
  ): GrantEvent => {
    const detail = boundedDetail(extra.detail);
    return {
      type,
      grant: ref,
      actor: actor === '' ? UNKNOWN_ACTOR : actor,
      reason: why,
      ...(extra.groups && extra.groups.length > 0 ? { groups: [...extra.groups] } : {}),
      ...phases,
      ...(detail === undefined ? {} : { detail }),
    };
  };
  const events: GrantEvent[] = [];
  if (before === undefined) events.push(event('grant-created', grant.spec.requester ?? '', 'Created'));

  const approved = new Set(previous?.approvedBy ?? []);
  for (const approver of next.approvedBy ?? []) {
    if (approved.has(approver)) continue;
    const approval = grant.spec.approvals?.find((a) => a.approver === approver);
    events.push(
      event('grant-approved', approver, 'Approved', { groups: approval?.groups, detail: approval?.comment }),
    );
  }

  const annotations = grant.metadata.annotations ?? {};
  if (quarantined(previous) && !quarantined(next)) {
    events.push(event('grant-lifted', UNKNOWN_ACTOR, 'QuarantineLifted'));
  }
  if (after === undefined || (after === before && (after !== 'Denied' || next.reason === previous?.reason)))
    return events;
  switch (after) {
    case 'Active':
      events.push(event('grant-activated', OPERATOR_ACTOR, reason));
      break;
    case 'Expired':
      events.push(event('grant-expired', OPERATOR_ACTOR, reason));
      break;
    case 'Revoked':
      events.push(
        reason === 'RevokedByAdministrator'
          ? event('grant-revoked', UNKNOWN_ACTOR, reason, { detail: annotations[REVOKED_ANNOTATION] })
          : event('grant-revoked', OPERATOR_ACTOR, reason),
      );
      break;
    case 'Denied':
      if (reason === QUARANTINED) {
        events.push(
          event('grant-quarantined', UNKNOWN_ACTOR, reason, { detail: annotations[QUARANTINE_ANNOTATION] }),
        );
      } else if (reason === DENIED_BY_APPROVER && grant.spec.denial) {
        const denial = grant.spec.denial;
        events.push(
          event('grant-denied', denial.deniedBy, reason, { groups: denial.groups, detail: denial.reason }),
        );
      } else {
        events.push(event('grant-denied', OPERATOR_ACTOR, reason));
      }
      break;
    case 'Pending':
      break;
  }
  return events;
}

/**
 * The events for a version sealed for the first time: version-published (actor its publisher: the operator sees a
 * version first when it seals it, whether it came from `kubectl`/`strongroom publish` or the broker's
 * PublishVersion) and version-sealed (actor strongroom-operator, with the KEK it is now wrapped under).
 */
export function versionEvents(
  artifact: ModelArtifact,
  version: ModelArtifactVersion,
  key: KeyRef,
): VersionEvent[] {
  const base = {
    artifact: {
      namespace: artifact.metadata.namespace ?? '',
      name: artifact.metadata.name ?? '',
      uid: artifact.metadata.uid ?? '',
    },
    version: version.name,
    digest: version.digest,
    publisher: version.publisher,
    publishedAt: version.publishedAt,
  };
  return [
    {
      type: 'version-published',
      ...base,
      actor: version.publisher,
      reason: version.publisher.startsWith('spiffe://') ? 'published-via-broker' : 'published-directly',
    },
    { type: 'version-sealed', ...base, actor: OPERATOR_ACTOR, reason: 'sealed', key: { ...key } },
  ];
}

/**
 * The environment-label changes between what was last audited (`recorded`: namespace → label value) and the
 * namespaces now (`current`: namespace → label value or undefined for an unlabelled namespace; a namespace absent
 * from the map is deleted). Sorted by namespace.
 */
export function environmentChanges(
  recorded: Readonly<Record<string, string>>,
  current: ReadonlyMap<string, string | undefined>,
): EnvironmentEvent[] {
  const names = [...new Set([...Object.keys(recorded), ...current.keys()])].sort();
  const events: EnvironmentEvent[] = [];
  for (const namespace of names) {
    const was = Object.hasOwn(recorded, namespace) ? recorded[namespace] : undefined;
    const old = was === undefined || was === '' ? null : was;
    const value = current.get(namespace);
    const now = value === undefined || value === '' ? null : value;
    if (old === now) continue;
    const reason =
      now !== null
        ? old === null
          ? 'label-added'
          : 'label-changed'
        : current.has(namespace)
          ? 'label-removed'
          : 'namespace-deleted';
    events.push({ type: 'environment-changed', namespace, old, new: now, reason });
  }
  return events;
}
