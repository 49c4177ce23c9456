/**
 * The PublishVersion authorization decision: may this workload add this version name to this artifact now? Pure,
 * like authorizeRelease: an Active `publish` grant in the artifact's namespace must name the workload (namespace,
 * service account, pod labels) and cover the version name (`names` or `all`); publishing across environments needs
 * a grant marked cross-environment, and restricted artifacts never take versions from another environment.
 */
import { ENVIRONMENT_LABEL, type AccessGrant, type ModelArtifact } from '../api/index.ts';
import type { ClassificationTable } from './classification.ts';
import { evaluateGrant, type NamespaceFacts } from './grant.ts';
import { selectorMismatch } from './labels.ts';
import type { WorkloadIdentity } from './release.ts';

export interface PublishInput {
  identity: WorkloadIdentity;
  artifactNamespace: string;
  artifactName: string;
  /** The new version's name. */
  version: string;
  artifact: ModelArtifact | undefined;
  /** The AccessGrants in the artifact's namespace. */
  grants: readonly AccessGrant[];
  namespaces: ReadonlyMap<string, NamespaceFacts>;
  /** The classification table in force. */
  policy: ClassificationTable;
  now: Date;
}

export type PublishDenyReason =
  | 'NamespaceUnknown'
  | 'ArtifactNotFound'
  | 'ArtifactDeleted'
  | 'VersionExists'
  | 'NoEnvironment'
  | 'RestrictedCannotCrossEnvironments'
  | 'NoPublishGrant'
  | 'CrossEnvironmentNotAllowed'
  | 'GrantNotActive';

export type PublishDecision =
  | { allow: true; grant: AccessGrant; message: string }
  | { allow: false; reason: PublishDenyReason; message: string };

/** Decides; never reads the clock. Fails closed with a reason and a message naming what is missing. */
export function authorizePublish(input: PublishInput): PublishDecision {
  const { identity, artifact, namespaces } = input;
  const who = `${identity.namespace}/${identity.serviceAccount} (pod ${identity.podUid})`;
  const ref = `ModelArtifact ${input.artifactNamespace}/${input.artifactName}`;
  const deny = (reason: PublishDenyReason, message: string): PublishDecision => ({
    allow: false,
    reason,
    message,
  });
  const from = namespaces.get(identity.namespace);
  const to = namespaces.get(input.artifactNamespace);
  if (from?.exists !== true || to?.exists !== true)
    return deny('NamespaceUnknown', `the namespaces of ${who} and ${ref} must both exist`);
  if (
    artifact === undefined ||
    artifact.metadata.namespace !== input.artifactNamespace ||
    artifact.metadata.name !== input.artifactName
  )
    return deny('ArtifactNotFound', `${ref} does not exist`);
  if (artifact.metadata.deletionTimestamp !== undefined)
    return deny('ArtifactDeleted', `${ref} is being deleted`);
  if ((artifact.spec.versions ?? []).some((v) => v.name === input.version))
    return deny(
      'VersionExists',
      `version ${input.version} of ${ref} is already published; versions are immutable`,
    );
  const fromEnv = from.environment ?? '';
  const toEnv = to.environment ?? '';
  const classification = artifact.spec.classification;
  if (classification !== 'public' && (fromEnv === '' || toEnv === '')) {
    const names = [
      ...new Set([fromEnv === '' ? identity.namespace : '', toEnv === '' ? input.artifactNamespace : '']),
    ].filter((n) => n !== '');
    const unlabelledCount = names.length;
    const unlabelled = `${unlabelledCount === 1 ? 'namespace' : 'namespaces'} ${names.join(' and ')}`;
    return deny(
      'NoEnvironment',
      `${ref} is ${classification}, and ${unlabelled} ${unlabelledCount === 1 ? 'has' : 'have'} no ${ENVIRONMENT_LABEL} label; a namespace without an environment gets nothing above public`,
    );
  }
  const crossing = fromEnv !== toEnv;
  if (crossing && !input.policy.classifications[classification].crossEnvironment)
    return deny(
      classification === 'restricted' ? 'RestrictedCannotCrossEnvironments' : 'CrossEnvironmentNotAllowed',
      `${ref} is ${classification}, and the classification table never lets ${classification} artifacts take versions from another environment (${classification}.crossEnvironment is false)`,
    );

  let closest: { reason: PublishDenyReason; why: string } | undefined;
  const sorted = [...input.grants].sort((a, b) =>
    (a.metadata.name ?? '') < (b.metadata.name ?? '') ? -1 : 1,
  );
  for (const grant of sorted) {
    if (grant.metadata.namespace !== input.artifactNamespace) continue;
    if (grant.spec.artifactRef.name !== input.artifactName || grant.spec.mode !== 'publish') continue;
    const subjects = grant.spec.subjects.filter(
      (s) => s.namespace === identity.namespace && s.serviceAccount === identity.serviceAccount,
    );
    if (!subjects.some((s) => selectorMismatch(identity.podLabels, s.podSelector) === undefined)) continue;
    const { match } = grant.spec.versions;
    if (match === 'latest') continue;
    if (match === 'named' && !(grant.spec.versions.names ?? []).includes(input.version)) continue;
    const name = grant.metadata.name ?? '';
    if (crossing && grant.spec.crossEnvironment !== true) {
      closest ??= {
        reason: 'CrossEnvironmentNotAllowed',
        why: `grant ${name} is not marked cross-environment`,
      };
      continue;
    }
    const decision = evaluateGrant({
      grant,
      artifact,
      namespaces,
      policy: input.policy,
      now: input.now,
    });
    const recorded = grant.status?.phase;
    if (decision.phase !== 'Active' || (recorded !== undefined && recorded !== 'Active')) {
      closest = {
        reason: 'GrantNotActive',
        why: `grant ${name} is ${decision.phase === 'Active' ? (recorded ?? '') : decision.phase}: ${decision.message}`,
      };
      continue;
    }
    return {
      allow: true,
      grant,
      message: `AccessGrant ${input.artifactNamespace}/${name} lets ${who} publish version ${input.version} of ${ref}`,
    };
  }
  if (closest !== undefined)
    return deny(closest.reason, `${who} may not publish version ${input.version} of ${ref}: ${closest.why}`);
  return deny(
    'NoPublishGrant',
    `no publish grant in ${input.artifactNamespace} names ${who} and version ${input.version} of ${ref}`,
  );
}
