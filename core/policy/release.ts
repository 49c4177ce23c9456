/**
 * The ReleaseKey authorization decision: workload identity × requested artifact version × grants × namespace
 * environments × classification × time → allow (with the grant and the key lease) or deny (with a reason). Pure;
 * the broker gathers the facts, audits the decision and only then unwraps a key. Rules and precedence are in
 * docs/policy.md ("Key release").
 */
import { ENVIRONMENT_LABEL, type AccessGrant, type ModelArtifact } from '../api/index.ts';
import type { ClassificationTable } from './classification.ts';
import { formatDuration } from '../api/validation.ts';
import { policyDuration } from './errors.ts';
import { evaluateGrant, type NamespaceFacts } from './grant.ts';
import { selectorMismatch } from './labels.ts';

/** Who is asking, as attested by the broker (certificate URI SAN plus the pod's live labels). */
export interface WorkloadIdentity {
  namespace: string;
  serviceAccount: string;
  podUid: string;
  podLabels: Readonly<Record<string, string>>;
}

/** What is asked for. */
export interface ReleaseRequest {
  artifactNamespace: string;
  artifactName: string;
  /** A version name, or `latest` for the artifact's status.latestVersion. */
  version: string;
}

/** Everything {@link authorizeRelease} looks at. */
export interface ReleaseInput {
  identity: WorkloadIdentity;
  request: ReleaseRequest;
  /** The requested ModelArtifact; undefined if it does not exist. Any other artifact counts as missing. */
  artifact: ModelArtifact | undefined;
  /** The AccessGrants in the artifact's namespace (others never authorize). */
  grants: readonly AccessGrant[];
  /**
   * Facts about the identity's namespace, the artifact's namespace and every subject namespace of the grants
   * (a grant with a subject namespace missing here is not Active, as in {@link evaluateGrant}).
   */
  namespaces: ReadonlyMap<string, NamespaceFacts>;
  /** The classification table in force (environments, approvals, the longest key lease). */
  policy: ClassificationTable;
  now: Date;
}

/** Why a release was refused; see docs/policy.md for when each applies and their precedence. */
export type ReleaseDenyReason =
  | 'NamespaceUnknown'
  | 'ArtifactNotFound'
  | 'ArtifactDeleted'
  | 'NoEnvironment'
  | 'RestrictedCannotCrossEnvironments'
  | 'NoLatestVersion'
  | 'VersionNotFound'
  | 'VersionWithdrawn'
  | 'VersionNotSealed'
  | 'NoGrant'
  | 'CrossEnvironmentNotAllowed'
  | 'GrantNotActive'
  | 'InvalidKeyLease';

/** The outcome. A denial names the closest grant when one named the workload and covered the version. */
export type ReleaseDecision =
  | {
      allow: true;
      reason: 'Granted';
      /** The resolved version name (never `latest`). */
      version: string;
      grant: AccessGrant;
      /**
       * now + the grant's keyLeaseDuration (default 1h) capped to the classification's keyLease, never after the
       * grant's expiresAt.
       */
      leaseExpiresAt: Date;
      message: string;
    }
  | { allow: false; reason: ReleaseDenyReason; message: string; grant?: AccessGrant };

/** A grant's keyLeaseDuration when it sets none (the CRD default). */
const DEFAULT_KEY_LEASE = '1h';
/** The CRD's bounds on keyLeaseDuration; outside them the grant is not used (fail closed). */
const MIN_KEY_LEASE_MS = 60_000;
const MAX_KEY_LEASE_MS = 24 * 3600_000;
/** How many non-matching grants a NoGrant message explains. */
const MAX_EXPLAINED = 3;

/**
 * Decides whether the workload may receive the key of the requested version. Fails closed: anything missing,
 * unreadable or inconsistent is a denial with its own reason and a message naming what is missing. Never reads
 * the clock; `now` decides the grant windows and the lease.
 */
export function authorizeRelease(input: ReleaseInput): ReleaseDecision {
  const { identity, request, namespaces } = input;
  const who = `${identity.namespace}/${identity.serviceAccount} (pod ${identity.podUid})`;
  const artifactRef = `ModelArtifact ${request.artifactNamespace}/${request.artifactName}`;
  const deny = (reason: ReleaseDenyReason, message: string, grant?: AccessGrant): ReleaseDecision =>
    grant === undefined ? { allow: false, reason, message } : { allow: false, reason, message, grant };

  // 1. The identity's namespace.
  const identityFacts = namespaces.get(identity.namespace);
  if (identityFacts?.exists !== true) {
    return deny('NamespaceUnknown', `Namespace ${identity.namespace} of ${who} is not known to exist.`);
  }

  // 2. The artifact.
  const { artifact } = input;
  if (
    artifact === undefined ||
    artifact.metadata.name !== request.artifactName ||
    artifact.metadata.namespace !== request.artifactNamespace
  ) {
    return deny('ArtifactNotFound', `${artifactRef}, requested by ${who}, does not exist.`);
  }
  if (artifact.metadata.deletionTimestamp !== undefined) {
    return deny('ArtifactDeleted', `${artifactRef} is being deleted; its keys are no longer released.`);
  }

  // 3. Segmentation.
  const artifactFacts = namespaces.get(request.artifactNamespace);
  if (artifactFacts?.exists !== true) {
    return deny(
      'NamespaceUnknown',
      `Namespace ${request.artifactNamespace} of ${artifactRef} is not known to exist, so its environment is unknown.`,
    );
  }
  const fromEnv = identityFacts.environment ?? '';
  const toEnv = artifactFacts.environment ?? '';
  const classification = artifact.spec.classification;
  if (classification !== 'public' && (fromEnv === '' || toEnv === '')) {
    const names = [
      ...new Set([fromEnv === '' ? identity.namespace : '', toEnv === '' ? request.artifactNamespace : '']),
    ].filter((n) => n !== '');
    const unlabelledCount = names.length;
    const unlabelled = `${unlabelledCount === 1 ? 'namespace' : 'namespaces'} ${names.join(' and ')}`;
    return deny(
      'NoEnvironment',
      `${artifactRef} is ${classification}, and ${unlabelled} ${unlabelledCount === 1 ? 'has' : 'have'} no ${ENVIRONMENT_LABEL} label; a namespace without an environment gets nothing above public.`,
    );
  }
  const crossing = fromEnv !== toEnv;
  const envs = `${identity.namespace} (${describeEnvironment(fromEnv)}) and ${request.artifactNamespace} (${describeEnvironment(toEnv)})`;
  if (crossing && !input.policy.classifications[classification].crossEnvironment) {
    return deny(
      classification === 'restricted' ? 'RestrictedCannotCrossEnvironments' : 'CrossEnvironmentNotAllowed',
      `${artifactRef} is ${classification}, and the classification table never releases ${classification} artifacts across environments (${classification}.crossEnvironment is false), but ${envs} differ.`,
    );
  }

  // 4. The version.
  const versionRef = `version ${request.version} of ${artifactRef}`;
  let version = request.version;
  if (version === 'latest') {
    const latest = artifact.status?.latestVersion;
    if (latest === undefined || latest === '') {
      return deny(
        'NoLatestVersion',
        `${artifactRef} has no latest version (status.latestVersion is not set).`,
      );
    }
    version = latest;
  }
  const resolvedRef =
    version === request.version ? versionRef : `version ${version} (latest) of ${artifactRef}`;
  if (!(artifact.spec.versions ?? []).some((v) => v.name === version)) {
    return deny('VersionNotFound', `${resolvedRef} is not published (not in spec.versions).`);
  }
  if ((artifact.spec.withdrawnVersions ?? []).includes(version)) {
    return deny('VersionWithdrawn', `${resolvedRef} has been withdrawn and is never released again.`);
  }
  if (!(artifact.status?.keys ?? []).some((k) => k.version === version && k.state === 'Sealed')) {
    return deny(
      'VersionNotSealed',
      `${resolvedRef} has no sealed key yet (status.keys has no Sealed entry).`,
    );
  }

  // 5. The grants.
  const judged = [...input.grants]
    .sort((a, b) => compareNames(grantName(a), grantName(b)))
    .map((grant) => judgeGrant(grant, { ...input, artifact, version, crossing }));
  let best: Judgement | undefined;
  for (const j of judged) {
    if (j.stage !== 'Granted') continue;
    // Sorted by name, so a strictly later lease is needed to replace an earlier name.
    if (best?.leaseExpiresAt === undefined || j.leaseExpiresAt.getTime() > best.leaseExpiresAt.getTime()) {
      best = j;
    }
  }
  if (best?.leaseExpiresAt !== undefined) {
    const grantRef = `AccessGrant ${grantName(best.grant)}`;
    return {
      allow: true,
      reason: 'Granted',
      version,
      grant: best.grant,
      leaseExpiresAt: best.leaseExpiresAt,
      message: `${grantRef} releases ${resolvedRef} to ${who}; the key lease ends at ${best.leaseExpiresAt.toISOString()}.`,
    };
  }

  const closest = Math.max(-1, ...judged.map((j) => STAGES.indexOf(j.stage)));
  const candidates = judged.filter((j) => STAGES.indexOf(j.stage) === closest);
  const explained = candidates
    .slice(0, MAX_EXPLAINED)
    .map((j) => `grant ${j.grant.metadata.name ?? ''}: ${j.why}`);
  if (candidates.length > MAX_EXPLAINED) {
    explained.push(`${String(candidates.length - MAX_EXPLAINED)} more`);
  }
  const why = explained.join('; ');
  const stage = STAGES[closest];
  const [first] = candidates;
  if (stage === undefined || first === undefined) {
    return deny(
      'NoGrant',
      `No AccessGrant in ${request.artifactNamespace} releases ${resolvedRef} to ${who}.`,
    );
  }
  switch (stage) {
    case 'CrossEnvironmentNotAllowed':
      return deny(
        'CrossEnvironmentNotAllowed',
        `${envs} are different environments, and no grant for ${who} and ${resolvedRef} is marked cross-environment (${why}).`,
        first.grant,
      );
    case 'GrantNotActive':
      return deny(
        'GrantNotActive',
        `No grant for ${who} and ${resolvedRef} is Active (${why}).`,
        first.grant,
      );
    case 'InvalidKeyLease':
      return deny(
        'InvalidKeyLease',
        `The only grants for ${who} and ${resolvedRef} have an unusable keyLeaseDuration (${why}).`,
        first.grant,
      );
    default:
      return deny('NoGrant', `No AccessGrant releases ${resolvedRef} to ${who} (${why}).`);
  }
}

/**
 * How far a grant got, in check order: the index in STAGES is the closeness used to pick which grants a denial
 * explains. Everything before CrossEnvironmentNotAllowed means the grant does not name this workload and version.
 */
const STAGES = [
  'OtherArtifact',
  'NotRead',
  'OtherSubject',
  'SelectorMismatch',
  'VersionNotCovered',
  'CrossEnvironmentNotAllowed',
  'GrantNotActive',
  'InvalidKeyLease',
  'Granted',
] as const;
type Stage = (typeof STAGES)[number];

type Judgement =
  | { stage: Exclude<Stage, 'Granted'>; grant: AccessGrant; why: string; leaseExpiresAt?: undefined }
  | { stage: 'Granted'; grant: AccessGrant; why: string; leaseExpiresAt: Date };

interface Context extends ReleaseInput {
  artifact: ModelArtifact;
  /** The resolved version name. */
  version: string;
  crossing: boolean;
}

function judgeGrant(grant: AccessGrant, ctx: Context): Judgement {
  const { identity, request, artifact, version } = ctx;
  const no = (stage: Exclude<Stage, 'Granted'>, why: string): Judgement => ({ stage, grant, why });

  if (grant.metadata.namespace !== request.artifactNamespace) {
    return no(
      'OtherArtifact',
      `is in namespace ${grant.metadata.namespace ?? '(none)'}, not ${request.artifactNamespace}`,
    );
  }
  if (grant.spec.artifactRef.name !== request.artifactName) {
    return no(
      'OtherArtifact',
      `is for ModelArtifact ${grant.spec.artifactRef.name}, not ${request.artifactName}`,
    );
  }
  if (grant.spec.mode !== 'read') {
    return no('NotRead', `is a ${grant.spec.mode} grant, not a read grant`);
  }

  // A subject with the identity's namespace and service account whose podSelector matches the pod.
  const sameWorkload = grant.spec.subjects.filter(
    (s) => s.namespace === identity.namespace && s.serviceAccount === identity.serviceAccount,
  );
  if (sameWorkload.length === 0) {
    const sameNamespace = grant.spec.subjects.filter((s) => s.namespace === identity.namespace);
    return no(
      'OtherSubject',
      sameNamespace.length > 0
        ? `service account is ${sameNamespace.map((s) => s.serviceAccount).join(' or ')}, not ${identity.serviceAccount}`
        : `namespace is ${[...new Set(grant.spec.subjects.map((s) => s.namespace))].join(' or ')}, not ${identity.namespace}`,
    );
  }
  // The CRD makes (namespace, serviceAccount) unique, but several entries are tolerated: any may match.
  const mismatches = sameWorkload.map((s) => selectorMismatch(identity.podLabels, s.podSelector));
  if (!mismatches.includes(undefined)) {
    return no('SelectorMismatch', `pod labels do not match its podSelector (${mismatches.join('; ')})`);
  }

  // The version, per spec.versions.
  const { match } = grant.spec.versions;
  const names = grant.spec.versions.names ?? [];
  if (match === 'named' && !names.includes(version)) {
    return no('VersionNotCovered', `covers versions ${names.join(', ')}, not ${version}`);
  }
  if (match === 'latest' && artifact.status?.latestVersion !== version) {
    return no(
      'VersionNotCovered',
      `covers only the latest version (${artifact.status?.latestVersion ?? 'none'}), not ${version}`,
    );
  }

  // Segmentation: crossing environments needs a grant marked for it (evaluateGrant checks approvals).
  if (ctx.crossing && grant.spec.crossEnvironment !== true) {
    return no('CrossEnvironmentNotAllowed', 'does not set spec.crossEnvironment');
  }

  // Active now, re-evaluated; and not recorded otherwise by the operator (for example a revocation).
  const decision = evaluateGrant({
    grant,
    artifact,
    namespaces: ctx.namespaces,
    policy: ctx.policy,
    now: ctx.now,
  });
  if (decision.phase !== 'Active') {
    return no('GrantNotActive', `is ${decision.phase} (${decision.reason}): ${decision.message}`);
  }
  const recorded = grant.status?.phase;
  if (recorded !== undefined && recorded !== 'Active') {
    return no(
      'GrantNotActive',
      `its status records phase ${recorded}${grant.status?.reason === undefined ? '' : ` (${grant.status.reason})`}`,
    );
  }
  if (!decision.resolvedVersions.includes(version)) {
    // Unreachable after the checks above (the version is published, sealed, not withdrawn and covered); kept so
    // that the release can never be wider than what the grant's status says it resolves to.
    return no('VersionNotCovered', `does not resolve to version ${version}`);
  }

  // The key lease.
  const leaseText = grant.spec.keyLeaseDuration ?? DEFAULT_KEY_LEASE;
  let leaseMs: number;
  try {
    leaseMs = policyDuration(leaseText);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return no('InvalidKeyLease', `keyLeaseDuration ${JSON.stringify(leaseText)} is unusable: ${detail}`);
  }
  if (leaseMs < MIN_KEY_LEASE_MS || leaseMs > MAX_KEY_LEASE_MS) {
    return no('InvalidKeyLease', `keyLeaseDuration ${JSON.stringify(leaseText)} is not between 1m and 24h`);
  }
  // The classification caps the lease; evaluateGrant said Active, so expiresAt parses and lies after now.
  const classification = artifact.spec.classification;
  const cap = ctx.policy.classifications[classification].keyLeaseMs;
  const expiresAt = new Date(grant.spec.expiresAt).getTime();
  const leaseExpiresAt = new Date(Math.min(ctx.now.getTime() + Math.min(leaseMs, cap), expiresAt));
  const capped =
    leaseMs > cap ? ` with a key lease capped to ${formatDuration(cap)} (${classification}.keyLease)` : '';
  return { stage: 'Granted', grant, why: `grants it${capped}`, leaseExpiresAt };
}

function grantName(grant: AccessGrant): string {
  return `${grant.metadata.namespace ?? ''}/${grant.metadata.name ?? ''}`;
}

/** Code-unit order, independent of the locale. */
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function describeEnvironment(environment: string): string {
  return environment === '' ? 'no environment label' : `environment "${environment}"`;
}
