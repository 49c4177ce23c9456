/**
 * `ReleaseKey` (docs/broker.md § ReleaseKey). Order of work: the peer's pod from the cache → the pure decision
 * `authorizeRelease` → on allow, the DEK from the short-lived cache or a KMS unwrap → the decision appended to the
 * audit log → the answer. A denial is audited the same way. If the append fails the answer is UNAVAILABLE and the
 * DEK (already unwrapped) is zeroed: no key leaves the broker unaudited.
 */
import type { AccessGrant, ModelArtifact } from '../../core/api/index.ts';
import type { AppendReceipt, KeyReleaseInput } from '../../core/audit/index.ts';
import type { KmsProvider } from '../../core/kms/provider.ts';
import type { ClassificationTable } from '../../core/policy/classification.ts';
import { authorizeRelease, type ReleaseDenyReason } from '../../core/policy/release.ts';
import { describeQuarantine } from '../../core/policy/quarantine.ts';
import type { QuarantineLookup } from '../quarantine/store.ts';
import { decodeWrapped, dekAad } from '../keys/artifact-keys.ts';
import type { DekCache } from './dek-cache.ts';
import { isDns1123Label, isSha256Digest } from '../../core/api/validation.ts';
import { artifactRefProblem, printable } from './request-fields.ts';
import { BrokerError, callerDenial, reasonCode, type BrokerStatus } from './errors.ts';
import { decisionFacts, type DecisionFacts } from './facts.ts';
import { workloadOf, type Peer } from './peer.ts';
import type { BrokerView } from './view.ts';

/** Appends audit events; rejects with AuditUnavailableError (audit-trail.ts) when the event is not durable. */
export interface ReleaseAudit {
  release(input: KeyReleaseInput): Promise<AppendReceipt>;
}

/** Where the leases handed out are recorded (WatchRevocations sends a client the revocations of what it holds). */
export interface LeaseBook {
  record(podUid: string, artifact: { namespace: string; name: string }, until: Date): void;
}

export interface ReleaseDeps {
  readonly view: BrokerView;
  readonly kms: KmsProvider;
  readonly audit: ReleaseAudit;
  readonly cache: DekCache;
  /** The classification table in force, read at each decision (it can change while the broker runs). */
  readonly policy: () => ClassificationTable;
  readonly leases: LeaseBook;
  readonly now: () => Date;
  /** How long to wait for a pod the cache has not seen yet; default 2000 ms. */
  readonly podWaitMs?: number;
  /**
   * Whether the caller's identity is quarantined (operator/quarantine/store.ts): a quarantined identity is refused
   * (`quarantined`), and so is every caller while the quarantines are not known (`quarantines-unknown`). Absent: none.
   */
  readonly quarantine?: (identity: { namespace: string; serviceAccount: string }) => QuarantineLookup;
}

export interface ReleaseRequestInput {
  readonly artifactNamespace: string;
  readonly artifactName: string;
  readonly version: string;
  readonly fileDigest: string;
}

export interface ReleaseResult {
  /** The caller owns this buffer; zero it after sending. */
  readonly dek: Buffer;
  readonly version: string;
  readonly leaseExpiresAt: Date;
  readonly grant: { namespace: string; name: string; uid: string };
  readonly auditIndex: number;
  readonly digest: string;
}

const DENY_STATUS: Record<ReleaseDenyReason, BrokerStatus> = {
  NamespaceUnknown: 'PERMISSION_DENIED',
  NoEnvironment: 'PERMISSION_DENIED',
  RestrictedCannotCrossEnvironments: 'PERMISSION_DENIED',
  NoGrant: 'PERMISSION_DENIED',
  CrossEnvironmentNotAllowed: 'PERMISSION_DENIED',
  GrantNotActive: 'PERMISSION_DENIED',
  ArtifactNotFound: 'NOT_FOUND',
  ArtifactDeleted: 'NOT_FOUND',
  NoLatestVersion: 'NOT_FOUND',
  VersionNotFound: 'NOT_FOUND',
  VersionWithdrawn: 'NOT_FOUND',
  VersionNotSealed: 'FAILED_PRECONDITION',
  InvalidKeyLease: 'FAILED_PRECONDITION',
};

/** Reasons that tell whether an artifact or version exists. */
const EXISTENCE_REASONS: ReadonlySet<ReleaseDenyReason> = new Set<ReleaseDenyReason>([
  'ArtifactNotFound',
  'ArtifactDeleted',
  'NoLatestVersion',
  'VersionNotFound',
  'VersionWithdrawn',
  'VersionNotSealed',
]);

/**
 * True when the peer is in the artifact's namespace, or a grant there for the artifact names the peer's namespace
 * and service account as a subject (the webhook's rule for another namespace's artifacts).
 */
function namedByAGrant(peer: Peer, request: ReleaseRequestInput, grants: readonly AccessGrant[]): boolean {
  if (peer.namespace === request.artifactNamespace) return true;
  return grants.some(
    (g) =>
      g.metadata.namespace === request.artifactNamespace &&
      g.spec.artifactRef.name === request.artifactName &&
      g.spec.subjects.some((s) => s.namespace === peer.namespace && s.serviceAccount === peer.serviceAccount),
  );
}

/** Runs ReleaseKey for a verified peer. Throws BrokerError (already audited) on every refusal. */
export async function releaseKey(
  peer: Peer,
  request: ReleaseRequestInput,
  deps: ReleaseDeps,
): Promise<ReleaseResult> {
  // The workload's environment label is recorded so the detector's cross-environment rule sees allowed crossings
  // too (docs/detection.md); absent when the namespace has none.
  const workloadEnvironment = deps.view.namespaces([peer.namespace]).get(peer.namespace)?.environment;
  const workload = {
    ...workloadOf(peer),
    ...(workloadEnvironment ? { environment: workloadEnvironment } : {}),
  };
  const requested = {
    namespace: printable(request.artifactNamespace),
    name: printable(request.artifactName),
    version: printable(request.version),
  };
  const seen: { artifact: ModelArtifact | undefined } = { artifact: undefined };
  const deny = async (error: BrokerError): Promise<never> => {
    const artifact = seen.artifact;
    const facts = artifact === undefined ? undefined : deps.view.namespaces([requested.namespace]);
    await deps.audit.release({
      decision: 'deny',
      reason: error.reason,
      workload,
      artifact: {
        ...requested,
        classification: artifact?.spec.classification ?? 'unknown',
        environment: facts?.get(requested.namespace)?.environment ?? 'none',
      },
      key: { id: 'none', version: 'none' },
      grant: null,
    });
    throw error;
  };

  // 1. The request's shape.
  const invalid = requestProblem(request);
  if (invalid !== undefined) return deny(new BrokerError('INVALID_ARGUMENT', 'invalid-request', invalid));

  // 2. The caches, the pod behind the certificate, the artifact and its grants.
  let facts: DecisionFacts;
  try {
    facts = await decisionFacts(
      peer,
      deps.view,
      { namespace: request.artifactNamespace, name: request.artifactName },
      deps.podWaitMs,
    );
  } catch (error) {
    if (error instanceof BrokerError) return deny(error);
    throw error;
  }
  const { artifact, grants, namespaces } = facts;
  seen.artifact = artifact;

  // 2b. A quarantined identity gets nothing, whatever its grants say (their status may not show it yet).
  const held = deps.quarantine?.({ namespace: peer.namespace, serviceAccount: peer.serviceAccount });
  if (held?.state === 'unknown')
    return deny(
      new BrokerError(
        'UNAVAILABLE',
        'quarantines-unknown',
        'the quarantined identities are not known yet; retry later',
      ),
    );
  if (held?.state === 'quarantined')
    return deny(
      new BrokerError('PERMISSION_DENIED', 'quarantined', describeQuarantine(held.quarantine), {
        publicMessage:
          "Quarantined: this workload's service account is quarantined by the security team; details are in the pod's events",
      }),
    );

  // 3. The decision.
  const now = deps.now();
  const decision = authorizeRelease({
    identity: {
      namespace: peer.namespace,
      serviceAccount: peer.serviceAccount,
      podUid: peer.podUid,
      podLabels: facts.podLabels,
    },
    request: {
      artifactNamespace: request.artifactNamespace,
      artifactName: request.artifactName,
      version: request.version,
    },
    artifact,
    grants,
    namespaces,
    policy: deps.policy(),
    now,
  });
  const environment = namespaces.get(request.artifactNamespace)?.environment ?? 'none';
  if (!decision.allow) {
    // A workload of another namespace that no grant there names learns nothing of that namespace's artifacts:
    // "does not exist", "withdrawn" and "no grant" all read as no grant (as the webhook answers such a pod author).
    // The audit log and the pod's Event keep the real reason.
    const hidden = EXISTENCE_REASONS.has(decision.reason) && !namedByAGrant(peer, request, grants);
    const answered = hidden ? 'NoGrant' : decision.reason;
    return deny(
      new BrokerError(DENY_STATUS[answered], reasonCode(decision.reason), decision.message, {
        publicMessage: callerDenial(answered),
      }),
    );
  }
  // Fail closed on what the leader has recorded too: every replica serves ReleaseKey from its own caches, and a
  // grant whose status does not say Active yet (the leader has not evaluated it) releases nothing anywhere.
  if (decision.grant.status?.phase !== 'Active') {
    return deny(
      new BrokerError(
        DENY_STATUS.GrantNotActive,
        reasonCode('GrantNotActive'),
        `AccessGrant ${decision.grant.metadata.namespace ?? ''}/${decision.grant.metadata.name ?? ''} has no Active status yet (phase ${decision.grant.status?.phase ?? 'unset'})`,
        { publicMessage: callerDenial('GrantNotActive') },
      ),
    );
  }
  // authorizeRelease allowed, so the artifact exists and the version is published and sealed.
  const found = artifact as ModelArtifact;
  const version = decision.version;
  const key = found.status?.keys?.find((k) => k.version === version && k.state === 'Sealed');
  const spec = found.spec.versions?.find((v) => v.name === version);
  if (key?.wrappedKey === undefined || spec === undefined) {
    return deny(
      new BrokerError(
        'FAILED_PRECONDITION',
        'version-not-sealed',
        `version ${version} has no wrapped key yet`,
      ),
    );
  }

  // 4. The DEK (cached for a few seconds at most).
  const uid = found.metadata.uid ?? '';
  const cacheKey = `${uid}/${version}/${key.wrappedKey}`;
  let dek = deps.cache.get(cacheKey);
  if (dek === undefined) {
    try {
      dek = await deps.kms.unwrap(decodeWrapped(key.wrappedKey), dekAad(found, version));
    } catch (error) {
      return deny(
        new BrokerError(
          'UNAVAILABLE',
          'kms-unwrap-failed',
          `the KMS could not unwrap the key of version ${version}; retry later`,
          { cause: error },
        ),
      );
    }
    deps.cache.set(cacheKey, dek);
  }

  // 5. Audit, then answer. The lease never outlives the client certificate.
  const leaseExpiresAt = new Date(Math.min(decision.leaseExpiresAt.getTime(), peer.notAfter.getTime()));
  const grant = decision.grant;
  let receipt: AppendReceipt;
  try {
    receipt = await deps.audit.release({
      decision: 'allow',
      reason: 'granted',
      workload,
      artifact: {
        namespace: request.artifactNamespace,
        name: request.artifactName,
        version,
        classification: found.spec.classification,
        environment,
      },
      key: { id: key.kekId ?? 'unknown', version: key.kekVersion ?? 'unknown' },
      grant: {
        namespace: grant.metadata.namespace ?? '',
        name: grant.metadata.name ?? '',
        uid: grant.metadata.uid ?? '',
        resourceVersion: grant.metadata.resourceVersion ?? '',
        approvals: (grant.spec.approvals ?? []).map((a) => ({
          uid: grant.metadata.uid ?? '',
          resourceVersion: grant.metadata.resourceVersion ?? '',
          approver: a.approver,
        })),
      },
    });
  } catch (error) {
    // No key leaves the broker unaudited: the caller is told the audit log is unavailable.
    dek.fill(0);
    throw error;
  }
  deps.leases.record(
    peer.podUid,
    { namespace: request.artifactNamespace, name: request.artifactName },
    leaseExpiresAt,
  );
  return {
    dek,
    version,
    leaseExpiresAt,
    grant: {
      namespace: grant.metadata.namespace ?? '',
      name: grant.metadata.name ?? '',
      uid: grant.metadata.uid ?? '',
    },
    auditIndex: receipt.seq,
    digest: spec.digest,
  };
}

/** Why the request is malformed, or undefined. */
function requestProblem(r: ReleaseRequestInput): string | undefined {
  const ref = artifactRefProblem(r.artifactNamespace, r.artifactName);
  if (ref !== undefined) return ref;
  if (r.version !== 'latest' && isDns1123Label(r.version).length > 0)
    return `version ${JSON.stringify(printable(r.version))} is neither a DNS-1123 label nor "latest"`;
  if (r.fileDigest !== '' && isSha256Digest(r.fileDigest).length > 0)
    return 'audit_context.file_digest must be "sha256:" followed by 64 lowercase hex digits';
  return undefined;
}
