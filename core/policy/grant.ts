/**
 * The AccessGrant phase decision: grant × artifact × namespaces' environments × time → a phase with a reason.
 * Pure; the controller gathers the facts and writes the status. The rules and their precedence are in
 * docs/policy.md.
 */
import type {
  AccessGrant,
  AccessGrantStatus,
  AccessGrantStatusCondition,
  Classification,
  ModelArtifact,
} from '../api/index.ts';
import { ENVIRONMENT_LABEL } from '../api/index.ts';
import type { ClassificationPolicy, ClassificationTable } from './classification.ts';
import { setCondition, type ConditionStatus } from './conditions.ts';
import { formatDuration } from '../api/validation.ts';
import { describeQuarantine, quarantineOf, type QuarantineSet } from './quarantine.ts';

/** The lifecycle phase of an AccessGrant (status.phase). */
export type GrantPhase = 'Pending' | 'Active' | 'Expired' | 'Revoked' | 'Denied';

/** Annotation on an AccessGrant that revokes it for good; its value is the administrator's free-text reason. */
export const REVOKED_ANNOTATION = 'strongroom.dev/revoked';
/**
 * Annotation by which a security team quarantines a grant: it stops releasing keys at once (phase Denied, reason
 * Quarantined, revocation pushed to its holders) until the annotation is removed. Unlike a revocation it is
 * reversible, for an investigation.
 */
export const QUARANTINE_ANNOTATION = 'strongroom.dev/quarantined';

/** What the controller knows about one namespace. */
export interface NamespaceFacts {
  exists: boolean;
  /** Value of the label strongroom.dev/environment; undefined when the label is absent. */
  environment: string | undefined;
}

/** Everything {@link evaluateGrant} looks at. */
export interface GrantInput {
  grant: AccessGrant;
  /** The ModelArtifact named by spec.artifactRef in the grant's namespace; undefined if it does not exist. */
  artifact: ModelArtifact | undefined;
  /** The grant's own namespace and every subject namespace; an absent entry counts as a missing namespace. */
  namespaces: ReadonlyMap<string, NamespaceFacts>;
  /** The classification table in force (approvals, environments, the longest window). */
  policy: ClassificationTable;
  now: Date;
  /**
   * The quarantined identities (ConfigMap strongroom-quarantines, core/policy/quarantine.ts): a grant naming one as a
   * subject is Denied/Quarantined. Absent: none.
   */
  quarantines?: QuarantineSet;
}

/** The outcome for one grant. */
export interface GrantDecision {
  phase: GrantPhase;
  /** CamelCase. */
  reason: string;
  /** A sentence a platform engineer understands, naming the objects. Never depends on `now`. */
  message: string;
  resolvedVersions: string[];
  subjectSummary: string;
  /** "ns/sa" of every subject whose namespace is in another environment than the grant's namespace. */
  crossEnvironmentSubjects: string[];
  /**
   * The next instant the decision can change by time alone: notBefore, the approval deadline (creation +
   * pendingApprovalTimeout) or expiresAt, whichever is next.
   */
  nextEvaluationAt: Date | undefined;
  /** The "Approved" condition, judged on its own even when an earlier rule decided the phase. */
  approved: { status: ConditionStatus; reason: string; message: string };
  /** The artifact's classification; undefined when the artifact does not exist. */
  classification: Classification | undefined;
  /**
   * The approvers whose approvals count, in spec order: all of them once approved, those counted so far while
   * awaiting more; empty when no approval is needed, or after a denial, a timeout or a refused crossing.
   */
  approvedBy: string[];
}

const SUMMARY_MAX = 256;

/** Decides the phase of an AccessGrant; see docs/policy.md for the rules in precedence order. */
export function evaluateGrant(input: GrantInput): GrantDecision {
  const { grant, namespaces, now } = input;
  const namespace = grant.metadata.namespace ?? '';
  const grantRef = `AccessGrant ${namespace}/${grant.metadata.name ?? ''}`;
  const artifactRef = `ModelArtifact ${namespace}/${grant.spec.artifactRef.name}`;
  const artifact = matchingArtifact(input.artifact, grant);
  const classification = artifact?.spec.classification;
  const rules = classification === undefined ? undefined : input.policy.classifications[classification];
  const env = environments(grant, namespaces);
  const created = grant.metadata.creationTimestamp ? new Date(grant.metadata.creationTimestamp) : undefined;
  const createdMs = created === undefined || Number.isNaN(created.getTime()) ? undefined : created.getTime();
  const deadline =
    createdMs === undefined ? undefined : new Date(createdMs + input.policy.pendingApprovalTimeoutMs);
  // The approval deadline counts only when it comes before expiresAt: whichever ends the grant first names it.
  const expiresMs = new Date(grant.spec.expiresAt).getTime();
  const deadlineFirst = deadline !== undefined && deadline.getTime() < expiresMs;
  const timedOut =
    (grant.status?.phase === 'Expired' && grant.status.reason === 'ApprovalTimedOut') ||
    (deadlineFirst && now.getTime() >= deadline.getTime());
  const judged = judgeApproval(grant, artifact, rules, env, grantRef, artifactRef, timedOut, deadline);
  // Approvals stamped after the deadline stop counting at the deadline (unless the grant was recorded approved).
  const lateAtDeadline =
    deadline !== undefined &&
    !recordedApproved(grant) &&
    (grant.spec.approvals ?? []).some((a) => approvedAfter(a.approvedAt, deadline));
  const approved = judged.condition;
  const base = {
    subjectSummary: summarizeSubjects(grant),
    crossEnvironmentSubjects: env.crossing.map((c) => c.subject),
    approved,
    classification,
    approvedBy: judged.approvedBy,
  };
  const decide = (
    phase: GrantPhase,
    reason: string,
    message: string,
    nextEvaluationAt?: Date,
    resolvedVersions: string[] = [],
  ): GrantDecision => ({
    phase,
    reason,
    message,
    resolvedVersions,
    // The Approved condition changes at the approval deadline whatever decided the phase.
    nextEvaluationAt:
      (approved.reason === 'AwaitingApproval' || lateAtDeadline) &&
      deadlineFirst &&
      deadline.getTime() > now.getTime() &&
      (nextEvaluationAt === undefined || deadline.getTime() < nextEvaluationAt.getTime())
        ? deadline
        : nextEvaluationAt,
    ...base,
  });

  // 1. Administrator revocation, sticky once recorded.
  const annotation = grant.metadata.annotations?.[REVOKED_ANNOTATION];
  if (annotation !== undefined) {
    return decide(
      'Revoked',
      'RevokedByAdministrator',
      `${grantRef} was revoked by an administrator${because(annotation)}. Revocation is permanent; create a new grant to restore access.`,
    );
  }
  if (grant.status?.phase === 'Revoked' && grant.status.reason === 'RevokedByAdministrator') {
    return decide(
      'Revoked',
      'RevokedByAdministrator',
      grant.status.message ??
        `${grantRef} was revoked by an administrator. Revocation is permanent; create a new grant to restore access.`,
    );
  }

  // 1a. A denial by an approver is final; so is an approval timeout once recorded.
  if (grant.spec.denial !== undefined) {
    return decide('Denied', 'DeniedByApprover', denialMessage(grant, grantRef));
  }
  if (grant.status?.phase === 'Expired' && grant.status.reason === 'ApprovalTimedOut') {
    return decide(
      'Expired',
      'ApprovalTimedOut',
      grant.status.message ??
        `${grantRef} did not get the approvals it needs in time. This is final; create a new grant.`,
    );
  }

  // 1b. Quarantine, reversible.
  const quarantine = grant.metadata.annotations?.[QUARANTINE_ANNOTATION];
  if (quarantine !== undefined) {
    return decide(
      'Denied',
      'Quarantined',
      `${grantRef} is quarantined by a security team${because(quarantine)}. Remove the annotation ${QUARANTINE_ANNOTATION} to restore it.`,
    );
  }
  // 1c. A subject identity in quarantine (automatic anomaly detection, or the security team), reversible.
  const quarantines = input.quarantines;
  const held =
    quarantines === undefined
      ? []
      : grant.spec.subjects.map((s) => quarantineOf(quarantines, s)).filter((q) => q !== undefined);
  const [first] = held;
  if (first !== undefined) {
    return decide(
      'Denied',
      'Quarantined',
      `${grantRef} is suspended: its subject ${describeQuarantine(first)}.${held.length > 1 ? ` ${String(held.length - 1)} more of its subjects ${held.length === 2 ? 'is' : 'are'} quarantined too.` : ''}`,
    );
  }

  // 2. The artifact.
  if (artifact === undefined || rules === undefined || classification === undefined) {
    return decide('Denied', 'ArtifactNotFound', `${artifactRef}, named by ${grantRef}, does not exist.`);
  }
  const boundUid = grant.status?.artifactUid;
  if (boundUid !== undefined && boundUid !== '' && artifact.metadata.uid !== boundUid) {
    return decide(
      'Revoked',
      'ArtifactReplaced',
      `${artifactRef} is not the artifact ${grantRef} was granted for (uid ${boundUid}): it was deleted and created again. Create a new grant for the new artifact.`,
    );
  }
  if (grant.status?.phase === 'Revoked' && grant.status.reason === 'ArtifactReplaced') {
    return decide(
      'Revoked',
      'ArtifactReplaced',
      grant.status.message ?? `${grantRef} was granted for an artifact that no longer exists.`,
    );
  }
  if (artifact.metadata.deletionTimestamp !== undefined) {
    return decide(
      'Revoked',
      'ArtifactDeleted',
      `${artifactRef} is being deleted, so ${grantRef} no longer releases its keys.`,
    );
  }

  // 3. Time.
  const expiresAt = new Date(grant.spec.expiresAt);
  const notBefore = grant.spec.notBefore === undefined ? undefined : new Date(grant.spec.notBefore);
  if (Number.isNaN(expiresAt.getTime()) || (notBefore !== undefined && Number.isNaN(notBefore.getTime()))) {
    return decide(
      'Denied',
      'InvalidTimeWindow',
      `${grantRef} has an unreadable time window (notBefore ${JSON.stringify(grant.spec.notBefore ?? '')}, expiresAt ${JSON.stringify(grant.spec.expiresAt)}).`,
    );
  }
  // 3b. Approvals that did not come in time (before expiresAt).
  if (approved.reason === 'ApprovalTimedOut') {
    return decide('Expired', 'ApprovalTimedOut', approved.message);
  }
  if (now.getTime() >= expiresAt.getTime()) {
    return decide('Expired', 'Expired', `${grantRef} expired at ${grant.spec.expiresAt}.`);
  }
  // The window starts at notBefore, or at creation without it; the classification bounds its length.
  const start =
    notBefore !== undefined
      ? { ms: notBefore.getTime(), text: `notBefore (${grant.spec.notBefore ?? ''})` }
      : createdMs !== undefined
        ? { ms: createdMs, text: `its creation (${new Date(createdMs).toISOString()})` }
        : undefined;
  if (start !== undefined && expiresAt.getTime() - start.ms > rules.maxGrantDurationMs) {
    return decide(
      'Denied',
      'WindowTooLong',
      `${grantRef} would last from ${start.text} to ${grant.spec.expiresAt}: more than ${formatDuration(rules.maxGrantDurationMs)}, the longest a grant for a ${classification} artifact may last (${classification}.maxGrantDuration). Set an earlier expiresAt.`,
      expiresAt,
    );
  }
  const awaiting = approved.reason === 'AwaitingApproval';
  if (notBefore !== undefined && now.getTime() < notBefore.getTime()) {
    return decide(
      'Pending',
      'NotYetValid',
      `${grantRef} becomes valid at ${grant.spec.notBefore ?? ''} (notBefore).`,
      awaiting && deadline !== undefined && deadline.getTime() < notBefore.getTime() ? deadline : notBefore,
    );
  }
  // From here on only expiresAt (and the approval deadline) can change the decision by time alone.
  const until = (phase: GrantPhase, reason: string, message: string, versions: string[] = []) =>
    decide(phase, reason, message, expiresAt, versions);

  // 5. Namespaces.
  if (env.missing.length > 0) {
    const [one] = env.missing;
    const names = env.missing.join(', ');
    return until(
      'Pending',
      'NamespaceNotFound',
      env.missing.length === 1 && one !== undefined
        ? `Namespace ${one}, used by ${grantRef}, does not exist.`
        : `Namespaces ${names}, used by ${grantRef}, do not exist.`,
    );
  }
  // 5b. Namespaces without an environment get nothing above public.
  if (classification !== 'public' && env.unlabelled.length > 0) {
    const list = env.unlabelled.join(', ');
    const one = env.unlabelled.length === 1;
    return until(
      'Denied',
      'NoEnvironment',
      `${one ? 'Namespace' : 'Namespaces'} ${list}, used by ${grantRef}, ${one ? 'has' : 'have'} no ${ENVIRONMENT_LABEL} label, and a namespace without an environment gets nothing above public; ${artifactRef} is ${classification}. A platform administrator must label ${one ? 'it' : 'them'}.`,
    );
  }

  // 6. Environments and approvals.
  if (approved.status === 'False') {
    if (approved.reason === 'AwaitingApproval') {
      return decide(
        'Pending',
        'AwaitingApproval',
        approved.message,
        deadline !== undefined && deadline.getTime() < expiresAt.getTime() ? deadline : expiresAt,
      );
    }
    return until('Denied', approved.reason, approved.message);
  }

  // 7-9. Versions.
  const notes: string[] = [];
  if (grant.spec.crossEnvironment === true && env.crossing.length === 0) {
    notes.push(`spec.crossEnvironment is set although every subject is in the environment of ${namespace}.`);
  }
  if (judged.approvedBy.length > 0) notes.push(approved.message);
  const resolution = resolveVersions(grant, artifact, artifactRef, grantRef);
  if (resolution.phase !== 'Active') return until(resolution.phase, resolution.reason, resolution.message);
  notes.push(...resolution.notes);
  const who = grant.spec.subjects.map(subjectName).join(', ');
  const what =
    resolution.versions.length === 0 ? 'no published versions yet' : resolution.versions.join(', ');
  return until(
    'Active',
    'Granted',
    [
      `${grantRef} grants ${grant.spec.mode} access to ${artifactRef} (${what}) to ${who} until ${grant.spec.expiresAt}.`,
      ...notes,
    ].join(' '),
    resolution.versions,
  );
}

function denialMessage(grant: AccessGrant, grantRef: string): string {
  const denial = grant.spec.denial;
  if (denial === undefined) return '';
  const groups = (denial.groups ?? []).length > 0 ? ` (${(denial.groups ?? []).join(', ')})` : '';
  return `${grantRef} was denied by ${denial.deniedBy}${groups} at ${denial.deniedAt}${because(denial.reason)}. A denial is final; create a new grant.`;
}

/** A person's free-text reason as a message suffix (`: reason`), or nothing when there is none. */
function because(reason: string | undefined): string {
  const text = reason?.trim() ?? '';
  return text === '' ? '' : `: ${text}`;
}

/**
 * The status the controller should write: phase, reason, message, subjectSummary, resolvedVersions, expiresAt
 * (echo of spec), observedGeneration, classification (when the artifact exists), approvedBy, and conditions via setCondition: Ready (True iff Active) and Approved
 * (from decision.approved). Conditions of other types in `previous` are kept.
 */
export function grantStatus(
  previous: AccessGrantStatus | undefined,
  decision: GrantDecision,
  grant: AccessGrant,
  now: Date,
  artifact?: ModelArtifact,
): AccessGrantStatus & { conditions: AccessGrantStatusCondition[] } {
  const generation = grant.metadata.generation;
  const artifactUid = boundArtifactUid(previous, matchingArtifact(artifact, grant));
  const ready = setCondition(
    previous?.conditions,
    {
      type: 'Ready',
      status: decision.phase === 'Active' ? 'True' : 'False',
      reason: decision.reason,
      message: decision.message,
    },
    generation,
    now,
  );
  const conditions = setCondition(ready, { type: 'Approved', ...decision.approved }, generation, now);
  return {
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    phase: decision.phase,
    reason: decision.reason,
    message: decision.message,
    subjectSummary: decision.subjectSummary,
    resolvedVersions: [...decision.resolvedVersions],
    expiresAt: grant.spec.expiresAt,
    ...(artifactUid === undefined ? {} : { artifactUid }),
    ...(decision.classification === undefined ? {} : { classification: decision.classification }),
    approvedBy: [...decision.approvedBy],
    conditions,
  };
}

/** The artifact uid a grant is bound to: the one already recorded, else the artifact's once it exists. */
function boundArtifactUid(
  previous: AccessGrantStatus | undefined,
  artifact: ModelArtifact | undefined,
): string | undefined {
  if (previous?.artifactUid) return previous.artifactUid;
  return artifact?.metadata.uid;
}

/** True when a phase change ends access that existed: previous phase Active and new phase not Active. */
export function endsAccess(previous: GrantPhase | undefined, next: GrantPhase): boolean {
  return previous === 'Active' && next !== 'Active';
}

/** The artifact, unless it is not the one the grant names (then it counts as missing: fail closed). */
function matchingArtifact(
  artifact: ModelArtifact | undefined,
  grant: AccessGrant,
): ModelArtifact | undefined {
  if (artifact === undefined) return undefined;
  const sameName = artifact.metadata.name === grant.spec.artifactRef.name;
  const sameNamespace = artifact.metadata.namespace === grant.metadata.namespace;
  return sameName && sameNamespace ? artifact : undefined;
}

function subjectName(s: { namespace: string; serviceAccount: string }): string {
  return `${s.namespace}/${s.serviceAccount}`;
}

/** "ns/sa" of the first subject plus " (+N)" when there are more, at most 256 characters. */
function summarizeSubjects(grant: AccessGrant): string {
  const [first] = grant.spec.subjects;
  if (first === undefined) return '';
  const more = grant.spec.subjects.length > 1 ? ` (+${String(grant.spec.subjects.length - 1)})` : '';
  const name = subjectName(first);
  const room = SUMMARY_MAX - more.length;
  return (name.length > room ? `${name.slice(0, room - 1)}…` : name) + more;
}

interface Crossing {
  subject: string;
  environment: string;
}

interface Environments {
  /** The grant's environment ("" when unlabelled). */
  home: string;
  missing: string[];
  crossing: Crossing[];
  /** The grant's namespace and subject namespaces that exist but have no (or an empty) environment label. */
  unlabelled: string[];
}

function environments(grant: AccessGrant, namespaces: ReadonlyMap<string, NamespaceFacts>): Environments {
  const missing: string[] = [];
  const facts = (name: string | undefined): NamespaceFacts | undefined => {
    const found = name === undefined ? undefined : namespaces.get(name);
    if (found?.exists !== true) {
      const label = name ?? '(none)';
      if (!missing.includes(label)) missing.push(label);
      return undefined;
    }
    return found;
  };
  const unlabelled: string[] = [];
  const noteLabel = (name: string | undefined, found: NamespaceFacts | undefined): void => {
    if (
      name !== undefined &&
      found !== undefined &&
      (found.environment ?? '') === '' &&
      !unlabelled.includes(name)
    )
      unlabelled.push(name);
  };
  const homeFacts = facts(grant.metadata.namespace);
  noteLabel(grant.metadata.namespace, homeFacts);
  const home = homeFacts?.environment ?? '';
  const crossing: Crossing[] = [];
  for (const subject of grant.spec.subjects) {
    const own = facts(subject.namespace);
    noteLabel(subject.namespace, own);
    if (own === undefined || homeFacts === undefined) continue;
    const environment = own.environment ?? '';
    if (environment !== home) crossing.push({ subject: subjectName(subject), environment });
  }
  return { home, missing, crossing, unlabelled };
}

function describeEnvironment(environment: string): string {
  return environment === '' ? 'no environment label' : `environment "${environment}"`;
}

interface ApprovalJudgement {
  condition: GrantDecision['approved'];
  /** The approvers whose approvals count, in spec order. */
  approvedBy: string[];
}

/**
 * The Approved condition: whether the grant may cross environments (when it does) and has the approvals its
 * classification needs. Reasons: True NotRequired/Approved; False DeniedByApprover, RestrictedCannotCrossEnvironments,
 * CrossEnvironmentNotAllowed, RequesterUnknown, AwaitingApproval, ApprovalTimedOut; Unknown NamespaceNotFound,
 * ArtifactNotFound.
 */
function judgeApproval(
  grant: AccessGrant,
  artifact: ModelArtifact | undefined,
  rules: ClassificationPolicy | undefined,
  env: Environments,
  grantRef: string,
  artifactRef: string,
  timedOut: boolean,
  deadline: Date | undefined,
): ApprovalJudgement {
  const result = (
    status: ConditionStatus,
    reason: string,
    message: string,
    approvedBy: string[] = [],
  ): ApprovalJudgement => ({ condition: { status, reason, message }, approvedBy });
  if (grant.spec.denial !== undefined) {
    return result('False', 'DeniedByApprover', denialMessage(grant, grantRef));
  }
  if (env.missing.length > 0) {
    return result(
      'Unknown',
      'NamespaceNotFound',
      `Cannot tell whether ${grantRef} crosses environments: namespace ${env.missing.join(', ')} does not exist.`,
    );
  }
  const namespace = grant.metadata.namespace ?? '';
  const crosses = env.crossing.length > 0;
  const crossing = `${env.crossing.map((c) => `${c.subject} (${describeEnvironment(c.environment)})`).join(', ')} ${env.crossing.length === 1 ? 'is' : 'are'} not in the environment of ${namespace} (${describeEnvironment(env.home)})`;
  if (artifact === undefined || rules === undefined) {
    return result(
      'Unknown',
      'ArtifactNotFound',
      `${crosses ? `${crossing}; the` : 'The'} approvals needed depend on the classification of ${artifactRef}, which does not exist.`,
    );
  }
  const classification = artifact.spec.classification;
  if (crosses && !rules.crossEnvironment) {
    return result(
      'False',
      classification === 'restricted' ? 'RestrictedCannotCrossEnvironments' : 'CrossEnvironmentNotAllowed',
      `${artifactRef} is ${classification}, and the classification table never releases ${classification} artifacts across environments (${classification}.crossEnvironment is false), but ${crossing}.`,
    );
  }
  if (crosses && grant.spec.crossEnvironment !== true) {
    return result(
      'False',
      'CrossEnvironmentNotAllowed',
      `${crossing}; ${grantRef} must set spec.crossEnvironment and carry the approvals it needs.`,
    );
  }
  const required = crosses ? rules.crossEnvironmentApprovals : rules.approvals;
  const kind = crosses
    ? `a cross-environment grant for a ${classification} artifact`
    : `a grant for a ${classification} artifact`;
  const setting = crosses ? `${classification}.crossEnvironmentApprovals` : `${classification}.approvals`;
  if (required <= 0) {
    return result(
      'True',
      'NotRequired',
      `Every subject of ${grantRef} is in the environment of ${namespace} (${describeEnvironment(env.home)}) and ${kind} needs no approval.`,
    );
  }
  const groups = rules.approverGroups.join(', ');
  const requester = grant.spec.requester;
  if (requester === undefined || requester === '') {
    return result(
      'False',
      'RequesterUnknown',
      `${grantRef} has no spec.requester (it was created without Strongroom's admission policy), so no approval can count, and ${kind} needs ${plural(required, 'approval')}. Create the grant again.`,
    );
  }
  // Past the deadline, a grant never recorded as approved counts only approvals given before it: one that arrives
  // late, while the operator was down or behind, does not revive it (approvedAt is the approver's own time stamp).
  const late = (approvedAt: string): boolean =>
    timedOut && deadline !== undefined && !recordedApproved(grant) && approvedAfter(approvedAt, deadline);
  const counted: string[] = [];
  const ignored: string[] = [];
  for (const approval of grant.spec.approvals ?? []) {
    const who = approval.approver;
    if (counted.includes(who)) continue;
    if (who === requester) ignored.push(`${who} is the requester`);
    else if (!(approval.groups ?? []).some((g) => rules.approverGroups.includes(g)))
      ignored.push(`${who} is not approving as a member of ${groups}`);
    else if (late(approval.approvedAt)) ignored.push(`${who} approved after the pending-approval deadline`);
    else counted.push(who);
  }
  const notCounted = ignored.length > 0 ? ` Not counted: ${ignored.join('; ')}.` : '';
  if (counted.length < required) {
    const have = counted.length === 0 ? 'none' : `${String(counted.length)} (${counted.join(', ')})`;
    const more = required - counted.length;
    if (timedOut) {
      return result(
        'False',
        'ApprovalTimedOut',
        `${grantRef} did not get the ${plural(required, 'approval')} ${kind} needs (${setting}) within the pending-approval timeout (pendingApprovalTimeout): it has ${have}. This is final; create a new grant.${notCounted}`,
        [],
      );
    }
    return result(
      'False',
      'AwaitingApproval',
      `${grantRef} is waiting for ${String(more)} more approval${more === 1 ? '' : 's'} from members of ${groups}: ${kind} needs ${String(required)} (${setting}), by approvers other than the requester ${requester}; it has ${have}.${notCounted}`,
      // Counted so far: status.approvedBy shows them, and each is audited as it arrives, not when the last one does.
      counted,
    );
  }
  return result(
    'True',
    'Approved',
    `${crosses ? 'Cross-environment access' : 'Access'} approved by ${counted.join(', ')} (${String(required)} required for ${classification}).${notCounted}`,
    counted,
  );
}

/** True when the grant's status records it as approved (the Approved condition True, reason Approved). */
function recordedApproved(grant: AccessGrant): boolean {
  return (grant.status?.conditions ?? []).some(
    (c) => c.type === 'Approved' && c.status === 'True' && c.reason === 'Approved',
  );
}

/** True when `approvedAt` is after `deadline` or unreadable (fail closed). */
function approvedAfter(approvedAt: string, deadline: Date): boolean {
  const at = new Date(approvedAt).getTime();
  return Number.isNaN(at) || at > deadline.getTime();
}

function plural(n: number, word: string): string {
  return `${String(n)} ${word}${n === 1 ? '' : 's'}`;
}

interface Resolution {
  phase: GrantPhase;
  reason: string;
  message: string;
  versions: string[];
  notes: string[];
}

function resolveVersions(
  grant: AccessGrant,
  artifact: ModelArtifact,
  artifactRef: string,
  grantRef: string,
): Resolution {
  const published = (artifact.spec.versions ?? []).map((v) => v.name);
  const publishedSet = new Set(published);
  const withdrawn = new Set(artifact.spec.withdrawnVersions ?? []);
  const sealed = new Set(
    (artifact.status?.keys ?? []).filter((k) => k.state === 'Sealed').map((k) => k.version),
  );
  const { match } = grant.spec.versions;
  const names = grant.spec.versions.names ?? [];
  const result = (
    phase: GrantPhase,
    reason: string,
    message: string,
    versions: string[] = [],
    notes: string[] = [],
  ) => ({
    phase,
    reason,
    message,
    versions,
    notes,
  });

  if (grant.spec.mode === 'publish') {
    if (match === 'latest') {
      return result(
        'Denied',
        'LatestNotAllowedForPublish',
        `${grantRef} is a publish grant and must name its versions or allow all; "latest" is not allowed.`,
      );
    }
    const wanted = match === 'named' ? new Set(names) : publishedSet;
    return result(
      'Active',
      'Granted',
      '',
      published.filter((v) => wanted.has(v)),
    );
  }

  let candidates: string[];
  if (match === 'named') {
    if (names.length > 0 && names.every((n) => withdrawn.has(n))) {
      return result(
        'Revoked',
        'VersionsWithdrawn',
        `Every version ${grantRef} names (${names.join(', ')}) has been withdrawn from ${artifactRef}.`,
      );
    }
    const wanted = new Set(names);
    candidates = published.filter((v) => wanted.has(v));
  } else if (match === 'latest') {
    const latest = artifact.status?.latestVersion;
    candidates = latest !== undefined && publishedSet.has(latest) ? [latest] : [];
  } else {
    candidates = published;
  }
  const versions = candidates.filter((v) => !withdrawn.has(v) && sealed.has(v));

  const problems: string[] = [];
  const list = (vs: string[], what: string) => {
    if (vs.length > 0) problems.push(`${vs.join(', ')} ${vs.length === 1 ? 'is' : 'are'} ${what}`);
  };
  if (match === 'named')
    list(
      names.filter((n) => !publishedSet.has(n)),
      'not published',
    );
  list(
    candidates.filter((v) => withdrawn.has(v)),
    'withdrawn',
  );
  list(
    candidates.filter((v) => !withdrawn.has(v) && !sealed.has(v)),
    'not sealed yet',
  );
  const detail = problems.length > 0 ? ` (${problems.join('; ')})` : '';

  if (versions.length === 0) {
    const selection =
      match === 'named'
        ? `named versions ${names.join(', ')}`
        : match === 'latest'
          ? `the latest version, status.latestVersion ${JSON.stringify(artifact.status?.latestVersion ?? '')}`
          : 'all versions';
    return result(
      'Pending',
      'NoSealedVersion',
      `${grantRef} covers no releasable (published, sealed, not withdrawn) version of ${artifactRef} yet: ${selection}${detail}.`,
    );
  }
  return result('Active', 'Granted', '', versions, problems.length > 0 ? [`Not covered${detail}.`] : []);
}
