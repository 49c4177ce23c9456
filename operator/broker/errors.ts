/**
 * The broker's typed refusal: the gRPC status to answer with, a stable reason code for the audit log and metrics,
 * a detailed message for the audit log, the operator's log and the pod's Events (never key material, tokens or
 * CSRs), and what the caller is told: the public message when there is one (authorization refusals: a reason code
 * and a generic sentence that names no grant, service account or namespace), else the message. Also the failure to
 * start the broker server.
 */

/** The gRPC status names the broker answers with. */
export type BrokerStatus =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

/** A refused or failed broker call. */
export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  readonly status: BrokerStatus;
  /** kebab-case reason code recorded in the audit log, e.g. `no-grant`, `pod-deleted`. */
  readonly reason: string;
  /** What the caller is told instead of the message, when set. */
  readonly publicMessage: string | undefined;
  constructor(
    status: BrokerStatus,
    reason: string,
    message: string,
    options?: ErrorOptions & { publicMessage?: string },
  ) {
    super(message, options);
    this.status = status;
    this.reason = reason;
    this.publicMessage = options?.publicMessage;
  }

  /** The status message sent to the caller. */
  get callerMessage(): string {
    return this.publicMessage ?? this.message;
  }
}

/** Failure to start the broker server (its listeners cannot bind, or it was stopped before it listened). */
export class BrokerServerError extends Error {
  override readonly name = 'BrokerServerError';
}

/** `NoGrant` → `no-grant`. */
export function reasonCode(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

/**
 * What the caller of a refused ReleaseKey or PublishVersion is told, per policy reason: the reason and a sentence
 * that names no grant, service account or namespace. The policy's detailed message (which may name the closest
 * grant) goes to the audit log, the operator's log and, for ReleaseKey, the pod's `KeyReleaseDenied` Event.
 */
const CALLER_SENTENCES: Readonly<Record<string, string>> = {
  NamespaceUnknown: "the workload's namespace is not known to the broker",
  NoEnvironment: 'the environments of the namespaces involved cannot be established',
  ArtifactNotFound: 'the artifact does not exist',
  ArtifactDeleted: 'the artifact is being deleted',
  RestrictedCannotCrossEnvironments:
    'the artifact is restricted and is never released to another environment',
  NoLatestVersion: 'the artifact has no latest version yet',
  VersionNotFound: 'the version does not exist',
  VersionWithdrawn: 'the version is withdrawn',
  VersionNotSealed: "the version's key is not sealed yet; retry later",
  VersionExists: 'this version is already published; published versions are immutable',
  NoGrant: 'no AccessGrant allows this workload to read this version',
  NoPublishGrant: 'no AccessGrant allows this workload to publish this version',
  CrossEnvironmentNotAllowed: 'no AccessGrant allows this workload this access from another environment',
  GrantNotActive: 'no active AccessGrant allows this workload this access',
  InvalidKeyLease: 'the key lease of the AccessGrant that would allow this is unusable',
};

/** `<Reason>: <generic sentence>; details are in <where>`, e.g. for NoGrant. */
export function callerDenial(reason: string, where = "the pod's events"): string {
  return `${reason}: ${CALLER_SENTENCES[reason] ?? 'the request is refused'}; details are in ${where}`;
}

/** The trailing metadata key that marks a refusal as "nothing was written, retry on the leader". */
export const RETRY_METADATA_KEY = 'strongroom-retry';
/** Its value for a PublishVersion sent to a follower. */
export const NOT_LEADER = 'not-leader';

/** A PublishVersion sent to a replica that does not lead: UNAVAILABLE, nothing was written, retry (elsewhere). */
export function notLeaderError(leader: string | undefined): BrokerError {
  const who = leader === undefined ? 'no leader is known yet' : `the leader is ${leader}`;
  return new BrokerError(
    'UNAVAILABLE',
    NOT_LEADER,
    `this replica is not the leader (${who}); PublishVersion is served by the leader only; nothing was written; retry`,
  );
}
