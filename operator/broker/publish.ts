/**
 * `PublishVersion` (docs/broker.md): the encrypting sidecar registers a version whose ciphertext it has written.
 * Order: request shape → the caller's pod → `authorizePublish` (an Active publish grant) → the recipient key
 * fingerprint → the sealed DEK must open with the recipient key (a sealed key that does not open is refused before
 * anything is written; the DEK is zeroed at once) → the decision is audited → the version is added to
 * `spec.versions` with a JSON patch guarded by the artifact's resourceVersion, the caller's SPIFFE ID as publisher.
 * The broker writes nothing else: the ModelArtifact controller sees the new version through its watch, wraps its DEK
 * under the KMS KEK, audits version-published and version-sealed, and records the key in `status.keys`, of which it
 * is the one writer (docs/operator.md#who-writes-what).
 */
import {
  ApiException,
  PatchStrategy,
  setHeaderOptions,
  type CustomObjectsApi,
} from '@kubernetes/client-node';
import {
  GROUP,
  MODEL_ARTIFACT_PLURAL,
  VERSION,
  type ModelArtifact,
  type ModelArtifactVersion,
} from '../../core/api/index.ts';
import type { AppendReceipt, BrokerAccessInput } from '../../core/audit/index.ts';
import { KmsError } from '../../core/kms/provider.ts';
import type { ClassificationTable } from '../../core/policy/classification.ts';
import { authorizePublish, type PublishDenyReason } from '../../core/policy/publish.ts';
import type { PublishVersionRequest__Output } from '../../proto/generated/strongroom/v1/PublishVersionRequest.ts';
import { ArtifactKeyError, type ArtifactKeyring } from '../keys/artifact-keys.ts';
import { isDns1123Label, isSha256Digest } from '../../core/api/validation.ts';
import { artifactRefProblem, printable } from './request-fields.ts';
import { BrokerError, callerDenial, reasonCode, type BrokerStatus } from './errors.ts';
import { decisionFacts, type DecisionFacts } from './facts.ts';
import { workloadOf, type Peer } from './peer.ts';
import type { BrokerView } from './view.ts';

const COMMIT = /^[0-9a-f]{7,64}$/;
const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

/** Appends audit events; rejects with AuditUnavailableError (audit-trail.ts) when the event is not durable. */
export interface PublishAudit {
  access(input: BrokerAccessInput): Promise<AppendReceipt>;
}

export interface PublishDeps {
  readonly view: BrokerView;
  readonly custom: CustomObjectsApi;
  readonly keyring: Pick<ArtifactKeyring, 'recipientKey' | 'openSealed'>;
  readonly audit: PublishAudit;
  /** The classification table in force, read at each decision (it can change while the broker runs). */
  readonly policy: () => ClassificationTable;
  readonly now: () => Date;
  readonly podWaitMs?: number;
}

export interface PublishResult {
  readonly version: ModelArtifactVersion;
  readonly resourceVersion: string;
}

const DENY_STATUS: Record<PublishDenyReason, BrokerStatus> = {
  NamespaceUnknown: 'PERMISSION_DENIED',
  ArtifactNotFound: 'NOT_FOUND',
  ArtifactDeleted: 'NOT_FOUND',
  VersionExists: 'ALREADY_EXISTS',
  NoEnvironment: 'PERMISSION_DENIED',
  RestrictedCannotCrossEnvironments: 'PERMISSION_DENIED',
  NoPublishGrant: 'PERMISSION_DENIED',
  CrossEnvironmentNotAllowed: 'PERMISSION_DENIED',
  GrantNotActive: 'PERMISSION_DENIED',
};

/** Runs PublishVersion for a verified peer. Throws BrokerError (already audited) on every refusal. */
export async function publishVersion(
  peer: Peer,
  request: PublishVersionRequest__Output,
  deps: PublishDeps,
): Promise<PublishResult> {
  const artifactRef = { namespace: request.artifact?.namespace ?? '', name: request.artifact?.name ?? '' };
  const audited = async (decision: 'allow' | 'deny', reason: string, detail: string): Promise<void> => {
    await deps.audit.access({
      operation: 'publish-version',
      decision,
      reason,
      peer: peer.address,
      verified: true,
      workload: workloadOf(peer),
      artifact: {
        namespace: printable(artifactRef.namespace),
        name: printable(artifactRef.name),
        version: printable(request.version),
      },
      detail,
    });
  };
  const deny = async (error: BrokerError): Promise<never> => {
    await audited('deny', error.reason, error.message);
    throw error;
  };

  const problem = requestProblem(request);
  if (problem !== undefined) return deny(new BrokerError('INVALID_ARGUMENT', 'invalid-request', problem));
  let facts: DecisionFacts;
  try {
    facts = await decisionFacts(peer, deps.view, artifactRef, deps.podWaitMs);
  } catch (error) {
    if (error instanceof BrokerError) return deny(error);
    throw error;
  }
  const { artifact, grants, namespaces } = facts;
  const decision = authorizePublish({
    identity: {
      namespace: peer.namespace,
      serviceAccount: peer.serviceAccount,
      podUid: peer.podUid,
      podLabels: facts.podLabels,
    },
    artifactNamespace: artifactRef.namespace,
    artifactName: artifactRef.name,
    version: request.version,
    artifact,
    grants,
    namespaces,
    policy: deps.policy(),
    now: deps.now(),
  });
  if (!decision.allow)
    return deny(
      new BrokerError(DENY_STATUS[decision.reason], reasonCode(decision.reason), decision.message, {
        publicMessage: callerDenial(decision.reason, "the broker's audit log"),
      }),
    );
  const found = artifact as ModelArtifact;

  const fingerprint = found.status?.recipientPublicKey?.fingerprint;
  if (fingerprint === undefined)
    return deny(
      new BrokerError(
        'FAILED_PRECONDITION',
        'no-recipient-key',
        'the artifact has no recipient key yet; retry',
      ),
    );
  if (fingerprint !== request.keyFingerprint)
    return deny(
      new BrokerError(
        'FAILED_PRECONDITION',
        'recipient-key-mismatch',
        `the DEK was sealed to ${request.keyFingerprint}, but the artifact's recipient key is ${fingerprint}`,
      ),
    );
  const sealed = request.sealedKey;
  const version: ModelArtifactVersion = {
    name: request.version,
    digest: request.digest,
    size: Number(request.size),
    encryption: {
      format: 'v1',
      algorithm: 'AES-256-GCM',
      keyFingerprint: request.keyFingerprint,
      sealedKey: {
        suite: 'HPKE-Base-X25519-SHA256-AES256GCM',
        enc: Buffer.from(sealed?.enc ?? []).toString('base64'),
        ciphertext: Buffer.from(sealed?.ciphertext ?? []).toString('base64'),
      },
    },
    publisher: peer.spiffeId,
    publishedAt: deps.now().toISOString(),
    ...(request.lineage === null ? {} : { lineage: lineageOf(request.lineage) }),
  };

  // The sealed DEK must open with the recipient key; the controller wraps it under the KEK once it is published.
  try {
    const recipient = await deps.keyring.recipientKey(found);
    if (recipient === undefined)
      return await deny(
        new BrokerError('FAILED_PRECONDITION', 'no-recipient-key', 'the artifact has no recipient key yet'),
      );
    await deps.keyring.openSealed(found, version, recipient);
  } catch (error) {
    if (error instanceof BrokerError) throw error;
    if (error instanceof ArtifactKeyError)
      return deny(
        new BrokerError('INVALID_ARGUMENT', reasonCode(error.reason), error.message, { cause: error }),
      );
    if (error instanceof KmsError)
      return deny(
        new BrokerError('UNAVAILABLE', 'kms-unavailable', `the KMS failed: ${error.code}`, { cause: error }),
      );
    throw error;
  }

  await audited('allow', 'granted', decision.message);
  const rv = found.metadata.resourceVersion ?? '';
  const patch = [
    { op: 'test', path: '/metadata/resourceVersion', value: rv },
    ...(found.spec.versions === undefined
      ? [{ op: 'add', path: '/spec/versions', value: [version] }]
      : [{ op: 'add', path: '/spec/versions/-', value: version }]),
  ];
  let updated: ModelArtifact;
  try {
    updated = (await deps.custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: MODEL_ARTIFACT_PLURAL,
        namespace: artifactRef.namespace,
        name: artifactRef.name,
        body: patch,
      },
      jsonPatch,
    )) as ModelArtifact;
  } catch (error) {
    if (
      error instanceof ApiException &&
      (error.code === 409 || (error.code === 422 && String(error.body).includes('test')))
    )
      throw new BrokerError('ABORTED', 'conflict', 'the artifact changed concurrently; retry', {
        cause: error,
      });
    if (error instanceof ApiException && error.code === 422)
      throw new BrokerError(
        'INVALID_ARGUMENT',
        'rejected-by-api-server',
        `the API server refused the version: ${apiMessage(error)}`,
        { cause: error },
      );
    if (error instanceof ApiException && error.code === 404)
      throw new BrokerError('NOT_FOUND', 'artifact-not-found', 'the artifact was deleted', { cause: error });
    throw new BrokerError('UNAVAILABLE', 'api-unavailable', 'the API server could not be updated; retry', {
      cause: error,
    });
  }
  return { version, resourceVersion: updated.metadata.resourceVersion ?? '' };
}

function lineageOf(
  lineage: NonNullable<PublishVersionRequest__Output['lineage']>,
): NonNullable<ModelArtifactVersion['lineage']> {
  const parents = lineage.parents.map((p) => ({
    kind: p.kind === 'PARENT_KIND_MODEL_ARTIFACT' ? ('ModelArtifact' as const) : ('Dataset' as const),
    name: p.name,
    version: p.version,
  }));
  const s = lineage.source;
  const source =
    s === null
      ? undefined
      : {
          ...(s.repository === '' ? {} : { repository: s.repository }),
          ...(s.commit === '' ? {} : { commit: s.commit }),
          ...(s.run === '' ? {} : { run: s.run }),
        };
  return {
    ...(parents.length > 0 ? { parents } : {}),
    ...(source !== undefined && Object.keys(source).length > 0 ? { source } : {}),
  };
}

function requestProblem(r: PublishVersionRequest__Output): string | undefined {
  const ns = r.artifact?.namespace ?? '';
  const name = r.artifact?.name ?? '';
  const ref = artifactRefProblem(ns, name);
  if (ref !== undefined) return ref;
  if (isDns1123Label(r.version).length > 0 || r.version === 'latest')
    return 'version must be a DNS-1123 label of at most 63 characters, and not "latest"';
  if (isSha256Digest(r.digest).length > 0)
    return 'digest must be "sha256:" followed by 64 lowercase hex digits';
  if (!/^[1-9]\d{0,15}$/.test(r.size) || !Number.isSafeInteger(Number(r.size)))
    return 'size must be a positive integer number of bytes';
  if (isSha256Digest(r.keyFingerprint).length > 0)
    return 'key_fingerprint must be "sha256:" followed by 64 lowercase hex digits';
  const sealed = r.sealedKey;
  if (sealed === null) return 'sealed_key is required';
  if (sealed.suite !== 'HPKE_SUITE_BASE_X25519_SHA256_AES256GCM')
    return 'sealed_key.suite must be HPKE_SUITE_BASE_X25519_SHA256_AES256GCM';
  if (sealed.enc.length !== 32) return 'sealed_key.enc must be a 32-byte X25519 encapsulated key';
  if (sealed.ciphertext.length < 17 || sealed.ciphertext.length > 256)
    return 'sealed_key.ciphertext has an impossible length';
  const lineage = r.lineage;
  if (lineage !== null) {
    if (lineage.parents.length > 16) return 'lineage.parents has more than 16 entries';
    for (const p of lineage.parents) {
      if (p.kind !== 'PARENT_KIND_MODEL_ARTIFACT' && p.kind !== 'PARENT_KIND_DATASET')
        return 'every lineage parent needs a kind';
      if (p.name === '' || p.name.length > 253 || p.version === '' || p.version.length > 253)
        return 'every lineage parent needs a name and a version';
    }
    const commit = lineage.source?.commit ?? '';
    if (commit !== '' && !COMMIT.test(commit))
      return 'lineage.source.commit must be 7 to 64 lowercase hex digits';
  }
  return undefined;
}

function apiMessage(error: ApiException<unknown>): string {
  try {
    const body = JSON.parse(String(error.body)) as { message?: string };
    return (body.message ?? '').slice(0, 512);
  } catch {
    return `HTTP ${String(error.code)}`;
  }
}
